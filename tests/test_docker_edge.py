"""The Docker edge on a real engine: exactly the calls it names, and the races it must settle."""

from __future__ import annotations

from typing import Any

import docker
import pytest

from coordinator import labels
from coordinator.edges.docker import AgentLaunch, DockerEngine, NameTaken, parse_docker_time

pytestmark = pytest.mark.docker


def launch_for(fleet_id: str, image: str, slot: int = 1) -> AgentLaunch:
    return AgentLaunch(
        name=f"{fleet_id}-api-{slot}", image=image, command=("sleep", "infinity"), env={"AGENT_ROLE": "api"},
        labels={labels.FLEET: fleet_id, labels.COMPONENT: labels.AGENT, labels.ROLE: "api", labels.SLOT: str(slot)},
    )


def test_listing_the_fleet_is_one_call_and_sees_every_state(docker_client: docker.DockerClient, base_image: str,
                                                            fleet_id: str) -> None:
    engine = DockerEngine.from_env()
    running = engine.launch(launch_for(fleet_id, base_image, 1))
    created = docker_client.api.create_container(
        base_image, ["true"], name=f"{fleet_id}-api-2",
        labels={labels.FLEET: fleet_id, labels.COMPONENT: labels.AGENT, labels.ROLE: "api", labels.SLOT: "2"},
    )["Id"]
    calls: list[str] = []
    engine.api.hooks["response"].append(lambda r, *a, **k: calls.append(f"{r.request.method} {r.request.path_url}"))
    records = {r.id: r for r in engine.list_fleet(fleet_id)}
    assert len(calls) == 1 and calls[0].startswith("GET /v") and "/containers/json" in calls[0]
    assert records[running].state == "running" and records[running].alive and records[running].slot == 1
    assert records[created].state == "created" and not records[created].alive
    assert records[created].name == f"{fleet_id}-api-2" and records[created].role == "api"


def test_a_launch_whose_container_is_cleared_before_it_starts_yields_the_slot(base_image: str, fleet_id: str) -> None:
    engine = DockerEngine.from_env()
    real_start = engine.api.start

    def start_after_another_cycle_cleared_it(container: str, *args: Any, **kwargs: Any) -> Any:
        engine.api.remove_container(container)  # what a racing cycle does to a never-started container
        return real_start(container, *args, **kwargs)

    engine.api.start = start_after_another_cycle_cleared_it  # type: ignore[method-assign]
    with pytest.raises(NameTaken):
        engine.launch(launch_for(fleet_id, base_image))


def test_a_second_launch_into_a_taken_slot_is_refused_by_name(base_image: str, fleet_id: str) -> None:
    engine = DockerEngine.from_env()
    engine.launch(launch_for(fleet_id, base_image))
    with pytest.raises(NameTaken):
        engine.launch(launch_for(fleet_id, base_image))


def test_removal_is_never_forced(docker_client: docker.DockerClient, base_image: str, fleet_id: str) -> None:
    engine = DockerEngine.from_env()
    container_id = engine.launch(launch_for(fleet_id, base_image))
    with pytest.raises(Exception, match="removing"):
        engine.remove(container_id)
    assert docker_client.containers.get(container_id).status == "running"


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
    engine = DockerEngine.from_env()
    assert engine.api.api_version == version
    calls: list[str] = []
    engine.api.hooks["response"].append(lambda r, *a, **k: calls.append(r.request.path_url))
    assert engine.list_fleet(fleet_id) == []
    assert len(calls) == 1
