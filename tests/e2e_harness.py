"""What the two end-to-end tests (one engine: tests/test_e2e.py; a swarm: tests/test_e2e_swarm.py) share: the
stack they deploy, the contents of the coordinator's files, and polling."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from coordinator.fleet import Department, Mode, Role, RoleSpec, roster_to_json
from deploy.coordinator_spec import Source
from deploy.stack_config import SecretsPresent, StackConfig, parse_stack_config
from tests.fakes.github import FakeGitHub

SCHEDULE = "* * * * * */20"  # every 20 s (croniter: seconds are the sixth field); the first cycle runs at start


def role(key: str, count: int, mode: Mode = Mode.TASK_DRIVEN) -> Role:
    return Role(key, key.replace("_", " ").title(), count, Department.ENGINEERING, mode, f"The {key} agent.")


def stack_config(roles: Sequence[Role], *, github: FakeGitHub, health_url: str, agent_image: str,
                 agent_secrets: Mapping[str, str], counts: dict[str, int] | None = None, metrics_port: int = 0,
                 extra: Mapping[str, str] | None = None) -> StackConfig:
    """The stack's settings as Pulumi hands them over: every value raw text, maps and lists as JSON; `extra`
    for the runtime's own keys."""
    raw = {
        "repository": github.repository,
        "githubApiUrl": github.api_url,
        "healthUrl": health_url,
        "schedule": SCHEDULE,
        "agentImage": agent_image,
        "requiredChecks": json.dumps(["ci"]),
        "counts": json.dumps(counts) if counts else "",
        "healthcheckIntervalSeconds": "1",
        "metricsPort": str(metrics_port),
        **(extra or {}),
    }
    return parse_stack_config(raw, roles, SecretsPresent(agent_secrets=tuple(agent_secrets)))


def contents(roster: Sequence[RoleSpec], *, token: str, agent_secrets: Mapping[str, str]) -> dict[Source, str]:
    """What the program writes into the coordinator's files: the roster, the token, the agents' secrets."""
    return {Source.ROSTER: roster_to_json(roster), Source.GITHUB_TOKEN: token,
            Source.AGENT_SECRETS: json.dumps(dict(agent_secrets))}


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Poll `probe` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout:.0f}s: {what}")
        time.sleep(interval)
