"""The cycle's promises, proven on a real Docker engine with cycles run as real processes."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import docker
import pytest

from coordinator import cycle
from coordinator.cycle import default_adapters
from coordinator.report import EventLog
from coordinator.runtime import FleetListing, RuntimeFailure
from coordinator.runtimes.docker import DockerRuntime
from coordinator.settings import load_settings
from tests.fakes.production import production, refused_url
from tests.fleet_harness import (
    cycle_env,
    desired,
    fleet_containers,
    parse_lines,
    present_by_role,
    role_spec,
    run_cycle,
    run_cycles_at_once,
    running_by_role,
    running_ids,
    start_cycle,
    write_roster,
)
from tests.terminal import Terminal

pytestmark = pytest.mark.docker


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.2) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def fleet(tmp_path: Path, base_image: str, fleet_id: str):  # type: ignore[no-untyped-def]
    specs = [role_spec("builder", 3, base_image), role_spec("reviewer", 2, base_image)]
    roster = write_roster(tmp_path / "roster.json", specs)
    return specs, roster, cycle_env(fleet_id, roster)


def test_cold_start_converges_and_a_second_cycle_changes_nothing(fleet, docker_client, fleet_id) -> None:  # type: ignore[no-untyped-def]
    specs, _, env = fleet
    first = run_cycle(env)
    assert first.returncode == 0, first.stderr
    assert running_by_role(docker_client, fleet_id) == desired(specs)
    report = first.report
    assert report["fleet"] == fleet_id
    assert report["roles"]["builder"] == {**report["roles"]["builder"], "desired": 3, "running": 0, "spawned": 3,
                                          "failed": 0}
    assert report["steps"]["merge"]["status"] == "skipped"
    assert report["steps"]["health"]["status"] == "skipped"
    assert {e["step"] for e in report["errors"]} == set()
    assert len(first.events("agent.spawned")) == 5
    ids = running_ids(docker_client, fleet_id)

    second = run_cycle(env)
    assert second.returncode == 0, second.stderr
    assert second.events("agent.spawned") == []
    assert second.report["roles"]["builder"]["running"] == 3
    assert running_ids(docker_client, fleet_id) == ids


def test_agents_carry_labels_and_environment_and_never_the_docker_socket(fleet, docker_client, fleet_id) -> None:  # type: ignore[no-untyped-def]
    _, _, env = fleet
    env["GITHUB_REPOSITORY"] = "acme/webapp"
    assert run_cycle(env).returncode == 0
    agent = docker_client.containers.get(f"{fleet_id}-reviewer-2")
    assert agent.labels["agent-fleet.fleet"] == fleet_id
    assert agent.labels["agent-fleet.role"] == "reviewer"
    assert agent.labels["agent-fleet.slot"] == "2"
    environment = dict(item.split("=", 1) for item in agent.attrs["Config"]["Env"])
    assert environment["AGENT_ROLE"] == "reviewer"
    assert environment["AGENT_SLOT"] == "2"
    assert environment["AGENT_MODE"] == "Task-driven"
    assert environment["AGENT_BRIEF"] == "The reviewer agent."
    assert environment["GITHUB_REPOSITORY"] == "acme/webapp"
    assert agent.attrs["Mounts"] == []
    assert not any("docker.sock" in str(v) for v in agent.attrs["HostConfig"].get("Binds") or [])
    assert agent.attrs["HostConfig"]["LogConfig"]["Config"] == {"max-size": "10m", "max-file": "3"}


def test_a_killed_agent_is_respawned_and_stays_inspectable(fleet, docker_client, fleet_id) -> None:  # type: ignore[no-untyped-def]
    specs, _, env = fleet
    env["AGENT_CRASH_BACKOFF_S"] = "0.1"  # killed twice within a minute looks like a crash loop
    assert run_cycle(env).returncode == 0
    victim = docker_client.containers.get(f"{fleet_id}-builder-2")
    victim.kill()
    wait_until(lambda: docker_client.containers.get(victim.id).status == "exited")

    run = run_cycle(env)
    assert run.returncode == 0, run.stderr
    assert [e["slot"] for e in run.events("agent.spawned")] == [2]
    assert running_by_role(docker_client, fleet_id) == desired(specs)
    # The killed agent keeps its logs, moved aside under its own id.
    archived = docker_client.containers.get(victim.id)
    assert archived.status == "exited" and archived.name == f"{fleet_id}-builder-2.{victim.id[:12]}"

    # Kill the slot's new agent too: after the next respawn only the last exited one is kept.
    second = docker_client.containers.get(f"{fleet_id}-builder-2")
    second.kill()
    wait_until(lambda: docker_client.containers.get(second.id).status == "exited")
    assert run_cycle(env).returncode == 0
    assert docker_client.containers.get(second.id).status == "exited"
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(victim.id)
    assert running_by_role(docker_client, fleet_id) == desired(specs)


def test_scale_down_and_role_removal_kill_nothing(fleet, tmp_path, base_image, docker_client, fleet_id) -> None:  # type: ignore[no-untyped-def]
    _, roster, env = fleet
    assert run_cycle(env).returncode == 0
    before = running_ids(docker_client, fleet_id)
    write_roster(roster, [role_spec("builder", 1, base_image)])  # 3 -> 1, reviewer removed

    run = run_cycle(env)
    assert run.returncode == 0, run.stderr
    assert running_ids(docker_client, fleet_id) == before
    assert run.report["roles"]["builder"]["desired"] == 1 and run.report["roles"]["builder"]["running"] == 3
    assert run.report["roles"]["reviewer"]["desired"] == 0 and run.report["roles"]["reviewer"]["running"] == 2

    # The fleet converges as agents exit: one builder ends, nothing replaces it while two still run.
    docker_client.containers.get(f"{fleet_id}-builder-1").kill()
    assert run_cycle(env).events("agent.spawned") == []


def test_containers_of_another_fleet_are_never_touched(fleet, docker_client, fleet_id, base_image) -> None:  # type: ignore[no-untyped-def]
    _, _, env = fleet
    other_fleet = f"{fleet_id}x"
    others = [
        docker_client.containers.run(
            base_image, ["sleep", "infinity"], detach=True, name=f"{other_fleet}-builder-1",
            labels={"agent-fleet.fleet": other_fleet, "agent-fleet.component": "agent",
                    "agent-fleet.role": "builder", "agent-fleet.slot": "1"},
        ),
        docker_client.containers.create(
            base_image, ["true"], name=f"{other_fleet}-builder-2",
            labels={"agent-fleet.fleet": other_fleet, "agent-fleet.component": "agent",
                    "agent-fleet.role": "builder", "agent-fleet.slot": "2"},
        ),
        # A container that holds one of this fleet's slot names but not its label: not ours to move.
        docker_client.containers.create(base_image, ["true"], name=f"{fleet_id}-builder-3"),
    ]
    try:
        for c in others:
            c.reload()
        before = {c.id: (c.name, c.status) for c in others}
        run = run_cycle(env)
        assert run.returncode == 0, run.stderr
        after = {}
        for c in others:
            c.reload()
            after[c.id] = (c.name, c.status)
        assert after == before
        assert [e["slot"] for e in run.events("agent.slot_taken")] == [3]
    finally:
        for c in others:
            c.remove(force=True)


def test_six_overlapping_cycles_from_cold_end_at_exactly_the_desired_counts(fleet, docker_client, fleet_id) -> None:  # type: ignore[no-untyped-def]
    specs, _, env = fleet
    runs = run_cycles_at_once(env, 6)
    assert [run.returncode for run in runs] == [0] * 6, [run.stderr for run in runs]
    reports = [run.report for run in runs]
    # A slot that the cycle beside it filled first (409 on the name) is present for each, and no failure.
    assert [present_by_role(report) for report in reports] == [desired(specs)] * 6
    assert [report["verdict_reasons"] for report in reports] == [[]] * 6
    assert running_by_role(docker_client, fleet_id) == desired(specs)
    assert len(fleet_containers(docker_client, fleet_id)) == sum(desired(specs).values())
    assert run_cycle(env).events("agent.spawned") == []


def test_kill_9_in_the_middle_of_spawning_then_one_more_cycle_converges(tmp_path, base_image, docker_client,
                                                                        fleet_id) -> None:
    specs = [role_spec("builder", 12, base_image)]
    env = cycle_env(fleet_id, write_roster(tmp_path / "roster.json", specs), SPAWN_CONCURRENCY="1")
    proc = start_cycle(env)
    try:
        wait_until(lambda: len(fleet_containers(docker_client, fleet_id)) >= 2, timeout=60, interval=0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert running_by_role(docker_client, fleet_id)["builder"] < 12, "the cycle finished before it was killed"

    run = run_cycle(env)
    assert run.returncode == 0, run.stderr
    assert running_by_role(docker_client, fleet_id) == desired(specs)
    states = [c.status for c in fleet_containers(docker_client, fleet_id)]
    assert states.count("running") == 12 and "created" not in states


def test_docker_unreachable_fails_the_cycle_with_a_report_and_no_hang(fleet) -> None:  # type: ignore[no-untyped-def]
    _, _, env = fleet
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    started = time.monotonic()
    run = run_cycle(env, timeout=60)
    assert run.returncode == 1
    steps = {e["step"] for e in run.report["errors"]}
    assert {"inventory", "reconcile"} <= steps
    assert run.report["steps"]["inventory"]["status"] == "failed"
    assert run.report["verdict"] == "broken"  # the guide: all spawns failing is a platform issue
    assert run.report["verdict_reasons"][0].startswith("no agent could be spawned (5 missing)")
    assert time.monotonic() - started < 60


def test_bad_configuration_exits_2_naming_the_variable(fleet) -> None:  # type: ignore[no-untyped-def]
    _, _, env = fleet
    env["SPAWN_CONCURRENCY"] = "many"
    run = run_cycle(env)
    assert run.returncode == 2
    assert "SPAWN_CONCURRENCY" in run.stderr
    assert run.stdout == ""


def test_crash_loop_backs_off_exponentially_from_the_exit_times(tmp_path, base_image, docker_client,
                                                              fleet_id) -> None:
    specs = [role_spec("flaky", 1, base_image, command=("sh", "-c", "exit 3"))]
    env = cycle_env(fleet_id, write_roster(tmp_path / "roster.json", specs), AGENT_CRASH_BACKOFF_S="2")
    name = f"{fleet_id}-flaky-1"

    def exited() -> dict[str, str]:
        c = docker_client.containers.get(name)
        return c.attrs["State"] if c.status == "exited" else {}

    def crash_then_cycle() -> dict:  # type: ignore[type-arg]
        wait_until(lambda: bool(exited()))
        return run_cycle(env).report

    assert run_cycle(env).events("agent.spawned")
    # The first crash is replaced at once (it may have been an accident), carrying the streak.
    report = crash_then_cycle()
    assert report["roles"]["flaky"]["spawned"] == 1 and report["roles"]["flaky"]["waiting"] == []
    assert docker_client.containers.get(name).labels["agent-fleet.crash-streak"] == "1"

    for crashes, delay in ((2, 2), (3, 4)):
        report = crash_then_cycle()
        assert report["roles"]["flaky"]["spawned"] == 0
        (wait,) = report["roles"]["flaky"]["waiting"]
        finished = datetime.fromisoformat(exited()["FinishedAt"][:26].rstrip("Z") + "+00:00")
        until = datetime.fromisoformat(wait["until"].replace("Z", "+00:00"))
        assert wait["crashes"] == crashes
        assert abs((until - finished) - timedelta(seconds=delay)) < timedelta(milliseconds=5)
        time.sleep(max(0.0, (until - datetime.now(until.tzinfo)).total_seconds()) + 0.2)
        respawn = run_cycle(env)
        assert [e["slot"] for e in respawn.events("agent.spawned")] == [1]
        assert docker_client.containers.get(name).labels["agent-fleet.crash-streak"] == str(crashes)


def test_spawn_budget_bounds_spawns_per_hour(tmp_path, base_image, docker_client, fleet_id) -> None:
    specs = [role_spec("flaky", 5, base_image, command=("sh", "-c", "exit 0"))]
    env = cycle_env(fleet_id, write_roster(tmp_path / "roster.json", specs), FLEET_MAX_SPAWNS_PER_HOUR="7")
    first = run_cycle(env)
    assert len(first.events("agent.spawned")) == 5
    assert first.report["budget"] == {"limit": 7, "used": 0, "remaining": 2}
    wait_until(lambda: all(c.status == "exited" for c in fleet_containers(docker_client, fleet_id)))
    second = run_cycle(env)
    assert len(second.events("agent.spawned")) == 2
    assert sum(r["deferred"] for r in second.report["roles"].values()) == 3
    assert second.events("spawn.budget_exhausted")
    wait_until(lambda: all(c.status == "exited" for c in fleet_containers(docker_client, fleet_id)))
    third = run_cycle(env)
    assert third.events("agent.spawned") == []
    assert third.report["budget"]["used"] == 7
    assert len(fleet_containers(docker_client, fleet_id)) == 7


def test_plan_changes_nothing_and_prints_text_on_a_terminal_and_json_through_a_pipe(  # type: ignore[no-untyped-def]
    fleet, docker_client, fleet_id
) -> None:
    _, _, env = fleet
    terminal = Terminal([os.sys.executable, "-m", "coordinator", "plan"], env)
    try:
        screen = terminal.read_until(lambda text: terminal.process.poll() is not None and "health:" in text,
                                     "the plan's report", timeout=120)
    finally:
        terminal.close()
    assert terminal.process.returncode == 0, screen
    assert "plan: nothing was changed" in screen
    assert "0 running of 5 desired, 5 would be spawned" in screen
    assert "builder" in screen

    piped = subprocess.run(
        [os.sys.executable, "-m", "coordinator", "plan"], env=env, capture_output=True, text=True, timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    lines = parse_lines(piped.stdout)
    assert lines[-1]["event"] == "cycle.report" and lines[-1]["dry_run"] is True
    assert lines[-1]["spawned"] == 5 and len([line for line in lines if line["event"] == "agent.would_spawn"]) == 5

    as_text = subprocess.run(
        [os.sys.executable, "-m", "coordinator", "plan", "--format", "text"], env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert "plan: nothing was changed" in as_text.stdout
    assert fleet_containers(docker_client, fleet_id) == []


class _InventoryDown:
    """The real engine, except that listing fails: the guide's 'inventory fails' case, on a live fleet."""

    def __init__(self, runtime: DockerRuntime) -> None:
        self.runtime = runtime

    def list_agents(self, fleet_id: str) -> FleetListing:
        raise RuntimeFailure("listing the fleet's containers failed: injected")

    def __getattr__(self, name: str) -> object:
        return getattr(self.runtime, name)


def test_a_failed_inventory_assumes_none_running_yet_never_overshoots(fleet, docker_client, fleet_id) -> None:  # type: ignore[no-untyped-def]
    specs, _, env = fleet
    assert run_cycle(env).returncode == 0
    victim = docker_client.containers.get(f"{fleet_id}-builder-2")
    victim.kill()
    wait_until(lambda: docker_client.containers.get(victim.id).status == "exited")
    before = running_ids(docker_client, fleet_id)

    with production(200) as prod:
        settings = load_settings({**env, "HEALTH_URL": prod.url})
        runtime = DockerRuntime()
        adapters = replace(default_adapters(settings), runtime=lambda: _InventoryDown(runtime))
        report = cycle.run_cycle(settings, log=EventLog(fleet_id, stream=io.StringIO()), adapters=adapters)

    # Every slot was planned (nothing counted as running), and Docker's name check refused every one.
    assert report.steps["inventory"].status.value == "failed"
    assert report.roles["builder"].running == 0 and report.roles["builder"].spawned == 0
    assert running_ids(docker_client, fleet_id) == before
    assert report.health.status.value == "up"  # the steps after it still ran
    # The next cycle with a working inventory heals the fleet.
    assert [e["slot"] for e in run_cycle(env).events("agent.spawned")] == [2]
    assert running_by_role(docker_client, fleet_id) == desired(specs)


def test_github_unreachable_fails_only_the_merge_step_and_the_token_stays_out(fleet, docker_client, fleet_id) -> None:  # type: ignore[no-untyped-def]
    specs, _, env = fleet
    token = "ghp_" + "s3cr3t" * 6
    with production(200) as prod:
        env.update(GITHUB_REPOSITORY="acme/webapp", GITHUB_TOKEN=token, GITHUB_API_URL=refused_url(),
                   HEALTH_URL=prod.url)
        run = run_cycle(env, timeout=120)
    assert run.returncode == 1
    assert [e["step"] for e in run.report["errors"]] == ["merge"]
    assert run.report["steps"]["reconcile"]["status"] == "ok"
    assert run.report["health"]["status"] == "up"
    assert running_by_role(docker_client, fleet_id) == desired(specs)
    assert token not in run.stdout and token not in run.stderr


def test_agents_that_keep_finding_nothing_earn_the_advice_to_lower_their_count(tmp_path, base_image, docker_client,
                                                                               fleet_id) -> None:
    specs = [role_spec("idler", 1, base_image, command=("sh", "-c", "exit 0"))]
    env = cycle_env(fleet_id, write_roster(tmp_path / "roster.json", specs))
    name = f"{fleet_id}-idler-1"
    assert run_cycle(env).events("agent.spawned")
    for streak in (1, 2, 3):
        wait_until(lambda: docker_client.containers.get(name).status == "exited")
        report = run_cycle(env).report
        assert report["roles"]["idler"]["idle_exits"] == streak
        assert docker_client.containers.get(name).labels["agent-fleet.idle-streak"] == str(streak)
    assert [(a["role"], a["signal"], a["value"]) for a in report["advice"]] == [("idler", "idle_exits", 3)]
    assert report["roles"]["idler"]["waiting"] == []  # an idle exit is not a crash


# ------------------------------------------------------------------------------------------ hardening


@pytest.mark.parametrize(
    ("odd_labels", "named"),
    [
        ({"agent-fleet.slot": "²"}, "label agent-fleet.slot="),
        # 12 digits pass the label's pattern, but lie past the year 9999: once, this failed the whole inventory.
        ({"agent-fleet.slot": "2", "agent-fleet.earlier-spawns": "999999999999"},
         "label agent-fleet.earlier-spawns holds 999999999999, out of range"),
    ],
    ids=["malformed-slot", "spawn-time-out-of-range"],
)
def test_a_container_with_an_unreadable_label_is_skipped_and_named_and_the_rest_is_reconciled(
    fleet, docker_client, fleet_id, base_image, odd_labels, named  # type: ignore[no-untyped-def]
) -> None:
    specs, _, env = fleet
    assert run_cycle(env).returncode == 0
    odd = docker_client.containers.run(base_image, ["sleep", "infinity"], name=f"{fleet_id}-odd", detach=True,
                                       labels={"agent-fleet.fleet": fleet_id, "agent-fleet.component": "agent",
                                               "agent-fleet.role": "builder", **odd_labels})
    victim = docker_client.containers.get(f"{fleet_id}-reviewer-1")
    victim.kill()
    wait_until(lambda: docker_client.containers.get(victim.id).status == "exited")

    run = run_cycle(env)
    assert run.returncode == 0, run.stderr
    assert run.report["steps"]["inventory"]["status"] == "ok"
    assert [e["slot"] for e in run.events("agent.spawned")] == [1]  # the killed agent of another role is replaced
    assert running_by_role(docker_client, fleet_id)["reviewer"] == desired(specs)["reviewer"]
    (unreadable,) = run.report["unreadable"]
    assert unreadable.startswith(f"{fleet_id}-odd: {named}")
    assert run.report["verdict"] == "degraded"
    assert any(f"{fleet_id}-odd" in reason for reason in run.report["verdict_reasons"])
    assert odd.reload() is None and odd.status == "running"  # skipped means untouched


def test_a_squatter_on_a_slot_name_is_reported_by_name_and_the_verdict_says_so(
    fleet, docker_client, fleet_id, base_image  # type: ignore[no-untyped-def]
) -> None:
    _, _, env = fleet
    squatter = docker_client.containers.run(base_image, ["sleep", "infinity"], name=f"{fleet_id}-builder-3",
                                            detach=True)
    run = run_cycle(env)
    assert run.returncode == 0, run.stderr
    assert run.report["roles"]["builder"]["spawned"] == 2
    assert run.report["squatters"] == [f"{fleet_id}-builder-3: held by container {squatter.id[:12]}"]
    assert run.report["verdict"] == "degraded"
    assert f"slot {fleet_id}-builder-3: held by container {squatter.id[:12]}, which is not the fleet's: remove it" \
        in run.report["verdict_reasons"]
    squatter.remove(force=True)


def test_finished_agents_above_the_count_are_discarded_after_a_scale_down(tmp_path, base_image, docker_client,
                                                                          fleet_id) -> None:
    roster = write_roster(tmp_path / "roster.json", [role_spec("worker", 6, base_image, command=("true",))])
    env = cycle_env(fleet_id, roster)
    assert len(run_cycle(env).events("agent.spawned")) == 6
    wait_until(lambda: all(c.status == "exited" for c in fleet_containers(docker_client, fleet_id)))
    write_roster(roster, [role_spec("worker", 1, base_image, command=("sleep", "infinity"))])
    run = run_cycle(env)
    assert run.returncode == 0, run.stderr
    assert run.events("agents.discarded") == [{**run.events("agents.discarded")[0], "count": 5}]
    left = {c.name: c.status for c in fleet_containers(docker_client, fleet_id)}
    # Slot 1's new agent, and its predecessor kept aside for its log; nothing of slots 2..6.
    assert sorted(left.values()) == ["exited", "running"]
    assert f"{fleet_id}-worker-1" in left


def test_a_bad_image_costs_one_failed_spawn_and_holds_the_rest_of_its_image_back(tmp_path, base_image,
                                                                                docker_client, fleet_id) -> None:
    specs = [role_spec("broken", 5, "agent-fleet/no-such-image:never"), role_spec("fine", 2, base_image)]
    env = cycle_env(fleet_id, write_roster(tmp_path / "roster.json", specs))
    run = run_cycle(env)
    assert run.returncode == 1
    assert len(run.events("agent.spawn_failed")) == 1
    assert run.report["roles"]["broken"] == {**run.report["roles"]["broken"], "failed": 1, "held_back": 4}
    assert run.report["roles"]["fine"]["spawned"] == 2  # another image's spawns go on
    (held,) = run.events("spawn.held_back")
    assert held["held_back"] == 4 and "failed" in held["reason"]
    assert running_by_role(docker_client, fleet_id) == {"fine": 2}


def test_a_steady_cycle_is_one_docker_call_however_many_finished_agents_are_kept(tmp_path, base_image,
                                                                                 docker_client, fleet_id) -> None:
    from tests.fakes.docker_proxy import counting_proxy

    roster = write_roster(tmp_path / "roster.json", [role_spec("worker", 6, base_image)])
    version = docker_client.version()["ApiVersion"]
    with counting_proxy() as proxy:
        # As deployed: no DOCKER_API_VERSION. A budget keeps every agent of the past hour: three generations of
        # killed agents stay beside the living.
        env = cycle_env(fleet_id, roster, DOCKER_HOST=proxy.docker_host, AGENT_CRASH_BACKOFF_S="0.1",
                        FLEET_MAX_SPAWNS_PER_HOUR="100", COORDINATOR_HEARTBEAT_FILE=str(tmp_path / "hb.json"))
        assert run_cycle(env).returncode == 0
        # The first cycle asked the engine for its API version, and remembered it beside the heartbeat.
        assert [r.split("?")[0] for r in proxy.requests][:2] == ["GET /version", f"GET /v{version}/containers/json"]
        for _ in range(3):
            for container in docker_client.containers.list(filters={"label": f"agent-fleet.fleet={fleet_id}"}):
                container.kill()
            wait_until(lambda: all(c.status == "exited" for c in fleet_containers(docker_client, fleet_id)))
            time.sleep(0.5)  # past the short backoff
            proxy.reset()
            run = run_cycle(env)
            assert len(run.events("agent.spawned")) == 6
            # The newly finished are read once each: the list, their inspects, then the six creates and starts.
            assert sum("/json" in r and "/containers/json" not in r for r in proxy.requests) == 6
        assert sum(c.status == "exited" for c in fleet_containers(docker_client, fleet_id)) == 18

        proxy.reset()
        steady = run_cycle(env)
        assert steady.returncode == 0 and steady.events("agent.spawned") == []
        assert [r.split("?")[0] for r in proxy.requests] == [f"GET /v{version}/containers/json"]


def test_a_remembered_api_version_the_engine_refuses_is_asked_for_again_and_the_cycle_goes_on(
    tmp_path, base_image, docker_client, fleet_id  # type: ignore[no-untyped-def]
) -> None:
    import json

    from tests.fakes.docker_proxy import counting_proxy

    roster = write_roster(tmp_path / "roster.json", [role_spec("worker", 1, base_image)])
    version = docker_client.version()["ApiVersion"]
    memo = tmp_path / "state" / "engine.json"
    memo.parent.mkdir()
    with counting_proxy() as proxy:
        env = cycle_env(fleet_id, roster, DOCKER_HOST=proxy.docker_host,
                        COORDINATOR_HEARTBEAT_FILE=str(memo.parent / "heartbeat.json"))
        # A version this engine does not serve, as after a downgrade: it answers 400, "client version ... too new".
        memo.write_text(json.dumps({"host": proxy.docker_host, "api_version": "1.99"}))
        run = run_cycle(env)
        assert run.returncode == 0, run.stderr
        assert len(run.events("agent.spawned")) == 1
        requests = [r.split("?")[0] for r in proxy.requests]
        assert requests[:3] == ["GET /v1.99/containers/json", "GET /version", f"GET /v{version}/containers/json"]
        assert json.loads(memo.read_text()) == {"host": proxy.docker_host, "api_version": version}

        # A memo written for another engine's address is not used there.
        memo.write_text(json.dumps({"host": "unix:///elsewhere/docker.sock", "api_version": "1.99"}))
        proxy.reset()
        assert run_cycle(env).returncode == 0
        assert [r.split("?")[0] for r in proxy.requests] == ["GET /version", f"GET /v{version}/containers/json"]


# ------------------------------------------------------------------------------------------ agents' secrets


def test_agents_receive_their_secrets_as_files_and_nowhere_else(tmp_path, base_image, docker_client,
                                                                 fleet_id) -> None:
    import json

    token, key = "fake-agent-token-SECRET" + "x1" * 12, "sk-model-SECRET" + "y2" * 12
    secrets = tmp_path / "agent-secrets.json"
    secrets.write_text(json.dumps({"GITHUB_TOKEN": token, "ANTHROPIC_API_KEY": key}))
    reviewer = role_spec("reviewer", 1, base_image)
    reviewer = replace(reviewer, role=replace(reviewer.role, secrets=("GITHUB_TOKEN",)))
    roster = write_roster(tmp_path / "roster.json", [role_spec("builder", 2, base_image), reviewer])
    env = cycle_env(fleet_id, roster, AGENT_SECRETS_FILE=str(secrets), GITHUB_REPOSITORY="acme/webapp")
    run = run_cycle(env)
    assert run.returncode == 0, run.stderr

    builder = docker_client.containers.get(f"{fleet_id}-builder-1")
    assert builder.exec_run(["cat", "/run/secrets/GITHUB_TOKEN"]).output.decode() == token
    assert builder.exec_run(["cat", "/run/secrets/ANTHROPIC_API_KEY"]).output.decode() == key
    only = docker_client.containers.get(f"{fleet_id}-reviewer-1")
    assert only.exec_run(["ls", "/run/secrets"]).output.decode().split() == ["GITHUB_TOKEN"]
    for container in (builder, only):
        attrs = docker_client.api.inspect_container(container.id)
        inspected = json.dumps(attrs)
        assert token not in inspected and key not in inspected
        # Copied in before the start: no host path, no volume, no variable carries them.
        assert attrs["Mounts"] == [] and not attrs["HostConfig"]["Binds"]
        assert not {entry.split("=", 1)[0] for entry in attrs["Config"]["Env"]} & {"GITHUB_TOKEN", "ANTHROPIC_API_KEY"}
        assert token.encode() not in container.logs() and key.encode() not in container.logs()
    assert token not in run.stdout + run.stderr and key not in run.stdout + run.stderr

    # A new value reaches the agents spawned after it; no running agent is stopped for it.
    renewed = "fake-agent-token-RENEWED" + "z3" * 12
    secrets.write_text(json.dumps({"GITHUB_TOKEN": renewed, "ANTHROPIC_API_KEY": key}))
    victim = docker_client.containers.get(f"{fleet_id}-builder-2")
    victim.kill()
    wait_until(lambda: docker_client.containers.get(victim.id).status == "exited")
    assert [e["slot"] for e in run_cycle(env).events("agent.spawned")] == [2]
    fresh = docker_client.containers.get(f"{fleet_id}-builder-2")
    assert fresh.exec_run(["cat", "/run/secrets/GITHUB_TOKEN"]).output.decode() == renewed
    builder.reload()
    assert builder.status == "running"
    assert builder.exec_run(["cat", "/run/secrets/GITHUB_TOKEN"]).output.decode() == token


def test_secrets_that_are_also_a_role_key_and_json_syntax_leave_the_report_whole(tmp_path, base_image,  # type: ignore[no-untyped-def]
                                                                                 fleet_id) -> None:
    import json

    from coordinator.metrics import FleetMetrics, last_report

    # Scrubbing the serialised line took the role's key and made `"desired": ` into `***`: no JSON, no report.
    secrets = tmp_path / "agent-secrets.json"
    secrets.write_text(json.dumps({"ROLE_KEY": "api_builder", "SYNTAX": '"desired": '}))
    roster = write_roster(tmp_path / "roster.json", [role_spec("api_builder", 1, base_image)])
    run = run_cycle(cycle_env(fleet_id, roster, AGENT_SECRETS_FILE=str(secrets)))
    assert run.returncode == 0, run.stderr
    report = run.report  # every line parsed as JSON
    assert report["desired"] == 1 and report["roles"]["api_builder"]["desired"] == 1
    [spawned] = run.events("agent.spawned")
    assert spawned["role"] == "***" and spawned["slot"] == 1  # a string value scrubbed, the rest whole
    found = last_report(run.stdout.splitlines())
    assert found is not None
    metrics = FleetMetrics()
    assert metrics.observe_report(found)
    assert metrics.registry.get_sample_value("agent_fleet_agents_desired", {"role": "api_builder"}) == 1


def test_agents_are_told_the_role_and_where_github_is(fleet, docker_client, fleet_id) -> None:  # type: ignore[no-untyped-def]
    _, _, env = fleet
    env.update(GITHUB_REPOSITORY="acme/webapp", GITHUB_API_URL="https://ghe.example.com/api/v3")
    assert run_cycle(env).returncode == 0
    agent = docker_client.containers.get(f"{fleet_id}-builder-1")
    environment = dict(item.split("=", 1) for item in agent.attrs["Config"]["Env"])
    assert environment["GITHUB_API_URL"] == "https://ghe.example.com/api/v3"
    assert environment["GITHUB_SERVER_URL"] == "https://ghe.example.com"


def test_a_slot_that_crashed_for_weeks_neither_fails_the_cycle_nor_grows_its_streak(tmp_path, base_image,
                                                                                     docker_client, fleet_id) -> None:
    # The holder of a slot whose agents have crashed 1,000 times in a row (weeks of crashing): the backoff's
    # arithmetic must not overflow, and the streak the next agent would carry stays bounded.
    roster = write_roster(tmp_path / "roster.json", [role_spec("flaky", 1, base_image, command=("sh", "-c", "exit 3"))])
    veteran = docker_client.containers.run(
        base_image, ["sh", "-c", "exit 3"], name=f"{fleet_id}-flaky-1", detach=True,
        labels={"agent-fleet.fleet": fleet_id, "agent-fleet.component": "agent", "agent-fleet.role": "flaky",
                "agent-fleet.slot": "1", "agent-fleet.crash-streak": "1000"},
    )
    wait_until(lambda: docker_client.containers.get(veteran.id).status == "exited")
    run = run_cycle(cycle_env(fleet_id, roster, AGENT_CRASH_BACKOFF_S="60", AGENT_CRASH_BACKOFF_MAX_S="3600"))
    assert run.returncode == 0, run.stderr
    assert run.report["steps"]["reconcile"]["status"] == "ok"
    (wait,) = run.report["roles"]["flaky"]["waiting"]
    assert wait["crashes"] == 100
    finished = datetime.fromisoformat(docker_client.api.inspect_container(veteran.id)["State"]["FinishedAt"][:26]
                                      .rstrip("Z") + "+00:00")
    until = datetime.fromisoformat(wait["until"].replace("Z", "+00:00"))
    assert abs((until - finished) - timedelta(seconds=3600)) < timedelta(seconds=1)
