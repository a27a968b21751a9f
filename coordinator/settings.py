"""The coordinator's settings, read once from the environment.

Every variable is declared once, as a typed record from `coordinator.values` (`Count`, `Seconds`, `Names`, `Url`,
`Text`: name, meaning, default, limits, parser; `Documented` for those read by a loader of their own), listed in
`DECLARED`. `VARIABLES` (the help text, and docs/configuration.md's table through scripts/reference) and the
readers, the stack's too where it reads the same value, are rendered from these declarations.
Every variable is read through one accessor, `env_value`, in which an empty or blank value means
unset, so each variable's default also applies to "" (what Docker Compose's `${VAR}` gives for an
unset VAR). Every variable that is set is checked, whether or not its step will run.

Bad values raise `ConfigError` (exit 2), whose message names the variable, quotes the value through
`redact.shown` (no credential, no query string) and says the fix. The value parsers are shared with
the Pulumi side (`coordinator.values`, `coordinator.cron`); this module only names the variables.
Absent optional groups (GitHub, health) are `None`: the step that needs them reports itself
skipped with the reason, which is not a failure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, overload

from coordinator import cron
from coordinator.fleet import (
    BLOCKING_LABEL,
    DEFAULT_BLOCKING_LABELS,
    DEFAULT_FLEET_ID,
    DEFAULT_MAX_AGENTS,
    DEFAULT_MAX_AGENTS_PER_ROLE,
    MAX_AGENT_SECRET_BYTES,
    MAX_AGENTS_CEILING,
    MAX_AGENTS_PER_ROLE_CEILING,
    MAX_ROSTER_BYTES,
    FleetLimits,
    RoleSpec,
    RosterError,
    SecretsFault,
    agent_secrets,
    limit_breach,
    require_blocking_labels,
    roster_from_json,
    unknown_secrets,
)
from coordinator.identities import (
    FILE_APP_KEYS,
    AppIdentity,
    Identity,
    IdentityFault,
    TokenIdentity,
    check_identities,
    check_identity,
    missing_identities,
    shared_reviewer,
)
from coordinator.redact import MIN_SECRET_CHARS, Secret, scrub, shown
from coordinator.values import (
    DEFAULT_RUNTIME,
    MAX_FLEET_ID_CHARS,
    SWARM_RUNTIME,
    Count,
    Declared,
    Documented,
    Names,
    Seconds,
    SecondsDefault,
    Text,
    Url,
    ValueProblem,
    ascii_digits,
    blank_is_unset,
    load_json,
    parse_fleet_id,
    parse_list,
    parse_network,
    parse_or_refuse,
    parse_repository,
    parse_runtime,
    parse_swarm_fleet_id,
    parse_switch,
    repository_parts,
)

DEFAULT_SCHEDULE = cron.DEFAULT_SCHEDULE
DEFAULT_GITHUB_API_URL = "https://api.github.com"
# The state files' folder (the heartbeat, the exit and API-version memos beside it), one per fleet: two fleets run
# on one machine (a try-out beside a test, say) must not read each other's.
STATE_ROOT = Path("/tmp/agent-fleet")
DEFAULT_HEARTBEAT_FILE = "/tmp/agent-fleet/<FLEET_ID>/heartbeat.json"


def default_heartbeat_file(fleet_id: str) -> Path:
    return STATE_ROOT / fleet_id / "heartbeat.json"

DEFAULT_HEALTH_EXPECT = "200-399"
DEFAULT_AGENT_NETWORK = "bridge"
DEFAULT_GITHUB_SERVER_URL = "https://github.com"
# The port of /metrics when served: the stack's default (metricsPort) and FleetMetrics.serve's. The coordinator
# alone serves none until COORDINATOR_METRICS_PORT names one.
DEFAULT_METRICS_PORT = 9464

# The documented maxima of the numbers of seconds: a larger value is a typo, not a wish.
MAX_CYCLE_TIMEOUT_S = 24 * 3600.0  # also the cap of the default, one schedule interval
MAX_HEALTH_TIMEOUT_S = 300.0
DEFAULT_BACKOFF_S = 60.0
MAX_BACKOFF_S = 24 * 3600.0
DEFAULT_BACKOFF_MAX_S = 3600.0
MAX_BACKOFF_MAX_S = 7 * 24 * 3600.0
DEFAULT_NODE_LOST_S = 300.0
MAX_NODE_LOST_S = 24 * 3600.0
# And of the counts.
MAX_MERGES_PER_CYCLE = 500  # GitHub's secondary limit: 500 content-creating requests an hour
# 40 a cycle under the default */5 schedule is at most 480 merges an hour, inside that limit.
DEFAULT_MERGES_PER_CYCLE = 40
# Under the up-to-date policy, one branch update a cycle: each merge makes every other pull request behind
# again, so updating more at once mostly spends CI on heads that are stale by the time they are green.
DEFAULT_UPDATES_PER_CYCLE = 1
MAX_UPDATES_PER_CYCLE = 100
DEFAULT_SPAWN_CONCURRENCY = 8
MAX_SPAWN_CONCURRENCY = 100
MAX_SPAWNS_PER_HOUR = 100_000
# A token file is a few dozen bytes; anything much bigger is the wrong file.
MAX_TOKEN_FILE_BYTES = 64 * 1024
# The agents' secrets file: a handful of tokens and keys.
MAX_AGENT_SECRETS_FILE_BYTES = 1024 * 1024

DEFAULT_HEALTH_TIMEOUT_S = 10.0
_CEILING_HINT = " (the ceiling for any fleet)"

# The numeric variables, each declared once (`Count`, `Seconds`): VARIABLES' text and the readers, the stack's
# too where it reads the same number, are rendered from these.
MAX_AGENTS_PER_ROLE = Count("FLEET_MAX_AGENTS_PER_ROLE", "Most agents one role may ask for.",
                            DEFAULT_MAX_AGENTS_PER_ROLE, MAX_AGENTS_PER_ROLE_CEILING, maximum_hint=_CEILING_HINT)
MAX_AGENTS = Count("FLEET_MAX_AGENTS", "Most agents the whole roster may ask for.", DEFAULT_MAX_AGENTS,
                   MAX_AGENTS_CEILING, maximum_hint=_CEILING_HINT)
CYCLE_TIMEOUT = Seconds("COORDINATOR_CYCLE_TIMEOUT_S", "Time limit of one cycle under `schedule`, seconds.", None,
                        MAX_CYCLE_TIMEOUT_S, example="300", derived_default="one schedule interval")
METRICS_PORT = Count("COORDINATOR_METRICS_PORT",
                     "Port `schedule` serves Prometheus metrics on, at /metrics on every interface.", 0, 65535,
                     minimum=0, example=DEFAULT_METRICS_PORT, off="no metrics are served")
MERGES_PER_CYCLE = Count("MERGE_MAX_PER_CYCLE", "Most pull requests merged in one cycle.", DEFAULT_MERGES_PER_CYCLE,
                         MAX_MERGES_PER_CYCLE, maximum_note=" (GitHub allows about 500 merges an hour)")
UPDATES_PER_CYCLE = Count("MERGE_UPDATES_PER_CYCLE", "With MERGE_REQUIRE_UP_TO_DATE, most pull requests brought up "
                          "to date per cycle, oldest approval first.", DEFAULT_UPDATES_PER_CYCLE, MAX_UPDATES_PER_CYCLE)
HEALTH_TIMEOUT = Seconds("HEALTH_TIMEOUT_S", "Time budget of the health check, seconds.", DEFAULT_HEALTH_TIMEOUT_S,
                         MAX_HEALTH_TIMEOUT_S)
SPAWNS_PER_HOUR = Count("FLEET_MAX_SPAWNS_PER_HOUR", "Fleet-wide spawn budget per rolling hour.", 0,
                        MAX_SPAWNS_PER_HOUR, minimum=0, example=60, off="no budget")
SPAWN_CONCURRENCY = Count("SPAWN_CONCURRENCY", "Most agent spawns in flight at once.", DEFAULT_SPAWN_CONCURRENCY,
                          MAX_SPAWN_CONCURRENCY)
CRASH_BACKOFF = Seconds("AGENT_CRASH_BACKOFF_S", "First wait before respawning a slot whose agent crashed; doubles "
                        "per crash.", DEFAULT_BACKOFF_S, MAX_BACKOFF_S)
CRASH_BACKOFF_MAX = Seconds("AGENT_CRASH_BACKOFF_MAX_S", "Longest crash-loop wait, seconds.", DEFAULT_BACKOFF_MAX_S,
                            MAX_BACKOFF_MAX_S)
NODE_LOST = Seconds("AGENT_NODE_LOST_S", "Swarm: seconds a node may be unreachable before its agents' slots are "
                    "filled elsewhere.", DEFAULT_NODE_LOST_S, MAX_NODE_LOST_S)
# The list variables, each declared once (`Names`) in the same way.
REQUIRED_CHECKS = Names("REQUIRED_CHECKS", "Comma-separated check or status names that must be present and successful.",
                        "check", "test,lint")
BLOCKING_LABELS = Names("MERGE_BLOCKING_LABELS", "Comma-separated labels that block a merge.", "label",
                        f"{BLOCKING_LABEL},hold", default=DEFAULT_BLOCKING_LABELS)
BACKLOG_LABELS = Names("BACKLOG_LABELS", "Comma-separated labels of issues that wait for builders, counted besides "
                       "each Task-driven role's own role:<key> label for the advice to raise builder counts.", "label",
                       "feature,bug")
PLACEMENT = Names("AGENT_PLACEMENT", "Swarm: comma-separated placement constraints for agent services, e.g. "
                  "node.role==worker.", "constraint", "node.role==worker")
# The URL variables, each declared once (`Url`); an error quotes their values as URLs (`URL_VARIABLES`).
GITHUB_API_URL = Url("GITHUB_API_URL", f"REST base URL. Default {DEFAULT_GITHUB_API_URL}; GitHub Enterprise: "
                     "https://HOST/api/v3.", "https://ghe.example.com/api/v3")
GITHUB_GRAPHQL_URL = Url("GITHUB_GRAPHQL_URL", "GraphQL URL. Default derived: .../api/v3 -> .../api/graphql, "
                         "otherwise <api>/graphql.", "https://ghe.example.com/api/graphql")
HEALTH_URL = Url("HEALTH_URL", "Production URL to GET. Unset: the health step is skipped.",
                 "https://example.com/healthz")
GITHUB_SERVER_URL = Url("GITHUB_SERVER_URL", "Where agents clone from, told to them as GITHUB_SERVER_URL. Default "
                        "derived from GITHUB_API_URL: https://api.github.com -> https://github.com, "
                        "https://HOST/api/v3 -> https://HOST.", "https://ghe.example.com")

# Settings whose values are URLs: an error quotes them without userinfo, query or fragment at all.
URL_VARIABLES = frozenset(url.name for url in (GITHUB_API_URL, GITHUB_GRAPHQL_URL, HEALTH_URL, GITHUB_SERVER_URL))
# The identities file: a few tokens and App keys (a PEM key is under 4 KiB).
MAX_IDENTITIES_FILE_BYTES = 1024 * 1024


def parse_expect(raw: str) -> tuple[tuple[int, int], ...]:
    """'200-399' or '200,204,301-302' -> ranges; raises ValueProblem on anything else."""
    fix = f"use status codes and ranges like {DEFAULT_HEALTH_EXPECT} or 200,204"
    ranges: list[tuple[int, int]] = []
    for part in parse_list(raw, what="status code", example="200,204"):
        low_text, _, high_text = part.partition("-")
        low = ascii_digits(low_text.strip())
        high = ascii_digits(high_text.strip()) if high_text else low
        if low is None or high is None:
            raise ValueProblem("is not a list of status codes", fix)
        if not 100 <= low <= high <= 599:
            raise ValueProblem(f"has the range {low}-{high}, outside 100-599 or backwards", fix)
        ranges.append((low, high))
    return tuple(ranges)


# The rest, each declared once: those parsed by a parser of their own kind (`Text`), and those read by a loader of
# their own or by the Docker SDK (`Documented`).
FLEET_ID = Text("FLEET_ID", "Fleet id; every agent carries the label agent-fleet.fleet=<id>. Default "
                f"{DEFAULT_FLEET_ID}. ASCII letters, digits, '_', '.', '-' ('.' not on a swarm); at most "
                f"{MAX_FLEET_ID_CHARS} characters.", parse_fleet_id, DEFAULT_FLEET_ID)
ROSTER_FILE = Documented("FLEET_ROSTER_FILE", "Path of the roster JSON file (UTF-8, at most 1 MiB; its fields: the "
                         "roster file, below). Unset: the reconcile step is skipped.")
SCHEDULE = Text("COORDINATOR_SCHEDULE", "Cron expression for `schedule` (5 fields, or 6 with seconds last); must fire "
                f"at least twice in two years. Default {DEFAULT_SCHEDULE}", cron.validate, DEFAULT_SCHEDULE)
HEARTBEAT_FILE = Documented("COORDINATOR_HEARTBEAT_FILE", "Written after each finished cycle for the health check. "
                            f"Default {DEFAULT_HEARTBEAT_FILE}")
REPOSITORY = Text("GITHUB_REPOSITORY", "owner/name of the repository. Unset: the merge step is skipped.",
                  parse_repository, None)
TOKEN = Documented("GITHUB_TOKEN", "Token for the merge step (or GITHUB_TOKEN_FILE, a file holding it); at least "
                   f"{MIN_SECRET_CHARS} characters.")
TOKEN_FILE = Documented("GITHUB_TOKEN_FILE", "Path of a file holding the token; used when GITHUB_TOKEN is unset.")
APP_FILE = Documented("GITHUB_APP_FILE", 'Path of a JSON object {"app_id": N, "installation_id": N, "private_key": '
                      '"<PEM>"}: the GitHub App the merge step acts as, with a token minted each cycle for the '
                      "repository alone; used instead of GITHUB_TOKEN.")
REQUIRE_UP_TO_DATE = Text("MERGE_REQUIRE_UP_TO_DATE", "true when the default branch's ruleset requires branches to be "
                          "up to date (the stack's requireUpToDate): pull requests that are eligible but behind are "
                          "then brought up to date (PUT .../update-branch), MERGE_UPDATES_PER_CYCLE a cycle. Default "
                          "false: the coordinator never updates a branch.", parse_switch, False)
HEALTH_EXPECT = Text("HEALTH_EXPECT", "Status codes that count as up, e.g. 200-399 or 200,204. Default "
                     f"{DEFAULT_HEALTH_EXPECT}.", parse_expect, parse_expect(DEFAULT_HEALTH_EXPECT))
NETWORK = Text("AGENT_NETWORK", "Docker network mode of agent containers (bridge, host, or a network name). "
               f"Default {DEFAULT_AGENT_NETWORK}.", parse_network, DEFAULT_AGENT_NETWORK)
RUNTIME = Text("FLEET_RUNTIME", "Where agents run: docker (one engine) or swarm (a Docker Swarm, through a manager). "
               f"Default {DEFAULT_RUNTIME}.", parse_runtime, DEFAULT_RUNTIME)
SECRETS_FILE = Documented(
    "AGENT_SECRETS_FILE", "Path of a JSON object {NAME: value} of the agents' secrets; each agent receives its "
    "role's (all, unless the role lists `secrets`) as files /run/secrets/<NAME>. Each value "
    f"{MIN_SECRET_CHARS} characters to {MAX_AGENT_SECRET_BYTES // 1024} KiB of UTF-8; the file at most "
    f"{MAX_AGENT_SECRETS_FILE_BYTES // 1024 // 1024} MiB. Unset: agents receive none.")
IDENTITIES_FILE = Documented(
    "AGENT_IDENTITIES_FILE", "Path of a JSON object {name: identity} of the agents' GitHub identities: "
    '{"token": ...} or {"app_id": N, "installation_id": N, "private_key": "<PEM>"}. Each agent receives its role\'s '
    "identity's token as /run/secrets/GITHUB_TOKEN (an App's minted at each spawn, narrowed to the repository and "
    "the mode's permissions). Unset: agents receive the GITHUB_TOKEN agent secret, if any.")
DOCKER_HOST = Documented("DOCKER_HOST", "The Docker SDK's own setting for the engine to talk to.")
DOCKER_CONFIG = Documented(
    "DOCKER_CONFIG", "The Docker SDK's own setting: a folder whose config.json holds registry credentials, sent with "
    "each pull and (on a swarm) each agent service, so nodes can pull agent images from a private registry.")
DOCKER_API_VERSION = Documented(
    "DOCKER_API_VERSION", "Pins the Docker API version (e.g. 1.41). Unset, the first cycle asks the engine and the "
    "answer is remembered beside the heartbeat (engine.json), asked again if the engine refuses it.")

# Every variable, in the order the reference lists them: the single list of the runtime's interface.
DECLARED: tuple[Declared, ...] = (
    FLEET_ID, ROSTER_FILE, MAX_AGENTS_PER_ROLE, MAX_AGENTS, SCHEDULE, CYCLE_TIMEOUT, HEARTBEAT_FILE, METRICS_PORT,
    REPOSITORY, TOKEN, TOKEN_FILE, APP_FILE, GITHUB_API_URL, GITHUB_GRAPHQL_URL, REQUIRED_CHECKS, BLOCKING_LABELS,
    MERGES_PER_CYCLE, REQUIRE_UP_TO_DATE, UPDATES_PER_CYCLE, HEALTH_URL, HEALTH_TIMEOUT, HEALTH_EXPECT,
    SPAWNS_PER_HOUR, SPAWN_CONCURRENCY, CRASH_BACKOFF, CRASH_BACKOFF_MAX, NETWORK, RUNTIME, NODE_LOST, PLACEMENT,
    SECRETS_FILE, IDENTITIES_FILE, GITHUB_SERVER_URL, BACKLOG_LABELS, DOCKER_HOST, DOCKER_CONFIG, DOCKER_API_VERSION,
)
# name -> what it means, rendered from the declarations; `env_value` reads no other name.
VARIABLES: dict[str, str] = {variable.name: variable.doc for variable in DECLARED}


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable. Exit code 2."""


@dataclass(frozen=True)
class GitHubSettings:
    repository: str
    token: Secret | None  # None: minted from `app` at the start of each merge step (`with_token`)
    api_url: str
    graphql_url: str
    required_checks: tuple[str, ...] = ()
    blocking_labels: tuple[str, ...] = BLOCKING_LABELS.default
    max_merges_per_cycle: int = DEFAULT_MERGES_PER_CYCLE
    backlog_labels: tuple[str, ...] = ()  # BACKLOG_LABELS, besides the Task-driven roles' own labels
    require_up_to_date: bool = False  # MERGE_REQUIRE_UP_TO_DATE
    updates_per_cycle: int = DEFAULT_UPDATES_PER_CYCLE
    app: AppIdentity | None = None  # GITHUB_APP_FILE: the coordinator's own App

    def __post_init__(self) -> None:
        if self.token is None and self.app is None:
            raise ValueError("GitHubSettings needs a token or an App")
        require_blocking_labels(self.blocking_labels)

    @property
    def owner(self) -> str:
        return repository_parts(self.repository)[0]

    @property
    def name(self) -> str:
        return repository_parts(self.repository)[1]


@dataclass(frozen=True)
class HealthSettings:
    url: str
    timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S
    expect: tuple[tuple[int, int], ...] = HEALTH_EXPECT.default

    def expects(self, code: int) -> bool:
        return any(low <= code <= high for low, high in self.expect)


@dataclass(frozen=True)
class SpawnSettings:
    max_spawns_per_hour: int | None = None
    concurrency: int = DEFAULT_SPAWN_CONCURRENCY
    network: str = DEFAULT_AGENT_NETWORK
    backoff_base_s: float = DEFAULT_BACKOFF_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S




@dataclass(frozen=True)
class RuntimeSettings:
    kind: str = DEFAULT_RUNTIME
    node_lost_s: float = DEFAULT_NODE_LOST_S
    placement: tuple[str, ...] = ()
    # The Docker runtime's memo of exited agents' ends, beside the heartbeat (see runtimes/docker.py ExitMemo).
    exit_memo_file: Path | None = None
    # The engine's API version, beside the heartbeat too (see runtimes/engine.py ApiVersionMemo).
    api_version_file: Path | None = None


@dataclass(frozen=True)
class Settings:
    fleet_id: str = DEFAULT_FLEET_ID
    roster: tuple[RoleSpec, ...] | None = None
    repository: str | None = None  # told to every agent, even when the merge step is skipped
    schedule: str = DEFAULT_SCHEDULE
    cycle_timeout_s: float | None = None
    heartbeat_file: Path = STATE_ROOT / DEFAULT_FLEET_ID / "heartbeat.json"  # default_heartbeat_file's
    metrics_port: int | None = None  # COORDINATOR_METRICS_PORT; None: no metrics served
    github: GitHubSettings | None = None
    health: HealthSettings | None = None
    spawn: SpawnSettings = field(default_factory=SpawnSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    limits: FleetLimits = field(default_factory=FleetLimits)
    # What agents are told of GitHub, whether or not the merge step runs.
    github_api_url: str = DEFAULT_GITHUB_API_URL
    github_server_url: str = DEFAULT_GITHUB_SERVER_URL
    agent_secrets: Mapping[str, Secret] = field(default_factory=dict)
    # AGENT_IDENTITIES_FILE: the agents' GitHub identities by name; empty: the GITHUB_TOKEN agent secret, if any.
    agent_identities: Mapping[str, Identity] = field(default_factory=dict)
    # Why a step is skipped, by step name, for the steps whose settings are absent.
    skipped: Mapping[str, str] = field(default_factory=dict)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, so that output can be scrubbed of them as a last line of defence."""
        token = tuple(secret.reveal() for secret in (
            self.github.token if self.github else None,
            self.github.app.private_key if self.github and self.github.app else None) if secret is not None)
        identities = tuple(
            (identity.token if isinstance(identity, TokenIdentity) else identity.private_key).reveal()
            for identity in self.agent_identities.values()
        )
        return token + tuple(secret.reveal() for secret in self.agent_secrets.values()) + identities


# --- reading ---------------------------------------------------------------------------------------

T = TypeVar("T")
D = TypeVar("D")


def env_value(env: Mapping[str, str], name: str) -> str | None:
    """THE way a variable is read: its stripped text, or None when it is unset, empty or blank.

    Only names in VARIABLES may be read, so that list stays the complete, documented interface.
    """
    if name not in VARIABLES:
        raise KeyError(f"{name} is not in coordinator.settings.VARIABLES; document it there before reading it")
    return blank_is_unset(env.get(name))


def refusal(name: str, raw: object, reason: str, fix: str) -> ConfigError:
    """`NAME='value' <reason>; <fix>`, the value quoted through the scrubber."""
    return ConfigError(f"{name}={shown(raw, url=name in URL_VARIABLES)} {reason}; {fix}")


def _read(env: Mapping[str, str], name: str, parse: Callable[[str], T], default: D) -> T | D:
    """The parsed value of `name`, or `default` when it is blank; a refused value becomes a ConfigError."""
    return parse_or_refuse(
        env_value(env, name), parse, default, lambda raw, problem: refusal(name, raw, problem.reason, problem.fix)
    )


@overload
def _declared(env: Mapping[str, str], variable: Count) -> int: ...
@overload
def _declared(env: Mapping[str, str], variable: Seconds[SecondsDefault]) -> float | SecondsDefault: ...
@overload
def _declared(env: Mapping[str, str], variable: Names) -> tuple[str, ...]: ...
@overload
def _declared(env: Mapping[str, str], variable: Url) -> str | None: ...
@overload
def _declared(env: Mapping[str, str], variable: Text[T, D]) -> T | D: ...
def _declared(
    env: Mapping[str, str], variable: Count | Seconds[SecondsDefault] | Names | Url | Text[T, D]
) -> object:  # the overloads above say which type each kind of declaration gives
    """A declared variable, read as its declaration says."""
    return _read(env, variable.name, variable.parse, variable.default)


def known_secrets(env: Mapping[str, str]) -> tuple[str, ...]:
    """Every secret the environment holds, read leniently: for scrubbing an error, even about bad settings."""
    found = [env.get("GITHUB_TOKEN", "").strip()]
    token_file = env.get("GITHUB_TOKEN_FILE", "").strip()
    if token_file:
        try:
            with open(token_file, "rb") as file:
                found.append(file.read(MAX_TOKEN_FILE_BYTES).decode("utf-8", errors="replace").strip())
        except OSError:
            pass
    secrets_file = env.get("AGENT_SECRETS_FILE", "").strip()
    if secrets_file:
        try:
            with open(secrets_file, "rb") as file:
                loaded = json.loads(file.read(MAX_AGENT_SECRETS_FILE_BYTES))
            if isinstance(loaded, dict):
                found += [value for value in loaded.values() if isinstance(value, str)]
        except (OSError, ValueError, RecursionError):
            pass
    for identities_file, single in ((env.get("AGENT_IDENTITIES_FILE", "").strip(), False),
                                    (env.get("GITHUB_APP_FILE", "").strip(), True)):
        if not identities_file:
            continue
        try:
            with open(identities_file, "rb") as file:
                loaded = json.loads(file.read(MAX_IDENTITIES_FILE_BYTES))
            if single:
                loaded = {"coordinator": loaded}
            for entry in loaded.values() if isinstance(loaded, dict) else ():
                if isinstance(entry, dict):
                    found += [str(value).strip() for key, value in entry.items()
                              if key in ("token", "private_key") and isinstance(value, str)]
        except (OSError, ValueError, RecursionError):
            pass
    return tuple(secret for secret in found if secret)


def derive_graphql_url(api_url: str) -> str:
    """GitHub: https://api.github.com -> /graphql; GitHub Enterprise: https://HOST/api/v3 -> /api/graphql."""
    base = api_url.rstrip("/")
    if base.endswith("/api/v3"):
        return base[: -len("/v3")] + "/graphql"
    return base + "/graphql"




def _read_file(name: str, path: str, limit: int, what: str) -> bytes:
    """A file named by a variable, read whole up to `limit` bytes; a larger or unreadable file is refused."""
    try:
        with open(path, "rb") as file:
            data = file.read(limit + 1)
    except OSError as exc:
        raise refusal(name, path, f"cannot be read ({exc.strerror or exc})", f"point it at {what}") from None
    if len(data) > limit:
        raise refusal(name, path, f"is larger than {limit} bytes", f"point it at {what}")
    return data


def _load_roster(env: Mapping[str, str], limits: FleetLimits) -> tuple[RoleSpec, ...] | None:
    path = env_value(env, "FLEET_ROSTER_FILE")
    if path is None:
        return None
    data = _read_file("FLEET_ROSTER_FILE", path, MAX_ROSTER_BYTES, "the roster JSON")
    try:
        roster = roster_from_json(data)
    except RosterError as exc:
        raise ConfigError(f"FLEET_ROSTER_FILE={shown(path)}: {exc}") from None
    # Refused before anything is planned: a count of a million would otherwise cost `plan` a minute.
    breach = limit_breach(((spec.key, spec.role.count) for spec in roster), limits)
    if breach is not None:
        raise ConfigError(
            f"FLEET_ROSTER_FILE={shown(path)}: "
            + breach.describe(per_role_setting="FLEET_MAX_AGENTS_PER_ROLE", total_setting="FLEET_MAX_AGENTS")
        )
    return roster


def _load_token(env: Mapping[str, str]) -> str | None:
    token = env_value(env, "GITHUB_TOKEN")
    if token is not None:
        if len(token) < MIN_SECRET_CHARS:
            raise ConfigError(f"GITHUB_TOKEN {_SHORT_TOKEN}; set it to the whole token")
        return token
    path = env_value(env, "GITHUB_TOKEN_FILE")
    if path is None:
        return None
    data = _read_file("GITHUB_TOKEN_FILE", path, MAX_TOKEN_FILE_BYTES, "a file holding only the token")
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise refusal(
            "GITHUB_TOKEN_FILE", path, f"is not UTF-8 text (byte {exc.start})", "write only the token into it"
        ) from None
    if not token:
        raise refusal("GITHUB_TOKEN_FILE", path, "is empty", "write the token into it")
    if len(token) < MIN_SECRET_CHARS:
        raise refusal("GITHUB_TOKEN_FILE", path, _SHORT_TOKEN, "write the whole token into it")
    return token


# Why a token is refused by its length; the value itself is never quoted.
_SHORT_TOKEN = (f"holds a token shorter than {MIN_SECRET_CHARS} characters, too short to be one (scrubbing it "
                "from the coordinator's output would blank ordinary text)")


def derive_server_url(api_url: str) -> str:
    """https://api.github.com -> https://github.com; GitHub Enterprise: https://HOST/api/v3 -> https://HOST."""
    base = api_url.rstrip("/")
    if base == DEFAULT_GITHUB_API_URL:
        return DEFAULT_GITHUB_SERVER_URL
    return base[: -len("/api/v3")] if base.endswith("/api/v3") else base


def _load_api_url(env: Mapping[str, str]) -> str:
    api_url = _declared(env, GITHUB_API_URL)
    return (api_url or DEFAULT_GITHUB_API_URL).rstrip("/")


def _load_agent_secrets(env: Mapping[str, str], roster: tuple[RoleSpec, ...] | None) -> dict[str, Secret]:
    """AGENT_SECRETS_FILE: a JSON object of NAME -> value. Every secret a role lists must be in it."""
    path = env_value(env, "AGENT_SECRETS_FILE")
    secrets: dict[str, Secret] = {}
    if path is not None:
        data = _read_file("AGENT_SECRETS_FILE", path, MAX_AGENT_SECRETS_FILE_BYTES, 'a JSON object {"NAME": "value"}')
        try:
            loaded = load_json(data)
        except ValueProblem as problem:
            raise refusal("AGENT_SECRETS_FILE", path, problem.reason, problem.fix) from None
        try:
            secrets = {name: Secret(value) for name, value in agent_secrets(loaded).items()}
        except SecretsFault as fault:
            if fault.kind == "object":
                raise refusal("AGENT_SECRETS_FILE", path, "is not a JSON object", 'write {"NAME": "value", ...}') \
                    from None
            if fault.kind == "name":
                raise refusal("AGENT_SECRETS_FILE", path, f"names a secret {shown(fault.name)}",
                              "use names like GITHUB_TOKEN: A-Z, 0-9 and _, starting with a letter, at most 24") \
                    from None
            # The value itself is never quoted: it is a secret.
            if fault.kind == "short":
                raise refusal("AGENT_SECRETS_FILE", path,
                              f"holds a value for {fault.name} shorter than {MIN_SECRET_CHARS} characters, too short "
                              "to be a secret (scrubbing it from the fleet's output would blank ordinary text)",
                              f"give {fault.name} its real key or token, or remove it") from None
            if fault.kind == "large":
                raise refusal("AGENT_SECRETS_FILE", path,
                              f"holds a value for {fault.name} larger than {MAX_AGENT_SECRET_BYTES} bytes, the most "
                              "an agent secret may hold", f"give {fault.name} its real key or token, or remove it") \
                    from None
            raise refusal("AGENT_SECRETS_FILE", path, f"holds no usable text for {fault.name}",
                          "give each secret a non-empty string value") from None
    for role, name in unknown_secrets((spec.role for spec in roster or ()), secrets):
        where = "AGENT_SECRETS_FILE holds no such secret" if path else "AGENT_SECRETS_FILE is not set"
        raise ConfigError(
            f"role {shown(role)} lists the secret {shown(name)}, but {where}; add it to the stack's agentSecrets "
            "or remove it from the role's secrets"
        )
    return secrets


def _load_identities(
    env: Mapping[str, str], roster: tuple[RoleSpec, ...] | None, agent_secret_names: tuple[str, ...]
) -> dict[str, Identity]:
    """AGENT_IDENTITIES_FILE: name -> {"token"} or {"app_id", "installation_id", "private_key"}; and the roster's
    use of them: every role with agents names an identity the file holds, and no Reviewer role shares its identity
    with a role that opens pull requests (GitHub would refuse every approval as the author's own)."""
    path = env_value(env, "AGENT_IDENTITIES_FILE")
    identities: dict[str, Identity] = {}
    if path is not None:
        form = '{"author": {"token": "..."}, "reviewer": {"app_id": N, "installation_id": N, "private_key": "<PEM>"}}'
        data = _read_file("AGENT_IDENTITIES_FILE", path, MAX_IDENTITIES_FILE_BYTES, f"a JSON object like {form}")
        try:
            loaded = load_json(data)
        except ValueProblem as problem:
            raise refusal("AGENT_IDENTITIES_FILE", path, problem.reason, problem.fix) from None
        try:
            checked = check_identities(loaded, FILE_APP_KEYS)
        except IdentityFault as fault:  # worded without the value: it may be a secret
            where = f"identity {shown(fault.name)} " if fault.name else ""
            raise ConfigError(f"AGENT_IDENTITIES_FILE ({shown(path)}): {where}{fault.what}") from None
        for name, entry in checked.items():
            if "token" in entry:
                identities[name] = TokenIdentity(Secret(str(entry["token"])))
            else:
                identities[name] = AppIdentity(int(str(entry["app_id"])), int(str(entry["installation_id"])),
                                               Secret(str(entry["private_key"])))
    roles = [(spec.role, spec.role.count) for spec in roster or ()]
    if identities:
        for role, name in missing_identities(roles, identities):
            raise ConfigError(
                f"role {shown(role)} acts on GitHub as the identity {shown(name)}, but AGENT_IDENTITIES_FILE holds "
                f"no such identity (it holds: {', '.join(sorted(identities))}); add it to the stack's "
                "githubIdentities, or set the role's `identity`"
            )
    shared = shared_reviewer(roles, identities or None, agent_secret_names)
    if shared is not None:
        raise ConfigError(f"the roster file: {shared.describe()}")
    return identities


def _load_app(env: Mapping[str, str]) -> AppIdentity | None:
    """GITHUB_APP_FILE: the coordinator's own App, {"app_id", "installation_id", "private_key"}."""
    path = env_value(env, "GITHUB_APP_FILE")
    if path is None:
        return None
    form = '{"app_id": N, "installation_id": N, "private_key": "<PEM>"}'
    data = _read_file("GITHUB_APP_FILE", path, MAX_IDENTITIES_FILE_BYTES, f"a JSON object like {form}")
    try:
        entry = check_identity("coordinator", load_json(data), FILE_APP_KEYS)
    except ValueProblem as problem:
        raise refusal("GITHUB_APP_FILE", path, problem.reason, problem.fix) from None
    except IdentityFault as fault:  # worded without the value
        raise ConfigError(f"GITHUB_APP_FILE ({shown(path)}) {fault.what}") from None
    if "token" in entry:
        raise ConfigError(f"GITHUB_APP_FILE ({shown(path)}) holds a token: put it in GITHUB_TOKEN_FILE, or write "
                          f"{form}")
    return AppIdentity(int(str(entry["app_id"])), int(str(entry["installation_id"])), Secret(str(entry["private_key"])))


def _load_github(
    env: Mapping[str, str], repository: str | None, api_url: str, skipped: dict[str, str]
) -> GitHubSettings | None:
    # Every GitHub variable is checked even when the merge step will be skipped: a typo is a typo.
    token = _load_token(env)
    app = _load_app(env)
    graphql_url = _declared(env, GITHUB_GRAPHQL_URL)
    required_checks = _declared(env, REQUIRED_CHECKS)
    blocking_labels = _declared(env, BLOCKING_LABELS)
    max_merges = _declared(env, MERGES_PER_CYCLE)
    backlog_labels = _declared(env, BACKLOG_LABELS)
    require_up_to_date = _declared(env, REQUIRE_UP_TO_DATE)
    updates = _declared(env, UPDATES_PER_CYCLE)
    if repository is None:
        skipped["merge"] = "GITHUB_REPOSITORY is not set"
        return None
    if token is None and app is None:
        skipped["merge"] = "GITHUB_TOKEN (or GITHUB_TOKEN_FILE, or GITHUB_APP_FILE) is not set"
        return None
    return GitHubSettings(
        repository=repository,
        token=Secret(token) if token is not None and app is None else None,
        app=app,
        api_url=api_url,
        graphql_url=graphql_url or derive_graphql_url(api_url),
        required_checks=required_checks,
        blocking_labels=blocking_labels,
        max_merges_per_cycle=max_merges,
        backlog_labels=backlog_labels,
        require_up_to_date=require_up_to_date,
        updates_per_cycle=updates,
    )


def _load_health(env: Mapping[str, str], skipped: dict[str, str]) -> HealthSettings | None:
    url = _declared(env, HEALTH_URL)
    expect = _declared(env, HEALTH_EXPECT)
    timeout = _declared(env, HEALTH_TIMEOUT)
    if url is None:
        skipped["health"] = "HEALTH_URL is not set"
        return None
    return HealthSettings(url=url, timeout_s=timeout, expect=expect)


def _load_spawn(env: Mapping[str, str]) -> SpawnSettings:
    max_spawns = _declared(env, SPAWNS_PER_HOUR)
    return SpawnSettings(
        max_spawns_per_hour=max_spawns or None,
        concurrency=_declared(env, SPAWN_CONCURRENCY),
        network=_declared(env, NETWORK),
        backoff_base_s=_declared(env, CRASH_BACKOFF),
        backoff_max_s=_declared(env, CRASH_BACKOFF_MAX),
    )


def _load_limits(env: Mapping[str, str]) -> FleetLimits:
    return FleetLimits(per_role=_declared(env, MAX_AGENTS_PER_ROLE), total=_declared(env, MAX_AGENTS))


def load_runtime_settings(env: Mapping[str, str]) -> RuntimeSettings:
    """The runtime's settings alone, for commands that need no other (`status`)."""
    fleet_id = _declared(env, FLEET_ID)
    return _load_runtime(env, _heartbeat_file(env, fleet_id))


def _heartbeat_file(env: Mapping[str, str], fleet_id: str) -> Path:
    given = env_value(env, "COORDINATOR_HEARTBEAT_FILE")
    return Path(given) if given else default_heartbeat_file(fleet_id)


def _load_runtime(env: Mapping[str, str], heartbeat_file: Path) -> RuntimeSettings:
    kind = _declared(env, RUNTIME)
    lost = _declared(env, NODE_LOST)
    placement = _declared(env, PLACEMENT)
    return RuntimeSettings(
        kind=kind,
        node_lost_s=lost,
        placement=placement,
        exit_memo_file=heartbeat_file.parent / "exits.json",
        api_version_file=heartbeat_file.parent / "engine.json",
    )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting; raises ConfigError before anything is done.

    The error's message is scrubbed of every secret the environment holds, as a second line of defence
    behind `shown` (a token in a URL's path is only recognisable by its value).
    """
    env = os.environ if env is None else env
    try:
        return _load(env)
    except ConfigError as exc:
        raise ConfigError(scrub(str(exc), known_secrets(env))) from None


def _load(env: Mapping[str, str]) -> Settings:
    fleet_id = _declared(env, FLEET_ID)
    schedule = _declared(env, SCHEDULE)
    cycle_timeout_s = _declared(env, CYCLE_TIMEOUT)
    heartbeat_file = _heartbeat_file(env, fleet_id)
    metrics_port = _declared(env, METRICS_PORT)
    limits = _load_limits(env)
    skipped: dict[str, str] = {}
    roster = _load_roster(env, limits)
    if roster is None:
        skipped["reconcile"] = "FLEET_ROSTER_FILE is not set"
    spawn = _load_spawn(env)
    repository = _declared(env, REPOSITORY)
    api_url = _load_api_url(env)
    server_url = _declared(env, GITHUB_SERVER_URL)
    github = _load_github(env, repository, api_url, skipped)
    health = _load_health(env, skipped)
    runtime = _load_runtime(env, heartbeat_file)
    if runtime.kind == SWARM_RUNTIME:
        _read(env, "FLEET_ID", parse_swarm_fleet_id, None)
    agent_secrets = _load_agent_secrets(env, roster)
    return Settings(
        fleet_id=fleet_id,
        roster=roster,
        repository=repository,
        schedule=schedule,
        cycle_timeout_s=cycle_timeout_s,
        heartbeat_file=heartbeat_file,
        metrics_port=metrics_port or None,
        runtime=runtime,
        github=github,
        health=health,
        spawn=spawn,
        limits=limits,
        github_api_url=api_url,
        github_server_url=(server_url or derive_server_url(api_url)).rstrip("/"),
        agent_secrets=agent_secrets,
        agent_identities=_load_identities(env, roster, tuple(agent_secrets)),
        skipped=skipped,
    )
