"""Docker side of a cycle: the guide's 38 agents from cold against the raw SDK floor, and a steady-state cycle.

Cold: one coordinator cycle (`run_cycle`, in-process, merge and health skipped) that creates and starts the
roster's 38 agents, against the floor: the same 38 containers (same names, labels, environment and host
config) created and started with the Docker SDK's low-level API from a thread pool as wide as the
coordinator's spawn concurrency. The floor's client is built before its clock starts; the coordinator's is
built inside the cycle, as every scheduled cycle does. The two alternate, N rounds, everything removed between.
Steady state: a second cycle with the 38 running and nothing to do, its Docker HTTP calls counted, against
one bare `containers(all=True, filters=...)` list call timed in the same state. Printed: median and min,
ratios, and call counts. Containers carry a fleet id unique to the run and are removed by label at the end.

Run from the repository root:  python benchmarks/cycle_spawn.py [--rounds N]
Image: agent-fleet/python-base:bookworm (local, never pulled), or BASE_IMAGE.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import docker
import docker.errors
from docker.types import LogConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coordinator import labels
from coordinator.cycle import Edges, default_edges, run_cycle
from coordinator.edges.docker import AGENT_LOG_OPTIONS, DOCKER_TIMEOUT_S, DockerEngine
from coordinator.fleet import RoleSpec, roster_to_json
from coordinator.report import CycleReport, EventLog
from coordinator.settings import Settings, SpawnSettings
from roster import ROSTER

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("BASE_IMAGE", "agent-fleet/python-base:bookworm")
COMMAND = ("sleep", "infinity")
CONCURRENCY = SpawnSettings().concurrency  # the coordinator's default; the floor uses the same
COLD_TARGET = 1.3  # issue #3: a cold cycle within 1.3x of the raw SDK floor
STEADY_REPEATS = 5  # steady-state cycles (and bare list calls) per round; each cycle builds its own engine
SETTLE_S = 1.0  # pause after removing containers, so the engine's teardown does not bleed into the next timing


# --- counting Docker HTTP calls -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    kind: str
    seconds: float


_VERSION_PREFIX = re.compile(r"^v\d+\.\d+$")


def kind_of(method: str, url: str) -> str:
    """GET /v1.41/containers/json -> list; POST /v1.41/containers/<id>/start -> start; GET /version -> version."""
    parts = [p for p in urlsplit(url).path.split("/") if p]
    if parts and _VERSION_PREFIX.match(parts[0]):
        parts = parts[1:]
    if parts == ["version"]:
        return "version"
    if parts[:1] == ["containers"]:
        if parts == ["containers", "json"] and method == "GET":
            return "list"
        if parts == ["containers", "create"] and method == "POST":
            return "create"
        if len(parts) == 3 and parts[2] == "json" and method == "GET":
            return "inspect"
        if len(parts) == 3 and method == "POST" and parts[2] in ("start", "rename"):
            return parts[2]
        if len(parts) == 2 and method == "DELETE":
            return "remove"
    return f"{method} /{'/'.join(parts)}"


class CountingAPIClient(docker.APIClient):  # type: ignore[misc]  # the SDK is untyped
    """The SDK's low-level client, recording every HTTP call it sends, from construction on (so the
    `GET /version` that `version="auto"` makes is seen too; a response hook is attached too late for it)."""

    def __init__(self, **kwargs: Any) -> None:
        self.calls: list[Call] = []  # list.append is atomic: safe from the spawn threads
        super().__init__(**kwargs)

    def send(self, request: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return super().send(request, **kwargs)
        finally:
            self.calls.append(Call(kind_of(str(request.method), str(request.url)), time.perf_counter() - started))


def client_kwargs(api_version: str = "auto") -> dict[str, Any]:
    """What `DockerEngine.from_env` gives the SDK: the environment, the timeout, version="auto"."""
    return {**docker.utils.kwargs_from_env(), "timeout": DOCKER_TIMEOUT_S, "version": api_version}


def counted_edges(engines: list[DockerEngine], api_version: str = "auto") -> Edges:
    """`default_edges()` with its docker factory swapped for one making the same engine over a counting client:
    built on first use, once per cycle, like the production factory. `api_version` other than "auto" is
    what the DOCKER_API_VERSION setting gives (no version probe)."""

    def docker_factory() -> DockerEngine:
        if not engines:
            engines.append(DockerEngine(CountingAPIClient(**client_kwargs(api_version))))
        return engines[0]

    return dataclasses.replace(default_edges(), docker=docker_factory)


def calls_of(engine: DockerEngine) -> list[Call]:
    calls: list[Call] = engine.api.calls
    return calls


def tally(calls: Sequence[Call]) -> Counter[str]:
    return Counter(call.kind for call in calls)


def seconds_in(calls: Sequence[Call], kind: str) -> float:
    return sum(call.seconds for call in calls if call.kind == kind)


# --- the roster, the floor, the coordinator ------------------------------------------------------------------


def roster_specs() -> tuple[RoleSpec, ...]:
    return tuple(RoleSpec(role, image=IMAGE, command=COMMAND) for role in ROSTER)


def fleet_filter(fleet_id: str) -> dict[str, list[str]]:
    return {"label": [f"{labels.FLEET}={fleet_id}", f"{labels.COMPONENT}={labels.AGENT}"]}


@dataclass(frozen=True)
class Launch:
    name: str
    env: dict[str, str]
    labels: dict[str, str]


def floor_launches(fleet_id: str, specs: Sequence[RoleSpec]) -> list[Launch]:
    """The containers a cold cycle creates, written out by hand: `<fleet>-<role>-<slot>`, the agent's
    environment and the fleet's labels (the shape of `reconcile.agent_launch`), computed before timing."""
    launches = []
    for spec in specs:
        role = spec.role
        for slot in range(1, role.count + 1):
            launches.append(Launch(
                name=f"{fleet_id}-{role.key}-{slot}",
                env={"AGENT_ROLE": role.key, "AGENT_BRIEF": role.brief, "AGENT_MODE": role.mode.value,
                     "AGENT_SLOT": str(slot)},
                labels={labels.FLEET: fleet_id, labels.COMPONENT: labels.AGENT, labels.ROLE: role.key,
                        labels.SLOT: str(slot), labels.CRASH_STREAK: "0"},
            ))
    return launches


def floor_spawn(api: docker.APIClient, launches: Sequence[Launch]) -> int:
    """Create and start every container with the raw SDK, `CONCURRENCY` at a time. Returns how many started."""

    def one(launch: Launch) -> str:
        host_config = api.create_host_config(
            network_mode="bridge",
            log_config=LogConfig(type=LogConfig.types.JSON, config=dict(AGENT_LOG_OPTIONS)),
            restart_policy={"Name": "no"},
            init=True,
        )
        created = api.create_container(image=IMAGE, command=list(COMMAND), name=launch.name, environment=launch.env,
                                       labels=launch.labels, host_config=host_config)
        api.start(created["Id"])
        return str(created["Id"])

    with ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="floor") as pool:
        return len(list(pool.map(one, launches)))


def coordinator_cycle(settings: Settings, api_version: str = "auto") -> tuple[CycleReport, float, list[Call]]:
    """One in-process cycle with a fresh engine (as each scheduled cycle has): report, seconds, Docker calls."""
    engines: list[DockerEngine] = []
    edges = counted_edges(engines, api_version)
    log = EventLog(settings.fleet_id, stream=io.StringIO())
    started = time.perf_counter()
    report = run_cycle(settings, log=log, edges=edges)
    elapsed = time.perf_counter() - started
    calls = list(calls_of(engines[0])) if engines else []
    for engine in engines:
        engine.close()
    return report, elapsed, calls


def bare_list(api: docker.APIClient, fleet_id: str) -> tuple[int, float]:
    started = time.perf_counter()
    items = api.containers(all=True, filters=fleet_filter(fleet_id))
    return len(items), time.perf_counter() - started


def running(api: docker.APIClient, fleet_id: str) -> int:
    return sum(1 for item in api.containers(all=True, filters=fleet_filter(fleet_id)) if item["State"] == "running")


def remove_fleet(api: docker.APIClient, fleet_id: str) -> int:
    """Force-remove every container of the benchmark's fleet (found by label), then let the engine settle."""
    items = api.containers(all=True, filters={"label": [f"{labels.FLEET}={fleet_id}"]})

    def remove(container_id: str) -> None:
        with suppress(docker.errors.NotFound):
            api.remove_container(container_id, force=True)

    with ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="cleanup") as pool:
        list(pool.map(remove, [str(item["Id"]) for item in items]))
    left = api.containers(all=True, filters={"label": [f"{labels.FLEET}={fleet_id}"]})
    if left:
        raise RuntimeError(f"{len(left)} containers of fleet {fleet_id} are still there after removal")
    if items:
        time.sleep(SETTLE_S)
    return len(items)


# --- a fresh process, for reference ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessRun:
    seconds: float
    spawned: int
    returncode: int


def process_env(fleet_id: str, roster_file: Path, scratch: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "FLEET_ID": fleet_id,
        "FLEET_ROSTER_FILE": str(roster_file),
        "COORDINATOR_HEARTBEAT_FILE": str(scratch / "heartbeat.json"),
    }
    for name in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "HOME"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def timed_process(argv: Sequence[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    proc = subprocess.run(list(argv), env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    return time.perf_counter() - started, proc


def process_cycle(env: dict[str, str]) -> ProcessRun:
    seconds, proc = timed_process([sys.executable, "-m", "coordinator", "cycle"], env)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    report = lines[-1] if lines and lines[-1].get("event") == "cycle.report" else {}
    if proc.returncode != 0 or not report:
        print(f"  (python -m coordinator cycle exited {proc.returncode}: {proc.stderr.strip()[-300:]})")
    return ProcessRun(seconds, int(report.get("spawned", -1)), proc.returncode)


# --- the run ---------------------------------------------------------------------------------------------------


@dataclass
class Figures:
    floor_s: list[float] = dataclasses.field(default_factory=list)
    cold_s: list[float] = dataclasses.field(default_factory=list)
    steady_s: list[float] = dataclasses.field(default_factory=list)
    steady_reused_s: list[float] = dataclasses.field(default_factory=list)
    steady_pinned_s: list[float] = dataclasses.field(default_factory=list)
    list_s: list[float] = dataclasses.field(default_factory=list)
    cold_calls: list[Counter[str]] = dataclasses.field(default_factory=list)
    floor_calls: list[Counter[str]] = dataclasses.field(default_factory=list)
    steady_calls: list[Counter[str]] = dataclasses.field(default_factory=list)
    steady_reused_calls: list[Counter[str]] = dataclasses.field(default_factory=list)
    steady_pinned_calls: list[Counter[str]] = dataclasses.field(default_factory=list)
    round_ratios: list[float] = dataclasses.field(default_factory=list)
    cold_call_s: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    floor_call_s: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    steady_call_s: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def add_call_seconds(self, into: dict[str, list[float]], calls: Sequence[Call]) -> None:
        for kind in {call.kind for call in calls}:
            into.setdefault(kind, []).append(seconds_in(calls, kind))


def run_floor(api: CountingAPIClient, fleet_id: str, launches: Sequence[Launch], figures: Figures) -> float:
    before = len(api.calls)
    started = time.perf_counter()
    started_n = floor_spawn(api, launches)
    elapsed = time.perf_counter() - started
    figures.floor_calls.append(tally(api.calls[before:]))
    figures.add_call_seconds(figures.floor_call_s, api.calls[before:])
    assert started_n == len(launches) and running(api, fleet_id) == len(launches), "the floor did not start them all"
    figures.floor_s.append(elapsed)
    remove_fleet(api, fleet_id)
    return elapsed


def run_coordinator(
    api: CountingAPIClient, settings: Settings, expected: int, figures: Figures, api_version: str
) -> tuple[float, float]:
    report, cold_s, calls = coordinator_cycle(settings)
    assert report.spawned == expected and not report.failed, (report.spawned, report.errors)
    assert running(api, settings.fleet_id) == expected
    figures.cold_s.append(cold_s)
    figures.cold_calls.append(tally(calls))
    figures.add_call_seconds(figures.cold_call_s, calls)

    steady: list[float] = []
    for _ in range(STEADY_REPEATS):
        report, steady_s, calls = coordinator_cycle(settings)
        assert report.spawned == 0 and report.running == expected and not report.failed, report.errors
        steady.append(steady_s)
        figures.steady_calls.append(tally(calls))
        figures.add_call_seconds(figures.steady_call_s, calls)
        count, list_s = bare_list(api, settings.fleet_id)
        assert count == expected
        figures.list_s.append(list_s)
    figures.steady_s += steady

    # The same steady cycle with DOCKER_API_VERSION set (the API version pinned: no GET /version),
    # and with one engine kept across cycles (no client setup at all, as a long-lived process would have).
    for _ in range(STEADY_REPEATS):
        report, pinned_s, calls = coordinator_cycle(settings, api_version)
        assert report.spawned == 0 and not report.failed
        figures.steady_pinned_s.append(pinned_s)
        figures.steady_pinned_calls.append(tally(calls))
    engine = DockerEngine(CountingAPIClient(**client_kwargs()))
    reused = dataclasses.replace(default_edges(), docker=lambda: engine)
    for _ in range(STEADY_REPEATS):
        before = len(calls_of(engine))
        started = time.perf_counter()
        report = run_cycle(settings, log=EventLog(settings.fleet_id, stream=io.StringIO()), edges=reused)
        figures.steady_reused_s.append(time.perf_counter() - started)
        figures.steady_reused_calls.append(tally(calls_of(engine)[before:]))
        assert report.spawned == 0 and not report.failed
    engine.close()

    remove_fleet(api, settings.fleet_id)
    return cold_s, statistics.median(steady)


def describe(counts: Counter[str]) -> str:
    order = ["version", "list", "inspect", "create", "start", "rename", "remove"]
    kinds = order + sorted(set(counts) - set(order))
    return ", ".join(f"{kind} {counts[kind]}" for kind in kinds if counts[kind] or kind in ("list", "inspect")) + (
        f"; total {sum(counts.values())}"
    )


def same_every_time(counts: Sequence[Counter[str]]) -> str:
    distinct = {tuple(sorted(c.items())) for c in counts}
    text = describe(counts[0])
    return text if len(distinct) == 1 else f"{text} (varied across runs: {sorted(distinct)})"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def fleet_cleanup(api: docker.APIClient, fleet_id: str) -> Iterator[None]:
    """Whatever happens (an assertion, Ctrl-C, SIGTERM), the run's containers are removed by label."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, raise_on_sigterm)
    try:
        yield
    finally:
        removed = remove_fleet(api, fleet_id)
        if removed:
            print(f"(cleanup: removed {removed} leftover containers of fleet {fleet_id})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="alternating floor/coordinator rounds (default 3)")
    parser.add_argument("--no-process", action="store_true", help="skip the `python -m coordinator cycle` reference")
    args = parser.parse_args(argv)

    specs = roster_specs()
    expected = sum(spec.role.count for spec in specs)
    fleet_id = f"bench-{uuid.uuid4().hex[:8]}"
    settings = Settings(fleet_id=fleet_id, roster=specs)  # GitHub and health unset: merge and health skipped
    launches = floor_launches(fleet_id, specs)
    assert len(launches) == expected

    api = CountingAPIClient(**client_kwargs())
    server = api.version()
    try:
        api.inspect_image(IMAGE)
    except docker.errors.ImageNotFound:
        print(f"image {IMAGE} is not on the Docker host; build it or set BASE_IMAGE (this benchmark never pulls)")
        return 2

    figures = Figures()
    print(f"cycle_spawn: {len(specs)} roles / {expected} agents, image {IMAGE}, spawn concurrency {CONCURRENCY}, "
          f"{args.rounds} rounds, fleet {fleet_id}")
    print(f"Docker {server.get('Version')} (API {server.get('ApiVersion')}), {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          "(the engine may be shared: rounds alternate and each round's pair runs back to back)")
    with fleet_cleanup(api, fleet_id):
        # Warm-up, untimed: a few containers through each path, so neither side pays first-use costs alone.
        floor_spawn(api, launches[:CONCURRENCY])
        remove_fleet(api, fleet_id)
        coordinator_cycle(dataclasses.replace(settings, roster=specs[:3]))
        remove_fleet(api, fleet_id)

        print()
        print("rounds (order alternates):")
        for n in range(args.rounds):
            floor_first = n % 2 == 0
            if floor_first:
                floor_s = run_floor(api, fleet_id, launches, figures)
            cold_s, steady_s = run_coordinator(api, settings, expected, figures, str(server["ApiVersion"]))
            if not floor_first:
                floor_s = run_floor(api, fleet_id, launches, figures)
            figures.round_ratios.append(cold_s / floor_s)
            print(f"  round {n + 1} ({'floor' if floor_first else 'coordinator'} first): floor {floor_s:.3f} s, "
                  f"cold cycle {cold_s:.3f} s ({cold_s / floor_s:.2f}x), steady cycle {ms(steady_s)} ms, "
                  f"bare list {ms(statistics.median(figures.list_s[-STEADY_REPEATS:]))} ms")

        process: tuple[ProcessRun, ProcessRun, float] | None = None
        if not args.no_process:
            with tempfile.TemporaryDirectory(prefix="cycle-spawn-") as scratch_dir:
                scratch = Path(scratch_dir)
                roster_file = scratch / "roster.json"
                roster_file.write_text(roster_to_json(specs), encoding="utf-8")
                env = process_env(fleet_id, roster_file, scratch)
                imports_s, _ = timed_process([sys.executable, "-c", "import coordinator.cli, coordinator.cycle"], env)
                cold_run = process_cycle(env)
                steady_run = process_cycle(env)
                remove_fleet(api, fleet_id)
                process = (cold_run, steady_run, imports_s)

    report_figures(figures, expected, process)
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def report_figures(figures: Figures, expected: int, process: tuple[ProcessRun, ProcessRun, float] | None) -> None:
    med: Callable[[Sequence[float]], float] = statistics.median
    floor_med, floor_min = med(figures.floor_s), min(figures.floor_s)
    cold_med, cold_min = med(figures.cold_s), min(figures.cold_s)
    ratio_med, ratio_min = cold_med / floor_med, cold_min / floor_min

    print()
    print(f"cold cycle: {expected} containers created and started ({len(figures.cold_s)} runs each)")
    print(f"  {'':<52}{'median s':>10}{'min s':>9}")
    print(f"  {'floor: raw SDK create+start, ' + str(CONCURRENCY) + ' threads':<52}{floor_med:>10.3f}{floor_min:>9.3f}")
    print(f"  {'coordinator: run_cycle in-process (from cold)':<52}{cold_med:>10.3f}{cold_min:>9.3f}")
    print(f"  {'ratio coordinator / floor (of the medians, mins)':<52}{ratio_med:>9.2f}x{ratio_min:>8.2f}x")
    round_ratio = med(figures.round_ratios)
    print(f"  {'ratio coordinator / floor, per round (median, min)':<52}{round_ratio:>9.2f}x"
          f"{min(figures.round_ratios):>8.2f}x"
          f"   target <= {COLD_TARGET}x: {'met' if round_ratio <= COLD_TARGET else 'NOT met'}")
    print(f"  per agent: floor {ms(floor_med / expected)} ms, coordinator {ms(cold_med / expected)} ms "
          f"(wall time / {expected}, {CONCURRENCY} in flight)")
    print(f"  Docker calls, coordinator: {same_every_time(figures.cold_calls)}")
    print(f"  Docker calls, floor:       {same_every_time(figures.floor_calls)}")
    def latency(into: dict[str, list[float]], kind: str) -> str:
        return ms(med(into.get(kind, [0.0])) / expected)

    print(f"  mean call latency, create / start: floor {latency(figures.floor_call_s, 'create')} / "
          f"{latency(figures.floor_call_s, 'start')} ms, coordinator {latency(figures.cold_call_s, 'create')} / "
          f"{latency(figures.cold_call_s, 'start')} ms (engine-side time; the rest is the client's)")
    overhead = {kind: med(values) for kind, values in figures.cold_call_s.items() if kind in ("version", "list")}
    print("  coordinator's calls besides create/start: "
          + ", ".join(f"{kind} {ms(seconds)} ms" for kind, seconds in sorted(overhead.items()))
          + " (the first call of a fresh client also opens its connection)")

    steady_med, steady_min = med(figures.steady_s), min(figures.steady_s)
    list_med, list_min = med(figures.list_s), min(figures.list_s)
    reused_med, reused_min = med(figures.steady_reused_s), min(figures.steady_reused_s)
    lists = {c["list"] for c in figures.steady_calls}
    print()
    print(f"steady-state cycle: {expected} running, nothing to do ({len(figures.steady_s)} runs each)")
    print(f"  {'':<52}{'median ms':>10}{'min ms':>9}")
    print(f"  {'bare list: api.containers(all=True, filters=...)':<52}{ms(list_med):>10}{ms(list_min):>9}")
    print(f"  {'coordinator: run_cycle in-process, fresh engine':<52}{ms(steady_med):>10}{ms(steady_min):>9}")
    print(f"  {'ratio steady cycle / bare list':<52}{steady_med / list_med:>9.1f}x{steady_min / list_min:>8.1f}x")
    print(f"  Docker calls: {same_every_time(figures.steady_calls)}"
          f"   target exactly one list call: {'met' if lists == {1} else 'NOT met'}")
    in_calls = {kind: med(values) for kind, values in figures.steady_call_s.items()}
    print("  time in those calls: " + ", ".join(f"{kind} {ms(s)} ms" for kind, s in sorted(in_calls.items()))
          + f"; outside them {ms(steady_med - sum(in_calls.values()))} ms (client setup, plan, report)"
          + "\n  (GET /version is made by the SDK's version=\"auto\" when each cycle's DockerEngine is built)")
    pinned_med, pinned_min = med(figures.steady_pinned_s), min(figures.steady_pinned_s)
    print(f"  {'diagnostic: fresh engine, API version pinned':<52}{ms(pinned_med):>10}{ms(pinned_min):>9}"
          f"   calls: {same_every_time(figures.steady_pinned_calls)}")
    print(f"  {'diagnostic: one engine reused across cycles':<52}{ms(reused_med):>10}{ms(reused_min):>9}"
          f"   calls: {same_every_time(figures.steady_reused_calls)}")

    if process is not None:
        cold_run, steady_run, imports_s = process
        print()
        print("fresh process, for reference (python -m coordinator cycle, once each; what the scheduler runs)")
        print(f"  interpreter + imports only:   {imports_s:.3f} s")
        print(f"  cold cycle:                   {cold_run.seconds:.3f} s (spawned {cold_run.spawned}, exit "
              f"{cold_run.returncode}; in-process median {cold_med:.3f} s, floor median {floor_med:.3f} s, "
              f"{cold_run.seconds / floor_med:.2f}x floor)")
        print(f"  steady cycle:                 {steady_run.seconds:.3f} s (spawned {steady_run.spawned}, exit "
              f"{steady_run.returncode}; {steady_run.seconds / list_med:.0f}x the bare list call)")


if __name__ == "__main__":
    sys.exit(main())
