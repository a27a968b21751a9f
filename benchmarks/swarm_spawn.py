"""The swarm side of a cycle: a cold cycle on the three-node lab swarm against the raw-SDK floor, and a steady cycle.

Needs the lab (`scripts/swarm-lab up`, root). Agents run as one-replica services (coordinator/runtimes/swarm.py);
the image is the tiny sleep image of cycle_spawn.py, pushed to the lab's registry, pulled by each node in an
untimed warm-up.

Cold: `python -m coordinator cycle` as a process with FLEET_RUNTIME=swarm and DOCKER_HOST at the manager,
timed from fork to exit, against the floor: the same N services (the same names, labels, environment, task
template) created with the Docker SDK's low-level API from a pool of SPAWN_CONCURRENCY threads, on a client
built before its clock starts. Both are also timed until every task runs (the swarm's own scheduling, the
same work for both). The two alternate, `--rounds` rounds; every service is removed and its tasks gone
before the next. Steady: the N agents running, cycles with nothing to do, their requests to the manager
counted through tests/fakes/docker_proxy.py, against one bare `GET /tasks` with the fleet's label. Then a
history (unless --no-history): every agent killed on its node and replaced, twice, and the steady cycles again.

Run from the repository root:  .venv/bin/python benchmarks/swarm_spawn.py [--agents 38] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import docker
import docker.errors
from docker.types import ContainerSpec, DriverConfig, RestartPolicy, ServiceMode, TaskTemplate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cycle_spawn import (
    CONCURRENCY,
    CycleRun,
    base_image,
    cycle_env,
    describe,
    expect,
    floor_launches,
    med,
    ms,
    run_cycle_process,
    same_every_time,
    scaled_roster,
    tiny_image,
)

from coordinator import labels
from coordinator.runtime import AgentLaunch
from coordinator.runtimes.engine import AGENT_LOG_OPTIONS, DOCKER_TIMEOUT_S
from coordinator.runtimes.swarm import ACTIVE_STATES
from tests.fakes.docker_proxy import CountingProxy

ROOT = Path(__file__).resolve().parents[1]
COLD_TARGET = 1.3
SCRIPT = ROOT / "scripts" / "swarm-lab"
SETTLE_LIMIT_S = 180.0


def lab_env() -> dict[str, str]:
    proc = subprocess.run([str(SCRIPT), "env"], capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"the swarm lab is not up ({proc.stderr.strip()}); run: scripts/swarm-lab up")
    env = {}
    for line in proc.stdout.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            words = shlex.split(value)
            env[name] = words[0] if words else ""
    return env


def push(image: str) -> str:
    proc = subprocess.run([str(SCRIPT), "push", image], capture_output=True, text=True, check=True,
                          stdin=subprocess.DEVNULL)
    return proc.stdout.strip().splitlines()[-1]


def floor_service(api: docker.APIClient, launch: AgentLaunch) -> str:
    """One agent as the swarm runtime makes it (SwarmRuntime.spawn's calls, no resources, no secrets)."""
    agent_labels = labels.agent_labels(launch)
    template = TaskTemplate(
        container_spec=ContainerSpec(image=launch.image, args=list(launch.command or ()), env=dict(launch.env),
                                     labels=agent_labels, init=True),
        restart_policy=RestartPolicy(condition="none"),
        log_driver=DriverConfig("json-file", dict(AGENT_LOG_OPTIONS)),
    )
    created = api.create_service(template, name=launch.name, labels=agent_labels,
                                 mode=ServiceMode("replicated", replicas=1))
    return str(created["ID"])


def floor_spawn(api: docker.APIClient, launches: Sequence[AgentLaunch], concurrency: int) -> int:
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="floor") as pool:
        return len(list(pool.map(lambda launch: floor_service(api, launch), launches)))


def tasks(api: docker.APIClient, fleet_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api.tasks(filters={"label": labels.selector(fleet_id)})
    return found


def running(api: docker.APIClient, fleet_id: str) -> int:
    return sum(1 for t in tasks(api, fleet_id)
               if (t.get("Status") or {}).get("State") == "running" and t.get("DesiredState") == "running")


def wait_running(api: docker.APIClient, fleet_id: str, expected: int, started: float) -> float:
    """Seconds from `started` until `expected` tasks of the fleet run (polled every 0.1 s)."""
    while running(api, fleet_id) < expected:
        if time.perf_counter() - started > SETTLE_LIMIT_S:
            raise RuntimeError(f"{fleet_id}: not all {expected} tasks running after {SETTLE_LIMIT_S:.0f} s")
        time.sleep(0.1)
    return time.perf_counter() - started


def kill_agents(lab: Mapping[str, str], api: docker.APIClient, fleet_id: str) -> int:
    """SIGKILL every running agent on its node (agents that crashed), and wait until no task of the fleet runs."""
    killed = 0
    for n in lab["SWARM_LAB_NODES"].split():
        node = docker.APIClient(base_url=lab[f"SWARM_LAB_NODE{n}_HOST"], version="auto", timeout=DOCKER_TIMEOUT_S)
        try:
            for item in node.containers(filters={"label": labels.selector(fleet_id)}):
                with suppress(docker.errors.APIError):
                    node.kill(item["Id"])
                    killed += 1
        finally:
            node.close()
    deadline = time.monotonic() + SETTLE_LIMIT_S
    while running(api, fleet_id):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{fleet_id}: agents still running {SETTLE_LIMIT_S:.0f} s after SIGKILL")
        time.sleep(0.2)
    return killed


def remove_fleet(api: docker.APIClient, fleet_id: str) -> int:
    """Remove every service of the fleet and wait until its tasks are gone from every node."""
    services = api.services(filters={"label": f"{labels.FLEET}={fleet_id}"})

    def remove(service_id: str) -> None:
        with suppress(docker.errors.NotFound):
            api.remove_service(service_id)

    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        list(pool.map(remove, [str(s["ID"]) for s in services]))
    deadline = time.monotonic() + SETTLE_LIMIT_S
    while any(str(t.get("Status", {}).get("State")) in ACTIVE_STATES for t in tasks(api, fleet_id)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"tasks of {fleet_id} still active {SETTLE_LIMIT_S:.0f} s after their services went")
        time.sleep(0.2)
    if services:
        time.sleep(1.0)
    return len(services)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=38, help="N (default 38, the guide's roster)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating floor/cycle rounds (default 3)")
    parser.add_argument("--steady-repeats", type=int, default=5, help="steady cycles (default 5)")
    parser.add_argument("--no-history", action="store_true",
                        help="skip the history (every agent killed and replaced twice, then steady cycles again)")
    args = parser.parse_args(argv)

    lab = lab_env()
    manager = lab["SWARM_LAB_MANAGER"]
    host = docker.APIClient(**docker.utils.kwargs_from_env(), version="auto", timeout=DOCKER_TIMEOUT_S)
    image = push(tiny_image(host, base_image()))
    api = docker.APIClient(base_url=manager, version="auto", timeout=DOCKER_TIMEOUT_S)
    server = api.version()
    api_version = str(server["ApiVersion"])
    nodes = api.nodes()
    fleet_id = f"bench-{uuid.uuid4().hex[:8]}"
    specs = scaled_roster(args.agents, image)
    launches = floor_launches(fleet_id, specs)
    agents = len(launches)
    print(f"swarm_spawn: N = {agents}, {len(nodes)} nodes "
          f"({', '.join(sorted(str(n['Description']['Hostname']) for n in nodes))}), image {image}, "
          f"spawn concurrency {CONCURRENCY}, {args.rounds} rounds, fleet {fleet_id}")
    print(f"Docker {server.get('Version')} (API {api_version}) on every node, {os.cpu_count()} CPUs shared by "
          f"all three, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    floor_s: list[float] = []
    floor_up_s: list[float] = []
    cold: list[CycleRun] = []
    cold_up_s: list[float] = []
    steady: list[CycleRun] = []
    list_s: list[float] = []
    steady_history: list[CycleRun] = []
    history_list_s: list[float] = []
    history_tasks = 0
    proxy = CountingProxy(urlsplit(manager).path)
    try:
        with tempfile.TemporaryDirectory(prefix="swarm-spawn-") as scratch_dir:
            scratch = Path(scratch_dir)
            env = {**cycle_env(fleet_id, scratch, specs, api_version, CONCURRENCY), "FLEET_RUNTIME": "swarm",
                   "DOCKER_HOST": manager}
            # Warm-up, untimed: every node pulls the image (one service per node and more), and both paths run once.
            floor_spawn(api, launches[: min(agents, 12)], CONCURRENCY)
            wait_running(api, fleet_id, min(agents, 12), time.perf_counter())
            remove_fleet(api, fleet_id)

            for n in range(args.rounds):
                order = ("floor", "cycle") if n % 2 == 0 else ("cycle", "floor")
                for side in order:
                    if side == "floor":
                        client = docker.APIClient(base_url=manager, version=api_version, timeout=DOCKER_TIMEOUT_S)
                        started = time.perf_counter()
                        assert floor_spawn(client, launches, CONCURRENCY) == agents
                        floor_s.append(time.perf_counter() - started)
                        floor_up_s.append(wait_running(api, fleet_id, agents, started))
                        client.close()
                    else:
                        started = time.perf_counter()
                        round_env = {**env, "COORDINATOR_HEARTBEAT_FILE": str(scratch / f"s{n}" / "heartbeat.json")}
                        cold.append(expect(run_cycle_process(round_env), f"cold cycle, round {n + 1}",
                                           spawned=agents))
                        cold_up_s.append(wait_running(api, fleet_id, agents, started))
                    remove_fleet(api, fleet_id)
                print(f"  round {n + 1} ({order[0]} first): floor {floor_s[-1]:.2f} s (all running "
                      f"{floor_up_s[-1]:.2f} s), cold cycle {cold[-1].wall_s:.2f} s (in-cycle "
                      f"{cold[-1].in_cycle_s:.2f} s; all running {cold_up_s[-1]:.2f} s), "
                      f"{cold[-1].wall_s / floor_s[-1]:.2f}x")

            counted = expect(run_cycle_process(env, proxy), "counted cold cycle", spawned=agents)
            wait_running(api, fleet_id, agents, time.perf_counter())
            for _ in range(args.steady_repeats):
                steady.append(expect(run_cycle_process(env, proxy), "steady cycle", spawned=0, running=agents))
                started = time.perf_counter()
                assert len(tasks(api, fleet_id)) >= agents
                list_s.append(time.perf_counter() - started)

            # History: every agent killed on its node and replaced, twice; then the steady cycles again. A finished
            # agent's service is removed by id when its slot is filled, so the swarm keeps no pile of them.
            if not args.no_history:
                for n in range(2):
                    assert kill_agents(lab, api, fleet_id) == agents
                    expect(run_cycle_process(env, proxy), f"replacement cycle {n + 1}", spawned=agents)
                    wait_running(api, fleet_id, agents, time.perf_counter())
                history_tasks = len(tasks(api, fleet_id))
                for _ in range(args.steady_repeats):
                    steady_history.append(expect(run_cycle_process(env, proxy), "steady cycle after the history",
                                                 spawned=0, running=agents))
                    started = time.perf_counter()
                    assert len(tasks(api, fleet_id)) == history_tasks
                    history_list_s.append(time.perf_counter() - started)
    finally:
        proxy.close()
        removed = remove_fleet(api, fleet_id)
        if removed:
            print(f"  (cleanup: removed {removed} services of fleet {fleet_id})")

    ratios = [c.wall_s / f for c, f in zip(cold, floor_s, strict=True)]
    up_ratios = [c / f for c, f in zip(cold_up_s, floor_up_s, strict=True)]
    print(f"\nN = {agents} on the lab swarm, {args.rounds} rounds")
    print(f"  {'cold':<58}{'median s':>10}{'min s':>9}")
    for label, values in (
        (f"floor: raw SDK create_service, {CONCURRENCY} threads", floor_s),
        ("cycle: python -m coordinator cycle, fork to exit", [c.wall_s for c in cold]),
        ("cycle: its own duration_s", [c.in_cycle_s for c in cold]),
        ("floor: until every task runs", floor_up_s),
        ("cycle: until every task runs", cold_up_s),
    ):
        print(f"  {label:<58}{med(values):>10.2f}{min(values):>9.2f}")
    ratio = med(ratios)
    in_cycle = [c.in_cycle_s / f for c, f in zip(cold, floor_s, strict=True)]
    print(f"  ratio cycle / floor, per round: median {ratio:.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}x   "
          f"target <= {COLD_TARGET}x: {'met' if ratio <= COLD_TARGET else 'NOT met'}")
    print(f"  the same without the interpreter's start (in-cycle / floor): median {med(in_cycle):.2f}x, "
          f"range {min(in_cycle):.2f}-{max(in_cycle):.2f}x")
    print(f"  until every task runs (cycle / floor): median {med(up_ratios):.2f}x, range {min(up_ratios):.2f}-"
          f"{max(up_ratios):.2f}x   target <= {COLD_TARGET}x: {'met' if med(up_ratios) <= COLD_TARGET else 'NOT met'}")
    print(f"  manager calls, cold cycle: {describe(counted.calls)}")
    print(f"  {'steady (' + str(len(steady)) + ' runs)':<58}{'median ms':>10}{'min ms':>9}")
    for label, values in (("bare GET /tasks with the fleet's label", list_s),
                          ("cycle, fork to exit", [s.wall_s for s in steady]),
                          ("cycle, its own duration_s", [s.in_cycle_s for s in steady])):
        print(f"  {label:<58}{ms(med(values)):>10}{ms(min(values)):>9}")
    calls: list[Counter[str]] = [s.calls for s in steady]
    print(f"    manager calls: {same_every_time(calls)}; peak RSS {max(s.peak_rss_mb for s in steady):.1f} MB "
          f"(cold: {max(c.peak_rss_mb for c in cold):.1f} MB)")
    if steady_history:
        history_calls: list[Counter[str]] = [s.calls for s in steady_history]
        print(f"  {'steady after 2N agents killed and replaced (' + str(len(steady_history)) + ' runs)':<58}"
              f"{'median ms':>10}{'min ms':>9}")
        for label, values in ((f"bare GET /tasks ({history_tasks} tasks listed)", history_list_s),
                              ("cycle, fork to exit", [s.wall_s for s in steady_history]),
                              ("cycle, its own duration_s", [s.in_cycle_s for s in steady_history])):
            print(f"  {label:<58}{ms(med(values)):>10}{ms(min(values)):>9}")
        print(f"    manager calls: {same_every_time(history_calls)}; peak RSS "
              f"{max(s.peak_rss_mb for s in steady_history):.1f} MB")
        calls = [*calls, *history_calls]
    print(f"  steady calls: {'one call, every run' if {sum(c.values()) for c in calls} == {1} else 'NOT one call'}")
    print(f"\nmarkdown row: | {agents} (swarm, 3 nodes) | {med(floor_s):.2f} s | {med([c.wall_s for c in cold]):.2f} s "
          f"| **{ratio:.2f}x** | {med(floor_up_s):.2f} s / {med(cold_up_s):.2f} s | "
          f"{ms(med([s.in_cycle_s for s in steady]))} ms, {sum(calls[0].values())} | "
          f"{max([*(s.peak_rss_mb for s in steady), *(c.peak_rss_mb for c in cold)]):.1f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
