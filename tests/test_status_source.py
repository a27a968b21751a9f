"""`coordinator status` where people run it: from a laptop over ssh://, and `--source` naming the container (or
service) to read, of which only a coordinator's log is taken."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from coordinator import labels
from coordinator.runtime import AgentLaunch
from tests.fleet_harness import cycle_env, role_spec, run_cycle, write_roster
from tests.swarm_lab import SwarmLab

ROOT = Path(__file__).resolve().parents[1]


def status(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator", "status", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, timeout=60)


def test_status_over_ssh_is_supported_and_an_unreachable_engine_is_a_clear_error() -> None:
    # docker[ssh] brings paramiko: without it, ssh:// fails with "Install paramiko package to enable ssh:// support".
    # A port nobody listens on, so the connection itself is what fails, said in one line, not a traceback.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = status(DOCKER_HOST=f"ssh://fleet@127.0.0.1:{port}")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (
        f"coordinator status: cannot reach the Docker engine at ssh://fleet@127.0.0.1:{port}: "
        f"NoValidConnectionsError: [Errno None] Unable to connect to port {port} on 127.0.0.1\n"
    )


@pytest.mark.docker
def test_status_source_naming_an_agent_exits_non_zero_saying_so(
    docker_client: docker.DockerClient, base_image: str, fleet_id: str
) -> None:
    launch = AgentLaunch(fleet_id=fleet_id, role="builder", slot=1, name=f"{fleet_id}-builder-1", image=base_image,
                         command=("true",), env={})
    agent = docker_client.containers.create(base_image, ["true"], name=launch.name, labels=labels.agent_labels(launch))
    stranger = docker_client.containers.create(base_image, ["true"], name=f"{fleet_id}-stranger",
                                               labels={labels.FLEET: fleet_id})
    try:
        for name, why in ((agent.name, f"it is an agent of fleet {fleet_id!r} (agent-fleet.component=agent)"),
                          (stranger.name, "it has no agent-fleet.component=coordinator label")):
            proc = status("--source", name)
            assert proc.returncode == 1
            assert proc.stdout == ""
            assert proc.stderr == (
                f"coordinator status: container {name!r} is not a coordinator: {why}; name the coordinator's "
                "container (label agent-fleet.component=coordinator), or leave --source out to find the fleet's own\n"
            )
    finally:
        stranger.remove(force=True)


@pytest.mark.parametrize(
    ("found", "refused"),
    [
        ({labels.FLEET: "f", labels.COMPONENT: labels.COORDINATOR}, False),
        ({labels.FLEET: "f", labels.COMPONENT: labels.AGENT}, True),
        ({}, True),
    ],
)
def test_only_an_object_labelled_as_a_coordinator_is_taken_on_either_runtime(
    found: dict[str, str], refused: bool
) -> None:
    for kind in ("container", "service"):  # the docker and the swarm adapter ask the same question
        problem = labels.not_a_coordinator(kind, "x", found)
        assert (problem is not None) is refused
        assert problem is None or problem.startswith(f"{kind} 'x' is not a coordinator: ")


@pytest.mark.swarm
def test_status_source_naming_an_agent_service_on_a_swarm_exits_non_zero_saying_so(
    tmp_path: Path, swarm_lab: SwarmLab, base_image: str, swarm_fleet_id: str
) -> None:
    image = swarm_lab.push(base_image, "agent-fleet/python-base:lab")
    roster = write_roster(tmp_path / "roster.json", [role_spec("builder", 1, image)])
    env = cycle_env(swarm_fleet_id, roster, FLEET_RUNTIME="swarm", DOCKER_HOST=swarm_lab.manager_url)
    assert run_cycle(env).events("agent.spawned")
    name = f"{swarm_fleet_id}-builder-1"
    proc = status("--source", name, FLEET_RUNTIME="swarm", DOCKER_HOST=swarm_lab.manager_url)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (
        f"coordinator status: service {name!r} is not a coordinator: it is an agent of fleet {swarm_fleet_id!r} "
        "(agent-fleet.component=agent); name the coordinator's service (label agent-fleet.component=coordinator), "
        "or leave --source out to find the fleet's own\n"
    )
