"""Who each agent is on GitHub: named identities, the role that uses each, and what its tokens may do.

GitHub refuses an approval from a pull request's author ("Can not approve your own pull request"), so the
reviewers must act as another account, or another GitHub App, than the roles that open pull requests. An
identity is either a token (a machine account's) or a GitHub App installation, whose short-lived tokens the
coordinator mints for each spawn (`coordinator.edges.github_app`), narrowed to the one repository and to the
permissions of the role's mode.

Pure (the standard library and the package's pure modules only): the stack (`agent-fleet:githubIdentities`,
camelCase keys) and the coordinator (AGENT_IDENTITIES_FILE, GITHUB_APP_FILE, snake_case keys) check identities by
the same rules here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from coordinator.fleet import IDENTITY_NAME_PATTERN, MAX_AGENT_SECRET_BYTES, Mode, Role
from coordinator.redact import MIN_SECRET_CHARS, Secret

# The identities a role uses unless it names one: reviewers apart from everyone else.
AUTHOR = "author"
REVIEWER = "reviewer"
# The running coordinator's own identity, for the merge step (never an agent's).
COORDINATOR = "coordinator"

# What each mode's installation token may do: a reviewer reads code and reviews (and reads the checks and statuses
# of what it reviews: the reference reviewer passes over a pull request whose checks fail); a thinker reads code
# and files issues; every other mode pushes branches, opens pull requests and comments on issues.
WRITER_PERMISSIONS: Mapping[str, str] = {"contents": "write", "pull_requests": "write", "issues": "write"}
MODE_PERMISSIONS: Mapping[Mode, Mapping[str, str]] = {
    Mode.REVIEWER: {"contents": "read", "pull_requests": "write", "checks": "read", "statuses": "read"},
    Mode.THINKER: {"contents": "read", "issues": "write"},
    Mode.TASK_DRIVEN: WRITER_PERMISSIONS,
    Mode.SELF_DIRECTED: WRITER_PERMISSIONS,
    Mode.SENTINEL: WRITER_PERMISSIONS,
}
# What the running coordinator's token may do: merge (contents and pull requests write) and read what decides it.
COORDINATOR_PERMISSIONS: Mapping[str, str] = {
    "contents": "write", "pull_requests": "write", "checks": "read", "statuses": "read", "issues": "read",
}
# The modes whose agents open pull requests (the Sentinel opens reverts): their identity may not review.
AUTHOR_MODES = frozenset({Mode.TASK_DRIVEN, Mode.SELF_DIRECTED, Mode.SENTINEL})

# The keys of an identity, as the stack spells them and as the coordinator's files do.
STACK_APP_KEYS = ("appId", "installationId", "privateKey")
FILE_APP_KEYS = ("app_id", "installation_id", "private_key")
MAX_PRIVATE_KEY_CHARS = 16 * 1024


def role_identity(role: Role) -> str:
    """The identity a role's agents act as: the one it names, else `reviewer` for a Reviewer, else `author`."""
    if role.identity is not None:
        return role.identity
    return REVIEWER if role.mode is Mode.REVIEWER else AUTHOR


def token_permissions(role: Role) -> dict[str, str]:
    """The permissions a role's minted token asks for: its mode's, raised by the role's `githubPermissions`."""
    asked = dict(MODE_PERMISSIONS[role.mode])
    for name, level in role.github_permissions:
        if asked.get(name) != "write":
            asked[name] = level
    return dict(sorted(asked.items()))


@dataclass(frozen=True)
class TokenIdentity:
    """A machine account's token, handed to each agent as it is."""

    token: Secret


@dataclass(frozen=True)
class AppIdentity:
    """A GitHub App's installation on the repository; the key signs the JWT that mints tokens, and never leaves
    the coordinator."""

    app_id: int
    installation_id: int
    private_key: Secret


Identity = TokenIdentity | AppIdentity


class IdentityFault(ValueError):
    """What is wrong with an object of identities: `name` (the identity, or "" for the whole object) and `what`
    (worded without any value, which may be a secret)."""

    def __init__(self, name: str, what: str) -> None:
        super().__init__(name, what)
        self.name = name
        self.what = what


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def check_identity(name: str, value: object, keys: tuple[str, str, str]) -> dict[str, object]:
    """One identity entry, checked: {"token": str} or {app id, installation id, private key} (by `keys`)."""
    if not isinstance(name, str) or not IDENTITY_NAME_PATTERN.fullmatch(name):
        raise IdentityFault(str(name), "is not an identity's name: use a-z, 0-9, '_' and '-', starting with a "
                            "letter, at most 32 characters (like author, reviewer, coordinator)")
    token_form = '{"token": "..."}'
    app_form = '{"' + keys[0] + '": N, "' + keys[1] + '": N, "' + keys[2] + '": "<PEM>"}'
    if not isinstance(value, dict) or not value:
        raise IdentityFault(name, f"is not an identity: use {token_form} or {app_form}")
    if set(value) == {"token"}:
        token = value["token"]
        if not isinstance(token, str) or not token.strip() or "\0" in token or not token.isprintable():
            raise IdentityFault(name, "holds no usable token (not a string, empty, or holding control characters)")
        if len(token.strip()) < MIN_SECRET_CHARS:  # the rule of every secret: scrubbing a shorter one blanks text
            raise IdentityFault(name, f"holds a token shorter than {MIN_SECRET_CHARS} characters, too short to be one")
        if len(token) > MAX_AGENT_SECRET_BYTES:  # it becomes the agent's GITHUB_TOKEN secret
            raise IdentityFault(name, f"holds a token over {MAX_AGENT_SECRET_BYTES // 1024} KiB, which is no token")
        return {"token": token.strip()}
    if set(value) == set(keys):
        app_id, installation_id, key = (value[k] for k in keys)
        if not _whole(app_id):
            raise IdentityFault(name, f"has {keys[0]} {app_id!r}: use the App's id, a whole number (App settings)")
        if not _whole(installation_id):
            raise IdentityFault(
                name, f"has {keys[1]} {installation_id!r}: use the installation's id, a whole number (the number "
                "at the end of the installation's settings URL)")
        if not isinstance(key, str) or "PRIVATE KEY-----" not in key or len(key) > MAX_PRIVATE_KEY_CHARS:
            raise IdentityFault(name, f"has no PEM private key in {keys[2]}: paste the whole .pem file the App's "
                                "settings generated, BEGIN and END lines included")
        return {keys[0]: app_id, keys[1]: installation_id, keys[2]: key}
    raise IdentityFault(name, f"has the keys {', '.join(sorted(map(str, value)))}: use {token_form} or {app_form}")


def check_identities(value: object, keys: tuple[str, str, str]) -> dict[str, dict[str, object]]:
    """An object of identities (name -> entry), each checked (IdentityFault names the first that is wrong)."""
    if not isinstance(value, dict):
        raise IdentityFault("", "is not a JSON object of name -> identity")
    return {name: check_identity(name, entry, keys) for name, entry in value.items()}


# --------------------------------------------------------------------------------------------------
# A roster whose reviews could never count


@dataclass(frozen=True)
class SharedReviewer:
    """A Reviewer role that would act on GitHub as the same account as a role that opens pull requests."""

    reviewer: str
    author: str
    identity: str | None  # None: both receive the one GITHUB_TOKEN agent secret

    def describe(self, *, counts_setting: str = "counts") -> str:
        shared = f"the identity {self.identity!r}" if self.identity else "the one GITHUB_TOKEN agent secret"
        return (
            f"role {self.reviewer!r} (Reviewer) would act on GitHub with {shared}, as role {self.author!r}, which "
            "opens pull requests; GitHub refuses an approval from a pull request's author (\"Can not approve your "
            f"own pull request\"), so {self.reviewer!r}'s reviews would never count. Give the reviewers their own "
            "identity: a `reviewer` entry in githubIdentities (a second GitHub App, or a second machine account's "
            f"token), or the role's `identity`; or set {counts_setting}.{self.reviewer} 0 and have people review"
        )


def _uses_agent_token(role: Role, agent_secret_names: Iterable[str]) -> bool:
    return "GITHUB_TOKEN" in agent_secret_names and (role.secrets is None or "GITHUB_TOKEN" in role.secrets)


def shared_reviewer(
    roles: Iterable[tuple[Role, int]], identities: Iterable[str] | None, agent_secret_names: Iterable[str] = ()
) -> SharedReviewer | None:
    """The first Reviewer role (count above 0) that shares its GitHub identity with a role (count above 0) that
    opens pull requests; `identities` None: no identities are set, and agents share the GITHUB_TOKEN secret."""
    active = [role for role, count in roles if count > 0]
    names = tuple(agent_secret_names)

    def identity_of(role: Role) -> str | None:
        if identities is None:
            return "" if _uses_agent_token(role, names) else None
        return role_identity(role)

    for reviewer in (r for r in active if r.mode is Mode.REVIEWER):
        mine = identity_of(reviewer)
        if mine is None:
            continue
        for author in (r for r in active if r.mode in AUTHOR_MODES):
            if identity_of(author) == mine:
                return SharedReviewer(reviewer.key, author.key, mine or None)
    return None


def missing_identities(roles: Iterable[tuple[Role, int]], identities: Iterable[str]) -> list[tuple[str, str]]:
    """(role, identity) for each role with agents whose identity is not among `identities`."""
    held = set(identities)
    return [(role.key, role_identity(role)) for role, count in roles if count > 0 and role_identity(role) not in held]


# --------------------------------------------------------------------------------------------------
# The port to GitHub's token endpoint (coordinator.edges.github_app implements it)


@dataclass(frozen=True)
class MintedToken:
    """An installation token: for one repository, the asked permissions, until `expires_at` (an hour)."""

    token: Secret
    expires_at: datetime


class MintFailure(Exception):
    """GitHub minted no token: the message says why and the fix, and never holds the key, the JWT or a token."""


class TokenMinter(Protocol):
    def mint(self, app: AppIdentity, permissions: Mapping[str, str]) -> MintedToken:
        """A token of `app`'s installation narrowed to the repository and `permissions`; raises MintFailure."""
        ...


# --------------------------------------------------------------------------------------------------
# Two token identities that are one account (found when the scheduler starts: one GET /user per token)

SHARED_ACCOUNTS_FILE = "identities.json"  # beside the heartbeat: what the scheduler found, for every cycle to report


def shared_accounts(logins: Mapping[str, str]) -> list[str]:
    """One finding per GitHub account that more than one token identity turns out to be (name -> login)."""
    by_login: dict[str, list[str]] = {}
    for name, login in sorted(logins.items()):
        by_login.setdefault(login.casefold(), []).append(name)
    return [
        f"the identities {' and '.join(repr(n) for n in names)} are one GitHub account "
        f"({logins[names[0]]!r}): GitHub refuses that account's approvals of its own pull requests; give each "
        "identity its own account's token, or a GitHub App"
        for names in by_login.values() if len(names) > 1
    ]
