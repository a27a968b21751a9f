"""The stack's configuration (namespace `agent-fleet:`), parsed and checked before any resource is declared.

Pure: no Pulumi import. The program reads each key's raw text with `pulumi.Config.get` (see
`deploy.pulumi_config`) and hands it here; maps and lists arrive as JSON text, as Pulumi stores them.
The GitHub token is not part of this: it stays a Pulumi secret Output from `require_secret`.
Every error names the key, the value and the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from croniter import croniter

from coordinator.fleet import Role, RoleSpec

NAMESPACE = "agent-fleet"
DEFAULT_SCHEDULE = "*/5 * * * *"
DEFAULT_AGENT_IMAGE = "agent-fleet/agent:latest"
DEFAULT_BASE_IMAGE = "python:3.12-slim"
DEFAULT_HEALTHCHECK_INTERVAL_SECONDS = 60

# Every key of the namespace, as `pulumi config set <key>` spells it. `githubToken` is read separately,
# as a secret, and never passes through this module.
CONFIG_KEYS = (
    "repository",
    "healthUrl",
    "schedule",
    "agentImage",
    "images",
    "counts",
    "requiredChecks",
    "dockerHost",
    "githubApiUrl",
    "baseImage",
    "maxSpawnsPerHour",
    "agentNetwork",
    "healthcheckIntervalSeconds",
)

_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9._-]+$")
_IMAGE = re.compile(r"^[^\s]+$")
_FLEET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class StackConfigError(ValueError):
    """A stack setting is invalid; the message names `agent-fleet:<key>`, the value and the fix."""


def _error(key: str, value: object, fix: str) -> StackConfigError:
    return StackConfigError(f"{NAMESPACE}:{key} is {value!r}: {fix}")


@dataclass(frozen=True)
class StackConfig:
    """Everything a stack configures except the token. Optional settings are None when unset."""

    repository: str
    schedule: str = DEFAULT_SCHEDULE
    health_url: str | None = None
    agent_image: str = DEFAULT_AGENT_IMAGE
    images: Mapping[str, str] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)
    required_checks: tuple[str, ...] = ()
    docker_host: str | None = None
    github_api_url: str | None = None
    base_image: str = DEFAULT_BASE_IMAGE
    max_spawns_per_hour: int | None = None
    agent_network: str | None = None
    healthcheck_interval_seconds: int = DEFAULT_HEALTHCHECK_INTERVAL_SECONDS

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def repository_name(self) -> str:
        return self.repository.split("/", 1)[1]


def _text(raw: Mapping[str, str | None], key: str) -> str | None:
    """A scalar setting's text; an empty string (the project's default for optional keys) is unset."""
    value = raw.get(key)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _json(raw: Mapping[str, str | None], key: str, example: str) -> object:
    text = _text(raw, key)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise _error(key, text, f"it must be JSON like {example}; set it with `pulumi config set --path`") from None


def _role_map(raw: Mapping[str, str | None], key: str, known: Sequence[str], example: str) -> dict[str, object]:
    value = _json(raw, key, example)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _error(key, value, f"it must be a map from role key to value, like {example}")
    for role in value:
        if role not in known:
            raise _error(
                f"{key}.{role}", value[role],
                f"there is no role {role!r} in roster.py; known roles: {', '.join(known)}",
            )
    return dict(value)


def _counts(raw: Mapping[str, str | None], known: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for role, count in _role_map(raw, "counts", known, '{"code_reviewer": 6}').items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise _error(f"counts.{role}", count, "use a whole number of agents, 0 or more")
        counts[role] = count
    return counts


def _images(raw: Mapping[str, str | None], known: Sequence[str]) -> dict[str, str]:
    images: dict[str, str] = {}
    for role, image in _role_map(raw, "images", known, '{"ui_builder": "ghcr.io/acme/agent-ui:1"}').items():
        if not isinstance(image, str) or not _IMAGE.match(image):
            raise _error(f"images.{role}", image, "use an image reference like ghcr.io/acme/agent:1")
        images[role] = image
    return images


def _required_checks(raw: Mapping[str, str | None]) -> tuple[str, ...]:
    checks = _json(raw, "requiredChecks", '["test", "lint"]')
    if checks is None:
        return ()
    if not isinstance(checks, list) or not all(isinstance(c, str) and c.strip() and "," not in c for c in checks):
        raise _error("requiredChecks", checks, 'use a list of check names like ["test", "lint"]')
    return tuple(str(c).strip() for c in checks)


def _url(raw: Mapping[str, str | None], key: str, example: str) -> str | None:
    value = _text(raw, key)
    if value is None:
        return None
    if not re.match(r"^https?://[^\s/]+", value):
        raise _error(key, value, f"use an http(s) URL like {example}")
    return value


def _positive_int(raw: Mapping[str, str | None], key: str, *, allow_zero: bool) -> int | None:
    value = _text(raw, key)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise _error(key, value, "use a whole number") from None
    if number < 0 or (number == 0 and not allow_zero):
        raise _error(key, value, f"use a whole number {'0 or more' if allow_zero else 'of at least 1'}")
    return number


def parse_stack_config(raw: Mapping[str, str | None], roles: Iterable[Role]) -> StackConfig:
    """Check every key and build the config; `roles` are the roster's, for the per-role maps."""
    known = [role.key for role in roles]
    repository = _text(raw, "repository")
    if repository is None:
        raise _error("repository", None, "set it with `pulumi config set repository owner/name`")
    if not _REPOSITORY.match(repository):
        raise _error("repository", repository, "use owner/name, like acme/webapp")
    schedule = _text(raw, "schedule") or DEFAULT_SCHEDULE
    if not croniter.is_valid(schedule):
        raise _error(
            "schedule", schedule, "use a cron expression of 5 fields, like '*/5 * * * *' (or 6, the last for seconds)"
        )
    agent_image = _text(raw, "agentImage") or DEFAULT_AGENT_IMAGE
    if not _IMAGE.match(agent_image):
        raise _error("agentImage", agent_image, "use an image reference like ghcr.io/acme/agent:1")
    base_image = _text(raw, "baseImage") or DEFAULT_BASE_IMAGE
    if not _IMAGE.match(base_image):
        raise _error("baseImage", base_image, f"use an image reference like {DEFAULT_BASE_IMAGE}")
    docker_host = _text(raw, "dockerHost")
    if docker_host is not None and not re.match(r"^(unix|tcp|ssh|npipe)://", docker_host):
        raise _error("dockerHost", docker_host, "use unix:///var/run/docker.sock, tcp://HOST:2376 or ssh://USER@HOST")
    return StackConfig(
        repository=repository,
        schedule=schedule,
        health_url=_url(raw, "healthUrl", "https://example.com/healthz"),
        agent_image=agent_image,
        images=_images(raw, known),
        counts=_counts(raw, known),
        required_checks=_required_checks(raw),
        docker_host=docker_host,
        github_api_url=_url(raw, "githubApiUrl", "https://github.example.com/api/v3"),
        base_image=base_image,
        max_spawns_per_hour=_positive_int(raw, "maxSpawnsPerHour", allow_zero=True) or None,
        agent_network=_text(raw, "agentNetwork"),
        healthcheck_interval_seconds=(
            _positive_int(raw, "healthcheckIntervalSeconds", allow_zero=False) or DEFAULT_HEALTHCHECK_INTERVAL_SECONDS
        ),
    )


def resolve_roster(roles: Sequence[Role], config: StackConfig) -> tuple[RoleSpec, ...]:
    """The roster as this stack deploys it: the stack's counts override, each role gets its image."""
    return tuple(
        RoleSpec(
            role=replace(role, count=config.counts.get(role.key, role.count)),
            image=config.images.get(role.key, config.agent_image),
        )
        for role in roles
    )


def fleet_id(project: str, stack: str) -> str:
    """`<project>-<stack>`: the label value that keeps two stacks on one Docker host apart."""
    value = f"{project}-{stack}"
    if not _FLEET_ID.match(value):
        raise StackConfigError(
            f"fleet id {value!r} (project-stack) may hold only letters, digits, '_', '.' and '-'; rename the stack"
        )
    return value


def schedule_interval_seconds(schedule: str) -> int:
    """The longest gap between two runs of `schedule`, over its next 500 runs or two weeks from a fixed date.

    A fixed start keeps the result (and so the container's health check) the same on every preview.
    """
    runs = croniter(schedule, datetime(2024, 1, 1, tzinfo=UTC))
    previous: datetime = runs.get_next(datetime)
    horizon = previous.timestamp() + 14 * 24 * 3600
    longest = 0.0
    for _ in range(500):
        current: datetime = runs.get_next(datetime)
        longest = max(longest, (current - previous).total_seconds())
        if current.timestamp() > horizon:
            break
        previous = current
    return int(longest)
