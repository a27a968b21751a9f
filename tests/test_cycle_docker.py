"""The cycle on a real Docker engine, run as real processes: what only an engine and a process show.

The cycle's decisions (backoff, budget, scale-down, squatters, overlapping cycles, housekeeping, advice) run on
the in-memory runtime in `tests/test_cycle_behaviour.py`; the adapter's promises they rely on are proven on
this engine by `tests/test_runtime_contract.py`. Here: a cold start end to end, what a container is given,
a cycle killed mid-spawn, an engine that does not answer, `plan`'s output, a missing image, the calls a steady
cycle makes, and secrets as files."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.fakes.production import production, refused_url
from tests.fleet_harness import (
    cycle_env,
    desired,
    fleet_containers,
    parse_lines,
    role_spec,
    run_cycle,
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


def test_a_crash_loop_on_the_engine_is_degraded_on_every_cycle_until_an_agent_lives(tmp_path, base_image,
                                                                                   docker_client, fleet_id) -> None:
    # Real containers that exit 3 at once, cycle after cycle: whether the slot waits out its backoff or its agent
    # was just respawned, the role is degraded and the slot short (agent_fleet_agents_running reads `present`);
    # the verdict never flaps back to healthy. (The backoff's arithmetic: tests/test_cycle_behaviour.py.)
    specs = [role_spec("flaky", 1, base_image, command=("sh", "-c", "exit 3"))]
    env = cycle_env(fleet_id, write_roster(tmp_path / "roster.json", specs), AGENT_CRASH_BACKOFF_S="2")
    name = f"{fleet_id}-flaky-1"

    def exited() -> bool:
        return bool(docker_client.containers.get(name).status == "exited")

    def crash_looping(report: dict) -> bool:  # type: ignore[type-arg]
        return (report["verdict"] == "degraded" and report["roles"]["flaky"]["present"] == 0
                and any(r.startswith("flaky: crash loop in slot 1 (") for r in report["verdict_reasons"]))

    first = run_cycle(env)
    assert first.events("agent.spawned") and first.report["verdict"] == "healthy"  # nothing has crashed yet
    kinds = []
    for _ in range(3):  # backoffs of 0, 2 and 4 s
        wait_until(exited)
        report = run_cycle(env).report
        kinds.append("respawned" if report["roles"]["flaky"]["spawned"] else "waiting")
        assert crash_looping(report), report["verdict_reasons"]
        if report["roles"]["flaky"]["waiting"]:
            wait_until(lambda: run_cycle(env).report["roles"]["flaky"]["spawned"] == 1, timeout=30, interval=0.5)
    assert "respawned" in kinds and "waiting" in kinds


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
    # No GitHub and no health URL here: the verdict says it judged without them.
    assert "\nverdict of this cycle: healthy, without merge and health (skipped, below)\n" in as_text.stdout
    assert fleet_containers(docker_client, fleet_id) == []


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


def test_an_image_the_engine_cannot_pull_costs_one_failed_spawn_and_holds_the_rest_back(tmp_path, base_image,
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


def test_a_spawn_that_waited_behind_a_failure_is_said_to_have_waited(tmp_path, fleet_id) -> None:  # type: ignore[no-untyped-def]
    # Two desired, one tried: the verdict must not read as if the second had failed too.
    env = cycle_env(fleet_id, write_roster(tmp_path / "roster.json",
                                           [role_spec("broken", 2, "agent-fleet/no-such-image:never")]))
    report = run_cycle(env).report
    assert report["verdict"] == "broken"
    assert report["verdict_reasons"][0] == "every spawn failed (1 of 1, and 1 more waited behind it: slow start)"


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


