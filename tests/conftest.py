"""Shared fixtures: a real Docker engine, the locally built base image, and a fleet id per test."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

# The three-node swarm lab (scripts/swarm-lab) as the session fixture `swarm_lab`.
pytest_plugins = ["tests.swarm_lab"]


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # the suite needs a real engine; say so plainly
        pytest.fail(f"no Docker engine reachable ({exc}); start dockerd or run .ci/run", pytrace=False)
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient) -> str:
    """The Python image the tests build on: BASE_IMAGE, else python:3.12-slim (scripts/base-image)."""
    proc = subprocess.run([str(ROOT / "scripts" / "base-image")], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(proc.stderr.strip() or "scripts/base-image failed", pytrace=False)
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture
def fleet_id(docker_client: docker.DockerClient) -> Iterator[str]:
    """A fleet id of this test's own; every container carrying it is removed afterwards."""
    fleet = f"t{uuid.uuid4().hex[:8]}"
    yield fleet
    for container in docker_client.containers.list(all=True, filters={"label": f"agent-fleet.fleet={fleet}"}):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def prometheus_tool(name: str) -> str:
    """The path of `prometheus` or `promtool`, from Debian's prometheus package; a clear failure without it."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not on PATH; install Debian's prometheus package "
            "(apt-get install -y --no-install-recommends prometheus), which scripts/test does when run as root",
            pytrace=False,
        )
    return found
