"""The stack's configuration (namespace `agent-fleet:`), parsed and checked before any resource is declared.

Pure: no Pulumi import. The program reads each key's raw text with `pulumi.Config.get` (see
`deploy.pulumi_config`) and hands it here; maps and lists arrive as JSON text, as Pulumi stores them.
The secrets (the GitHub token, the agents' secrets, the registry password) are not part of this: their values
stay Pulumi secret Outputs (`deploy.pulumi_config`). Only what is not secret about them is checked here: which
agent secrets exist, by name, and whether a registry password is set.

The rules are the runtime's own (`coordinator.values`, `coordinator.cron`, `coordinator.fleet`), so
a stack that passes here makes a coordinator whose settings pass too. Every error names the key,
quotes the value through `redact.shown` (no credential, no query string) and says the fix:
`agent-fleet:<key> is '<value>': <what is wrong>; <fix>`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TypeVar
from urllib.parse import urlsplit

from coordinator import cron
from coordinator.fleet import (
    DEFAULT_MAX_AGENTS,
    DEFAULT_MAX_AGENTS_PER_ROLE,
    MAX_AGENT_SECRET_BYTES,
    MAX_AGENTS_PER_ROLE_CEILING,
    MAX_SECRET_NAME_CHARS,
    FleetLimits,
    Mode,
    Role,
    RoleSpec,
    SecretsFault,
    agent_secrets,
    limit_breach,
    unknown_secrets,
)
from coordinator.identities import (
    COORDINATOR as COORDINATOR_IDENTITY,
)
from coordinator.identities import (
    STACK_APP_KEYS,
    IdentityFault,
    check_identities,
    check_identity,
    missing_identities,
    shared_reviewer,
)
from coordinator.redact import MIN_SECRET_CHARS, shown
from coordinator.settings import DEFAULT_METRICS_PORT, MAX_AGENTS, MAX_AGENTS_PER_ROLE, METRICS_PORT, SPAWNS_PER_HOUR
from coordinator.values import (
    DEFAULT_RUNTIME,
    SWARM_RUNTIME,
    Count,
    ValueProblem,
    blank_is_unset,
    load_json,
    parse_fleet_id,
    parse_image,
    parse_int,
    parse_network,
    parse_or_refuse,
    parse_repository,
    parse_runtime,
    parse_swarm_fleet_id,
    parse_switch,
    parse_url,
    repository_parts,
    whole_number,
)

NAMESPACE = "agent-fleet"
DEFAULT_SCHEDULE = cron.DEFAULT_SCHEDULE
# The coordinator image's base. coordinator/Dockerfile's `ARG BASE_IMAGE=` repeats it for a plain
# `docker build`; a test keeps the two equal.
DEFAULT_BASE_IMAGE = "python:3.12-slim"
DEFAULT_HEALTHCHECK_INTERVAL_SECONDS = 60
# The starter cap on spawns per rolling hour (maxSpawnsPerHour; 0 lifts it). Each spawn is a model session that
# costs money, and without a cap the first cycle starts the whole roster at once. 25 is one agent for each role of
# the shipped roster: the first cycle starts that (the budget goes to the lowest slots first), the rest wait.
DEFAULT_MAX_SPAWNS_PER_HOUR = 25
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
    "runtime",
    "registry",
    "registryUsername",
    "metricsPort",
    "mergeQueue",
    "mergeQueueLimits",
    "requireUpToDate",
)
# Keys of the namespace whose values are secrets: read by `deploy.pulumi_config` as secret Outputs, never
# through this module. Known, so that they are not refused as unknown.
SECRET_KEYS = ("githubToken", "githubApp", "githubIdentities", "agentSecrets", "registryPassword")
KNOWN_KEYS = (*CONFIG_KEYS, *SECRET_KEYS)
# Keys whose values are URLs: an error quotes them without userinfo, query or fragment at all.
URL_KEYS = frozenset({"healthUrl", "githubApiUrl", "dockerHost"})


# The documentation's example values (README, Pulumi.prod.yaml's comments). Deployed as they stand, the fleet would
# work on a repository that is not the user's and judge production by a host that never answers: refused by name.
EXAMPLE_REPOSITORIES = frozenset({"acme/webapp", "owner/name"})
# Domains reserved for documentation (RFC 2606, RFC 6761): no production answers on them, or under them.
EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org", "example")


class StackConfigError(ValueError):
    """A stack setting is invalid; the message names `agent-fleet:<key>`, the value and the fix."""


def _error(key: str, value: object, fix: str) -> StackConfigError:
    return StackConfigError(f"{NAMESPACE}:{key} is {shown(value, url=key in URL_KEYS)}: {fix}")


def _refusal(key: str, value: object, problem: ValueProblem) -> StackConfigError:
    return _error(key, value, f"it {problem.reason}; {problem.fix}")


@dataclass(frozen=True)
class SecretsPresent:
    """What may be known of the stack's secrets before any is used: the agent secrets' names, and whether a
    registry password is set. Never a value."""

    agent_secrets: tuple[str, ...] = ()
    registry_password: bool = False
    # githubIdentities by name, each "token" or "app"; None: the key is unset (agents share agentSecrets.GITHUB_TOKEN)
    identities: tuple[tuple[str, str], ...] | None = None
    # Whether the deploy authenticates as a GitHub App (githubApp, the provider's app_auth) instead of githubToken.
    deploy_app: bool = False


@dataclass(frozen=True)
class MergeQueueLimits:
    """The numbers of the ruleset's merge_queue rule (`mergeQueueLimits`); the defaults are GitHub's own."""

    check_timeout_minutes: int = 60  # a required check that has not reported by then counts as failed
    max_entries_to_build: int = 5  # queued pull requests whose merge groups are tested at once
    min_entries_to_merge: int = 1
    max_entries_to_merge: int = 5  # pull requests merged together in one group
    min_entries_to_merge_wait_minutes: int = 5  # then a smaller group merges anyway


# mergeQueueLimits' keys -> (field, minimum, maximum), the bounds GitHub's rulesets API documents.
MERGE_QUEUE_LIMIT_KEYS: dict[str, tuple[str, int, int]] = {
    "checkTimeoutMinutes": ("check_timeout_minutes", 1, 360),
    "maxEntriesToBuild": ("max_entries_to_build", 0, 100),
    "minEntriesToMerge": ("min_entries_to_merge", 0, 100),
    "maxEntriesToMerge": ("max_entries_to_merge", 0, 100),
    "minEntriesToMergeWaitMinutes": ("min_entries_to_merge_wait_minutes", 0, 360),
}


@dataclass(frozen=True)
class StackConfig:
    """Everything a stack configures except the secrets' values. Optional settings are None when unset."""

    repository: str
    schedule: str = DEFAULT_SCHEDULE
    health_url: str | None = None
    agent_image: str | None = None  # None: the program builds the reference image (agent/Dockerfile)
    images: Mapping[str, str] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)
    required_checks: tuple[str, ...] = ()
    docker_host: str | None = None
    github_api_url: str | None = None
    base_image: str = DEFAULT_BASE_IMAGE
    max_spawns_per_hour: int | None = DEFAULT_MAX_SPAWNS_PER_HOUR  # None: no limit
    agent_network: str | None = None
    healthcheck_interval_seconds: int = DEFAULT_HEALTHCHECK_INTERVAL_SECONDS
    max_agents_per_role: int = DEFAULT_MAX_AGENTS_PER_ROLE
    max_agents: int = DEFAULT_MAX_AGENTS
    runtime: str = DEFAULT_RUNTIME
    registry: str | None = None  # host[:port][/namespace] the images are pushed to
    registry_username: str | None = None
    metrics_port: int = DEFAULT_METRICS_PORT  # 0: no metrics endpoint
    merge_queue: bool = False  # the default branch's ruleset requires GitHub's merge queue
    merge_queue_limits: MergeQueueLimits = field(default_factory=MergeQueueLimits)
    require_up_to_date: bool = False  # the required checks' strict policy; the coordinator updates behind branches
    secrets: SecretsPresent = field(default_factory=SecretsPresent)

    @property
    def owner(self) -> str:
        return repository_parts(self.repository)[0]

    @property
    def repository_name(self) -> str:
        return repository_parts(self.repository)[1]

    @property
    def limits(self) -> FleetLimits:
        return FleetLimits(per_role=self.max_agents_per_role, total=self.max_agents)

    def count_of(self, role: Role) -> int:
        return self.counts.get(role.key, role.count)

    @property
    def on_swarm(self) -> bool:
        return self.runtime == SWARM_RUNTIME

    @property
    def registry_server(self) -> str | None:
        """The registry's host[:port], where the credentials apply."""
        return None if self.registry is None else self.registry.split("/", 1)[0]

    @property
    def registry_credentials(self) -> bool:
        """Whether the stack logs in to its registry: then the coordinator gets the credentials too, to pull with."""
        return self.registry_server is not None and self.registry_username is not None \
            and self.secrets.registry_password

    @property
    def agent_secret_names(self) -> tuple[str, ...]:
        return self.secrets.agent_secrets

    @property
    def identity_kinds(self) -> dict[str, str]:
        """githubIdentities: name -> "token" or "app" (never a value)."""
        return dict(self.secrets.identities or ())

    @property
    def agent_identities(self) -> tuple[str, ...]:
        """The identities agents act as: every entry but the coordinator's own."""
        return tuple(name for name in self.identity_kinds if name != COORDINATOR_IDENTITY)

    @property
    def coordinator_kind(self) -> str:
        """What the running coordinator merges with: "app" or "token" (githubIdentities.coordinator), else the
        deploy's own credential, "deploy-app" (githubApp) or "deploy-token" (githubToken)."""
        own = self.identity_kinds.get(COORDINATOR_IDENTITY)
        if own is not None:
            return own
        return "deploy-app" if self.secrets.deploy_app else "deploy-token"

    def image_repository(self, component: str) -> str:
        """Where the program's own image of `component` (coordinator, agent) goes: pushed under the registry,
        or kept on the engine that builds it."""
        if self.registry is None:
            return f"agent-fleet/{component}"
        return f"{self.registry}/agent-fleet-{component}"


T = TypeVar("T")
D = TypeVar("D")


def _text(raw: Mapping[str, str | None], key: str) -> str | None:
    """A scalar setting's text; an empty or blank string (the project's default for optional keys) is unset."""
    return blank_is_unset(raw.get(key))


def _read(raw: Mapping[str, str | None], key: str, parse: Callable[[str], T], default: D) -> T | D:
    """The parsed value of `key`, or `default` when it is blank; a refused value becomes a StackConfigError."""
    return parse_or_refuse(_text(raw, key), parse, default, partial(_refusal, key))


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


def _merge_queue_limits(raw: Mapping[str, str | None]) -> MergeQueueLimits:
    key = "mergeQueueLimits"
    example = '{"checkTimeoutMinutes": 30, "maxEntriesToMerge": 3}'
    value = _json(raw, key, example)
    if value is None:
        return MergeQueueLimits()
    if not isinstance(value, dict):
        raise _error(key, value, f"it must be an object like {example}")
    numbers: dict[str, int] = {}
    for name, number in value.items():
        if name not in MERGE_QUEUE_LIMIT_KEYS:
            known = ", ".join(MERGE_QUEUE_LIMIT_KEYS)
            raise _error(f"{key}.{name}", number, f"it is not a merge queue limit; use one of {known}")
        field_name, minimum, maximum = MERGE_QUEUE_LIMIT_KEYS[name]
        try:
            numbers[field_name] = whole_number(number, minimum=minimum, maximum=maximum,
                                               example=getattr(MergeQueueLimits(), field_name))
        except ValueProblem as problem:
            raise _refusal(f"{key}.{name}", number, problem) from None
    limits = MergeQueueLimits(**numbers)
    if limits.min_entries_to_merge > limits.max_entries_to_merge:
        raise _error(f"{key}.minEntriesToMerge", limits.min_entries_to_merge,
                     f"it is more than maxEntriesToMerge ({limits.max_entries_to_merge}); lower it or raise that")
    return limits


def _count_limit(raw: Mapping[str, str | None], key: str, variable: Count) -> int:
    """A fleet limit: the key the coordinator's `variable` reads, with its default and limits."""
    return _read(raw, key, variable.parse, variable.default)


# A registry host (a dot, a port or localhost, as Docker tells a registry from a Docker Hub namespace), then
# optional path components; lower case, as Docker requires of repository names.
_REGISTRY = re.compile(
    r"(?:localhost|[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+|"
    r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?=:))(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}")


def parse_registry(raw: str) -> str:
    example = "ghcr.io/acme, registry.example.com:5000 or docker.io/acme"
    if not _REGISTRY.fullmatch(raw) or len(raw) > 200:
        raise ValueProblem(
            "is not a registry", f"use the registry's host, with its port and a namespace if any, like {example}"
        )
    return raw


def parse_username(raw: str) -> str:
    if not _USERNAME.fullmatch(raw):
        raise ValueProblem("is not a user name", "use the registry account's name, like fleet-bot")
    return raw


def parse_agent_secret_names(raw: str | None) -> tuple[str, ...]:
    """The names in `agentSecrets` (a JSON object NAME -> value), checked; values are checked, never kept or shown.

    The coordinator reads the same object back from AGENT_SECRETS_FILE by the same rule
    (coordinator.fleet.agent_secrets).
    """
    key = "agentSecrets"
    fix = "set each secret with `pulumi config set --secret --path 'agentSecrets.NAME' VALUE`"
    if blank_is_unset(raw) is None:
        return ()
    assert raw is not None
    try:
        value = load_json(raw)
    except ValueProblem as problem:
        # The text itself is never quoted: it holds the secrets.
        raise StackConfigError(f"{NAMESPACE}:{key} is not a JSON object of NAME: value: it {problem.reason}; {fix}") \
            from None
    try:
        return tuple(sorted(agent_secrets(value)))
    except SecretsFault as fault:
        if fault.kind == "object":
            raise StackConfigError(f"{NAMESPACE}:{key} is not a JSON object of NAME: value; {fix}") from None
        if fault.kind == "name":
            raise StackConfigError(
                f"{NAMESPACE}:{key}.{fault.name} is not a secret's name: use A-Z, 0-9 and _, starting with a letter, "
                f"at most {MAX_SECRET_NAME_CHARS} characters (each agent receives it as the file /run/secrets/<NAME>); "
                f"remove it with `pulumi config rm --path '{key}.{fault.name}'`"
            ) from None
        if fault.kind == "short":
            raise StackConfigError(
                f"{NAMESPACE}:{key}.{fault.name} is shorter than {MIN_SECRET_CHARS} characters, too short to be a "
                "secret (scrubbing it from the fleet's output would blank ordinary text); set its real key or token "
                f"with `pulumi config set --secret --path '{key}.{fault.name}' VALUE`, or remove it with "
                f"`pulumi config rm --path '{key}.{fault.name}'`"
            ) from None
        if fault.kind == "large":
            raise StackConfigError(
                f"{NAMESPACE}:{key}.{fault.name} is larger than {MAX_AGENT_SECRET_BYTES} bytes, the most an agent "
                f"secret may hold; set its real key or token with `pulumi config set --secret --path "
                f"'{key}.{fault.name}' VALUE`, or remove it with `pulumi config rm --path '{key}.{fault.name}'`"
            ) from None
        raise StackConfigError(
            f"{NAMESPACE}:{key}.{fault.name} holds no usable text (not a string, empty, or holding a NUL); {fix}"
        ) from None


def check_github_token(raw: str | None) -> None:
    """`githubToken` long enough to be a token (the coordinator refuses a shorter one too); its value never shown.
    An unset one is refused when the secrets are read (githubApp may stand in for it)."""
    if raw is not None and raw.strip() and len(raw.strip()) < MIN_SECRET_CHARS:
        raise StackConfigError(
            f"{NAMESPACE}:githubToken is shorter than {MIN_SECRET_CHARS} characters, too short to be a token "
            "(scrubbing it from the coordinator's output would blank ordinary text); set the whole token with "
            "`pulumi config set --secret githubToken`"
        )


def parse_github_identities(raw: str | None) -> tuple[tuple[str, str], ...] | None:
    """The names and kinds in `githubIdentities` (name -> {"token"} or {"appId", "installationId", "privateKey"}),
    checked by the coordinator's rule; no value is kept or shown. None when unset."""
    key = "githubIdentities"
    fix = (f"set each with `pulumi config set --secret --path '{key}.NAME.token' TOKEN`, or for an App "
           f"`--path '{key}.NAME.appId' N`, `'{key}.NAME.installationId' N` and `'{key}.NAME.privateKey' < key.pem`")
    if blank_is_unset(raw) is None or (raw or "").strip() == "{}":
        return None
    assert raw is not None
    try:
        value = load_json(raw)
    except ValueProblem as problem:
        raise StackConfigError(f"{NAMESPACE}:{key} is not a JSON object of name: identity: it {problem.reason}; "
                               f"{fix}") from None
    try:
        checked = check_identities(value, STACK_APP_KEYS)
    except IdentityFault as fault:  # worded without the value
        where = f"{NAMESPACE}:{key}.{fault.name}" if fault.name else f"{NAMESPACE}:{key}"
        raise StackConfigError(f"{where} {fault.what}; {fix}") from None
    return tuple((name, "token" if "token" in entry else "app") for name, entry in checked.items())


def parse_deploy_app(raw: str | None) -> bool:
    """Whether `githubApp` (the deploy's App: {"appId", "installationId", "privateKey"}) is set, checked."""
    if blank_is_unset(raw) is None or (raw or "").strip() == "{}":
        return False
    assert raw is not None
    fix = ("set it with `pulumi config set --secret --path 'githubApp.appId' N`, `--path 'githubApp.installationId' "
           "N` and `--path 'githubApp.privateKey' < key.pem`")
    try:
        value = load_json(raw)
        entry = check_identity("deploy", value, STACK_APP_KEYS)
    except ValueProblem as problem:
        raise StackConfigError(f"{NAMESPACE}:githubApp is not a JSON object: it {problem.reason}; {fix}") from None
    except IdentityFault as fault:
        raise StackConfigError(f"{NAMESPACE}:githubApp {fault.what}; {fix}") \
            from None
    if "token" in entry:
        raise StackConfigError(f"{NAMESPACE}:githubApp holds a token: put a token in githubToken instead; {fix}")
    return True


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


def parse_stack_config(
    raw: Mapping[str, str | None], roles: Iterable[Role], secrets: SecretsPresent | None = None
) -> StackConfig:
    """Check every key and build the config; `roles` are the roster's, for the per-role maps, the limits and the
    secrets each role lists; `secrets` says which secrets the stack holds (names only)."""
    roster = tuple(roles)
    present = secrets or SecretsPresent()
    known = [role.key for role in roster]
    repository = _read(raw, "repository", parse_repository, None)
    if repository is None:
        raise StackConfigError(
            f"{NAMESPACE}:repository is not set: set the repository the fleet works on with "
            "`pulumi config set repository OWNER/NAME`"
        )
    if repository.lower() in EXAMPLE_REPOSITORIES:
        raise _error(
            "repository", repository,
            "that is the documentation's example, not your repository; set the repository the fleet works on with "
            "`pulumi config set repository OWNER/NAME`",
        )
    health_url = _read(raw, "healthUrl", partial(parse_url, example="https://YOUR-PRODUCTION-HOST/healthz"), None)
    if health_url is not None and _example_host(health_url):
        raise _error(
            "healthUrl", health_url,
            "its host is a documentation example (example.com, .net, .org are reserved: nothing answers there); set "
            "your production's URL with `pulumi config set healthUrl https://HOST/PATH`, or skip the health check "
            "with `pulumi config rm healthUrl`",
        )
    counts = _counts(raw, known)
    config = StackConfig(
        repository=repository,
        schedule=_read(raw, "schedule", cron.validate, DEFAULT_SCHEDULE),
        health_url=health_url,
        agent_image=_read(raw, "agentImage", partial(parse_image, example="ghcr.io/acme/agent:1"), None),
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
        max_spawns_per_hour=_read(raw, "maxSpawnsPerHour", SPAWNS_PER_HOUR.parse, DEFAULT_MAX_SPAWNS_PER_HOUR) or None,
        agent_network=_read(raw, "agentNetwork", parse_network, None),
        healthcheck_interval_seconds=_read(
            raw, "healthcheckIntervalSeconds",
            partial(parse_int, minimum=1, maximum=MAX_HEALTHCHECK_INTERVAL_SECONDS, example=60),
            DEFAULT_HEALTHCHECK_INTERVAL_SECONDS,
        ),
        max_agents_per_role=_count_limit(raw, "maxAgentsPerRole", MAX_AGENTS_PER_ROLE),
        max_agents=_count_limit(raw, "maxAgents", MAX_AGENTS),
        runtime=_read(raw, "runtime", parse_runtime, DEFAULT_RUNTIME),
        registry=_read(raw, "registry", parse_registry, None),
        registry_username=_read(raw, "registryUsername", parse_username, None),
        # The stack serves metrics by default; the coordinator alone does not: the same limits, its own default.
        metrics_port=_read(raw, "metricsPort", METRICS_PORT.parse, DEFAULT_METRICS_PORT),
        merge_queue=_read(raw, "mergeQueue", parse_switch, False),
        merge_queue_limits=_merge_queue_limits(raw),
        require_up_to_date=_read(raw, "requireUpToDate", parse_switch, False),
        secrets=present,
    )
    _check_registry(config)
    # The coordinator refuses a role listing a secret the stack does not hold; so does the program.
    for role, name in unknown_secrets(roster, present.agent_secrets):
        held = ", ".join(present.agent_secrets) or "none"
        raise StackConfigError(
            f"roster.py: role {shown(role)} lists the secret {shown(name)}, but {NAMESPACE}:agentSecrets holds no "
            f"such secret (it holds: {held}); set it with `pulumi config set --secret --path 'agentSecrets.{name}' "
            "VALUE`, or remove it from the role's secrets"
        )
    _check_identities(roster, config)
    # The coordinator refuses a roster over its limits; so does the program, before anything is declared.
    breach = limit_breach(((role.key, config.count_of(role)) for role in roster), config.limits)
    if breach is not None:
        per_role, total = f"{NAMESPACE}:maxAgentsPerRole", f"{NAMESPACE}:maxAgents"
        described = breach.describe(per_role_setting=per_role, total_setting=total)
        if breach.role is not None and breach.role in counts:
            raise _error(f"counts.{breach.role}", breach.count, described)
        if breach.role is not None:
            raise StackConfigError(f"roster.py: {described}")
        raise _error("maxAgents", config.max_agents, described)
    return config


def _check_identities(roster: Sequence[Role], config: StackConfig) -> None:
    """Every role with agents acts as an identity the stack holds, and no Reviewer shares one with a role that opens
    pull requests (GitHub refuses an approval from the pull request's author): the coordinator's own checks."""
    roles = [(role, config.count_of(role)) for role in roster]
    identities = config.identity_kinds
    if config.secrets.identities is not None:
        for role, name in missing_identities(roles, config.agent_identities):
            raise StackConfigError(
                f"roster.py: role {shown(role)} acts on GitHub as the identity {shown(name)}, but "
                f"{NAMESPACE}:githubIdentities holds no such agent identity (it holds: "
                f"{', '.join(config.agent_identities) or 'none'}); set it with `pulumi config set --secret --path "
                f"'githubIdentities.{name}.token' TOKEN` (or an App), or set the role's `identity`"
            )
    shared = shared_reviewer(roles, config.agent_identities if identities else None, config.agent_secret_names)
    if shared is not None:
        raise StackConfigError(f"roster.py: {shared.describe(counts_setting=f'{NAMESPACE}:counts')}")


def coordinator_credential_warning(config: StackConfig) -> str | None:
    """A warning when the running coordinator would merge with the deploy's credential, which holds administration
    (rulesets) that the coordinator never needs at run time."""
    kind = config.coordinator_kind
    if kind not in ("deploy-token", "deploy-app"):
        return None
    held = f"{NAMESPACE}:githubToken" if kind == "deploy-token" else f"{NAMESPACE}:githubApp"
    return (
        f"the running coordinator would merge with {held}, the deploy's credential, which holds administration "
        "(rulesets) it never needs at run time; give it its own with `pulumi config set --secret --path "
        f"'githubIdentities.{COORDINATOR_IDENTITY}.appId' N` (with installationId and privateKey: an App with "
        "contents and pull requests write, checks, statuses and issues read), or a token under "
        f"githubIdentities.{COORDINATOR_IDENTITY}.token (docs/operations.md)"
    )


def _example_host(url: str) -> bool:
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    return any(host == domain or host.endswith("." + domain) for domain in EXAMPLE_DOMAINS)


def _check_registry(config: StackConfig) -> None:
    """The settings that only make sense together: a swarm needs a registry; credentials need both halves."""
    if config.on_swarm and config.registry is None:
        raise _error(
            "registry", None,
            f"{NAMESPACE}:runtime is 'swarm', and every node of a swarm pulls the coordinator's and the agents' "
            "images from a registry; set it with `pulumi config set registry HOST[:PORT][/NAMESPACE]`, or deploy to "
            "one engine with `pulumi config set runtime docker`",
        )
    if config.registry_username is not None and not config.secrets.registry_password:
        raise _error(
            "registryUsername", config.registry_username,
            f"{NAMESPACE}:registryPassword is not set; set it with `pulumi config set --secret registryPassword`, "
            "or remove the user name for a registry without login",
        )
    if config.secrets.registry_password and config.registry_username is None:
        raise StackConfigError(
            f"{NAMESPACE}:registryPassword is set but {NAMESPACE}:registryUsername is not; set the user name with "
            "`pulumi config set registryUsername NAME`, or remove the password with `pulumi config rm registryPassword`"
        )
    if config.registry is None and config.registry_username is not None:
        raise _error(
            "registryUsername", config.registry_username,
            f"{NAMESPACE}:registry is not set, so nothing is pushed; set the registry, or remove the credentials",
        )


# What the reference agent image (agent/Dockerfile, docs/agents.md) exits 78 without: the agent's own GitHub token,
# and the model's key for the default CLI (a Sentinel runs no CLI, so it needs no key).
REFERENCE_AGENT_SECRETS = ("GITHUB_TOKEN", "ANTHROPIC_API_KEY")
MODEL_FREE_MODES = frozenset({Mode.SENTINEL})


def missing_reference_secrets(roles: Iterable[Role], config: StackConfig) -> dict[str, list[str]]:
    """Secret -> the roles that run the reference image without it (their agents would exit 78), to warn about."""
    missing: dict[str, list[str]] = {}
    for role in roles:
        if role_image(role, config) is not None:
            continue
        receives = config.agent_secret_names if role.secrets is None else role.secrets
        if config.agent_identities:  # the role's identity's token is its GITHUB_TOKEN
            receives = (*receives, "GITHUB_TOKEN")
        for name in REFERENCE_AGENT_SECRETS:
            if name == "ANTHROPIC_API_KEY" and role.mode in MODEL_FREE_MODES:
                continue
            if name not in receives:
                missing.setdefault(name, []).append(role.key)
    return missing


def reference_secret_warnings(roles: Iterable[Role], config: StackConfig) -> list[str]:
    """One warning per secret the reference image needs that some of its roles will not receive."""
    warnings = []
    for secret, keys in missing_reference_secrets(roles, config).items():
        named = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
        warnings.append(
            f"the reference agent image needs the agent secret {secret}, which {named} do not receive: their agents "
            f"will exit 78; set it with `pulumi config set --secret --path 'agentSecrets.{secret}' ...`"
        )
    return warnings


def merge_policy_warnings(config: StackConfig) -> list[str]:
    """What `pulumi preview` warns about in the merge settings: a queue or a strict policy with no check to run."""
    warnings = []
    if config.merge_queue and not config.required_checks:
        warnings.append(
            f"{NAMESPACE}:mergeQueue is on but {NAMESPACE}:requiredChecks is empty: the merge queue would merge each "
            "group without testing it; set the checks CI reports (CI must also run on `merge_group` events), e.g. "
            "`pulumi config set --path 'requiredChecks[0]' test`"
        )
    if config.require_up_to_date and not config.required_checks:
        warnings.append(
            f"{NAMESPACE}:requireUpToDate is on but {NAMESPACE}:requiredChecks is empty: GitHub applies the up-to-date "
            "policy only to required checks, so it has no effect; set requiredChecks"
        )
    return warnings


def deploy_summary(roles: Sequence[Role], config: StackConfig, ruleset_name: str) -> str:
    """What `pulumi up` sets going, said where the user decides (the preview): the agents the first cycle starts,
    each a paid model session, under the spawn budget; and the ruleset, in effect on the default branch at once."""
    agents = sum(config.count_of(role) for role in roles)
    cap = config.max_spawns_per_hour
    if cap is None:
        start = (f"the first cycle starts all {agents} at once, and every cycle refills each slot whose agent has "
                 f"exited (maxSpawnsPerHour is 0: no limit; `pulumi config set maxSpawnsPerHour "
                 f"{DEFAULT_MAX_SPAWNS_PER_HOUR}` caps it)")
    else:
        first = min(cap, agents)
        start = (f"at most {cap} start in any hour (maxSpawnsPerHour), so the first cycle starts {first} and the "
                 f"rest wait, their roles short (the verdict says degraded) until the budget allows; "
                 f"`pulumi config set maxSpawnsPerHour 0` lifts the cap: all {agents} at once, and then one session "
                 "for every agent that exits")
    checks = f", and the checks {', '.join(config.required_checks)} to pass" if config.required_checks else ""
    checks += ", through GitHub's merge queue" if config.merge_queue else ""
    return (
        f"this stack runs {agents} agents in {len(roles)} roles of {config.repository}, each agent a model session "
        f"that costs money: {start}. The ruleset {ruleset_name!r} takes effect on the default branch at once, for "
        f"people too: changes only through pull requests, squash merges only, one approving review{checks}."
    )


def role_image(role: Role, config: StackConfig) -> str | None:
    """The image a role's agents run as the stack sets it: `images.<role>`, else `agentImage`; None: the image the
    program builds."""
    return config.images.get(role.key, config.agent_image)


def resolve_roster(
    roles: Sequence[Role], config: StackConfig, built_agent_image: str | None = None
) -> tuple[RoleSpec, ...]:
    """The roster as this stack deploys it: the stack's counts override, each role gets its image
    (`built_agent_image`, the reference image the program built, for a role the stack names none for)."""
    specs = []
    for role in roles:
        image = role_image(role, config) or built_agent_image
        if image is None:
            raise ValueError(f"role {role.key!r} has no image: set agentImage, or pass the built agent image")
        specs.append(RoleSpec(role=replace(role, count=config.count_of(role)), image=image))
    return tuple(specs)


def fleet_id(project: str, stack: str, runtime: str = DEFAULT_RUNTIME) -> str:
    """`<project>-<stack>`: the label value that keeps two stacks on one Docker host apart.

    Checked as the coordinator checks FLEET_ID on the stack's runtime, since the program hands it over as exactly that.
    """
    value = f"{project}-{stack}"
    try:
        return parse_swarm_fleet_id(value) if runtime == SWARM_RUNTIME else parse_fleet_id(value)
    except ValueProblem as problem:
        raise StackConfigError(
            f"fleet id {shown(value)} (<project>-<stack>) {problem.reason}; rename the stack (or the project)"
        ) from None
