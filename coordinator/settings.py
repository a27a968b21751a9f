"""The coordinator's settings, read once from the environment.

Every variable is listed in `VARIABLES` with its meaning; the README's table is written from it.
Bad values raise `ConfigError`, whose message names the variable, the value and the fix (exit 2).
Absent optional groups (GitHub, health) are `None`: the step that needs them reports itself
skipped with the reason, which is not a failure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from croniter import croniter

from coordinator.fleet import RoleSpec, RosterError, roster_from_json

DEFAULT_SCHEDULE = "*/5 * * * *"
DEFAULT_GITHUB_API_URL = "https://api.github.com"
DEFAULT_HEARTBEAT_FILE = "/tmp/agent-fleet/heartbeat.json"

# name -> what it means; the single list of the runtime's interface.
VARIABLES: dict[str, str] = {
    "FLEET_ID": "Fleet id; every agent carries the label agent-fleet.fleet=<id>. Default agent-fleet.",
    "FLEET_ROSTER_FILE": "Path of the roster JSON file. Unset: the reconcile step is skipped.",
    "COORDINATOR_SCHEDULE": f"Cron expression for `schedule` (5 fields, or 6 with seconds). Default {DEFAULT_SCHEDULE}",
    "COORDINATOR_CYCLE_TIMEOUT_S": "Time limit of one cycle under `schedule`, seconds. Default: one schedule interval.",
    "COORDINATOR_HEARTBEAT_FILE": f"Written after each finished cycle for the health check. {DEFAULT_HEARTBEAT_FILE}",
    "GITHUB_REPOSITORY": "owner/name of the repository. Unset: the merge step is skipped.",
    "GITHUB_TOKEN": "Token for the merge step (or GITHUB_TOKEN_FILE, a file holding it).",
    "GITHUB_TOKEN_FILE": "Path of a file holding the token; used when GITHUB_TOKEN is unset.",
    "GITHUB_API_URL": f"REST base URL. Default {DEFAULT_GITHUB_API_URL}; GitHub Enterprise: https://HOST/api/v3.",
    "GITHUB_GRAPHQL_URL": "GraphQL URL. Default derived: .../api/v3 -> .../api/graphql, otherwise <api>/graphql.",
    "REQUIRED_CHECKS": "Comma-separated check or status names that must be present and successful.",
    "MERGE_BLOCKING_LABELS": "Comma-separated labels that block a merge. Default do-not-merge.",
    "MERGE_MAX_PER_CYCLE": "Most pull requests merged in one cycle. Default 50.",
    "HEALTH_URL": "Production URL to GET. Unset: the health step is skipped.",
    "HEALTH_TIMEOUT_S": "Time budget of the health check, seconds. Default 10.",
    "HEALTH_EXPECT": "Status codes that count as up, e.g. 200-399 or 200,204. Default 200-399.",
    "FLEET_MAX_SPAWNS_PER_HOUR": "Fleet-wide spawn budget per rolling hour. Unset or 0: no budget.",
    "SPAWN_CONCURRENCY": "Most agent spawns in flight at once. Default 8.",
    "AGENT_CRASH_BACKOFF_S": "First wait before respawning a slot whose agent crashed; doubles per crash. Default 60.",
    "AGENT_CRASH_BACKOFF_MAX_S": "Longest crash-loop wait, seconds. Default 3600.",
    "AGENT_NETWORK": "Docker network mode of agent containers (bridge, host, or a network name). Default bridge.",
    "DOCKER_HOST": "The Docker SDK's own setting for the engine to talk to.",
    "DOCKER_API_VERSION": "Pins the Docker API version (e.g. 1.41); unset, each cycle asks the engine first.",
}


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable. Exit code 2."""


class Secret:
    """A string that never shows itself in repr, str or f-strings; `reveal()` is the only way out."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class GitHubSettings:
    repository: str
    token: Secret
    api_url: str
    graphql_url: str
    required_checks: tuple[str, ...] = ()
    blocking_labels: tuple[str, ...] = ("do-not-merge",)
    max_merges_per_cycle: int = 50

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repository.split("/", 1)[1]


@dataclass(frozen=True)
class HealthSettings:
    url: str
    timeout_s: float = 10.0
    expect: tuple[tuple[int, int], ...] = ((200, 399),)

    def expects(self, code: int) -> bool:
        return any(low <= code <= high for low, high in self.expect)


@dataclass(frozen=True)
class SpawnSettings:
    max_spawns_per_hour: int | None = None
    concurrency: int = 8
    network: str = "bridge"
    backoff_base_s: float = 60.0
    backoff_max_s: float = 3600.0


@dataclass(frozen=True)
class Settings:
    fleet_id: str = "agent-fleet"
    roster: tuple[RoleSpec, ...] | None = None
    repository: str | None = None  # told to every agent, even when the merge step is skipped
    schedule: str = DEFAULT_SCHEDULE
    cycle_timeout_s: float | None = None
    heartbeat_file: Path = Path(DEFAULT_HEARTBEAT_FILE)
    github: GitHubSettings | None = None
    health: HealthSettings | None = None
    spawn: SpawnSettings = field(default_factory=SpawnSettings)
    # Why a step is skipped, by step name, for the steps whose settings are absent.
    skipped: Mapping[str, str] = field(default_factory=dict)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, so that output can be scrubbed of them as a last line of defence."""
        return (self.github.token.reveal(),) if self.github else ()


def derive_graphql_url(api_url: str) -> str:
    """GitHub: https://api.github.com -> /graphql; GitHub Enterprise: https://HOST/api/v3 -> /api/graphql."""
    base = api_url.rstrip("/")
    if base.endswith("/api/v3"):
        return base[: -len("/v3")] + "/graphql"
    return base + "/graphql"


def _csv(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _positive_int(env: Mapping[str, str], name: str, default: int, *, allow_zero: bool = False) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; set it to e.g. {default}") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name}={raw!r} must be {'0 or more' if allow_zero else 'at least 1'}")
    return value


def _positive_float(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds; set it to e.g. 10") from None
    if not value > 0:
        raise ConfigError(f"{name}={raw!r} must be more than 0 seconds")
    return value


def _url(name: str, raw: str) -> str:
    if not raw.startswith(("http://", "https://")) or len(raw.split("://", 1)[1]) == 0:
        raise ConfigError(f"{name}={raw!r} is not an http(s) URL; set it like https://example.com/healthz")
    return raw


def parse_expect(raw: str) -> tuple[tuple[int, int], ...]:
    """'200-399' or '200,204,301-302' -> ranges; raises ValueError on anything else."""
    ranges: list[tuple[int, int]] = []
    for part in _csv(raw):
        low_text, _, high_text = part.partition("-")
        low = int(low_text)
        high = int(high_text) if high_text else low
        if not 100 <= low <= high <= 599:
            raise ValueError(part)
        ranges.append((low, high))
    if not ranges:
        raise ValueError(raw)
    return tuple(ranges)


def validate_schedule(name: str, raw: str) -> str:
    if not croniter.is_valid(raw):
        raise ConfigError(
            f"{name}={raw!r} is not a cron expression; use 5 fields like '*/5 * * * *' "
            "(or 6, the last for seconds)"
        )
    return raw


def _load_roster(env: Mapping[str, str]) -> tuple[RoleSpec, ...] | None:
    path = env.get("FLEET_ROSTER_FILE", "").strip()
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"FLEET_ROSTER_FILE={path!r} cannot be read ({exc.strerror}); point it at the roster JSON"
        ) from None
    try:
        return roster_from_json(text)
    except RosterError as exc:
        raise ConfigError(f"FLEET_ROSTER_FILE={path!r}: {exc}") from None


def _load_token(env: Mapping[str, str]) -> str | None:
    token = env.get("GITHUB_TOKEN", "").strip()
    if token:
        return token
    path = env.get("GITHUB_TOKEN_FILE", "").strip()
    if not path:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"GITHUB_TOKEN_FILE={path!r} cannot be read ({exc.strerror})") from None
    if not token:
        raise ConfigError(f"GITHUB_TOKEN_FILE={path!r} is empty; write the token into it")
    return token


def _load_github(env: Mapping[str, str], skipped: dict[str, str]) -> GitHubSettings | None:
    repository = env.get("GITHUB_REPOSITORY", "").strip()
    if not repository:
        skipped["merge"] = "GITHUB_REPOSITORY is not set"
        return None
    owner, _, name = repository.partition("/")
    if not owner or not name or "/" in name:
        raise ConfigError(f"GITHUB_REPOSITORY={repository!r} is not owner/name; set it like acme/webapp")
    token = _load_token(env)
    if token is None:
        skipped["merge"] = "GITHUB_TOKEN (or GITHUB_TOKEN_FILE) is not set"
        return None
    api_url = _url("GITHUB_API_URL", env.get("GITHUB_API_URL", "").strip() or DEFAULT_GITHUB_API_URL).rstrip("/")
    graphql_raw = env.get("GITHUB_GRAPHQL_URL", "").strip()
    graphql_url = _url("GITHUB_GRAPHQL_URL", graphql_raw) if graphql_raw else derive_graphql_url(api_url)
    blocking_raw = env.get("MERGE_BLOCKING_LABELS")
    return GitHubSettings(
        repository=repository,
        token=Secret(token),
        api_url=api_url,
        graphql_url=graphql_url,
        required_checks=_csv(env.get("REQUIRED_CHECKS")),
        blocking_labels=("do-not-merge",) if blocking_raw is None else _csv(blocking_raw),
        max_merges_per_cycle=_positive_int(env, "MERGE_MAX_PER_CYCLE", 50),
    )


def _load_health(env: Mapping[str, str], skipped: dict[str, str]) -> HealthSettings | None:
    url = env.get("HEALTH_URL", "").strip()
    if not url:
        skipped["health"] = "HEALTH_URL is not set"
        return None
    expect_raw = env.get("HEALTH_EXPECT", "").strip() or "200-399"
    try:
        expect = parse_expect(expect_raw)
    except ValueError:
        raise ConfigError(
            f"HEALTH_EXPECT={expect_raw!r} is not a list of status codes; use e.g. 200-399 or 200,204"
        ) from None
    timeout = _positive_float(env, "HEALTH_TIMEOUT_S", 10.0)
    assert timeout is not None
    return HealthSettings(url=_url("HEALTH_URL", url), timeout_s=timeout, expect=expect)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting; raises ConfigError before anything is done."""
    env = os.environ if env is None else env
    fleet_id = env.get("FLEET_ID", "").strip() or "agent-fleet"
    if not all(c.isalnum() or c in "_.-" for c in fleet_id) or not fleet_id[0].isalnum():
        raise ConfigError(
            f"FLEET_ID={fleet_id!r} may hold only letters, digits, '_', '.' and '-', starting with a letter or digit"
        )
    skipped: dict[str, str] = {}
    roster = _load_roster(env)
    if roster is None:
        skipped["reconcile"] = "FLEET_ROSTER_FILE is not set"
    max_spawns = _positive_int(env, "FLEET_MAX_SPAWNS_PER_HOUR", 0, allow_zero=True)
    network = env.get("AGENT_NETWORK", "").strip() or "bridge"
    github = _load_github(env, skipped)
    return Settings(
        fleet_id=fleet_id,
        roster=roster,
        repository=github.repository if github else (env.get("GITHUB_REPOSITORY", "").strip() or None),
        schedule=validate_schedule(
            "COORDINATOR_SCHEDULE", env.get("COORDINATOR_SCHEDULE", "").strip() or DEFAULT_SCHEDULE
        ),
        cycle_timeout_s=_positive_float(env, "COORDINATOR_CYCLE_TIMEOUT_S", None),
        heartbeat_file=Path(env.get("COORDINATOR_HEARTBEAT_FILE", "").strip() or DEFAULT_HEARTBEAT_FILE),
        github=github,
        health=_load_health(env, skipped),
        spawn=SpawnSettings(
            max_spawns_per_hour=max_spawns or None,
            concurrency=_positive_int(env, "SPAWN_CONCURRENCY", 8),
            network=network,
            backoff_base_s=_positive_float(env, "AGENT_CRASH_BACKOFF_S", 60.0) or 60.0,
            backoff_max_s=_positive_float(env, "AGENT_CRASH_BACKOFF_MAX_S", 3600.0) or 3600.0,
        ),
        skipped=skipped,
    )
