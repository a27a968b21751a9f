"""The fleet's vocabulary: roles, their modes and departments, and the roster file.

`roster.py` (the Pulumi side) declares the fleet with these types; the coordinator reads
the same roles back from the JSON roster file the Pulumi program writes into its container.
This module imports nothing outside the standard library, so both sides can share it.

The roster file (``FLEET_ROSTER_FILE``) is ``{"roles": [...]}``, one object per role with the fields of
`ROSTER_FIELD_DOCS`; docs/configuration.md renders them, with the sample scripts/try runs.

Everything that reaches Docker is checked here, before any container is created: a key, title, brief,
image, command or environment string Docker would refuse (a NUL, a trailing newline, a brief too large
for exec) is refused with the role and the field named. So are counts over the fleet's limits
(`FleetLimits`), which both the Pulumi program and the coordinator enforce.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from coordinator.redact import MIN_SECRET_CHARS, shown
from coordinator.values import ValueProblem, docker_text_problem, is_one_line, load_json, parse_image

DEFAULT_FLEET_ID = "agent-fleet"
# The label that keeps the coordinator from merging a pull request: the runtime's default
# MERGE_BLOCKING_LABELS and the label the Pulumi program creates in the repository. Defined once, here.
BLOCKING_LABEL = "do-not-merge"
# The labels that block a merge unless MERGE_BLOCKING_LABELS says otherwise: the settings' and the merge policy's.
DEFAULT_BLOCKING_LABELS = (BLOCKING_LABEL,)


def require_blocking_labels(labels: tuple[str, ...]) -> None:
    """The one check of a merge policy's labels, wherever it is built (settings, the merge step's policy): no
    blocking label would merge a pull request labelled do-not-merge, so an empty tuple is refused."""
    if not labels:
        raise ValueError(f"blocking_labels is empty; keep at least {BLOCKING_LABEL!r}")


def role_label(key: str) -> str:
    """The GitHub label of a role (`role:<key>`), which the Pulumi program creates for each role."""
    return f"role:{key}"


# Patterns are always used with fullmatch: `^...$` with match() also accepts a trailing newline.
KEY_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
# A key is part of every agent's container name, `<fleet>-<key>-<slot>`, which must fit a DNS label
# (63 characters; Swarm service names are DNS labels): 24 (values.MAX_FLEET_ID_CHARS) + 1 + 30 + 1 + 4.
MAX_KEY_CHARS = 30
# A title is one line in reports, labels and `pulumi preview`.
MAX_TITLE_CHARS = 200
# A brief reaches each agent as AGENT_BRIEF. Linux refuses to exec with an environment string over
# 128 KiB; 16 KiB is far below that and far above the one or two sentences a brief should be.
MAX_BRIEF_BYTES = 16 * 1024
# The roster file is read whole before it is parsed; anything bigger is not a roster.
MAX_ROSTER_BYTES = 1024 * 1024

# How many agents the roster may ask for, per role and in all (FLEET_MAX_AGENTS_PER_ROLE and
# FLEET_MAX_AGENTS at run time, agent-fleet:maxAgentsPerRole and agent-fleet:maxAgents in the stack).
# Without a limit, a count of 1000000 is planned (32 s, 434 MB) and a cycle would try to create them all.
DEFAULT_MAX_AGENTS_PER_ROLE = 100
DEFAULT_MAX_AGENTS = 500
# The ceilings of those limits, so that a typo in a limit itself (100000) is refused too. 1000 also
# keeps a slot number within four digits of the container name.
MAX_AGENTS_PER_ROLE_CEILING = 1000
MAX_AGENTS_CEILING = 5000

# Environment names an agent gets from the coordinator; a role's own `env` may not override them.
RESERVED_AGENT_ENV = frozenset(
    {"AGENT_ROLE", "AGENT_BRIEF", "AGENT_MODE", "AGENT_SLOT", "AGENT_COUNT", "GITHUB_REPOSITORY", "GITHUB_API_URL",
     "GITHUB_SERVER_URL", "GITHUB_TOKEN_EXPIRES_AT"}
)
ENV_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# An agent secret's name: the file /run/secrets/<NAME>. On a swarm it also names the Docker secret that
# carries it, <fleet>-<name>-<digest> within Swarm's 64 characters (runtimes/swarm.py sizes the digest to fit).
MAX_SECRET_NAME_CHARS = 24
SECRET_NAME_PATTERN = re.compile(rf"[A-Z][A-Z0-9_]{{0,{MAX_SECRET_NAME_CHARS - 1}}}")
# The most an agent secret's value holds, in UTF-8 bytes; the fewest characters is redact.MIN_SECRET_CHARS, as
# for every secret. The reference agent says both again (agent/entrypoint.py MAX_SECRET_BYTES, MIN_SECRET_CHARS:
# the image does not import this package; a test holds them equal). A larger value is no key or token, and the
# agent hands each secret but its token to its CLI as one environment variable, which Linux limits to 128 KiB.
MAX_AGENT_SECRET_BYTES = 64 * 1024
# A GitHub identity's name (coordinator.identities): an entry of the stack's githubIdentities.
IDENTITY_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# GitHub App permission names a role may add to its mode's (`githubPermissions`), and their levels.
PERMISSION_NAMES = frozenset({
    "actions", "checks", "contents", "deployments", "issues", "pages", "pull_requests", "statuses", "workflows",
})
ACCESS_LEVELS = ("read", "write")


class SecretsFault(ValueError):
    """What is wrong with an object of agent secrets (NAME -> value): `kind` is "object" (not a JSON object),
    "name" (`name` is no secret's name), "value" (`name`'s value is not a non-empty string of UTF-8 text without
    NUL), "short" (under MIN_SECRET_CHARS, stripped) or "large" (over MAX_AGENT_SECRET_BYTES).
    The value itself is never kept: whoever reports the fault words it without it."""

    def __init__(self, kind: str, name: str = "") -> None:
        super().__init__(kind, name)
        self.kind = kind
        self.name = name


def agent_secrets(value: object) -> dict[str, str]:
    """An object of agent secrets, checked (or SecretsFault): the one rule for the stack's `agentSecrets` and
    the coordinator's AGENT_SECRETS_FILE."""
    if not isinstance(value, dict):
        raise SecretsFault("object")
    for name, secret in value.items():
        if not SECRET_NAME_PATTERN.fullmatch(name):
            raise SecretsFault("name", name)
        if not isinstance(secret, str) or not secret or "\0" in secret:
            raise SecretsFault("value", name)
        try:
            size = len(secret.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): no file can hold it
            raise SecretsFault("value", name) from None
        if len(secret.strip()) < MIN_SECRET_CHARS:  # stripped, as the agent reads its file
            raise SecretsFault("short", name)
        if size > MAX_AGENT_SECRET_BYTES:
            raise SecretsFault("large", name)
    return value


class Mode(StrEnum):
    """How an agent of a role finds its work (the guide's Mode column)."""

    THINKER = "Thinker"
    TASK_DRIVEN = "Task-driven"
    SELF_DIRECTED = "Self-directed"
    REVIEWER = "Reviewer"
    SENTINEL = "Sentinel"


class Department(StrEnum):
    PRODUCT = "Product"
    ENGINEERING = "Engineering"
    QUALITY = "Quality"
    SECURITY = "Security"
    PERFORMANCE = "Performance"
    CODE_HEALTH = "Code Health"
    STANDARDS = "Standards"
    INFRASTRUCTURE = "Infrastructure"
    GATES = "Gates"
    GROWTH = "Growth"


@dataclass(frozen=True)
class Resources:
    """A role's share of a node, per agent: limits on one engine; reservations and limits on a swarm."""

    cpus: float | None = None
    memory_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.cpus is not None and (isinstance(self.cpus, bool) or not isinstance(self.cpus, int | float)
                                      or not 0.01 <= self.cpus <= 512):
            raise RosterError(f"resources.cpus is {self.cpus!r}: use a number of CPUs between 0.01 and 512")
        if self.memory_bytes is not None and (
            isinstance(self.memory_bytes, bool) or not isinstance(self.memory_bytes, int)
            or not 6 * 2**20 <= self.memory_bytes <= 2**42
        ):
            raise RosterError(f"resources.memory is {self.memory_bytes!r}: use at least 6m (Docker's minimum)")

    def to_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {}
        if self.cpus is not None:
            shown["cpus"] = self.cpus
        if self.memory_bytes is not None:
            shown["memory"] = format_memory(self.memory_bytes)
        return shown

    @classmethod
    def from_dict(cls, key: object, value: object) -> Resources:
        if not isinstance(value, dict) or set(value) - {"cpus", "memory"}:
            raise _role_error(key, "resources", value, 'use {"cpus": 0.5, "memory": "512m"} (either may be left out)')
        memory = value.get("memory")
        try:
            return cls(cpus=value.get("cpus"), memory_bytes=None if memory is None else parse_memory(memory))
        except (RosterError, ValueError) as exc:
            raise _role_error(key, "resources", value, str(exc)) from None


_MEMORY = re.compile(r"([0-9]{1,12})([kmg]?)b?", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def parse_memory(value: object) -> int:
    """'512m', '2g', '1048576' -> bytes, as Docker reads memory sizes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _MEMORY.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"memory {value!r} is not a size; use a number of bytes or e.g. 512m, 2g")
    return int(match[1]) * _MEMORY_UNITS[match[2].lower()]


def format_memory(size: int) -> str:
    for unit in ("g", "m", "k"):
        if size % _MEMORY_UNITS[unit] == 0:
            return f"{size // _MEMORY_UNITS[unit]}{unit}"
    return str(size)


class RosterError(ValueError):
    """A roster entry is invalid. The message names the role, the field, the value and the fix."""


def _role_error(key: object, field_name: str, value: object, fix: str) -> RosterError:
    return RosterError(f"role {shown(key)}: field {field_name!r} is {shown(value)}: {fix}")


def _text_error(key: object, field_name: str, value: str) -> RosterError | None:
    """The error for a string Docker would refuse (NUL, not Unicode, too long for exec), or None."""
    problem = docker_text_problem(value)
    return None if problem is None else _role_error(key, field_name, value, f"it {problem}; remove or shorten it")


@dataclass(frozen=True)
class Role:
    """One role of the fleet: what the guide's roster table says about it, plus its brief."""

    key: str
    title: str
    count: int
    department: Department
    mode: Mode
    brief: str
    resources: Resources | None = None
    # The agent secrets this role's agents receive, by name; None: every agent secret the stack holds.
    secrets: tuple[str, ...] | None = None
    # The GitHub identity its agents act as (coordinator.identities); None: `reviewer` for a Reviewer, else `author`.
    identity: str | None = None
    # Permissions its minted GitHub tokens get beyond its mode's, (name, read|write) pairs: ("workflows", "write")
    # lets the CI/CD role push changes under .github/workflows, which GitHub refuses otherwise.
    github_permissions: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not KEY_PATTERN.fullmatch(self.key):
            raise _role_error(
                self.key, "key", self.key,
                "use lower case ASCII letters, digits and underscores, starting with a letter",
            )
        if len(self.key) > MAX_KEY_CHARS:
            raise _role_error(
                self.key, "key", self.key,
                f"use at most {MAX_KEY_CHARS} characters: agent names <fleet>-<key>-<slot> must fit 63",
            )
        if not isinstance(self.title, str) or not self.title.strip():
            raise _role_error(self.key, "title", self.title, "give the role a human-readable title")
        if not is_one_line(self.title) or len(self.title) > MAX_TITLE_CHARS:
            raise _role_error(
                self.key, "title", self.title,
                f"use one line of at most {MAX_TITLE_CHARS} characters, without control characters",
            )
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise _role_error(self.key, "count", self.count, "use a whole number of agents, 0 or more")
        if self.count > MAX_AGENTS_PER_ROLE_CEILING:
            raise _role_error(
                self.key, "count", self.count,
                f"use at most {MAX_AGENTS_PER_ROLE_CEILING}, the ceiling of any role's count",
            )
        if not isinstance(self.department, Department):
            raise _role_error(
                self.key, "department", self.department,
                f"use one of {', '.join(d.value for d in Department)}",
            )
        if not isinstance(self.mode, Mode):
            raise _role_error(self.key, "mode", self.mode, f"use one of {', '.join(m.value for m in Mode)}")
        if not isinstance(self.brief, str) or not self.brief.strip():
            raise _role_error(self.key, "brief", self.brief, "write a one- or two-sentence brief")
        if (error := _text_error(self.key, "brief", self.brief)) is not None:
            raise error
        if (size := len(self.brief.encode("utf-8"))) > MAX_BRIEF_BYTES:
            raise _role_error(
                self.key, "brief", self.brief,
                f"it is {size} bytes of UTF-8; keep it to {MAX_BRIEF_BYTES} (a brief is one or two sentences)",
            )
        if self.secrets is not None:
            if not isinstance(self.secrets, tuple) or len(set(self.secrets)) != len(self.secrets):
                raise _role_error(self.key, "secrets", self.secrets, "use a list of distinct secret names")
            for name in self.secrets:
                if not isinstance(name, str) or not SECRET_NAME_PATTERN.fullmatch(name):
                    raise _role_error(self.key, "secrets", name, "use names like GITHUB_TOKEN: A-Z, 0-9 and _, "
                                      f"starting with a letter, at most {MAX_SECRET_NAME_CHARS} characters")
        if self.identity is not None and (
            not isinstance(self.identity, str) or not IDENTITY_NAME_PATTERN.fullmatch(self.identity)
        ):
            raise _role_error(self.key, "identity", self.identity, "name an entry of githubIdentities: a-z, 0-9, "
                              "'_' and '-', starting with a letter, at most 32 characters (like reviewer)")
        if not isinstance(self.github_permissions, tuple):
            raise _role_error(self.key, "githubPermissions", self.github_permissions,
                              'use an object of permission -> "read" or "write", like {"workflows": "write"}')
        for pair in self.github_permissions:
            name, level = pair if isinstance(pair, tuple) and len(pair) == 2 else (pair, None)
            if name not in PERMISSION_NAMES or level not in ACCESS_LEVELS:
                raise _role_error(self.key, "githubPermissions", pair,
                                  f"use one of {', '.join(sorted(PERMISSION_NAMES))}, each \"read\" or \"write\"")


def validate_roster(roles: Iterable[Role]) -> tuple[Role, ...]:
    """Return the roles as a tuple, refusing duplicate keys (each role is checked on creation)."""
    seen: set[str] = set()
    result: list[Role] = []
    for role in roles:
        if role.key in seen:
            raise _role_error(role.key, "key", role.key, "keys must be unique; rename or remove one of them")
        seen.add(role.key)
        result.append(role)
    return tuple(result)


@dataclass(frozen=True)
class FleetLimits:
    """The most agents the roster may ask for: per role, and in all."""

    per_role: int = DEFAULT_MAX_AGENTS_PER_ROLE
    total: int = DEFAULT_MAX_AGENTS

    def __post_init__(self) -> None:
        if not 1 <= self.per_role <= MAX_AGENTS_PER_ROLE_CEILING:
            raise ValueError(f"per_role={self.per_role} must be within 1..{MAX_AGENTS_PER_ROLE_CEILING}")
        if not 1 <= self.total <= MAX_AGENTS_CEILING:
            raise ValueError(f"total={self.total} must be within 1..{MAX_AGENTS_CEILING}")


@dataclass(frozen=True)
class LimitBreach:
    """A roster over a limit: one role's count (`role` set) or the fleet's total (`role` None)."""

    role: str | None
    count: int
    limit: int

    def describe(self, *, per_role_setting: str, total_setting: str) -> str:
        """What is wrong and the fix, naming the setting that raises the limit in the caller's own terms."""
        if self.role is not None:
            return (
                f"role {shown(self.role)} has a count of {self.count}, more than the limit of {self.limit} agents "
                f"per role ({per_role_setting}); lower its count, or raise {per_role_setting} "
                f"(at most {MAX_AGENTS_PER_ROLE_CEILING})"
            )
        return (
            f"the roster asks for {self.count} agents in all, more than the fleet's limit of {self.limit} "
            f"({total_setting}); lower some counts, or raise {total_setting} (at most {MAX_AGENTS_CEILING})"
        )


def limit_breach(counts: Iterable[tuple[str, int]], limits: FleetLimits) -> LimitBreach | None:
    """The first role whose count is over the per-role limit, else the total over the fleet's, else None."""
    total = 0
    for key, count in counts:
        if count > limits.per_role:
            return LimitBreach(key, count, limits.per_role)
        total += count
    return LimitBreach(None, total, limits.total) if total > limits.total else None


@dataclass(frozen=True)
class RoleSpec:
    """A role as deployed: the role, the image its agents run, and their command and extra environment."""

    role: Role
    image: str
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        key = self.role.key
        if not isinstance(self.image, str) or not self.image.strip():
            raise _role_error(key, "image", self.image, "set agentImage or images.<role> in the stack")
        try:
            parse_image(self.image, example="ghcr.io/acme/agent:1")
        except ValueProblem as problem:
            raise _role_error(key, "image", self.image, problem.fix) from None
        if self.command is not None:
            if not self.command or not all(isinstance(part, str) for part in self.command) or not self.command[0]:
                raise _role_error(key, "command", self.command, "use a non-empty list of strings")
            for part in self.command:
                if (error := _text_error(key, "command", part)) is not None:
                    raise error
        for name, value in self.env.items():
            if not isinstance(name, str) or not ENV_NAME_PATTERN.fullmatch(name):
                raise _role_error(key, "env", name, "use environment names like AGENT_MODEL")
            if name in RESERVED_AGENT_ENV:
                raise _role_error(key, "env", name, "the coordinator sets this variable itself; remove it")
            if not isinstance(value, str):
                raise _role_error(key, f"env.{name}", value, "environment values are strings")
            if (error := _text_error(key, f"env.{name}", f"{name}={value}")) is not None:
                raise error

    @property
    def key(self) -> str:
        return self.role.key


def roster_to_dict(specs: Sequence[RoleSpec]) -> dict[str, Any]:
    roles: list[dict[str, Any]] = []
    for spec in specs:
        entry: dict[str, Any] = {
            "key": spec.role.key,
            "title": spec.role.title,
            "count": spec.role.count,
            "department": spec.role.department.value,
            "mode": spec.role.mode.value,
            "brief": spec.role.brief,
            "image": spec.image,
        }
        if spec.command is not None:
            entry["command"] = list(spec.command)
        if spec.env:
            entry["env"] = dict(sorted(spec.env.items()))
        if spec.role.resources is not None:
            entry["resources"] = spec.role.resources.to_dict()
        if spec.role.secrets is not None:
            entry["secrets"] = list(spec.role.secrets)
        if spec.role.identity is not None:
            entry["identity"] = spec.role.identity
        if spec.role.github_permissions:
            entry["githubPermissions"] = dict(spec.role.github_permissions)
        roles.append(entry)
    return {"roles": roles}


def roster_to_json(specs: Sequence[RoleSpec]) -> str:
    """The roster file's text: stable (sorted env, fixed indentation) so an unchanged roster is unchanged text."""
    return json.dumps(roster_to_dict(specs), indent=2, sort_keys=False) + "\n"


def _enum_value(enum: type[Mode] | type[Department], key: object, field_name: str, value: object) -> Any:
    try:
        return enum(str(value))
    except ValueError:
        raise _role_error(key, field_name, value, f"use one of {', '.join(m.value for m in enum)}") from None


# The roster file's fields, each with what it holds: the one list, which docs/configuration.md renders.
ROSTER_FIELD_DOCS = {
    "key": f"Required. The role's key: a-z, 0-9 and _, starting with a letter, at most {MAX_KEY_CHARS} characters; "
    "its agents are named <fleet>-<key>-<slot>.",
    "title": f"Required. One line of at most {MAX_TITLE_CHARS} characters.",
    "count": "Required. How many agents, 0 or more (at most FLEET_MAX_AGENTS_PER_ROLE).",
    "department": "Required. One of " + ", ".join(d.value for d in Department) + ".",
    "mode": "Required. How its agents find work, one of " + ", ".join(m.value for m in Mode) + ".",
    "brief": f"Required. What its agents do and when they exit, given to each as AGENT_BRIEF; at most "
    f"{MAX_BRIEF_BYTES // 1024} KiB.",
    "image": "Required. The image its agents run.",
    "command": "Optional. The command, a list of strings; default: the image's own.",
    "env": "Optional. More environment, NAME: value strings; not " + ", ".join(sorted(RESERVED_AGENT_ENV)) + ".",
    "resources": 'Optional. Per agent, {"cpus": 0.5, "memory": "512m"} (either may be left out): limits on one '
    "engine, reservations and limits on a swarm.",
    "secrets": "Optional. The names of the agent secrets its agents receive (AGENT_SECRETS_FILE); default: all.",
    "identity": "Optional. The GitHub identity its agents act as (AGENT_IDENTITIES_FILE; coordinator.identities); "
    "default: by its mode, reviewer for Reviewer roles, author for the others.",
    "githubPermissions": 'Optional. GitHub permissions beyond its mode\'s, for an App identity\'s minted token, like '
    '{"workflows": "write"}.',
}
ROSTER_FIELDS = frozenset(ROSTER_FIELD_DOCS)


def unknown_secrets(roles: Iterable[Role], known: Iterable[str]) -> list[tuple[str, str]]:
    """(role, secret) for every secret a role lists that the stack does not hold."""
    have = set(known)
    return [(role.key, name) for role in roles for name in role.secrets or () if name not in have]


def roster_from_dict(data: object) -> tuple[RoleSpec, ...]:
    """Parse a roster document; every error names the role and the field."""
    if not isinstance(data, dict) or not isinstance(data.get("roles"), list):
        raise RosterError('the roster must be a JSON object {"roles": [...]}')
    specs: list[RoleSpec] = []
    for index, entry in enumerate(data["roles"]):
        if not isinstance(entry, dict):
            raise RosterError(f"roles[{index}] is {shown(entry)}: each role is a JSON object")
        key = entry.get("key", f"roles[{index}]")
        for required in ("key", "title", "count", "department", "mode", "brief", "image"):
            if required not in entry:
                raise _role_error(key, required, None, "this field is required")
        unknown = set(entry) - ROSTER_FIELDS
        if unknown:
            raise _role_error(key, sorted(unknown)[0], entry[sorted(unknown)[0]], "remove it; it is not a roster field")
        command = entry.get("command")
        if command is not None and not isinstance(command, list):
            raise _role_error(key, "command", command, "use a list of strings")
        env = entry.get("env") or {}
        if not isinstance(env, dict):
            raise _role_error(key, "env", env, "use an object of NAME: value strings")
        secrets = entry.get("secrets")
        if secrets is not None and not isinstance(secrets, list):
            raise _role_error(key, "secrets", secrets, 'use a list of secret names, like ["GITHUB_TOKEN"]')
        permissions = entry.get("githubPermissions") or {}
        if not isinstance(permissions, dict):
            raise _role_error(key, "githubPermissions", permissions, 'use an object like {"workflows": "write"}')
        role = Role(
            identity=entry.get("identity"),
            github_permissions=tuple(sorted(permissions.items())),
            key=entry["key"],
            title=entry["title"],
            count=entry["count"],
            department=_enum_value(Department, key, "department", entry["department"]),
            mode=_enum_value(Mode, key, "mode", entry["mode"]),
            brief=entry["brief"],
            resources=None if entry.get("resources") is None else Resources.from_dict(key, entry["resources"]),
            secrets=None if secrets is None else tuple(secrets),
        )
        specs.append(
            RoleSpec(
                role=role,
                image=entry["image"],
                command=tuple(command) if command is not None else None,
                env=dict(env),
            )
        )
    validate_roster(spec.role for spec in specs)
    return tuple(specs)


def roster_from_json(text: str | bytes) -> tuple[RoleSpec, ...]:
    """The roster file's text or bytes, parsed strictly (`values.load_json`): strict UTF-8, no duplicate key,
    no huge number, no NaN, no deep nesting, at most MAX_ROSTER_BYTES."""
    try:
        data = load_json(text, max_bytes=MAX_ROSTER_BYTES)
    except ValueProblem as problem:
        raise RosterError(f"the roster {problem}") from None
    return roster_from_dict(data)
