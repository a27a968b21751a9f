"""The Docker side of a cycle at N agents: a cold cycle against the raw-SDK floor, steady cycles, peak memory.

For each N (the guide's 25 roles, their counts scaled to N; 38 is the guide's own roster), on one engine:

Cold: `python -m coordinator cycle` run as a process (what the scheduler runs: interpreter start, settings,
inventory, the slow-start spawns, the report), timed from fork to exit, against the floor: the same N
containers (the same names, labels, environment and host config, computed by the coordinator's own pure
plan before the clock starts) created and started with the Docker SDK's low-level API from a thread pool
as wide as SPAWN_CONCURRENCY, on a client built before its clock starts. The two alternate, `--rounds`
rounds, everything removed between. Timed runs talk to the engine's socket directly; nothing sits between.

Steady: with the N agents running (brought up by one more cold cycle, this one through a counting proxy on
the Docker socket, tests/fakes/docker_proxy.py), cycles with nothing to do, their Docker requests counted,
against one bare list call timed in the same state. Then a history: every agent killed and replaced twice
(FLEET_MAX_SPAWNS_PER_HOUR set, so housekeeping keeps the past hour's 2N exited agents) and the steady
cycles again, with 3N containers listed. Peak memory: the cycle process's own ru_maxrss (os.wait4).

Every cycle runs with the settings a deployed coordinator has under `schedule` (COORDINATOR_CYCLE_TIMEOUT_S
300, DOCKER_API_VERSION pinned to the engine's) plus the limits the larger rosters need. Containers carry a
fleet id unique to the run and are removed by label at the end, whatever happens.

Run from the repository root:  .venv/bin/python benchmarks/cycle_spawn.py [--agents 38 150 600] [--rounds 3]
Image: a 2 MB image FROM scratch holding only /bin/sleep and its libc, built from the base image
(scripts/base-image, or BASE_IMAGE) on first use; or --image IMAGE (it must have `sleep`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import docker
import docker.errors
from docker.types import LogConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coordinator import labels
from coordinator.fleet import DEFAULT_MAX_AGENTS, DEFAULT_MAX_AGENTS_PER_ROLE, RoleSpec, roster_to_json
from coordinator.runtime import AgentLaunch
from coordinator.runtimes.engine import AGENT_LOG_OPTIONS, DOCKER_TIMEOUT_S
from coordinator.settings import VARIABLES, SpawnSettings
from coordinator.steps.inventory import Inventory
from coordinator.steps.reconcile import AgentContext, SlowStart, agent_launch, plan_reconcile
from roster import ROSTER
from tests.fakes.docker_proxy import CountingProxy

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ("sleep", "infinity")
CONCURRENCY = SpawnSettings().concurrency  # the coordinator's default; the floor uses the same
COLD_TARGET = 1.3  # a cold cycle within 1.3x of the raw SDK floor, at every N
RSS_TARGET_MB = 80.0  # the cycle process's peak memory at 600 agents
CYCLE_TIMEOUT_S = 300  # what `schedule` tells a cycle under the default */5 schedule (its deadline: 80 %)
SETTLE_S = 1.0  # pause after removing containers, so the engine's teardown does not bleed into the next timing
PROCESS_LIMIT_S = 1800.0  # a cycle process still running after this is killed (the benchmark then fails)

# The settings the benchmark gives each cycle. Checked against the coordinator's own list at start, so a
# renamed variable fails loudly instead of being silently ignored.
USED_VARIABLES = (
    "FLEET_ID", "FLEET_ROSTER_FILE", "COORDINATOR_HEARTBEAT_FILE", "COORDINATOR_CYCLE_TIMEOUT_S",
    "DOCKER_API_VERSION", "DOCKER_HOST", "FLEET_MAX_AGENTS", "FLEET_MAX_AGENTS_PER_ROLE",
    "FLEET_MAX_SPAWNS_PER_HOUR", "AGENT_CRASH_BACKOFF_S", "SPAWN_CONCURRENCY",
)

# The tiny agent image: only /bin/sleep and the libraries it loads, copied out of the base image.
TINY_DOCKERFILE = """\
ARG BASE
FROM ${BASE} AS base
RUN mkdir /out && cp -L --parents $(ldd /bin/sleep | grep -o '/[^ ]*') /bin/sleep /out/
FROM scratch
COPY --from=base /out/ /
CMD ["/bin/sleep", "infinity"]
"""


# --- Docker requests, by kind --------------------------------------------------------------------------------

_VERSION_PREFIX = re.compile(r"^v\d+\.\d+$")


def kind_of(request_line: str) -> str:
    """`GET /v1.41/containers/json?...` -> list; `POST /v1.41/containers/<id>/start` -> start; and so on."""
    method, _, url = request_line.partition(" ")
    parts = [p for p in urlsplit(url).path.split("/") if p]
    if parts and _VERSION_PREFIX.match(parts[0]):
        parts = parts[1:]
    if parts in (["version"], ["_ping"]):
        return parts[0].lstrip("_")
    if parts[:1] == ["containers"]:
        if parts == ["containers", "json"] and method == "GET":
            return "list"
        if parts == ["containers", "create"] and method == "POST":
            return "create"
        if len(parts) == 3 and parts[2] == "json" and method == "GET":
            return "inspect"
        if len(parts) == 3 and method == "POST" and parts[2] in ("start", "rename", "kill"):
            return parts[2]
        if len(parts) == 2 and method == "DELETE":
            return "remove"
    return f"{method} /{'/'.join(parts)}"


ORDER = ("version", "ping", "list", "inspect", "rename", "create", "start", "remove")


def describe(calls: Counter[str]) -> str:
    kinds = [k for k in ORDER if calls[k]] + sorted(set(calls) - set(ORDER))
    return ", ".join(f"{kind} {calls[kind]}" for kind in kinds) + f" (total {sum(calls.values())})"


def same_every_time(runs: Sequence[Counter[str]]) -> str:
    distinct = {tuple(sorted(c.items())) for c in runs}
    text = describe(runs[0]) if runs else "none"
    return text if len(distinct) <= 1 else f"{text}; VARIED across runs: {[dict(d) for d in sorted(distinct)]}"


# --- the roster at N, and the floor's launches -----------------------------------------------------------------


def scaled_roster(agents: int, image: str) -> tuple[RoleSpec, ...]:
    """The guide's roles with their counts scaled to sum to `agents` (largest remainders; 38 is the guide's)."""
    weights = [role.count for role in ROSTER]
    exact = [w * agents / sum(weights) for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: agents - sum(counts)]:
        counts[i] += 1
    return tuple(
        RoleSpec(dataclasses.replace(role, count=count), image=image, command=COMMAND)
        for role, count in zip(ROSTER, counts, strict=True)
        if count
    )


def floor_launches(fleet_id: str, specs: Sequence[RoleSpec]) -> list[AgentLaunch]:
    """What a cold cycle launches, from the coordinator's own pure plan (an empty inventory), before any clock."""
    now = datetime.now(UTC)
    plan = plan_reconcile(fleet_id, specs, Inventory(taken_at=now), now=now)
    context = AgentContext(fleet_id=fleet_id, network=SpawnSettings().network)
    return [agent_launch(spawn, context) for spawn in plan.spawns]


def floor_one(api: docker.APIClient, launch: AgentLaunch) -> str:
    """One agent, created and started with the same calls DockerRuntime.spawn makes."""
    host_config = api.create_host_config(
        network_mode=launch.network or "bridge",
        log_config=LogConfig(type=LogConfig.types.JSON, config=dict(AGENT_LOG_OPTIONS)),
        restart_policy={"Name": "no"},
        init=True,
    )
    created = api.create_container(
        image=launch.image, command=list(launch.command or ()), name=launch.name, environment=dict(launch.env),
        labels=labels.agent_labels(launch), host_config=host_config,
    )
    api.start(created["Id"])
    return str(created["Id"])


def floor_spawn(api: docker.APIClient, launches: Sequence[AgentLaunch], concurrency: int) -> int:
    """The floor: every agent through a plain pool of `concurrency` threads, each thread taking the next launch
    as soon as it is done. Returns how many started."""
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="floor") as pool:
        return len(list(pool.map(lambda launch: floor_one(api, launch), launches)))


def batch_sizes(total: int, limit: int) -> list[int]:
    """1, 2, 4, ... capped at `limit`, summing to `total`: slow start as batches, each waited for."""
    sizes: list[int] = []
    size = 1
    while total > 0:
        sizes.append(min(size, max(1, limit), total))
        total -= sizes[-1]
        size *= 2
    return sizes


def batched_floor_spawn(api: docker.APIClient, launches: Sequence[AgentLaunch], concurrency: int) -> int:
    """A diagnostic, not a baseline: the raw SDK in slow-start batches (1, 2, 4, ... capped at `concurrency`,
    each batch waited for before the next starts), the coordinator's earlier executor: it shows what waiting for
    each batch's slowest member costs, which is why the coordinator now slow-starts as a window."""
    done = 0
    pending = list(launches)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="batched") as pool:
        for size in batch_sizes(len(pending), concurrency):
            batch, pending = pending[:size], pending[size:]
            done += len(list(pool.map(lambda launch: floor_one(api, launch), batch)))
    return done


def windowed_floor_spawn(api: docker.APIClient, launches: Sequence[AgentLaunch], concurrency: int) -> int:
    """A diagnostic, not a baseline: the raw SDK under the coordinator's own slow-start window
    (`reconcile.SlowStart`: one in flight at first, one more per success, at most `concurrency`), so the window's
    own cost shows apart from the rest of the cycle."""
    pending = list(launches)
    done = 0
    ramp = SlowStart(concurrency)
    in_flight: set[Future[str]] = set()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="window") as pool:
        while pending or in_flight:
            while pending and ramp.may_start(len(in_flight)):
                in_flight.add(pool.submit(floor_one, api, pending.pop(0)))
            finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()
                done += 1
                ramp.window += 1  # a success, as SlowStart.answered counts it
    return done


DIAGNOSTICS: dict[str, Callable[[docker.APIClient, Sequence[AgentLaunch], int], int]] = {
    "batched": batched_floor_spawn,
    "window": windowed_floor_spawn,
}


# --- the engine: the image, listing, killing, removing ---------------------------------------------------------


def tiny_image(api: docker.APIClient, base: str) -> str:
    """Build (once; the tag names the recipe and the base image's id) and return the tiny sleep image."""
    base_id = str(api.inspect_image(base)["Id"])
    digest = hashlib.sha256((TINY_DOCKERFILE + base_id).encode()).hexdigest()[:12]
    tag = f"agent-fleet/bench-sleep:{digest}"
    with suppress(docker.errors.ImageNotFound):
        api.inspect_image(tag)
        return tag
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        data = TINY_DOCKERFILE.encode()
        entry = tarfile.TarInfo("Dockerfile")
        entry.size = len(data)
        archive.addfile(entry, io.BytesIO(data))
    context.seek(0)
    for chunk in api.build(fileobj=context, custom_context=True, tag=tag, buildargs={"BASE": base}, rm=True,
                           pull=False, decode=True):
        if "error" in chunk:
            raise RuntimeError(f"building {tag} failed: {chunk['error']}")
    return tag


def fleet_items(api: docker.APIClient, fleet_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.containers(all=True, filters={"label": [f"{labels.FLEET}={fleet_id}"]})
    return items


def states(api: docker.APIClient, fleet_id: str) -> Counter[str]:
    return Counter(str(item["State"]) for item in fleet_items(api, fleet_id))


def bare_list(api: docker.APIClient, fleet_id: str) -> tuple[int, float]:
    """The one call a steady cycle needs: the fleet's agents by label, every state."""
    started = time.perf_counter()
    items = api.containers(all=True, filters={"label": labels.selector(fleet_id)})
    return len(items), time.perf_counter() - started


def in_pool(fn: Callable[[str], object], ids: Sequence[str], concurrency: int = CONCURRENCY) -> None:
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench") as pool:
        list(pool.map(fn, ids))


def kill_running(api: docker.APIClient, fleet_id: str) -> int:
    """SIGKILL every running agent (an agent that crashed), and wait until the engine shows them all exited."""
    running = [str(i["Id"]) for i in fleet_items(api, fleet_id) if i["State"] == "running"]

    def kill(container_id: str) -> None:
        with suppress(docker.errors.NotFound):
            api.kill(container_id)

    in_pool(kill, running)
    for _ in range(300):
        if not states(api, fleet_id)["running"]:
            return len(running)
        time.sleep(0.2)
    raise RuntimeError(f"agents of {fleet_id} still running 60 s after being killed")


def remove_fleet(api: docker.APIClient, fleet_id: str) -> int:
    """Force-remove every container of the benchmark's fleet (found by label), then let the engine settle."""
    items = fleet_items(api, fleet_id)

    def remove(container_id: str) -> None:
        with suppress(docker.errors.NotFound):
            api.remove_container(container_id, force=True)

    in_pool(remove, [str(item["Id"]) for item in items])
    left = fleet_items(api, fleet_id)
    if left:
        raise RuntimeError(f"{len(left)} containers of fleet {fleet_id} are still there after removal")
    if items:
        time.sleep(SETTLE_S)
    return len(items)


# --- the cycle as a process ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CycleRun:
    wall_s: float  # fork to exit
    cpu_s: float  # user + system
    peak_rss_mb: float  # the process's own ru_maxrss
    returncode: int
    report: Mapping[str, Any]
    calls: Counter[str]  # by kind; empty unless run through the counting proxy
    stderr: str

    @property
    def in_cycle_s(self) -> float:
        """The cycle's own duration as its report gives it: without interpreter start, imports and settings."""
        return float(self.report.get("duration_s", float("nan")))

    def step_s(self, step: str) -> float:
        return float(self.report.get("steps", {}).get(step, {}).get("duration_s", float("nan")))

    def spawned(self) -> int:
        return int(self.report.get("spawned", -1))


def run_cycle_process(env: Mapping[str, str], proxy: CountingProxy | None = None) -> CycleRun:
    """`python -m coordinator cycle` as a child process, waited for with os.wait4 for its own peak RSS."""
    env = dict(env)
    if proxy is not None:
        env["DOCKER_HOST"] = proxy.docker_host
        proxy.reset()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "coordinator", "cycle"], env=env, cwd=ROOT, stdout=out,
                                stderr=err)
        finished = threading.Event()

        def watchdog() -> None:
            if not finished.wait(PROCESS_LIMIT_S):
                with suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)

        threading.Thread(target=watchdog, daemon=True).start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            finished.set()
        wall_s = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait for it again
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    calls = Counter(kind_of(line) for line in proxy.requests) if proxy is not None else Counter[str]()
    report: dict[str, Any] = {}
    for line in reversed(stdout.splitlines()):
        with suppress(ValueError):
            parsed = json.loads(line)
            if isinstance(parsed, dict) and parsed.get("event") == "cycle.report":
                report = parsed
                break
    return CycleRun(wall_s, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode, report, calls,
                    stderr)


def expect(run: CycleRun, what: str, *, spawned: int | None = None, running: int | None = None) -> CycleRun:
    """A cycle that failed, or did other than expected, ends the benchmark: its figures would mean nothing."""
    problems = []
    if run.returncode != 0 or not run.report:
        problems.append(f"exit {run.returncode}, stderr: {run.stderr.strip()[-500:]}")
    if spawned is not None and run.spawned() != spawned:
        problems.append(f"spawned {run.spawned()}, expected {spawned}")
    if running is not None and run.report.get("running") != running:
        problems.append(f"running {run.report.get('running')}, expected {running}")
    if run.report.get("errors"):
        problems.append(f"errors: {run.report['errors']}")
    if problems:
        raise RuntimeError(f"{what}: " + "; ".join(problems))
    return run


def cycle_env(fleet_id: str, scratch: Path, specs: Sequence[RoleSpec], api_version: str,
              concurrency: int) -> dict[str, str]:
    agents = sum(spec.role.count for spec in specs)
    roster_file = scratch / "roster.json"
    roster_file.write_text(roster_to_json(specs), encoding="utf-8")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "FLEET_ID": fleet_id,
        "FLEET_ROSTER_FILE": str(roster_file),
        "COORDINATOR_HEARTBEAT_FILE": str(scratch / "state" / "heartbeat.json"),  # the exit memo lives beside it
        "COORDINATOR_CYCLE_TIMEOUT_S": str(CYCLE_TIMEOUT_S),
        "DOCKER_API_VERSION": api_version,
        "FLEET_MAX_AGENTS": str(max(agents, DEFAULT_MAX_AGENTS)),
        "FLEET_MAX_AGENTS_PER_ROLE": str(max(max(s.role.count for s in specs), DEFAULT_MAX_AGENTS_PER_ROLE)),
        # Room for the N first spawns and 2N replacements, so housekeeping keeps the past hour's history.
        "FLEET_MAX_SPAWNS_PER_HOUR": str(4 * agents),
        # A slot killed twice waits base x 1 before its next spawn; the history is built without waiting.
        "AGENT_CRASH_BACKOFF_S": "0.001",
        "SPAWN_CONCURRENCY": str(concurrency),
    }
    for name in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        if name in os.environ:
            env[name] = os.environ[name]
    unknown = set(env) - set(VARIABLES) - {"PATH", "PYTHONPATH", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"}
    assert not unknown, f"not coordinator settings (renamed?): {sorted(unknown)}"
    return env


def interpreter_floor(env: Mapping[str, str]) -> tuple[float, float]:
    """A process that only starts Python and imports the cycle's modules: its wall time and peak RSS (MB)."""
    argv = [sys.executable, "-c", "import coordinator.cli, coordinator.cycle, coordinator.runtimes.docker"]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=dict(env), cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss / 1024


# --- one N -----------------------------------------------------------------------------------------------------


@dataclass
class Scale:
    agents: int
    roles: int
    floor_s: list[float] = field(default_factory=list)
    floor_cpu_s: list[float] = field(default_factory=list)
    diagnostic_s: dict[str, list[float]] = field(default_factory=dict)  # by side: "batched", "window"
    cold: list[CycleRun] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    counted_cold: CycleRun | None = None
    floor_calls: Counter[str] = field(default_factory=Counter)
    steady: list[CycleRun] = field(default_factory=list)
    steady_unpinned: CycleRun | None = None
    list_s: list[float] = field(default_factory=list)
    replacements: list[CycleRun] = field(default_factory=list)
    history: list[CycleRun] = field(default_factory=list)
    history_list_s: list[float] = field(default_factory=list)
    history_listed: int = 0

    def peak_rss_mb(self) -> float:
        runs = [*self.cold, *self.steady, *self.replacements, *self.history]
        runs += [r for r in (self.counted_cold, self.steady_unpinned) if r is not None]
        return max(run.peak_rss_mb for run in runs)


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def measure_scale(api: docker.APIClient, proxy: CountingProxy, agents: int, image: str, api_version: str,
                  args: argparse.Namespace) -> Scale:
    fleet_id = f"bench-{uuid.uuid4().hex[:8]}"
    specs = scaled_roster(agents, image)
    scale = Scale(agents, len(specs))
    launches = floor_launches(fleet_id, specs)
    assert len(launches) == agents
    repeats = args.steady_repeats
    print(f"\nN = {agents}: {len(specs)} roles, fleet {fleet_id}, {args.rounds} rounds, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="cycle-spawn-") as scratch_dir, fleet_cleanup(api, fleet_id):
        scratch = Path(scratch_dir)
        env = cycle_env(fleet_id, scratch, specs, api_version, args.concurrency)

        # Warm-up, untimed: a few containers through each path, so neither side pays first-use costs alone.
        floor_spawn(api, launches[: args.concurrency], args.concurrency)
        remove_fleet(api, fleet_id)
        warm_dir = scratch / "warm"
        warm_dir.mkdir()
        warm_env = cycle_env(fleet_id, warm_dir, scaled_roster(38, image)[:3], api_version, args.concurrency)
        expect(run_cycle_process(warm_env), "warm-up cycle")
        remove_fleet(api, fleet_id)

        # Cold: the sides take turns (the order rotates each round); each starts from an empty fleet and, for the
        # cycle, a fresh state directory.
        sides = ["floor", "cycle", *(DIAGNOSTICS if args.diagnostics else ())]
        for n in range(args.rounds):
            order = sides[n % len(sides):] + sides[: n % len(sides)]
            for side in order:
                if side == "cycle":
                    round_env = {**env, "COORDINATOR_HEARTBEAT_FILE": str(scratch / f"state-{n}" / "heartbeat.json")}
                    scale.cold.append(expect(run_cycle_process(round_env), f"cold cycle, round {n + 1}",
                                             spawned=agents))
                else:
                    spawn = DIAGNOSTICS.get(side, floor_spawn)
                    cpu_before, started = time.process_time(), time.perf_counter()
                    started_n = spawn(api, launches, args.concurrency)
                    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_before
                    if side == "floor":
                        scale.floor_s.append(elapsed)
                        scale.floor_cpu_s.append(cpu)
                    else:
                        scale.diagnostic_s.setdefault(side, []).append(elapsed)
                    assert started_n == agents, f"the {side} side fell short"
                assert states(api, fleet_id)["running"] == agents
                remove_fleet(api, fleet_id)
            run, floor_s = scale.cold[-1], scale.floor_s[-1]
            scale.ratios.append(run.wall_s / floor_s)
            others = "".join(f", {side} {times[-1]:.2f} s" for side, times in scale.diagnostic_s.items())
            print(f"  round {n + 1} ({order[0]} first): floor {floor_s:.2f} s, cold cycle {run.wall_s:.2f} s "
                  f"({run.wall_s / floor_s:.2f}x; in-cycle {run.in_cycle_s:.2f} s, reconcile step "
                  f"{run.step_s('reconcile'):.2f} s, CPU {run.cpu_s:.2f} s){others}, peak RSS {run.peak_rss_mb:.1f} MB")

        # The floor's own requests, counted once (untimed), to set beside the cycle's.
        floor_client = docker.APIClient(base_url=proxy.docker_host, version=api_version, timeout=DOCKER_TIMEOUT_S)
        proxy.reset()
        floor_spawn(floor_client, launches, args.concurrency)
        scale.floor_calls = Counter(kind_of(line) for line in proxy.requests)
        # The proxy's own check: the floor's requests are known exactly.
        assert scale.floor_calls == Counter({"create": agents, "start": agents}), scale.floor_calls
        floor_client.close()
        remove_fleet(api, fleet_id)

        # Steady: one more cold cycle, counted, brings the fleet up; then cycles with nothing to do.
        scale.counted_cold = expect(run_cycle_process(env, proxy), "counted cold cycle", spawned=agents)
        for _ in range(repeats):
            scale.steady.append(expect(run_cycle_process(env, proxy), "steady cycle", spawned=0, running=agents))
            count, list_s = bare_list(api, fleet_id)
            assert count == agents
            scale.list_s.append(list_s)
        unpinned = {k: v for k, v in env.items() if k != "DOCKER_API_VERSION"}
        scale.steady_unpinned = expect(run_cycle_process(unpinned, proxy), "steady cycle, API version not pinned",
                                       spawned=0, running=agents)
        print(f"  steady: {same_every_time([r.calls for r in scale.steady])}; "
              f"in-cycle {ms(med([r.in_cycle_s for r in scale.steady]))} ms, bare list {ms(med(scale.list_s))} ms")

        # History: every agent killed and replaced, twice; housekeeping keeps them (the past hour's spawns).
        if not args.no_history:
            for n in range(2):
                kill_running(api, fleet_id)
                scale.replacements.append(expect(run_cycle_process(env, proxy), f"replacement cycle {n + 1}",
                                                 spawned=agents))
            seen = states(api, fleet_id)
            assert seen["running"] == agents and seen["exited"] == 2 * agents, seen
            for _ in range(repeats):
                scale.history.append(expect(run_cycle_process(env, proxy), "steady cycle with history", spawned=0,
                                            running=agents))
                count, list_s = bare_list(api, fleet_id)
                scale.history_listed = count
                scale.history_list_s.append(list_s)
            print(f"  with history ({scale.history_listed} listed): "
                  f"{same_every_time([r.calls for r in scale.history])}; "
                  f"in-cycle {ms(med([r.in_cycle_s for r in scale.history]))} ms, "
                  f"bare list {ms(med(scale.history_list_s))} ms")
    return scale


def report_scale(scale: Scale, concurrency: int) -> None:
    n = scale.agents
    floor_med = med(scale.floor_s)
    cold_med = med([r.wall_s for r in scale.cold])
    in_cycle_med = med([r.in_cycle_s for r in scale.cold])
    ratio = med(scale.ratios)
    print(f"\nN = {n} ({scale.roles} roles), {len(scale.floor_s)} rounds")
    print(f"  {'cold':<58}{'median s':>10}{'min s':>9}")
    print(f"  {'floor: raw SDK create+start, ' + str(concurrency) + ' threads':<58}"
          f"{floor_med:>10.2f}{min(scale.floor_s):>9.2f}")
    print(f"  {'cycle: python -m coordinator cycle, fork to exit':<58}{cold_med:>10.2f}"
          f"{min(r.wall_s for r in scale.cold):>9.2f}")
    print(f"  {'cycle: its own duration_s (no interpreter start)':<58}{in_cycle_med:>10.2f}"
          f"{min(r.in_cycle_s for r in scale.cold):>9.2f}")
    reconcile = [r.step_s("reconcile") for r in scale.cold]
    print(f"  {'cycle: its reconcile step (the spawns)':<58}{med(reconcile):>10.2f}{min(reconcile):>9.2f}")
    for side, label in (("batched", "diagnostic: raw SDK in slow-start batches, each waited for"),
                        ("window", "diagnostic: raw SDK, slow start as a window, no waiting")):
        if side in scale.diagnostic_s:
            times = scale.diagnostic_s[side]
            print(f"  {label:<58}{med(times):>10.2f}{min(times):>9.2f}   {med(times) / floor_med:.2f}x floor")
    print(f"  CPU time: cycle process {med([r.cpu_s for r in scale.cold]):.2f} s, floor "
          f"{med(scale.floor_cpu_s):.2f} s (medians; user + system)")
    print(f"  ratio cycle / floor, per round: median {ratio:.2f}x, range {min(scale.ratios):.2f}-"
          f"{max(scale.ratios):.2f}x (in-cycle: {in_cycle_med / floor_med:.2f}x)   target <= {COLD_TARGET}x: "
          f"{'met' if ratio <= COLD_TARGET else 'NOT met'}")
    if scale.counted_cold is not None:
        print(f"  Docker calls, cycle: {describe(scale.counted_cold.calls)}")
    print(f"  Docker calls, floor: {describe(scale.floor_calls)}")
    print(f"  peak RSS of the cold cycle: {max(r.peak_rss_mb for r in scale.cold):.1f} MB")
    if scale.steady:
        lists = {r.calls["list"] for r in scale.steady} | {r.calls["list"] for r in scale.history}
        totals = {sum(r.calls.values()) for r in [*scale.steady, *scale.history]}
        print(f"  {'steady (' + str(len(scale.steady)) + ' runs each)':<58}{'median ms':>10}{'min ms':>9}")
        print(f"  {'bare list call, ' + str(n) + ' agents':<58}{ms(med(scale.list_s)):>10}{ms(min(scale.list_s)):>9}")
        row("cycle, fork to exit", [r.wall_s for r in scale.steady])
        row("cycle, its own duration_s", [r.in_cycle_s for r in scale.steady])
        print(f"    Docker calls: {same_every_time([r.calls for r in scale.steady])}; "
              f"peak RSS {max(r.peak_rss_mb for r in scale.steady):.1f} MB")
        if scale.steady_unpinned is not None:
            print(f"    without DOCKER_API_VERSION: {describe(scale.steady_unpinned.calls)}")
        if scale.history:
            print(f"  {'bare list call, ' + str(scale.history_listed) + ' containers (history)':<58}"
                  f"{ms(med(scale.history_list_s)):>10}{ms(min(scale.history_list_s)):>9}")
            row("cycle with history, fork to exit", [r.wall_s for r in scale.history])
            row("cycle with history, its own duration_s", [r.in_cycle_s for r in scale.history])
            print(f"    Docker calls: {same_every_time([r.calls for r in scale.history])}; "
                  f"peak RSS {max(r.peak_rss_mb for r in scale.history):.1f} MB")
            for i, run in enumerate(scale.replacements, 1):
                print(f"    replacement cycle {i} (all {n} killed): {describe(run.calls)}; {run.in_cycle_s:.2f} s, "
                      f"peak RSS {run.peak_rss_mb:.1f} MB")
        print(f"  steady calls: {'one list call, every run' if lists == {1} and totals == {1} else 'NOT one call'}")
    print(f"  peak RSS of any cycle at N = {n}: {scale.peak_rss_mb():.1f} MB")


def row(label: str, seconds: Sequence[float]) -> None:
    print(f"  {label:<58}{ms(med(seconds)):>10}{ms(min(seconds)):>9}")


def markdown(scales: Sequence[Scale]) -> None:
    print("\nmarkdown rows (N | floor | cold cycle | ratio | steady: in-cycle ms, calls | with history: containers, "
          "in-cycle ms, calls | peak RSS):")
    for s in scales:
        steady = f"{ms(med([r.in_cycle_s for r in s.steady]))} ms, {sum(s.steady[0].calls.values())}" if s.steady \
            else "-"
        history = (f"{s.history_listed}: {ms(med([r.in_cycle_s for r in s.history]))} ms, "
                   f"{sum(s.history[0].calls.values())}") if s.history else "-"
        print(f"| {s.agents} | {med(s.floor_s):.2f} s | {med([r.wall_s for r in s.cold]):.2f} s | "
              f"**{med(s.ratios):.2f}x** | {steady} | {history} | {s.peak_rss_mb():.1f} MB |")


# --- the run ---------------------------------------------------------------------------------------------------


def raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def fleet_cleanup(api: docker.APIClient, fleet_id: str) -> Iterator[None]:
    """Whatever happens (an assertion, Ctrl-C, SIGTERM), the run's containers are removed by label."""
    try:
        yield
    finally:
        removed = remove_fleet(api, fleet_id)
        if removed:
            print(f"  (cleanup: removed {removed} containers of fleet {fleet_id})")


def revision() -> str:
    """The commit measured, and whether the working tree differed from it."""
    proc = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=ROOT,
                          check=False)
    return proc.stdout.strip() or "unknown"


def base_image() -> str:
    if os.environ.get("BASE_IMAGE"):
        return os.environ["BASE_IMAGE"]
    return subprocess.run([str(ROOT / "scripts" / "base-image")], capture_output=True, text=True, check=True,
                          cwd=ROOT).stdout.strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, nargs="+", default=[38],
                        help="N, one or more (default 38; the scale curve: 38 150 600)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating floor/cycle rounds per N (default 3)")
    parser.add_argument("--steady-repeats", type=int, default=5, help="steady cycles per state (default 5)")
    parser.add_argument("--no-history", action="store_true", help="skip the kill-and-replace history")
    parser.add_argument("--no-diagnostics", dest="diagnostics", action="store_false",
                        help="skip the two diagnostic sides of the cold rounds (the raw SDK in the coordinator's "
                        "slow-start batches, and as a window)")
    parser.add_argument("--image", help="agent image (default: the tiny sleep image, built from the base image)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY,
                        help=f"SPAWN_CONCURRENCY, and the floor's threads (default {CONCURRENCY})")
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, raise_on_sigterm)

    missing = set(USED_VARIABLES) - set(VARIABLES)
    if missing:
        print(f"the coordinator no longer reads {sorted(missing)}; update this benchmark")
        return 2
    api = docker.APIClient(**docker.utils.kwargs_from_env(), version="auto", timeout=DOCKER_TIMEOUT_S)
    server = api.version()
    api_version = str(server["ApiVersion"])
    image = args.image or tiny_image(api, base_image())
    try:
        size_mb = int(api.inspect_image(image)["Size"]) / 1e6
    except docker.errors.ImageNotFound:
        print(f"image {image} is not on the Docker host (this benchmark never pulls)")
        return 2
    docker_host = urlsplit(os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock")
    if docker_host.scheme != "unix":
        print(f"DOCKER_HOST must be a unix socket here: the counting proxy sits on one ({docker_host.geturl()})")
        return 2
    print(f"cycle_spawn: N = {' '.join(map(str, args.agents))}, image {image} ({size_mb:.1f} MB), "
          f"spawn concurrency {args.concurrency}, {args.rounds} rounds")
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"Docker {server.get('Version')} (API {api_version}), {os.cpu_count()} CPUs, {memory_gib:.0f} GiB, "
          f"Python {sys.version.split()[0]}, tree {revision()}")

    with tempfile.TemporaryDirectory(prefix="cycle-spawn-env-") as tmp:
        env = cycle_env("bench-probe", Path(tmp), scaled_roster(38, image), api_version, args.concurrency)
        imports = [interpreter_floor(env) for _ in range(3)]
    print(f"interpreter + the cycle's imports alone: {med([s for s, _ in imports]):.3f} s, "
          f"peak RSS {max(mb for _, mb in imports):.1f} MB")

    scales = []
    proxy = CountingProxy(docker_host.path)
    try:
        for agents in args.agents:
            scales.append(measure_scale(api, proxy, agents, image, api_version, args))
    finally:
        proxy.close()
    for scale in scales:
        report_scale(scale, args.concurrency)
    markdown(scales)
    worst = max(med(s.ratios) for s in scales)
    rss_600 = [s.peak_rss_mb() for s in scales if s.agents >= 600]
    print(f"\ntargets: cold <= {COLD_TARGET}x the floor at every N: {'met' if worst <= COLD_TARGET else 'NOT met'} "
          f"(worst {worst:.2f}x)" + (f"; peak RSS <= {RSS_TARGET_MB:.0f} MB at 600: "
                                      f"{'met' if max(rss_600) <= RSS_TARGET_MB else 'NOT met'} "
                                      f"({max(rss_600):.1f} MB)" if rss_600 else ""))
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
