"""The fleet's vocabulary: roles, their modes and departments, and the roster file.

`roster.py` (the Pulumi side) declares the fleet with these types; the coordinator reads
the same roles back from the JSON roster file the Pulumi program writes into its container.
This module imports nothing outside the standard library, so both sides can share it.

Roster file format (``FLEET_ROSTER_FILE``)::

    {"roles": [{"key": "api_builder", "title": "API Builder", "count": 3,
                "department": "Engineering", "mode": "Task-driven",
                "brief": "Builds ...", "image": "ghcr.io/acme/agent:1",
                "command": ["agent", "run"],          # optional
                "env": {"AGENT_MODEL": "large"}}]}    # optional
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
# Environment names an agent gets from the coordinator; a role's own `env` may not override them.
RESERVED_AGENT_ENV = frozenset(
    {"AGENT_ROLE", "AGENT_BRIEF", "AGENT_MODE", "AGENT_SLOT", "GITHUB_REPOSITORY"}
)
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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


class RosterError(ValueError):
    """A roster entry is invalid. The message names the role, the field, the value and the fix."""


def _role_error(key: object, field_name: str, value: object, fix: str) -> RosterError:
    return RosterError(f"role {key!r}: field {field_name!r} is {value!r}: {fix}")


@dataclass(frozen=True)
class Role:
    """One role of the fleet: what the guide's roster table says about it, plus its brief."""

    key: str
    title: str
    count: int
    department: Department
    mode: Mode
    brief: str

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not KEY_PATTERN.match(self.key):
            raise _role_error(
                self.key, "key", self.key,
                "use lower case letters, digits and underscores, starting with a letter",
            )
        if not isinstance(self.title, str) or not self.title.strip():
            raise _role_error(self.key, "title", self.title, "give the role a human-readable title")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise _role_error(self.key, "count", self.count, "use a whole number of agents, 0 or more")
        if not isinstance(self.department, Department):
            raise _role_error(
                self.key, "department", self.department,
                f"use one of {', '.join(d.value for d in Department)}",
            )
        if not isinstance(self.mode, Mode):
            raise _role_error(self.key, "mode", self.mode, f"use one of {', '.join(m.value for m in Mode)}")
        if not isinstance(self.brief, str) or not self.brief.strip():
            raise _role_error(self.key, "brief", self.brief, "write a one- or two-sentence brief")


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
class RoleSpec:
    """A role as deployed: the role, the image its agents run, and their command and extra environment."""

    role: Role
    image: str
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.image, str) or not self.image.strip():
            raise _role_error(self.role.key, "image", self.image, "set agentImage or images.<role> in the stack")
        if self.command is not None and (
            not self.command or not all(isinstance(part, str) for part in self.command)
        ):
            raise _role_error(self.role.key, "command", self.command, "use a non-empty list of strings")
        for name, value in self.env.items():
            if not isinstance(name, str) or not ENV_NAME_PATTERN.match(name):
                raise _role_error(self.role.key, "env", name, "use environment names like AGENT_MODEL")
            if name in RESERVED_AGENT_ENV:
                raise _role_error(
                    self.role.key, "env", name, "the coordinator sets this variable itself; remove it"
                )
            if not isinstance(value, str):
                raise _role_error(self.role.key, f"env.{name}", value, "environment values are strings")

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


def roster_from_dict(data: object) -> tuple[RoleSpec, ...]:
    """Parse a roster document; every error names the role and the field."""
    if not isinstance(data, dict) or not isinstance(data.get("roles"), list):
        raise RosterError('the roster must be a JSON object {"roles": [...]}')
    specs: list[RoleSpec] = []
    for index, entry in enumerate(data["roles"]):
        if not isinstance(entry, dict):
            raise RosterError(f"roles[{index}] is {entry!r}: each role is a JSON object")
        key = entry.get("key", f"roles[{index}]")
        for required in ("key", "title", "count", "department", "mode", "brief", "image"):
            if required not in entry:
                raise _role_error(key, required, None, "this field is required")
        unknown = set(entry) - {"key", "title", "count", "department", "mode", "brief", "image", "command", "env"}
        if unknown:
            raise _role_error(key, sorted(unknown)[0], entry[sorted(unknown)[0]], "remove it; it is not a roster field")
        command = entry.get("command")
        if command is not None and not isinstance(command, list):
            raise _role_error(key, "command", command, "use a list of strings")
        env = entry.get("env") or {}
        if not isinstance(env, dict):
            raise _role_error(key, "env", env, "use an object of NAME: value strings")
        role = Role(
            key=entry["key"],
            title=entry["title"],
            count=entry["count"],
            department=_enum_value(Department, key, "department", entry["department"]),
            mode=_enum_value(Mode, key, "mode", entry["mode"]),
            brief=entry["brief"],
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


def roster_from_json(text: str) -> tuple[RoleSpec, ...]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RosterError(f"the roster is not valid JSON: {exc}") from None
    return roster_from_dict(data)
