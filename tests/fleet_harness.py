"""Helpers for tests that run real coordinator cycles, as processes, against the real Docker engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from coordinator.fleet import Department, Mode, Role, RoleSpec, roster_to_json

ROOT = Path(__file__).resolve().parents[1]
SLEEP_FOREVER = ("sleep", "infinity")


def role_spec(key: str, count: int, image: str, command: Sequence[str] = SLEEP_FOREVER,
              mode: Mode = Mode.TASK_DRIVEN, env: Mapping[str, str] | None = None) -> RoleSpec:
    role = Role(key, key.replace("_", " ").title(), count, Department.ENGINEERING, mode, f"The {key} agent.")
    return RoleSpec(role, image=image, command=tuple(command), env=dict(env or {}))


def write_roster(path: Path, specs: Sequence[RoleSpec]) -> Path:
    path.write_text(roster_to_json(specs), encoding="utf-8")
    return path


def cycle_env(fleet_id: str, roster_file: Path | None, **extra: str) -> dict[str, str]:
    """A clean environment: only what the test sets, so no developer setting leaks in."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "FLEET_ID": fleet_id,
        "COORDINATOR_HEARTBEAT_FILE": f"/tmp/agent-fleet-test-{fleet_id}/heartbeat.json",
    }
    if roster_file is not None:
        env["FLEET_ROSTER_FILE"] = str(roster_file)
    if "DOCKER_HOST" in os.environ:
        env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    env.update(extra)
    return env


@dataclass
class CycleRun:
    returncode: int
    lines: list[dict[str, Any]]
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        assert self.lines, f"no output; stderr: {self.stderr}"
        last = self.lines[-1]
        assert last["event"] == "cycle.report", last
        return last

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == name]


def parse_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def run_cycle(env: Mapping[str, str], *args: str, timeout: float = 180) -> CycleRun:
    proc = subprocess.run(
        [sys.executable, "-m", "coordinator", "cycle", *args],
        env=dict(env), capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )
    return CycleRun(proc.returncode, parse_lines(proc.stdout) if "--format" not in args else [], proc.stdout,
                    proc.stderr)


def start_cycle(env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "coordinator", "cycle"], env=dict(env), cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def run_cycles_at_once(env: Mapping[str, str], count: int, *, timeout: float = 180) -> list[CycleRun]:
    """`count` cycle processes started together, so that they overlap, each waited for."""
    procs = [start_cycle(env) for _ in range(count)]
    runs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        runs.append(CycleRun(proc.returncode, parse_lines(stdout), stdout, stderr))
    return runs


def present_by_role(report: Mapping[str, Any]) -> dict[str, int]:
    """Each role's agents as a cycle's report says the cycle left them."""
    return {key: role["present"] for key, role in report["roles"].items()}


@dataclass(frozen=True)
class Seen:
    """A fleet container as one list call shows it (no inspect, so nothing races a removal)."""

    id: str
    name: str
    status: str
    labels: Mapping[str, str]


def fleet_containers(client: docker.DockerClient, fleet_id: str) -> list[Seen]:
    items = client.api.containers(
        all=True, filters={"label": [f"agent-fleet.fleet={fleet_id}", "agent-fleet.component=agent"]}
    )
    return [Seen(i["Id"], i["Names"][0].lstrip("/"), i["State"], i["Labels"] or {}) for i in items]


def running_by_role(client: docker.DockerClient, fleet_id: str) -> Counter[str]:
    return Counter(
        c.labels["agent-fleet.role"] for c in fleet_containers(client, fleet_id) if c.status == "running"
    )


def running_ids(client: docker.DockerClient, fleet_id: str) -> set[str]:
    return {c.id for c in fleet_containers(client, fleet_id) if c.status == "running"}


def desired(specs: Sequence[RoleSpec]) -> Counter[str]:
    return Counter({s.key: s.role.count for s in specs if s.role.count})
