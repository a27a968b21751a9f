"""scripts/try, the try-out without GitHub, Pulumi or a model: started and stopped on the real engine, it runs the
schedule with the sample roster, serves /metrics, skips the merge step saying so, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import docker
import pytest

from coordinator.fleet import roster_from_json

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.docker


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int, path: str = "/metrics") -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return None


def poll(what: str, probe, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while (value := probe()) is None or value is False:
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout:.0f}s: {what}")
        time.sleep(0.5)
    return value


def fleet_containers(client: docker.DockerClient, fleet: str) -> list[docker.models.containers.Container]:
    return client.containers.list(all=True, filters={"label": f"agent-fleet.fleet={fleet}"})


def test_try_runs_the_sample_fleet_serves_metrics_and_leaves_nothing_behind_when_stopped(
    tmp_path: Path, docker_client: docker.DockerClient, base_image: str, fleet_id: str
) -> None:
    port = free_port()
    env = {**os.environ, "TRY_FLEET_ID": fleet_id, "TRY_METRICS_PORT": str(port), "PYTHON": sys.executable,
           "PYTHONPATH": str(ROOT), "BASE_IMAGE": base_image, "TMPDIR": str(tmp_path)}
    output = tmp_path / "try.out"
    with output.open("w") as out, subprocess.Popen([str(ROOT / "scripts" / "try")], env=env, stdout=out,
                                                    stderr=subprocess.STDOUT) as tried:
        try:
            banner = poll("the banner", lambda: re.search(r"coordinator: pid (\d+)", output.read_text()))
            text = output.read_text()
            assert f"metrics:  http://127.0.0.1:{port}/metrics" in text
            assert f"page:     http://127.0.0.1:{port}/ " in text
            assert "the merge step is skipped (no GitHub)" in text and "stop:     Ctrl-C here" in text
            state = Path(re.search(r"reports:  tail -f (\S+)/coordinator.log", text)[1])  # type: ignore[index]
            assert state.parent == tmp_path

            # The first cycle runs at once: the sample roster's three stand-ins, counted in /metrics.
            metrics = poll("a cycle's metrics", lambda: (m := scrape(port)) and 'verdict="healthy"} 1.0' in m and m)
            assert 'agent_fleet_agents_running{role="builder"} 2.0' in metrics
            assert 'agent_fleet_agents_running{role="reviewer"} 1.0' in metrics
            # The status page it names shows the same cycle: the sample's roles and the verdict.
            page = poll("the status page with a cycle", lambda: (p := scrape(port, "/")) and "reviewer" in p and p)
            assert f"{fleet_id}: healthy" in page and "builder" in page
            running = sorted(c.name for c in fleet_containers(docker_client, fleet_id) if c.status == "running")
            assert running == [f"{fleet_id}-builder-1", f"{fleet_id}-builder-2", f"{fleet_id}-reviewer-1"]
            events = [json.loads(line) for line in (state / "coordinator.log").read_text().splitlines()]
            skipped = {e["step"]: e["reason"] for e in events if e["event"] == "step.skipped"}
            assert skipped == {"merge": "GITHUB_REPOSITORY is not set", "health": "HEALTH_URL is not set"}
        finally:
            tried.send_signal(signal.SIGTERM)
            assert tried.wait(timeout=60) == 130
    # Stopped: nothing of it is left (containers, state files, the coordinator, its port).
    assert output.read_text().splitlines()[-1] == (
        f"scripts/try: stopped; removed 3 containers of fleet {fleet_id}, and {state}"
    )
    assert fleet_containers(docker_client, fleet_id) == []
    assert not state.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["try.out"]
    assert not Path(f"/proc/{banner[1]}").exists()
    assert scrape(port) is None


def test_try_refuses_a_fleet_that_already_has_containers_and_touches_none(
    tmp_path: Path, docker_client: docker.DockerClient, base_image: str, fleet_id: str
) -> None:
    theirs = docker_client.containers.create(base_image, ["true"], name=f"{fleet_id}-builder-1",
                                             labels={"agent-fleet.fleet": fleet_id})
    proc = subprocess.run([str(ROOT / "scripts" / "try")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TRY_FLEET_ID": fleet_id, "PYTHON": sys.executable,
                               "TMPDIR": str(tmp_path)})
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"scripts/try: fleet {fleet_id} already has containers on this engine; choose")
    assert [c.id for c in fleet_containers(docker_client, fleet_id)] == [theirs.id]
    assert list(tmp_path.iterdir()) == []


def test_the_sample_roster_is_a_valid_roster_file() -> None:
    specs = roster_from_json((ROOT / "scripts" / "sample-roster.json").read_text())
    assert [(s.key, s.role.count) for s in specs] == [("builder", 2), ("reviewer", 1)]
