"""The stack's configuration (namespace `agent-fleet:`), parsed and checked before any resource is declared.

Pure: no Pulumi import. The program reads each key's raw text with `pulumi.Config.get` (see
`deploy.pulumi_config`) and hands it here; maps and lists arrive as JSON text, as Pulumi stores them.
The GitHub token is not part of this: it stays a Pulumi secret Output from `require_secret`.

The rules are the runtime's own (`coordinator.values`, `coordinator.cron`, `coordinator.fleet`), so
a stack that passes here makes a coordinator whose settings pass too. Every error names the key,
quotes the value through `redact.shown` (no credential, no query string) and says the fix:
`agent-fleet:<key> is '<value>': <what is wrong>; <fix>`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TypeVar

from coordinator import cron
from coordinator.fleet import (
    DEFAULT_MAX_AGENTS,
    DEFAULT_MAX_AGENTS_PER_ROLE,
    MAX_AGENTS_CEILING,
    MAX_AGENTS_PER_ROLE_CEILING,
    FleetLimits,
    Role,
    RoleSpec,
    limit_breach,
)
from coordinator.redact import shown
from coordinator.settings import MAX_SPAWNS_PER_HOUR
from coordinator.values import (
    ValueProblem,
    blank_is_unset,
    load_json,
    parse_fleet_id,
    parse_image,
    parse_int,
    parse_network,
    parse_repository,
    parse_url,
    whole_number,
)

NAMESPACE = "agent-fleet"
DEFAULT_SCHEDULE = cron.DEFAULT_SCHEDULE
DEFAULT_AGENT_IMAGE = "agent-fleet/agent:latest"
# The coordinator image's base. coordinator/Dockerfile's `ARG BASE_IMAGE=` repeats it for a plain
# `docker build`; a test keeps the two equal.
DEFAULT_BASE_IMAGE = "python:3.12-slim"
DEFAULT_HEALTHCHECK_INTERVAL_SECONDS = 60
MAX_HEALTHCHECK_INTERVAL_SECONDS = 3600

# Every key of the namespace this module reads, as `pulumi config set <key>` spells it.
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
    "maxAgentsPerRole",
    "maxAgents",
)
# Keys of the namespace read elsewhere, as secrets, never through this module: the token now, and the
# agents' own secrets to come. Known, so that they are not refused as unknown.
SECRET_KEYS = ("githubToken", "agentSecrets")
KNOWN_KEYS = (*CONFIG_KEYS, *SECRET_KEYS)
# Keys whose values are URLs: an error quotes them without userinfo, query or fragment at all.
URL_KEYS = frozenset({"healthUrl", "githubApiUrl", "dockerHost"})


class StackConfigError(ValueError):
    """A stack setting is invalid; the message names `agent-fleet:<key>`, the value and the fix."""


def _error(key: str, value: object, fix: str) -> StackConfigError:
    return StackConfigError(f"{NAMESPACE}:{key} is {shown(value, url=key in URL_KEYS)}: {fix}")


def _refusal(key: str, value: object, problem: ValueProblem) -> StackConfigError:
    return _error(key, value, f"it {problem.reason}; {problem.fix}")


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
    max_agents_per_role: int = DEFAULT_MAX_AGENTS_PER_ROLE
    max_agents: int = DEFAULT_MAX_AGENTS

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def repository_name(self) -> str:
        return self.repository.split("/", 1)[1]

    @property
    def limits(self) -> FleetLimits:
        return FleetLimits(per_role=self.max_agents_per_role, total=self.max_agents)


T = TypeVar("T")
D = TypeVar("D")


def _text(raw: Mapping[str, str | None], key: str) -> str | None:
    """A scalar setting's text; an empty or blank string (the project's default for optional keys) is unset."""
    return blank_is_unset(raw.get(key))


def _read(raw: Mapping[str, str | None], key: str, parse: Callable[[str], T], default: D) -> T | D:
    """The parsed value of `key`, or `default` when it is blank; a refused value becomes a StackConfigError."""
    text = _text(raw, key)
    if text is None:
        return default
    try:
        return parse(text)
    except ValueProblem as problem:
        raise _refusal(key, text, problem) from None


def _json(raw: Mapping[str, str | None], key: str, example: str) -> object:
    text = _text(raw, key)
    if text is None:
        return None
    try:
        return load_json(text)
    except ValueProblem as problem:
        raise _error(
            key, text, f"it {problem.reason}; write JSON like {example}, or set it with `pulumi config set --path`"
        ) from None


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
                f"there is no role {shown(role)} in roster.py; known roles: {', '.join(known)}",
            )
    return dict(value)


def _counts(raw: Mapping[str, str | None], known: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for role, count in _role_map(raw, "counts", known, '{"code_reviewer": 6}').items():
        try:
            counts[role] = whole_number(count, minimum=0, maximum=MAX_AGENTS_PER_ROLE_CEILING, example=2)
        except ValueProblem as problem:
            fix = f"use a whole number of agents, 0 or more; it {problem.reason}"
            raise _error(f"counts.{role}", count, fix) from None
    return counts


def _images(raw: Mapping[str, str | None], known: Sequence[str]) -> dict[str, str]:
    images: dict[str, str] = {}
    example = "ghcr.io/acme/agent:1"
    for role, image in _role_map(raw, "images", known, '{"ui_builder": "ghcr.io/acme/agent-ui:1"}').items():
        if not isinstance(image, str):
            raise _error(f"images.{role}", image, f"use an image reference like {example}")
        try:
            images[role] = parse_image(image, example=example)
        except ValueProblem as problem:
            raise _refusal(f"images.{role}", image, problem) from None
    return images


def _required_checks(raw: Mapping[str, str | None]) -> tuple[str, ...]:
    checks = _json(raw, "requiredChecks", '["test", "lint"]')
    if checks is None:
        return ()
    if not isinstance(checks, list) or not all(
        isinstance(c, str) and c.strip() and "," not in c and c.isprintable() for c in checks
    ):
        raise _error("requiredChecks", checks, 'use a list of check names like ["test", "lint"]')
    return tuple(str(c).strip() for c in checks)


def _count_limit(raw: Mapping[str, str | None], key: str, default: int, ceiling: int) -> int:
    return _read(
        raw, key,
        partial(parse_int, minimum=1, maximum=ceiling, example=default, maximum_hint=" (the ceiling for any fleet)"),
        default,
    )


def check_known_keys(keys: Iterable[str]) -> None:
    """Refuse a key of the namespace this program does not know, naming the nearest known one.

    Pulumi stores any key it is given; a misspelt one (`healthURL`) would otherwise be ignored, silently.
    """
    for key in sorted(keys):
        if key not in KNOWN_KEYS:
            nearest = difflib.get_close_matches(key, KNOWN_KEYS, n=1, cutoff=0.6)
            hint = f"did you mean {NAMESPACE}:{nearest[0]}? " if nearest else ""
            raise StackConfigError(
                f"{NAMESPACE}:{key} is not a setting of this program; {hint}"
                f"set the right key and remove this one with `pulumi config rm {key}`; "
                f"the settings are: {', '.join(KNOWN_KEYS)}"
            )


def parse_stack_config(raw: Mapping[str, str | None], roles: Iterable[Role]) -> StackConfig:
    """Check every key and build the config; `roles` are the roster's, for the per-role maps and the limits."""
    roster = tuple(roles)
    known = [role.key for role in roster]
    repository = _read(raw, "repository", parse_repository, None)
    if repository is None:
        raise _error("repository", None, "set it with `pulumi config set repository owner/name`")
    counts = _counts(raw, known)
    config = StackConfig(
        repository=repository,
        schedule=_read(raw, "schedule", cron.validate, DEFAULT_SCHEDULE),
        health_url=_read(raw, "healthUrl", partial(parse_url, example="https://example.com/healthz"), None),
        agent_image=_read(raw, "agentImage", partial(parse_image, example="ghcr.io/acme/agent:1"), DEFAULT_AGENT_IMAGE),
        images=_images(raw, known),
        counts=counts,
        required_checks=_required_checks(raw),
        docker_host=_read(
            raw, "dockerHost",
            partial(parse_url, example="unix:///var/run/docker.sock, tcp://HOST:2376 or ssh://HOST",
                    schemes=("unix", "tcp", "ssh", "npipe")),
            None,
        ),
        github_api_url=_read(
            raw, "githubApiUrl", partial(parse_url, example="https://github.example.com/api/v3"), None
        ),
        base_image=_read(raw, "baseImage", partial(parse_image, example=DEFAULT_BASE_IMAGE), DEFAULT_BASE_IMAGE),
        max_spawns_per_hour=_read(
            raw, "maxSpawnsPerHour", partial(parse_int, minimum=0, maximum=MAX_SPAWNS_PER_HOUR, example=60), 0
        ) or None,
        agent_network=_read(raw, "agentNetwork", parse_network, None),
        healthcheck_interval_seconds=_read(
            raw, "healthcheckIntervalSeconds",
            partial(parse_int, minimum=1, maximum=MAX_HEALTHCHECK_INTERVAL_SECONDS, example=60),
            DEFAULT_HEALTHCHECK_INTERVAL_SECONDS,
        ),
        max_agents_per_role=_count_limit(raw, "maxAgentsPerRole", DEFAULT_MAX_AGENTS_PER_ROLE,
                                         MAX_AGENTS_PER_ROLE_CEILING),
        max_agents=_count_limit(raw, "maxAgents", DEFAULT_MAX_AGENTS, MAX_AGENTS_CEILING),
    )
    # The coordinator refuses a roster over its limits; so does the program, before anything is declared.
    breach = limit_breach(((role.key, counts.get(role.key, role.count)) for role in roster), config.limits)
    if breach is not None:
        per_role, total = f"{NAMESPACE}:maxAgentsPerRole", f"{NAMESPACE}:maxAgents"
        described = breach.describe(per_role_setting=per_role, total_setting=total)
        if breach.role is not None and breach.role in counts:
            raise _error(f"counts.{breach.role}", breach.count, described)
        if breach.role is not None:
            raise StackConfigError(f"roster.py: {described}")
        raise _error("maxAgents", config.max_agents, described)
    return config


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
    """`<project>-<stack>`: the label value that keeps two stacks on one Docker host apart.

    Checked as the runtime checks FLEET_ID, since the program hands it over as exactly that.
    """
    value = f"{project}-{stack}"
    try:
        return parse_fleet_id(value)
    except ValueProblem as problem:
        raise StackConfigError(
            f"fleet id {shown(value)} (<project>-<stack>) {problem.reason}; rename the stack (or the project)"
        ) from None
