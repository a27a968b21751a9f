"""The one-engine runtime on a real Docker engine: exactly the calls it names, and the races it must settle.

What every runtime promises (slot names refused when in use, squatters named, nothing alive removed) is asserted
once for all of them in `tests/test_runtime_contract.py`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from coordinator import labels
from coordinator.runtime import AgentLaunch, Phase, SlotTaken
from coordinator.runtimes.docker import DockerRuntime, ExitMemo
from coordinator.runtimes.engine import parse_docker_time

pytestmark = pytest.mark.docker


def launch_for(fleet_id: str, image: str, slot: int = 1, command: tuple[str, ...] = ("sleep", "infinity"),
               role: str = "api") -> AgentLaunch:
    return AgentLaunch(fleet_id=fleet_id, role=role, slot=slot, name=f"{fleet_id}-{role}-{slot}", image=image,
                       command=command, env={"AGENT_ROLE": role})


def count_calls(runtime: DockerRuntime) -> list[str]:
    calls: list[str] = []
    runtime.api.hooks["response"].append(lambda r, *a, **k: calls.append(f"{r.request.method} {r.request.path_url}"))
    return calls


def wait_exited(client: docker.DockerClient, container_id: str) -> None:
    for _ in range(100):
        if client.containers.get(container_id).status == "exited":
            return
        time.sleep(0.1)
    raise AssertionError("the container did not exit")


def test_listing_the_fleet_is_one_call_and_sees_every_state(docker_client: docker.DockerClient, base_image: str,
                                                            fleet_id: str) -> None:
    runtime = DockerRuntime()
    running = runtime.spawn(launch_for(fleet_id, base_image, 1))
    created = docker_client.api.create_container(
        base_image, ["true"], name=f"{fleet_id}-api-2",
        labels={labels.FLEET: fleet_id, labels.COMPONENT: labels.AGENT, labels.ROLE: "api", labels.SLOT: "2"},
    )["Id"]
    calls = count_calls(runtime)
    records = {r.id: r for r in runtime.list_agents(fleet_id).agents}
    assert len(calls) == 1 and "/containers/json" in calls[0]
    assert records[running].phase is Phase.ALIVE and records[running].slot == 1 and records[running].holds_slot
    assert records[created].phase is Phase.FINISHED and records[created].started_at is None
    assert records[created].name == f"{fleet_id}-api-2" and records[created].role == "api"


@pytest.mark.parametrize(
    "bad",
    [{labels.SLOT: "²"}, {labels.SLOT: "0"}, {labels.SLOT: "1\n"}, {labels.ROLE: "Api"}, {labels.CRASH_STREAK: "-1"},
     {labels.IDLE_STREAK: "9" * 400}, {labels.EARLIER_SPAWNS: "yesterday"}, {labels.EARLIER_SPAWNS: "999999999999"},
     {labels.EARLIER_SPAWNS: "1764676800,253402300800"}, {labels.SLOT: "1001"}],
    ids=lambda bad: ",".join(f"{k}={v[:8]!r}" for k, v in bad.items()),
)
def test_a_container_whose_labels_cannot_be_read_is_skipped_and_named_never_fatal(
    docker_client: docker.DockerClient, base_image: str, fleet_id: str, bad: dict[str, str]
) -> None:
    runtime = DockerRuntime()
    good = runtime.spawn(launch_for(fleet_id, base_image, 1))
    malformed = docker_client.api.create_container(
        base_image, ["true"], name=f"{fleet_id}-odd",
        labels={labels.FLEET: fleet_id, labels.COMPONENT: labels.AGENT, labels.ROLE: "api", labels.SLOT: "3", **bad},
    )["Id"]
    listing = runtime.list_agents(fleet_id)
    assert [a.id for a in listing.agents] == [good]
    (unreadable,) = listing.unreadable
    assert unreadable.id == malformed and unreadable.name == f"{fleet_id}-odd"
    assert next(iter(bad)) in unreadable.reason


def test_an_exited_agents_end_is_read_once_then_remembered(docker_client: docker.DockerClient, base_image: str,
                                                           fleet_id: str, tmp_path: Path) -> None:
    memo = tmp_path / "exits.json"
    agent = DockerRuntime().spawn(launch_for(fleet_id, base_image, 1, command=("sh", "-c", "exit 3")))
    wait_exited(docker_client, agent)

    first = DockerRuntime(exit_memo=ExitMemo(memo))
    calls = count_calls(first)
    (record,) = first.list_agents(fleet_id).agents
    assert record.exit_code == 3 and record.ran_s is not None and record.finished_at is not None
    assert len(calls) == 2 and "/json" in calls[1]  # the list, then one inspect of the newly finished agent

    # A later cycle, a new process: one list call, the same facts.
    later = DockerRuntime(exit_memo=ExitMemo(memo))
    calls = count_calls(later)
    (again,) = later.list_agents(fleet_id).agents
    assert again == record
    assert len(calls) == 1

    # An entry that disagrees with the exit code the list shows (a person started the kept agent again, and it
    # ended differently) is not trusted: the agent is inspected again.
    entries = json.loads(memo.read_text())
    assert list(entries) == [agent]
    memo.write_text(json.dumps({agent: {**entries[agent], "exit_code": 5}}))
    again_runtime = DockerRuntime(exit_memo=ExitMemo(memo))
    calls = count_calls(again_runtime)
    assert again_runtime.list_agents(fleet_id).agents[0].exit_code == 3
    assert len(calls) == 2


def test_an_unreadable_memo_costs_only_inspects(docker_client: docker.DockerClient, base_image: str,
                                                fleet_id: str, tmp_path: Path) -> None:
    memo = tmp_path / "exits.json"
    memo.write_text("{not json")
    agent = DockerRuntime().spawn(launch_for(fleet_id, base_image, 1, command=("true",)))
    wait_exited(docker_client, agent)
    (record,) = DockerRuntime(exit_memo=ExitMemo(memo)).list_agents(fleet_id).agents
    assert record.exit_code == 0


def test_a_spawn_whose_container_is_cleared_before_it_starts_yields_the_slot(base_image: str, fleet_id: str) -> None:
    runtime = DockerRuntime()
    real_start = runtime.api.start

    def start_after_another_cycle_cleared_it(container: str, *args: Any, **kwargs: Any) -> Any:
        runtime.api.remove_container(container)  # what a racing cycle does to a never-started container
        return real_start(container, *args, **kwargs)

    runtime.api.start = start_after_another_cycle_cleared_it  # type: ignore[method-assign]
    with pytest.raises(SlotTaken):
        runtime.spawn(launch_for(fleet_id, base_image))


def test_a_finished_agent_is_kept_aside_and_a_never_started_one_removed(docker_client: docker.DockerClient,
                                                                         base_image: str, fleet_id: str) -> None:
    runtime = DockerRuntime()
    ended = runtime.spawn(launch_for(fleet_id, base_image, 1, command=("true",)))
    wait_exited(docker_client, ended)
    docker_client.api.create_container(
        base_image, ["true"], name=f"{fleet_id}-api-2",
        labels={labels.FLEET: fleet_id, labels.COMPONENT: labels.AGENT, labels.ROLE: "api", labels.SLOT: "2"},
    )
    records = {r.slot: r for r in runtime.list_agents(fleet_id).agents}
    runtime.vacate(records[1])
    runtime.vacate(records[2])
    assert docker_client.containers.get(ended).name == f"{fleet_id}-api-1.{ended[:12]}"
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(records[2].id)
    (kept,) = runtime.list_agents(fleet_id).agents
    assert not kept.holds_slot and kept.exit_code == 0


def test_resources_become_limits(docker_client: docker.DockerClient, base_image: str, fleet_id: str) -> None:
    from coordinator.fleet import Resources

    launch = launch_for(fleet_id, base_image)
    runtime = DockerRuntime()
    agent = runtime.spawn(AgentLaunch(**{**launch.__dict__, "resources": Resources(cpus=0.5, memory_bytes=64 * 2**20)}))
    host = docker_client.api.inspect_container(agent)["HostConfig"]
    assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 64 * 2**20


def test_docker_times_carry_nanoseconds_and_zero_means_never() -> None:
    parsed = parse_docker_time("2026-11-25T14:56:53.123456789Z")
    assert parsed is not None and parsed.microsecond == 123456 and parsed.tzinfo is not None
    assert parse_docker_time("0001-01-01T00:00:00Z") is None
    assert parse_docker_time("2026-11-25T14:56:53Z") is not None


def test_a_pinned_api_version_makes_listing_the_only_call(docker_client: docker.DockerClient, fleet_id: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    version = docker_client.version()["ApiVersion"]
    monkeypatch.setenv("DOCKER_API_VERSION", version)

    def probe(self: docker.APIClient) -> str:
        raise AssertionError("the engine was asked for its version although one is pinned")

    monkeypatch.setattr(docker.APIClient, "_retrieve_server_version", probe)
    runtime = DockerRuntime()
    assert runtime.api.api_version == version
    calls = count_calls(runtime)
    assert runtime.list_agents(fleet_id).agents == ()
    assert len(calls) == 1
