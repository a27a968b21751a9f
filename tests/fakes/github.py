"""A local GitHub for the tests: a stateful, thread-safe HTTP server speaking GitHub's REST and GraphQL APIs.

It is laid out like GitHub Enterprise so that clients find it through their base-URL settings alone:
REST under ``http://127.0.0.1:PORT/api/v3`` and GraphQL at ``http://127.0.0.1:PORT/api/graphql``
(PyGithub derives the latter from the former). Every GraphQL document is parsed and validated against
GitHub's published schema (``tests/fixtures/github/schema.graphql``) and executed by graphql-core over the
state, so answers have GitHub's exact shapes and a field GitHub does not have is an error, as on GitHub.

Usage::

    from github import Auth, Github
    from tests.fakes.github import FakeGitHub

    with FakeGitHub(required_checks=("ci",)) as gh:          # server runs inside the block
        pr = gh.add_pull("Add login page", labels=("feature",))
        gh.approve(pr.number)
        gh.add_check_run(pr.number, "ci")                     # on the pull's current head
        client = Github(auth=Auth.Token(gh.token), base_url=gh.api_url, seconds_between_requests=0)
        client.get_repo(gh.repository).get_pull(pr.number).merge(merge_method="squash", sha=pr.head_sha)
        assert gh.pull(pr.number).merged

    gh.push(n)                        # new head sha; old checks stay on the old sha; stale approvals dismissed
    gh.fail("PUT", r"/merge$", 502, after=True)   # merge applied, then answered 502
    gh.fail("GET", r"/pulls$", 429, headers={"retry-after": "1"}, times=2)
    gh.fail("POST", "/api/graphql", 200, trickle=0.5)   # the answer sent one byte every 0.5 s
    gh.rate_limit(0, reset_in_s=30)   # REST answers 403, GraphQL answers errors[type=RATE_LIMITED]
    gh.on_merge = lambda n: gh.push(n)   # runs (lock held, same thread) before a merge is checked and applied
    # after_query runs (lock held) once a GraphQL answer is computed, before anything else: a change mid-race
    gh.after_query = lambda op: gh.add_label(1, "do-not-merge") if op == "OpenPullRequests" else None
    gh.calls("PUT", "/merge"); gh.requests; gh.graphql_documents

    FakeGitHub(merge_queue=True)       # the default branch requires the merge queue: a direct merge answers 405
    gh.add_to_queue(n); gh.queue; gh.set_queue_state(n, "UNMERGEABLE"); gh.land_from_queue(n)
    FakeGitHub(require_up_to_date=True)   # strict: BEHIND once the base moves; PUT .../update-branch catches up

Agents open pull requests through REST (``POST /repos/{o}/{r}/pulls``, then ``POST .../issues/{n}/labels``), each
with its own token: ``FakeGitHub(extra_tokens={agent_token: "fleet-agent[bot]"})`` accepts it, acting as that login.
``resolve_branch`` (e.g. ``FakeGitServer.head``) gives a new pull request its head sha; without it one is made up::

    FakeGitHub(resolve_branch=git_server.head, extra_tokens={"agent-token-...": "fleet-agent[bot]"})

Issues (``GET/POST .../issues`` listing pull requests too, with ``pull_request``; comments; labels, created when
an unknown one is applied, as GitHub does; ``GET /labels``), reviews (``POST .../pulls/{n}/reviews`` with
``commit_id``, refusing the author's own approval with 422), ``GET /user`` and a pull request's diff
(``Accept: application/vnd.github.diff``) are served for agents. With a git server, merges are real::

    FakeGitHub(resolve_branch=git.head, merge_branch=git.squash, diff=git.diff, labels=("role:builder",))

and a merge into the default branch closes the issues the pull request's body says it closes (``Closes #N``).

Semantics follow GitHub's REST and GraphQL documentation: ``reviewDecision`` (null when no review is required),
``statusCheckRollup`` (null when nothing reported), ``mergeStateStatus``, merges that check the pinned head
(409 / GraphQL error), the method the repository allows (405) and branch protection (405). Connections reject
``first``/``last`` over 100 and require one of them when ``nodes``/``edges`` are selected, as GitHub does.
Cursors are opaque keyset cursors, so merging between pages does not skip pull requests.

The server is quiet: nothing is logged, and the token is never echoed. ``on_merge`` and ``after_query`` run on a
server thread with the state lock held: they may call this object's methods but must not make HTTP requests to the
server. ``after_query`` is given the operation's name (None if unnamed) after the answer is computed, so that a change
it makes lands between that read and whatever the client sends next: the race between a read and a write.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import math
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, NamedTuple
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    GraphQLAbstractType,
    GraphQLError,
    GraphQLInt,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    build_ast_schema,
    default_field_resolver,
    execute,
    get_named_type,
    parse,
    validate,
    value_from_ast,
    visit,
)

# GitHub's published schema, vendored with its source and date (tests/fixtures/github/README.md).
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "github" / "schema.graphql"
REST_PREFIX = "/api/v3"
GRAPHQL_PATH = "/api/graphql"
DOCS = "https://docs.github.com/rest"

CHECK_STATUSES = ("queued", "in_progress", "completed", "waiting", "requested", "pending")
CHECK_CONCLUSIONS = (
    "success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required", "startup_failure", "stale",
)
FAILING_CONCLUSIONS = frozenset({"failure", "timed_out", "cancelled", "action_required", "startup_failure", "stale"})
STATUS_STATES = ("success", "pending", "failure", "error")
MERGEABLE_STATES = ("MERGEABLE", "CONFLICTING", "UNKNOWN")
MERGE_METHODS = ("merge", "squash", "rebase")
NOT_MERGEABLE = "Pull Request is not mergeable"
# The permission each REST handler needs of a token that has permissions (an installation's, a fine-grained one),
# as GitHub's "Permissions required" tables say; classic tokens are limited by their account's role only.
# Each entry lists the alternatives: any one of them is enough (an issue comment takes issues or pull requests write).
REST_PERMISSIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "_rest_repo": (("metadata", "read"),),
    "_rest_pulls": (("pull_requests", "read"),),
    "_rest_pull": (("pull_requests", "read"),),
    "_rest_reviews": (("pull_requests", "read"),),
    "_rest_is_merged": (("pull_requests", "read"),),
    "_rest_merge": (("contents", "write"),),
    "_rest_create_pull": (("pull_requests", "write"),),
    "_rest_add_labels": (("issues", "write"), ("pull_requests", "write")),
    "_rest_issues": (("issues", "read"), ("pull_requests", "read")),
    "_rest_create_issue": (("issues", "write"),),
    "_rest_issue": (("issues", "read"), ("pull_requests", "read")),
    "_rest_comments": (("issues", "read"), ("pull_requests", "read")),
    "_rest_create_comment": (("issues", "write"), ("pull_requests", "write")),
    "_rest_labels": (("metadata", "read"),),
    "_rest_label": (("metadata", "read"),),
    "_rest_create_review": (("pull_requests", "write"),),
    "_rest_combined_status": (("statuses", "read"),),
    "_rest_check_runs": (("checks", "read"),),
}
# What a fine-grained personal access token can be given: everything the fleet uses but Checks, which GitHub
# does not offer fine-grained tokens (check runs are for Apps).
FINE_GRAINED_PERMISSIONS = {"metadata": "read", "contents": "write", "pull_requests": "write", "issues": "write",
                            "statuses": "read", "workflows": "write"}
HEAD_MODIFIED = "Head branch was modified. Review and try the merge again."
# A direct merge where the base branch requires the merge queue (HTTP 405; reported in akuity/kargo#5405).
QUEUE_REQUIRED = "Changes must be made through the merge queue"
OUT_OF_DATE = "Head branch is out of date. Review and try the merge again."
UPDATE_HEAD_MISMATCH = "expected head sha didn't match current head ref."
QUEUE_ENTRY_STATES = ("AWAITING_CHECKS", "LOCKED", "MERGEABLE", "QUEUED", "UNMERGEABLE")


# --------------------------------------------------------------------------------------------------------- schema

_schema: GraphQLSchema | None = None
_schema_lock = threading.Lock()


def github_schema() -> GraphQLSchema:
    """GitHub's GraphQL schema, built once per process (it is big: about a second)."""
    global _schema
    with _schema_lock:
        if _schema is None:
            schema = build_ast_schema(parse(SCHEMA_FILE.read_text(encoding="utf-8")), assume_valid_sdl=True)
            schema._validation_errors = []  # GitHub's SDL has deprecation quirks graphql-core's strict check rejects
            _schema = schema
        return _schema


# ---------------------------------------------------------------------------------------------------------- state


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha(*parts: object) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()


@dataclass
class FakeReview:
    id: int
    reviewer: str
    state: str  # APPROVED | CHANGES_REQUESTED | COMMENTED | DISMISSED
    commit_id: str
    submitted_at: str
    body: str = ""
    typename: ClassVar[str] = "PullRequestReview"

    @property
    def node_id(self) -> str:
        return f"PRR_fake{self.id:08d}"


@dataclass
class FakeCheckRun:
    id: int
    name: str
    head_sha: str
    status: str
    conclusion: str | None
    started_at: str
    completed_at: str | None
    typename: ClassVar[str] = "CheckRun"


@dataclass
class FakeStatus:
    id: int
    context: str
    state: str
    sha: str
    created_at: str
    description: str = ""
    typename: ClassVar[str] = "StatusContext"


@dataclass
class FakeQueueEntry:
    id: int
    state: str  # one of QUEUE_ENTRY_STATES
    head_sha: str  # the head it was enqueued with
    enqueued_at: str
    typename: ClassVar[str] = "MergeQueueEntry"


@dataclass
class FakePull:
    number: int
    title: str
    body: str
    draft: bool
    base: str
    head_ref: str
    head_sha: str
    labels: list[str]
    mergeable: str  # MERGEABLE | CONFLICTING | UNKNOWN
    created_at: str
    updated_at: str
    author: str
    state: str = "open"  # open | closed
    merged: bool = False
    merge_commit_sha: str | None = None
    merged_title: str | None = None
    merged_message: str | None = None
    merge_method: str | None = None
    merged_at: str | None = None
    closed_at: str | None = None
    reviews: list[FakeReview] = field(default_factory=list)
    base_sha: str = ""  # the base commit the branch contains: behind once the base moves on
    queue_entry: FakeQueueEntry | None = None
    merged_by: str | None = None  # the login whose token merged it
    typename: ClassVar[str] = "PullRequest"

    @property
    def node_id(self) -> str:
        return f"PR_fake{self.number:08d}"


@dataclass(frozen=True)
class _Actor:
    login: str
    kind: str = "User"  # User | Bot | Organization

    @property
    def typename(self) -> str:
        return self.kind


@dataclass(frozen=True)
class _Commit:
    oid: str
    typename: ClassVar[str] = "Commit"


@dataclass(frozen=True)
class _Rollup:
    sha: str
    state: str
    typename: ClassVar[str] = "StatusCheckRollup"


@dataclass
class Fault:
    """An injected failure: the next `times` requests matching method and path_regex get `status` instead."""

    method: str
    pattern: re.Pattern[str]
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = 1  # None: every matching request
    after: bool = False  # apply the real effect first, then answer with the fault
    delay: float = 0.0  # seconds to wait before answering (simulates a slow or timing-out GitHub)
    # Seconds between bytes: the answer is written one byte at a time, which no per-read timeout notices.
    trickle: float = 0.0
    trickle_body_only: bool = False  # the status line and headers at once, then the body trickled
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        live = self.times is None or self.hits < self.times
        return live and self.method.upper() in ("*", method.upper()) and self.pattern.search(path) is not None


@dataclass
class FakeApp:
    """A GitHub App and its one installation on the repository: what the test hands the coordinator."""

    app_id: int
    installation_id: int
    slug: str
    private_key: str  # PEM (PKCS#8); its public half is what the fake checks each JWT against
    public_key: Any
    permissions: dict[str, str]  # what the installation was granted
    repositories: tuple[str, ...] | None  # None: all of the owner's repositories
    installed: bool = True

    @property
    def login(self) -> str:
        return f"{self.slug}[bot]"

    def as_identity(self) -> dict[str, Any]:
        """The App as the coordinator's files name one (AGENT_IDENTITIES_FILE's entries, GITHUB_APP_FILE)."""
        return {"app_id": self.app_id, "installation_id": self.installation_id, "private_key": self.private_key}


@dataclass(frozen=True)
class InstallationToken:
    """A token minted for an installation: its App, narrowed permissions and repositories, and its expiry."""

    token: str
    app_id: int
    installation_id: int
    permissions: dict[str, str]
    repositories: tuple[str, ...]
    expires_at: float


class Call(NamedTuple):
    method: str
    path: str  # with the query string
    document: str | None  # the GraphQL document, for POST /api/graphql


@dataclass
class _Bucket:
    limit: int = 5000
    remaining: int = 5000
    used: int = 0
    reset: int = field(default_factory=lambda: int(time.time()) + 3600)

    def refresh(self) -> None:
        if time.time() >= self.reset:
            self.remaining, self.used, self.reset = self.limit, 0, int(time.time()) + 3600

    def headers(self, resource: str) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-used": str(self.used),
            "x-ratelimit-reset": str(self.reset),
            "x-ratelimit-resource": resource,
        }

    def as_json(self, resource: str) -> dict[str, Any]:
        return {"limit": self.limit, "remaining": self.remaining, "reset": self.reset, "used": self.used,
                "resource": resource}


class _Response(NamedTuple):
    status: int
    body: Any
    headers: dict[str, str]


class _Problem(Exception):
    """An error GitHub reports with a `type` (NOT_FOUND, UNPROCESSABLE, ...); REST answers it with `status`."""

    def __init__(self, kind: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.kind, self.message, self.status = kind, message, status


# ------------------------------------------------------------------------------------------------------ FakeGitHub


class FakeGitHub:
    """The state of one repository, and (as a context manager, or start/stop) the server in front of it."""

    def __init__(
        self,
        owner: str = "acme",
        name: str = "webapp",
        token: str = "test-token-0123456789abcdef",
        default_branch: str = "main",
        require_review: bool = True,
        dismiss_stale_reviews: bool = True,
        required_checks: Iterable[str] = (),
        allow_squash_merge: bool = True,
        allow_merge_commit: bool = True,
        allow_rebase_merge: bool = True,
        writers: Iterable[str] = ("alice", "bob", "carol", "dave"),
        resolve_branch: Callable[[str], str | None] | None = None,
        extra_tokens: Mapping[str, str] | None = None,
        merge_branch: Callable[[str, str, str], str | None] | None = None,
        diff: Callable[[str, str], str] | None = None,
        labels: Iterable[str] = (),
        merge_queue: bool = False,
        require_up_to_date: bool = False,
    ) -> None:
        self.owner, self.name, self.token, self.default_branch = owner, name, token, default_branch
        # Who can push. On a public repository anyone may submit a review; GitHub counts only these
        # reviewers in reviewDecision and, with writersOnly: true, in latestOpinionatedReviews.
        self.writers: set[str] = set(writers)
        self.require_review = require_review
        self.dismiss_stale_reviews = dismiss_stale_reviews
        self.required_checks = tuple(required_checks)
        self.allow_squash_merge = allow_squash_merge
        self.allow_merge_commit = allow_merge_commit
        self.allow_rebase_merge = allow_rebase_merge
        # The default branch's ruleset requires the merge queue: direct merges answer 405, enqueuePullRequest adds.
        self.merge_queue = merge_queue
        # The required checks' strict policy: a branch that lacks the base's latest commit is BEHIND, unmergeable.
        self.require_up_to_date = require_up_to_date
        self.on_merge: Callable[[int], object] | None = None
        self.after_query: Callable[[str | None], object] | None = None
        # after_rest runs (lock held) once a REST answer is computed, given the method and path: a change mid-race
        # (another agent's claim landing between an agent's read and its write).
        self.after_rest: Callable[[str, str], object] | None = None
        # A branch's head sha (None: no such branch), for pull requests opened through REST: a git server's.
        self.resolve_branch = resolve_branch
        # Other accounts' tokens, token -> login (an agent's own token): accepted, acting as that login.
        self.extra_tokens: dict[str, str] = dict(extra_tokens or {})
        # A git server's squash merge (base branch, head sha, message) -> new base sha, or None on a conflict:
        # with it a merge changes the repository, as GitHub's does (e.g. FakeGitServer.squash).
        self.merge_branch = merge_branch
        # A pull request's diff (base branch, head sha) -> text, for Accept: application/vnd.github.diff.
        self.diff = diff
        # The repository's labels (casefolded -> name). Adding an unknown one to an issue creates it, as GitHub does.
        self.labels: dict[str, str] = {}
        self._comments: dict[int, list[dict[str, Any]]] = {}
        self._actor = "fleet-bot"  # the login of the request being handled (the state lock is held)
        # Tokens that act as fine-grained personal access tokens: they have no Checks permission, so GitHub
        # answers a GraphQL read of a check run with the field null and a FORBIDDEN error at its path.
        self.fine_grained: set[str] = set()
        # What the request being handled may read and write: None for a classic token (its account's role only),
        # else permission -> read|write, and the words GitHub refuses the rest with.
        self._grant: Mapping[str, str] | None = None
        self._refusal = ""
        # GitHub Apps by id, and the installation tokens they minted (token -> what it may do, until when).
        self.apps: dict[int, FakeApp] = {}
        self.installation_tokens: dict[str, InstallationToken] = {}
        self.token_lifetime_s = 3600.0
        self._reach: tuple[str, ...] | None = None  # the repositories the request's token reaches (None: any)
        self.requests: list[Call] = []
        self.graphql_documents: list[str] = []
        self.graphql_variables: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.server_errors: list[str] = []  # tracebacks of the fake's own bugs (answered 500)
        self._lock = threading.RLock()
        self._pulls: dict[int, FakePull] = {}
        self._issues: dict[int, dict[str, Any]] = {}
        self._checks: dict[str, list[FakeCheckRun]] = {}
        self._statuses: dict[str, list[FakeStatus]] = {}
        self._known_shas: set[str] = set()
        self._ids = itertools.count(1001)
        self._clock = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
        self._base_sha = self._new_sha("base")
        self._buckets = {"core": _Bucket(), "graphql": _Bucket()}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()  # ends trickling answers when the server stops
        for label in labels:
            self.define_label(label)

    # ------------------------------------------------------------------ lifecycle

    @property
    def repository(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def root_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeGitHub is not started; call start() or use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return self.root_url + REST_PREFIX

    @property
    def graphql_url(self) -> str:
        return self.root_url + GRAPHQL_PATH

    def start(self) -> FakeGitHub:
        if self._server is None:
            self._stopping.clear()
            threading.Thread(target=github_schema, daemon=True).start()  # warm the schema in the background
            self._server = _Server(("127.0.0.1", 0), _Handler)
            self._server.fake = self
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="fake-github", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server, self._thread = None, None

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ arranging the state

    def _tick(self) -> str:
        self._clock += timedelta(seconds=1)
        return _iso(self._clock)

    def _new_sha(self, *parts: object) -> str:
        sha = _sha(self.repository, next(self._ids), *parts)
        self._known_shas.add(sha)
        return sha

    def add_pull(
        self,
        title: str = "Add a feature",
        *,
        draft: bool = False,
        base: str | None = None,
        labels: Iterable[str] = (),
        mergeable: str = "MERGEABLE",
        created_at: datetime | str | None = None,
        author: str = "dev",
        body: str = "",
        head_ref: str | None = None,
    ) -> FakePull:
        if mergeable not in MERGEABLE_STATES:
            raise ValueError(f"mergeable={mergeable!r}; use one of {MERGEABLE_STATES}")
        with self._lock:
            number = len(self._pulls) + 1
            stamp = self._tick()
            if isinstance(created_at, datetime):
                stamp = _iso(created_at)
            elif created_at is not None:
                stamp = created_at
            pull = FakePull(
                number=number, title=title, body=body, draft=draft, base=base or self.default_branch,
                head_ref=head_ref or f"feature/{number}", head_sha=self._new_sha("head", number), labels=list(labels),
                mergeable=mergeable, created_at=stamp, updated_at=stamp, author=author, base_sha=self._base_sha,
            )
            self._pulls[number] = pull
            for label in pull.labels:
                self.define_label(label)
            return pull

    def add_issue(self, title: str = "A task", *, labels: Iterable[str] = (), state: str = "open", body: str = "",
                  author: str = "dev") -> int:
        """An issue (not a pull request): the backlog the coordinator counts by label. Numbered from 10001,
        apart from pull requests, so that tests can keep numbering those 1, 2, 3."""
        with self._lock:
            number = 10001 + len(self._issues)
            stamp = self._tick()
            self._issues[number] = {"__typename": "Issue", "id": f"I_fake{number:08d}", "number": number,
                                    "title": title, "labels": list(labels), "state": state.upper(), "body": body,
                                    "author": author, "created_at": stamp, "updated_at": stamp,
                                    "closed_at": stamp if state.lower() == "closed" else None,
                                    "state_reason": "completed" if state.lower() == "closed" else None}
            for label in labels:
                self.define_label(label)
            return number

    def issue(self, number: int) -> dict[str, Any]:
        """An issue's state: title, body, labels, state ("OPEN" | "CLOSED"), author, closed_at."""
        with self._lock:
            try:
                return dict(self._issues[number])
            except KeyError:
                raise KeyError(f"no issue #{number} in the fake (it has {sorted(self._issues)})") from None

    @property
    def issues(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(issue) for issue in self._issues.values()]

    def comments(self, number: int) -> list[dict[str, Any]]:
        """The comments on an issue or a pull request: id, user (login), body, created_at."""
        with self._lock:
            return [dict(comment) for comment in self._comments.get(number, [])]

    def add_comment(self, number: int, body: str, author: str = "dev", created_at: datetime | None = None,
                    ) -> dict[str, Any]:
        """A comment on an issue or pull request, stamped with the wall clock (`created_at` to set another)."""
        with self._lock:
            stamp = _iso(created_at or datetime.now(UTC))
            comment = {"id": next(self._ids), "user": author, "body": body, "created_at": stamp, "updated_at": stamp}
            self._comments.setdefault(number, []).append(comment)
            return dict(comment)

    def define_label(self, name: str) -> None:
        """A label of the repository (as the Pulumi program creates role:<key> ones)."""
        with self._lock:
            self.labels.setdefault(name.casefold(), name)

    def pull(self, number: int) -> FakePull:
        with self._lock:
            try:
                return self._pulls[number]
            except KeyError:
                raise KeyError(f"no pull request #{number} in the fake (it has {len(self._pulls)})") from None

    @property
    def pulls(self) -> list[FakePull]:
        with self._lock:
            return list(self._pulls.values())

    def _review(self, number: int, reviewer: str, state: str, body: str) -> FakeReview:
        with self._lock:
            pull = self.pull(number)
            review = FakeReview(next(self._ids), reviewer, state, pull.head_sha, self._tick(), body)
            pull.reviews.append(review)
            return review

    def approve(self, number: int, reviewer: str = "alice", body: str = "") -> FakeReview:
        return self._review(number, reviewer, "APPROVED", body)

    def request_changes(self, number: int, reviewer: str = "bob", body: str = "Please fix") -> FakeReview:
        return self._review(number, reviewer, "CHANGES_REQUESTED", body)

    def comment_review(self, number: int, reviewer: str = "carol", body: str = "A remark") -> FakeReview:
        return self._review(number, reviewer, "COMMENTED", body)

    def dismiss_review(self, number: int, reviewer: str) -> None:
        """Dismiss every approving or change-requesting review of `reviewer`."""
        with self._lock:
            for review in self.pull(number).reviews:
                if review.reviewer == reviewer and review.state in ("APPROVED", "CHANGES_REQUESTED"):
                    review.state = "DISMISSED"

    def add_check_run(
        self, number: int, name: str, status: str = "completed", conclusion: str | None = "success",
        *, sha: str | None = None,
    ) -> FakeCheckRun:
        """A check run on the pull's current head (or `sha`); a later run of the same name supersedes it."""
        if status not in CHECK_STATUSES:
            raise ValueError(f"status={status!r}; use one of {CHECK_STATUSES}")
        if status == "completed" and conclusion not in CHECK_CONCLUSIONS:
            raise ValueError(f"conclusion={conclusion!r}; use one of {CHECK_CONCLUSIONS}")
        with self._lock:
            head = sha or self.pull(number).head_sha
            stamp = self._tick()
            run = FakeCheckRun(next(self._ids), name, head, status, conclusion if status == "completed" else None,
                               stamp, stamp if status == "completed" else None)
            self._checks.setdefault(head, []).append(run)
            return run

    def add_status(self, number: int, context: str, state: str = "success", *, sha: str | None = None) -> FakeStatus:
        """A commit status on the pull's current head (or `sha`); a later one of the same context supersedes it."""
        if state not in STATUS_STATES:
            raise ValueError(f"state={state!r}; use one of {STATUS_STATES}")
        with self._lock:
            head = sha or self.pull(number).head_sha
            status = FakeStatus(next(self._ids), context, state, head, self._tick())
            self._statuses.setdefault(head, []).append(status)
            return status

    def push(self, number: int, mergeable: str | None = None) -> str:
        """A new commit on the pull's branch: returns the new head sha. Checks stay on the old sha."""
        with self._lock:
            pull = self.pull(number)
            pull.head_sha = self._new_sha("push", number)
            pull.updated_at = self._tick()
            pull.queue_entry = None  # GitHub takes a pull request whose branch changed out of the merge queue
            if mergeable is not None:
                self.set_mergeable(number, mergeable)
            if self.dismiss_stale_reviews:
                for review in pull.reviews:
                    if review.state == "APPROVED":
                        review.state = "DISMISSED"
            return pull.head_sha

    def set_mergeable(self, number: int, value: str) -> None:
        if value not in MERGEABLE_STATES:
            raise ValueError(f"mergeable={value!r}; use one of {MERGEABLE_STATES}")
        with self._lock:
            self.pull(number).mergeable = value

    def set_draft(self, number: int, draft: bool = True) -> None:
        with self._lock:
            self.pull(number).draft = draft

    def add_label(self, number: int, label: str) -> None:
        with self._lock:
            self.pull(number).labels.append(label)

    # ------------------------------------------------------------------ the merge queue, as its owner sees it

    @property
    def queue(self) -> list[int]:
        """The numbers of the pull requests in the merge queue, first to merge first."""
        with self._lock:
            entries = [(p.queue_entry.id, p.number) for p in self._pulls.values() if p.queue_entry is not None]
            return [number for _, number in sorted(entries)]

    def add_to_queue(self, number: int) -> FakeQueueEntry:
        """Enqueue as someone else would (the merge button's "Merge when ready"), with GitHub's own checks."""
        with self._lock:
            self.pull(number)
            return self._enqueue(number, None)

    def set_queue_state(self, number: int, state: str) -> None:
        """What the queue's checks made of the entry (UNMERGEABLE: they failed on the merged result)."""
        if state not in QUEUE_ENTRY_STATES:
            raise ValueError(f"state={state!r}; use one of {QUEUE_ENTRY_STATES}")
        with self._lock:
            entry = self.pull(number).queue_entry
            if entry is None:
                raise ValueError(f"#{number} is not in the merge queue")
            entry.state = state

    def land_from_queue(self, number: int) -> None:
        """The queue merges the entry, as GitHub does once its merge group's checks pass."""
        with self._lock:
            pull = self.pull(number)
            if pull.queue_entry is None:
                raise ValueError(f"#{number} is not in the merge queue")
            pull.queue_entry = None
            stamp = self._tick()
            self._base_sha = pull.merge_commit_sha = self._new_sha("merge", number)
            pull.state, pull.merged, pull.merge_method = "closed", True, "squash"
            pull.merged_title = f"{pull.title} (#{number})"
            pull.merged_at = pull.closed_at = pull.updated_at = stamp

    def _queue_enabled(self, pull: FakePull) -> bool:
        return self.merge_queue and pull.base == self.default_branch

    def _queue_position(self, entry: FakeQueueEntry) -> int:
        ids = sorted(p.queue_entry.id for p in self._pulls.values() if p.queue_entry is not None)
        return ids.index(entry.id) + 1

    def _behind(self, pull: FakePull) -> bool:
        return self.require_up_to_date and pull.base == self.default_branch and pull.base_sha != self._base_sha

    def close(self, number: int) -> None:
        with self._lock:
            pull = self.pull(number)
            pull.state, pull.closed_at = "closed", self._tick()

    # ------------------------------------------------------------------ faults, rate limits, recorded calls

    def fail(
        self, method: str, path_regex: str, status: int, body: Any = None, headers: dict[str, str] | None = None,
        times: int | None = 1, after: bool = False, delay: float = 0.0, trickle: float = 0.0,
        trickle_body_only: bool = False,
    ) -> Fault:
        """Answer the next `times` requests (None: all) whose method and path (no query string) match with
        `status`. `body`: dict/list (JSON) or str; default `{"message": ...}`. `after=True` applies the real
        effect (e.g. the merge) first. Faults apply before authentication and to GraphQL (path /api/graphql).
        `trickle`: seconds between the bytes of the answer (status line, headers and body; only the body with
        `trickle_body_only`), until it is all sent, the client hangs up or the server stops."""
        fault = Fault(method, re.compile(path_regex), status, body, dict(headers or {}), times, after, delay,
                      trickle, trickle_body_only)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def rate_limit(self, remaining: int, reset_in_s: float = 60, resource: str | None = None) -> None:
        """Set what x-ratelimit-remaining (REST, "core") and rateLimit.remaining (GraphQL) report; at 0 requests
        are refused until the reset time passes. Requests count down from there."""
        with self._lock:
            for key in (resource,) if resource else tuple(self._buckets):
                bucket = self._buckets[key]
                bucket.remaining = remaining
                bucket.used = bucket.limit - remaining
                bucket.reset = int(time.time() + reset_in_s)

    def calls(self, method: str | None = None, path_contains: str | None = None) -> int:
        with self._lock:
            return sum(
                1 for call in self.requests
                if (method is None or call.method == method.upper())
                and (path_contains is None or path_contains in call.path)
            )

    # ------------------------------------------------------------------ derived state (GitHub's rules)

    def _latest_contexts(self, sha: str) -> tuple[list[FakeCheckRun], list[FakeStatus]]:
        checks = {run.name: run for run in self._checks.get(sha, [])}
        statuses = {status.context: status for status in self._statuses.get(sha, [])}
        return list(checks.values()), list(statuses.values())

    @staticmethod
    def _outcome(context: FakeCheckRun | FakeStatus) -> str:
        """success | pending | failure | error"""
        if isinstance(context, FakeStatus):
            return context.state
        if context.status != "completed":
            return "pending"
        return "failure" if context.conclusion in FAILING_CONCLUSIONS else "success"

    def _outcomes(self, sha: str) -> dict[str, str]:
        checks, statuses = self._latest_contexts(sha)
        outcomes: dict[str, str] = {}
        contexts: list[FakeCheckRun | FakeStatus] = [*checks, *statuses]
        for context in contexts:
            name = context.name if isinstance(context, FakeCheckRun) else context.context
            outcome = self._outcome(context)
            rank = ("success", "pending", "error", "failure")
            if rank.index(outcome) >= rank.index(outcomes.get(name, "success")):
                outcomes[name] = outcome
        return outcomes

    def _rollup_state(self, sha: str) -> str | None:
        outcomes = self._outcomes(sha)
        if not outcomes:
            return None
        values = set(outcomes.values())
        if "failure" in values:
            return "FAILURE"
        if "error" in values:
            return "ERROR"
        if "pending" in values:
            return "PENDING"
        if any(name not in outcomes for name in self.required_checks):
            return "EXPECTED"
        return "SUCCESS"

    def _required_problem(self, sha: str) -> str | None:
        outcomes = self._outcomes(sha)
        for name in self.required_checks:
            outcome = outcomes.get(name)
            if outcome != "success":
                how = {None: "expected", "pending": "in progress"}.get(outcome, "failing")
                return f'Required status check "{name}" is {how}.'
        return None

    def can_push(self, login: str) -> bool:
        return login in self.writers

    def _latest_opinionated(self, pull: FakePull, writers_only: bool = False) -> list[FakeReview]:
        latest: dict[str, FakeReview] = {}
        for review in pull.reviews:
            if review.state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
                latest[review.reviewer] = review
        return [
            review for review in latest.values()
            if review.state != "DISMISSED" and (not writers_only or self.can_push(review.reviewer))
        ]

    def _review_decision(self, pull: FakePull) -> str | None:
        if not self.require_review:
            return None
        states = {review.state for review in self._latest_opinionated(pull, writers_only=True)}
        if "CHANGES_REQUESTED" in states:
            return "CHANGES_REQUESTED"
        return "APPROVED" if "APPROVED" in states else "REVIEW_REQUIRED"

    def _mergeable(self, pull: FakePull) -> str:
        return pull.mergeable if pull.state == "open" else "UNKNOWN"

    def _merge_state_status(self, pull: FakePull) -> str:
        if pull.state != "open":
            return "UNKNOWN"
        if pull.draft:
            return "DRAFT"
        if pull.mergeable == "CONFLICTING":
            return "DIRTY"
        if pull.mergeable == "UNKNOWN":
            return "UNKNOWN"
        review_missing = self.require_review and self._review_decision(pull) != "APPROVED"
        if review_missing or self._required_problem(pull.head_sha):
            return "BLOCKED"
        if self._behind(pull):
            return "BEHIND"
        if any(outcome != "success" for outcome in self._outcomes(pull.head_sha).values()):
            return "UNSTABLE"
        return "CLEAN"

    def _merge(self, number: int, method: str, sha: str | None, title: str | None, message: str | None) -> FakePull:
        """GitHub's merge, shared by REST and GraphQL; raises _Problem with the REST status and message."""
        pull = self._pulls.get(number)
        if pull is None:
            raise _Problem("NOT_FOUND", "Not Found", 404)
        if self.on_merge is not None:
            self.on_merge(number)
        if pull.state != "open":
            raise _Problem("UNPROCESSABLE", NOT_MERGEABLE, 405)
        allowed = {"merge": self.allow_merge_commit, "squash": self.allow_squash_merge,
                   "rebase": self.allow_rebase_merge}
        if not allowed[method]:
            what = {"merge": "Merge commits", "squash": "Squash merges", "rebase": "Rebase merges"}[method]
            raise _Problem("UNPROCESSABLE", f"{what} are not allowed on this repository.", 405)
        if self._queue_enabled(pull):
            raise _Problem("UNPROCESSABLE", QUEUE_REQUIRED, 405)
        if sha is not None and sha != pull.head_sha:
            raise _Problem("UNPROCESSABLE", HEAD_MODIFIED, 409)
        self._check_requirements(pull)
        if self._behind(pull):
            raise _Problem("UNPROCESSABLE", OUT_OF_DATE, 405)
        default_title = (f"{pull.title} (#{number})" if method == "squash"
                         else f"Merge pull request #{number} from {self.owner}/{pull.head_ref}")
        merged_title = title or default_title
        merged_message = message if message is not None else ("" if method == "squash" else pull.title)
        if self.merge_branch is not None:
            merged_sha = self.merge_branch(pull.base, pull.head_sha, f"{merged_title}\n\n{merged_message}".strip())
            if merged_sha is None:
                pull.mergeable = "CONFLICTING"
                raise _Problem("UNPROCESSABLE", NOT_MERGEABLE, 405)
            self._known_shas.add(merged_sha)
        else:
            merged_sha = self._new_sha("merge", number)
        stamp = self._tick()
        pull.merge_commit_sha = merged_sha
        if pull.base == self.default_branch:
            self._base_sha = merged_sha
            # Merged into the default branch, a pull request closes the issues its body says it closes.
            for closed in closing_references(pull.body):
                issue = self._issues.get(closed)
                if issue is not None and issue["state"] == "OPEN":
                    issue.update(state="CLOSED", state_reason="completed", closed_at=stamp, updated_at=stamp,
                                 closed_by=number)
        pull.state, pull.merged, pull.merge_method = "closed", True, method
        pull.merged_title, pull.merged_message = merged_title, merged_message
        pull.merged_at = pull.closed_at = pull.updated_at = stamp
        pull.merged_by = self._actor
        return pull

    def _check_requirements(self, pull: FakePull) -> None:
        """What a merge and an enqueue both require (the merge queue then tests the merged result itself)."""
        if pull.draft or pull.mergeable != "MERGEABLE":
            raise _Problem("UNPROCESSABLE", NOT_MERGEABLE, 405)
        if self.require_review and self._review_decision(pull) != "APPROVED":
            raise _Problem("UNPROCESSABLE", "At least 1 approving review is required by reviewers with write access.",
                           405)
        problem = self._required_problem(pull.head_sha)
        if problem:
            raise _Problem("UNPROCESSABLE", problem, 405)

    def _enqueue(self, number: int, expected_head: str | None) -> FakeQueueEntry:
        """enqueuePullRequest: the pinned head, the base's queue, and the merge's own requirements."""
        pull = self._pulls[number]
        if pull.state != "open":
            raise _Problem("UNPROCESSABLE", NOT_MERGEABLE)
        if not self._queue_enabled(pull):
            raise _Problem("UNPROCESSABLE", f"Merge queue is not enabled for the {pull.base} branch.")
        if expected_head is not None and expected_head != pull.head_sha:
            raise _Problem("UNPROCESSABLE", HEAD_MODIFIED)
        if pull.queue_entry is not None:
            raise _Problem("UNPROCESSABLE", "Pull request is already in the merge queue.")
        self._check_requirements(pull)
        pull.queue_entry = FakeQueueEntry(next(self._ids), "AWAITING_CHECKS", pull.head_sha, self._tick())
        return pull.queue_entry

    # ------------------------------------------------------------------ HTTP: entry point (called by the handler)

    def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[_Response, Fault | None]:
        split = urlsplit(target)
        path = split.path.rstrip("/") or "/"
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = ...  # marks unparseable JSON
        with self._lock:
            document = body.get("query") if path == GRAPHQL_PATH and isinstance(body, dict) else None
            self.requests.append(Call(method, target, document if isinstance(document, str) else None))
            if isinstance(document, str):
                self.graphql_documents.append(document)
                variables = body.get("variables") if isinstance(body, dict) else None
                self.graphql_variables.append(variables if isinstance(variables, dict) else {})
            fault = next((f for f in self.faults if f.matches(method, path)), None)
            if fault is not None:
                fault.hits += 1
                if not fault.after:
                    return self._fault_response(fault), fault
            response = self._authenticated(method, path, split.query, headers, body)
            if fault is not None:
                return self._fault_response(fault), fault
            return response, None

    def _fault_response(self, fault: Fault) -> _Response:
        body = fault.body
        if body is None:
            if fault.status in (403, 429):
                body = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you "
                                   "try again.", "documentation_url": DOCS}
            else:
                body = {"message": "Server Error" if fault.status >= 500 else f"Injected fault {fault.status}"}
        headers = self._buckets["core"].headers("core") | {k.lower(): v for k, v in fault.headers.items()}
        return _Response(fault.status, body, headers)

    def _authenticated(self, method: str, path: str, query: str, headers: dict[str, str], body: Any) -> _Response:
        is_graphql = path == GRAPHQL_PATH
        resource = "graphql" if is_graphql else "core"
        bucket = self._buckets[resource]
        bucket.refresh()
        scheme, _, credential = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() not in ("token", "bearer") or not credential.strip():
            message = "This endpoint requires you to be authenticated." if is_graphql else "Requires authentication"
            return _Response(401, {"message": message, "documentation_url": DOCS}, bucket.headers(resource))
        if re.fullmatch(REST_PREFIX + r"/app/installations/\d+/access_tokens", path) and method == "POST":
            # Only an App's JWT reaches this endpoint, and a JWT reaches nothing else.
            number = path.rsplit("/", 2)[-2]
            try:
                status, payload, extra = self._rest_mint(number, body, credential.strip())
            except _Problem as problem:
                status, payload, extra = problem.status, {"message": problem.message, "documentation_url": DOCS}, {}
            return _Response(status, payload, bucket.headers(resource) | extra)
        actor = self._token_login(credential.strip())
        if actor is None:
            return _Response(401, {"message": "Bad credentials", "documentation_url": DOCS}, bucket.headers(resource))
        self._actor = actor
        self._grant, self._refusal = self._grant_of(credential.strip())
        minted = self.installation_tokens.get(credential.strip())
        self._reach = minted.repositories if minted is not None else None
        if body is ...:
            return _Response(400, {"message": "Problems parsing JSON", "documentation_url": DOCS},
                             bucket.headers(resource))
        if path == REST_PREFIX + "/rate_limit":
            return _Response(200, self._rate_limit_json(), bucket.headers(resource))
        if bucket.remaining <= 0:
            headers_out = bucket.headers(resource)
            if is_graphql:
                return _Response(200, {"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded for "
                                                   "user ID 1."}]}, headers_out)
            return _Response(403, {"message": "API rate limit exceeded for user ID 1.",
                                   "documentation_url": DOCS + "/overview/rate-limits-for-the-rest-api"}, headers_out)
        bucket.remaining -= 1
        bucket.used += 1
        try:
            if is_graphql:
                if method != "POST":
                    return _Response(404, {"message": "Not Found", "documentation_url": DOCS}, {})
                status, payload = 200, self._graphql(body)
                extra: dict[str, str] = {}
            elif path.startswith(REST_PREFIX + "/"):
                status, payload, extra = self._rest(method, path[len(REST_PREFIX):], parse_qs(query), body,
                                                    headers)
                if self.after_rest is not None:
                    self.after_rest(method, path[len(REST_PREFIX):])
            else:
                status, payload, extra = 404, {"message": "Not Found", "documentation_url": DOCS}, {}
        except _Problem as problem:
            status, payload, extra = problem.status, {"message": problem.message, "documentation_url": DOCS}, {}
        return _Response(status, payload, bucket.headers(resource) | extra)

    def _token_login(self, credential: str) -> str | None:
        """Who a token is: the fake's own token is fleet-bot; `extra_tokens` name theirs; an installation token
        (until it expires) its App's bot; None for any other."""
        minted = self.installation_tokens.get(credential)
        if minted is not None:
            app = self.apps[minted.app_id]
            return app.login if time.time() < minted.expires_at and app.installed else None
        found = None
        for token, login in [(self.token, "fleet-bot"), *self.extra_tokens.items()]:
            if hmac.compare_digest(credential.encode(), token.encode()) and found is None:
                found = login
        return found

    def _grant_of(self, credential: str) -> tuple[Mapping[str, str] | None, str]:
        if credential in self.fine_grained:
            return (FINE_GRAINED_PERMISSIONS, "Resource not accessible by personal access token")
        minted = self.installation_tokens.get(credential)
        if minted is not None:
            return {"metadata": "read", **minted.permissions}, "Resource not accessible by integration"
        return None, ""

    # ------------------------------------------------------------------ GitHub Apps

    def add_app(
        self,
        slug: str = "fleet-author",
        *,
        permissions: Mapping[str, str] | None = None,
        repositories: Iterable[str] | None = None,
    ) -> FakeApp:
        """A GitHub App installed on the owner with `permissions` (default: what the fleet's agents and coordinator
        use), on `repositories` (names; None: all). Its RSA key is made here, as GitHub makes one per App."""
        from tests.keys import new_rsa_key

        pem, public_key = new_rsa_key()
        granted = dict(permissions) if permissions is not None else {
            "contents": "write", "pull_requests": "write", "issues": "write", "checks": "read", "statuses": "read",
            "workflows": "write"}
        with self._lock:
            app_id = 100 + len(self.apps) + 1
            app = FakeApp(app_id, 9000 + app_id, slug, pem, public_key, {"metadata": "read", **granted},
                          tuple(repositories) if repositories is not None else None)
            self.apps[app_id] = app
            self.writers.add(app.login)
            return app

    def minted(self, app: FakeApp | None = None) -> list[InstallationToken]:
        with self._lock:
            return [t for t in self.installation_tokens.values() if app is None or t.app_id == app.app_id]

    def _app_of_jwt(self, credential: str) -> FakeApp:
        """The App a JWT is from, checked as GitHub checks it: RS256 by the App's key, iss its id, not expired,
        exp at most 10 minutes after iat. A 401 otherwise."""
        import jwt

        try:
            claims = jwt.decode(credential, options={"verify_signature": False})
            app = self.apps.get(int(claims.get("iss")))
            if app is None:
                raise _Problem("UNAUTHORIZED", "Integration not found", 401)
            verified = jwt.decode(credential, app.public_key, algorithms=["RS256"], leeway=60,
                                  options={"require": ["iat", "exp", "iss"]})
        except (jwt.PyJWTError, TypeError, ValueError):
            raise _Problem("UNAUTHORIZED", "A JSON web token could not be decoded", 401) from None
        if verified["exp"] - verified["iat"] > 600 + 60:
            raise _Problem("UNAUTHORIZED", "'Expiration time' claim ('exp') is too far in the future", 401)
        return app

    def _rest_mint(self, installation_id: str, body: Any, credential: str, **_: Any) -> tuple[int, Any, dict[str, str]]:
        """POST /app/installations/{id}/access_tokens: a token narrowed to `repositories` and `permissions`."""
        app = self._app_of_jwt(credential)
        if app.installation_id != int(installation_id) or not app.installed:
            return 404, {"message": "Not Found", "documentation_url": DOCS}, {}
        body = body if isinstance(body, dict) else {}
        asked = body.get("permissions") or {}
        for name, level in asked.items():
            held = app.permissions.get(name)
            if level not in ("read", "write") or held is None or (level == "write" and held != "write"):
                return 422, {"message": "The permissions requested are not granted to this installation.",
                             "documentation_url": DOCS}, {}
        names = body.get("repositories")
        if names is None:
            names = [self.name] if app.repositories is None else list(app.repositories)
        reachable = {self.name.lower()} if app.repositories is None else {n.lower() for n in app.repositories}
        if not all(isinstance(n, str) and n.lower() in reachable for n in names):
            return 422, {"message": "There is at least one repository that does not exist or is not accessible to "
                                    "the parent installation.", "documentation_url": DOCS}, {}
        permissions = dict(asked) if asked else {k: v for k, v in app.permissions.items() if k != "metadata"}
        token = "ghs_" + _sha("installation", app.app_id, next(self._ids))[:36]
        expires = time.time() + self.token_lifetime_s
        self.installation_tokens[token] = InstallationToken(token, app.app_id, app.installation_id, permissions,
                                                            tuple(names), expires)
        return 201, {"token": token, "expires_at": _iso(datetime.fromtimestamp(expires, UTC)),
                     "permissions": {**permissions, "metadata": "read"}, "repository_selection": "selected",
                     "repositories": [{"name": n, "full_name": f"{self.owner}/{n}"} for n in names]}, {}

    def can(self, permission: str, access: str = "read") -> bool:
        """Whether the request being handled holds `permission` at `access` (write includes read)."""
        if self._grant is None:
            return True
        held = self._grant.get(permission)
        return held == "write" or (held == "read" and access == "read")

    def _require_for(self, handler: str) -> None:
        """A REST handler's permission (REST_PERMISSIONS: any one alternative), for a token that has permissions."""
        alternatives = REST_PERMISSIONS.get(handler)
        if alternatives and not any(self.can(permission, access) for permission, access in alternatives):
            raise _Problem("FORBIDDEN", self._refusal, 403)

    def require(self, permission: str, access: str = "read") -> None:
        """GitHub's refusal, as a GraphQL error of type FORBIDDEN (REST: 403), unless the token reaches."""
        if not self.can(permission, access):
            raise _Problem("FORBIDDEN", self._refusal, 403)

    def _rate_limit_json(self) -> dict[str, Any]:
        resources = {key: bucket.as_json(key) for key, bucket in self._buckets.items()}
        return {"resources": resources, "rate": resources["core"]}

    # ------------------------------------------------------------------ REST

    def _rest(self, method: str, path: str, query: dict[str, list[str]], body: Any,
              headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        repo = rf"/repos/(?i:{re.escape(self.owner)})/(?i:{re.escape(self.name)})"
        routes: list[tuple[str, str, Callable[..., tuple[int, Any, dict[str, str]]]]] = [
            ("GET", repo, self._rest_repo),
            ("GET", repo + r"/pulls", self._rest_pulls),
            ("GET", repo + r"/pulls/(?P<number>\d+)", self._rest_pull),
            ("GET", repo + r"/pulls/(?P<number>\d+)/reviews", self._rest_reviews),
            ("GET", repo + r"/pulls/(?P<number>\d+)/merge", self._rest_is_merged),
            ("PUT", repo + r"/pulls/(?P<number>\d+)/merge", self._rest_merge),
            ("PUT", repo + r"/pulls/(?P<number>\d+)/update-branch", self._rest_update_branch),
            ("POST", repo + r"/pulls", self._rest_create_pull),
            ("POST", repo + r"/issues/(?P<number>\d+)/labels", self._rest_add_labels),
            ("GET", repo + r"/issues", self._rest_issues),
            ("POST", repo + r"/issues", self._rest_create_issue),
            ("GET", repo + r"/issues/(?P<number>\d+)", self._rest_issue),
            ("GET", repo + r"/issues/(?P<number>\d+)/comments", self._rest_comments),
            ("POST", repo + r"/issues/(?P<number>\d+)/comments", self._rest_create_comment),
            ("GET", repo + r"/labels", self._rest_labels),
            ("GET", repo + r"/labels/(?P<name>[^/]+)", self._rest_label),
            ("POST", repo + r"/pulls/(?P<number>\d+)/reviews", self._rest_create_review),
            ("GET", r"/user", self._rest_user),
            ("GET", repo + r"/commits/(?P<ref>.+)/status", self._rest_combined_status),
            ("GET", repo + r"/commits/(?P<ref>.+)/check-runs", self._rest_check_runs),
        ]
        if self._reach is not None and re.match(repo + "(/|$)", path) and self.name.lower() not in {
                r.lower() for r in self._reach}:
            return 404, {"message": "Not Found", "documentation_url": DOCS}, {}  # a token narrowed to others
        for route_method, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match and route_method == method:
                self._require_for(getattr(handler, "__name__", ""))
                return handler(path=path, query={k: v[0] for k, v in query.items()}, body=body,
                               accept=(headers or {}).get("accept", ""), **match.groupdict())
        return 404, {"message": "Not Found", "documentation_url": DOCS}, {}

    def _page(self, items: list[Any], path: str, query: dict[str, str]) -> tuple[list[Any], dict[str, str]]:
        """GitHub's page-number pagination: per_page (default 30, at most 100), page, and a Link header."""
        try:
            per_page = min(max(int(query.get("per_page", 30)), 1), 100)
            page = max(int(query.get("page", 1)), 1)
        except ValueError:
            per_page, page = 30, 1
        last = max(1, math.ceil(len(items) / per_page))

        def link(number: int, rel: str) -> str:
            params = urlencode({**query, "per_page": per_page, "page": number})
            return f'<{self.api_url}{path}?{params}>; rel="{rel}"'

        links = []
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        return items[(page - 1) * per_page: page * per_page], ({"link": ", ".join(links)} if links else {})

    def _user_json(self, login: str, kind: str = "User") -> dict[str, Any]:
        return {"login": login, "id": int(_sha(login)[:6], 16), "node_id": f"U_fake{login}", "type": kind,
                "url": f"{self.api_url}/users/{login}", "html_url": f"{self.root_url}/{login}", "site_admin": False}

    def _repo_json(self) -> dict[str, Any]:
        return {
            "id": 1, "node_id": "R_fake00000001", "name": self.name, "full_name": self.repository, "private": True,
            "owner": self._user_json(self.owner, "Organization"), "html_url": f"{self.root_url}/{self.repository}",
            "url": f"{self.api_url}/repos/{self.repository}", "default_branch": self.default_branch,
            "allow_squash_merge": self.allow_squash_merge, "allow_merge_commit": self.allow_merge_commit,
            "allow_rebase_merge": self.allow_rebase_merge, "archived": False, "disabled": False,
            "permissions": {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True},
        }

    def _pull_json(self, pull: FakePull, detail: bool) -> dict[str, Any]:
        url = f"{self.api_url}/repos/{self.repository}/pulls/{pull.number}"
        data: dict[str, Any] = {
            "url": url, "id": 100000 + pull.number, "node_id": pull.node_id,
            "html_url": f"{self.root_url}/{self.repository}/pull/{pull.number}", "number": pull.number,
            "state": pull.state, "locked": False, "title": pull.title, "user": self._user_json(pull.author),
            "body": pull.body, "labels": [
                {"id": int(_sha(label)[:6], 16), "node_id": f"LA_fake{label}", "name": label, "color": "ededed",
                 "default": False, "description": None} for label in pull.labels
            ],
            "created_at": pull.created_at, "updated_at": pull.updated_at, "closed_at": pull.closed_at,
            "merged_at": pull.merged_at, "merge_commit_sha": pull.merge_commit_sha, "draft": pull.draft,
            "assignees": [], "requested_reviewers": [], "author_association": "MEMBER", "auto_merge": None,
            "head": {"label": f"{self.owner}:{pull.head_ref}", "ref": pull.head_ref, "sha": pull.head_sha,
                     "user": self._user_json(self.owner, "Organization"), "repo": self._repo_json()},
            "base": {"label": f"{self.owner}:{pull.base}", "ref": pull.base, "sha": self._base_sha,
                     "user": self._user_json(self.owner, "Organization"), "repo": self._repo_json()},
        }
        if detail:
            mergeable = self._mergeable(pull)
            data |= {
                "merged": pull.merged, "mergeable": {"MERGEABLE": True, "CONFLICTING": False}.get(mergeable),
                "mergeable_state": self._merge_state_status(pull).lower(), "rebaseable": mergeable == "MERGEABLE",
                "merged_by": self._user_json("fleet-bot") if pull.merged else None, "comments": 0,
                "review_comments": 0, "commits": 1, "additions": 1, "deletions": 0, "changed_files": 1,
                "maintainer_can_modify": False,
            }
        return data

    def _get_pull(self, number: str) -> FakePull:
        pull = self._pulls.get(int(number))
        if pull is None:
            raise _Problem("NOT_FOUND", "Not Found", 404)
        return pull

    def _rest_repo(self, **_: Any) -> tuple[int, Any, dict[str, str]]:
        return 200, self._repo_json(), {}

    def _rest_pulls(self, path: str, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
        state = query.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise _Problem("UNPROCESSABLE", "Validation Failed", 422)
        pulls = [p for p in self._pulls.values() if state == "all" or p.state == state]
        if "base" in query:
            pulls = [p for p in pulls if p.base == query["base"]]
        if "head" in query:
            pulls = [p for p in pulls if f"{self.owner}:{p.head_ref}" == query["head"]]
        sort = query.get("sort", "created")
        key: Callable[[FakePull], Any] = {
            "updated": lambda p: (p.updated_at, p.number),
        }.get(sort, lambda p: (p.created_at, p.number))
        descending = query.get("direction", "desc" if sort == "created" else "asc") == "desc"
        pulls.sort(key=key, reverse=descending)
        page, headers = self._page(pulls, path, query)
        return 200, [self._pull_json(p, detail=False) for p in page], headers

    def _rest_pull(self, number: str, accept: str = "", **_: Any) -> tuple[int, Any, dict[str, str]]:
        pull = self._get_pull(number)
        if "application/vnd.github.diff" in accept or "application/vnd.github.v3.diff" in accept:
            text = self.diff(pull.base, pull.head_sha) if self.diff is not None else ""
            return 200, text, {"content-type": "text/plain; charset=utf-8",
                               "x-github-media-type": "github.v3; format=diff"}
        return 200, self._pull_json(pull, detail=True), {}

    def _rest_reviews(self, number: str, path: str, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
        pull = self._get_pull(number)
        page, headers = self._page(pull.reviews, path, query)
        return 200, [
            {"id": r.id, "node_id": r.node_id, "user": self._user_json(r.reviewer), "body": r.body, "state": r.state,
             "submitted_at": r.submitted_at, "commit_id": r.commit_id, "author_association": "MEMBER",
             "html_url": f"{self.root_url}/{self.repository}/pull/{pull.number}#pullrequestreview-{r.id}",
             "pull_request_url": f"{self.api_url}/repos/{self.repository}/pulls/{pull.number}"}
            for r in page
        ], headers

    def _rest_is_merged(self, number: str, **_: Any) -> tuple[int, Any, dict[str, str]]:
        if self._get_pull(number).merged:
            return 204, None, {}
        return 404, {"message": "Not Found", "documentation_url": DOCS}, {}

    def _rest_merge(self, number: str, body: Any, **_: Any) -> tuple[int, Any, dict[str, str]]:
        self._get_pull(number)
        body = body if isinstance(body, dict) else {}
        method = body.get("merge_method", "merge")
        if method not in MERGE_METHODS:
            raise _Problem("UNPROCESSABLE", f"Invalid request.\n\nFor 'properties/merge_method', {json.dumps(method)} "
                           'is not one of ["merge", "squash", "rebase"].', 422)
        pull = self._merge(int(number), method, body.get("sha"), body.get("commit_title"), body.get("commit_message"))
        return 200, {"sha": pull.merge_commit_sha, "merged": True, "message": "Pull Request successfully merged"}, {}

    def _rest_update_branch(self, number: str, body: Any, **_: Any) -> tuple[int, Any, dict[str, str]]:
        """PUT .../pulls/{n}/update-branch: merges the base into the branch (a new head, with no checks yet)."""
        pull = self._get_pull(number)
        body = body if isinstance(body, dict) else {}
        expected = body.get("expected_head_sha")
        if pull.state != "open":
            raise _Problem("UNPROCESSABLE", "Pull request is closed.", 422)
        if expected is not None and expected != pull.head_sha:
            raise _Problem("UNPROCESSABLE", UPDATE_HEAD_MISMATCH, 422)
        if pull.base_sha == self._base_sha:
            raise _Problem("UNPROCESSABLE", "There are no new commits on the base branch.", 422)
        if pull.mergeable == "CONFLICTING":
            raise _Problem("UNPROCESSABLE", "merge conflict between base and head", 422)
        # A merge of the base brings no reviewable change of the branch's own: approvals stay (see docs/design.md).
        pull.head_sha, pull.base_sha, pull.updated_at = self._new_sha("update", number), self._base_sha, self._tick()
        pull.queue_entry = None
        return 202, {"message": "Updating pull request branch.",
                     "url": f"{self.root_url}/{self.repository}/pull/{pull.number}"}, {}

    def _rest_create_pull(self, body: Any, **_: Any) -> tuple[int, Any, dict[str, str]]:
        """POST /repos/{o}/{r}/pulls: title, head ("branch" or "owner:branch"), base, body, draft."""
        if not isinstance(body, dict):
            return 422, {"message": "Invalid request.\n\nBody is not a JSON object.", "documentation_url": DOCS}, {}
        missing = [key for key in ("base", "head") if not isinstance(body.get(key), str) or not body[key]]
        if missing:
            names = ", ".join(f'"{key}"' for key in missing)
            verb = "wasn't" if len(missing) == 1 else "weren't"
            return 422, {"message": f"Invalid request.\n\n{names} {verb} supplied.", "documentation_url": DOCS}, {}

        def invalid(*errors: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
            return 422, {"message": "Validation Failed", "errors": [{"resource": "PullRequest", **e} for e in errors],
                         "documentation_url": DOCS}, {}

        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            return invalid({"field": "title", "code": "missing_field"})
        head, base = body["head"], body["base"]
        owner, _, branch = head.rpartition(":")
        if owner and owner.lower() != self.owner.lower():
            return invalid({"field": "head", "code": "invalid"})
        if self.resolve_branch is not None:
            head_sha = self.resolve_branch(branch)
            base_known = base == self.default_branch or self.resolve_branch(base) is not None
        else:
            head_sha, base_known = self._new_sha("head", branch), True
        if head_sha is None:
            return invalid({"field": "head", "code": "invalid"})
        if not base_known:
            return invalid({"field": "base", "code": "invalid"})
        if branch == base:
            return invalid({"code": "custom", "message": f"No commits between {base} and {branch}"})
        if any(p.head_ref == branch and p.state == "open" for p in self._pulls.values()):
            return invalid({"code": "custom", "message": f"A pull request already exists for {self.owner}:{branch}."})
        text = body.get("body")
        pull = self.add_pull(title, draft=bool(body.get("draft")), base=base, author=self._actor,
                             body=text if isinstance(text, str) else "", head_ref=branch)
        pull.head_sha = head_sha
        self._known_shas.add(head_sha)
        data = self._pull_json(pull, detail=True)
        return 201, data, {"location": data["url"]}

    def _rest_add_labels(self, number: str, body: Any, **_: Any) -> tuple[int, Any, dict[str, str]]:
        """POST /repos/{o}/{r}/issues/{n}/labels: {"labels": [...]} or a bare list; answers the issue's labels.
        A label the repository does not have is created, as GitHub does."""
        names = body.get("labels") if isinstance(body, dict) else body
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
            return 422, {"message": "Invalid request.\n\nNo labels were supplied.", "documentation_url": DOCS}, {}
        issue = self._issues.get(int(number))
        labels: list[str] = issue["labels"] if issue is not None else self._get_pull(number).labels
        for name in names:
            self.define_label(name)
            if name.casefold() not in {label.casefold() for label in labels}:
                labels.append(self.labels[name.casefold()])
        if issue is not None:
            issue["updated_at"] = self._tick()
        else:
            self._get_pull(number).updated_at = self._tick()
        return 200, [self._label_json(label) for label in labels], {}

    def _label_json(self, name: str) -> dict[str, Any]:
        return {"id": int(_sha(name)[:6], 16), "node_id": f"LA_fake{name}", "name": name, "color": "ededed",
                "default": False, "description": None,
                "url": f"{self.api_url}/repos/{self.repository}/labels/{name}"}

    def _rest_labels(self, path: str, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
        page, headers = self._page(sorted(self.labels.values(), key=str.casefold), path, query)
        return 200, [self._label_json(name) for name in page], headers

    def _rest_label(self, name: str, **_: Any) -> tuple[int, Any, dict[str, str]]:
        found = self.labels.get(unquote(name).casefold())
        if found is None:
            raise _Problem("NOT_FOUND", "Not Found", 404)
        return 200, self._label_json(found), {}

    def _issue_json(self, issue: dict[str, Any]) -> dict[str, Any]:
        number = issue["number"]
        return {
            "url": f"{self.api_url}/repos/{self.repository}/issues/{number}", "id": 200000 + number,
            "node_id": issue["id"], "number": number, "title": issue["title"], "body": issue["body"],
            "state": issue["state"].lower(), "state_reason": issue.get("state_reason"), "locked": False,
            "user": self._user_json(issue["author"]), "labels": [self._label_json(n) for n in issue["labels"]],
            "assignees": [], "comments": len(self._comments.get(number, [])), "created_at": issue["created_at"],
            "updated_at": issue["updated_at"], "closed_at": issue["closed_at"], "author_association": "MEMBER",
            "html_url": f"{self.root_url}/{self.repository}/issues/{number}",
        }

    def _pull_as_issue_json(self, pull: FakePull) -> dict[str, Any]:
        """A pull request as the issues API shows it: an issue with a `pull_request` key."""
        data = self._pull_json(pull, detail=False)
        return {
            "url": f"{self.api_url}/repos/{self.repository}/issues/{pull.number}", "id": data["id"],
            "node_id": data["node_id"], "number": pull.number, "title": pull.title, "body": pull.body,
            "state": pull.state, "state_reason": None, "locked": False, "user": data["user"],
            "labels": data["labels"], "assignees": [], "comments": len(self._comments.get(pull.number, [])),
            "created_at": pull.created_at, "updated_at": pull.updated_at, "closed_at": pull.closed_at,
            "author_association": "MEMBER", "draft": pull.draft,
            "html_url": f"{self.root_url}/{self.repository}/pull/{pull.number}",
            "pull_request": {"url": data["url"], "html_url": data["html_url"], "merged_at": pull.merged_at,
                             "diff_url": data["html_url"] + ".diff", "patch_url": data["html_url"] + ".patch"},
        }

    def _rest_issues(self, path: str, query: dict[str, str], **_: Any) -> tuple[int, Any, dict[str, str]]:
        """GET /repos/{o}/{r}/issues: issues and pull requests (those carry `pull_request`); `labels` means all."""
        state = query.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise _Problem("UNPROCESSABLE", "Validation Failed", 422)
        wanted = {n.strip().casefold() for n in query.get("labels", "").split(",") if n.strip()}
        rows: list[tuple[str, int, dict[str, Any]]] = []
        for issue in self._issues.values():
            rows.append((issue["created_at"], issue["number"], self._issue_json(issue)))
        for pull in self._pulls.values():
            rows.append((pull.created_at, pull.number, self._pull_as_issue_json(pull)))
        rows = [row for row in rows if (state == "all" or row[2]["state"] == state)
                and wanted <= {label["name"].casefold() for label in row[2]["labels"]}]
        descending = query.get("direction", "desc") == "desc"
        rows.sort(key=lambda row: (row[0], row[1]), reverse=descending)
        page, headers = self._page([row[2] for row in rows], path, query)
        return 200, page, headers

    def _rest_issue(self, number: str, **_: Any) -> tuple[int, Any, dict[str, str]]:
        issue = self._issues.get(int(number))
        if issue is not None:
            return 200, self._issue_json(issue), {}
        return 200, self._pull_as_issue_json(self._get_pull(number)), {}

    def _rest_create_issue(self, body: Any, **_: Any) -> tuple[int, Any, dict[str, str]]:
        """POST /repos/{o}/{r}/issues: title (required, at most 256 characters), body, labels (created if new)."""
        if not isinstance(body, dict):
            return 422, {"message": "Invalid request.\n\nBody is not a JSON object.", "documentation_url": DOCS}, {}
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            return 422, {"message": "Validation Failed", "errors": [
                {"resource": "Issue", "field": "title", "code": "missing_field"}], "documentation_url": DOCS}, {}
        text = body.get("body") if isinstance(body.get("body"), str) else ""
        for field_name, value, limit in (("title", title, 256), ("body", text, 65536)):
            if len(value) > limit:
                return 422, {"message": "Validation Failed", "errors": [
                    {"resource": "Issue", "field": field_name, "code": "custom",
                     "message": f"{field_name} is too long (maximum is {limit} characters)"}],
                    "documentation_url": DOCS}, {}
        labels = body.get("labels") or []
        if not isinstance(labels, list) or not all(isinstance(n, str) for n in labels):
            return 422, {"message": "Invalid request.\n\nFor 'properties/labels', the value is not an array of "
                                    "strings.", "documentation_url": DOCS}, {}
        for name in labels:
            self.define_label(name)
        number = self.add_issue(title, labels=[self.labels[n.casefold()] for n in labels], body=text,
                                author=self._actor)
        data = self._issue_json(self._issues[number])
        return 201, data, {"location": data["url"]}

    def _comment_json(self, number: int, comment: dict[str, Any]) -> dict[str, Any]:
        return {"id": comment["id"], "node_id": f"IC_fake{comment['id']}", "body": comment["body"],
                "user": self._user_json(comment["user"]), "created_at": comment["created_at"],
                "updated_at": comment["updated_at"], "author_association": "MEMBER",
                "url": f"{self.api_url}/repos/{self.repository}/issues/comments/{comment['id']}",
                "html_url": f"{self.root_url}/{self.repository}/issues/{number}#issuecomment-{comment['id']}",
                "issue_url": f"{self.api_url}/repos/{self.repository}/issues/{number}"}

    def _issue_or_pull_exists(self, number: str) -> int:
        if int(number) not in self._issues:
            self._get_pull(number)
        return int(number)

    def _rest_comments(self, number: str, path: str, query: dict[str, str], **_: Any) -> tuple[
            int, Any, dict[str, str]]:
        found = self._issue_or_pull_exists(number)
        page, headers = self._page(self._comments.get(found, []), path, query)
        return 200, [self._comment_json(found, c) for c in page], headers

    def _rest_create_comment(self, number: str, body: Any, **_: Any) -> tuple[int, Any, dict[str, str]]:
        found = self._issue_or_pull_exists(number)
        text = body.get("body") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return 422, {"message": "Validation Failed", "errors": [
                {"resource": "IssueComment", "field": "body", "code": "missing_field"}], "documentation_url": DOCS}, {}
        comment = self.add_comment(found, text, author=self._actor)
        data = self._comment_json(found, comment)
        return 201, data, {"location": data["url"]}

    def _rest_user(self, **_: Any) -> tuple[int, Any, dict[str, str]]:
        """GET /user: the token's account (an installation token has none: 403, as on GitHub)."""
        if self._grant is not None and self._refusal.endswith("integration"):
            raise _Problem("FORBIDDEN", self._refusal, 403)
        return 200, self._user_json(self._actor, "Bot" if self._actor.endswith("[bot]") else "User"), {}

    def _rest_create_review(self, number: str, body: Any, **_: Any) -> tuple[int, Any, dict[str, str]]:
        """POST /repos/{o}/{r}/pulls/{n}/reviews: event APPROVE | REQUEST_CHANGES | COMMENT (none: PENDING),
        body (required but for APPROVE), commit_id (default: the head). The author may not approve or request
        changes on their own pull request (422), as on GitHub."""
        pull = self._get_pull(number)
        body = body if isinstance(body, dict) else {}
        event = body.get("event")
        states = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED",
                  None: "PENDING"}
        if event not in states:
            return 422, {"message": "Unprocessable Entity", "errors": [f"Event {event!r} is not valid"],
                         "documentation_url": DOCS}, {}
        if pull.state != "open":
            return 422, {"message": "Unprocessable Entity", "errors": ["Pull request is closed"],
                         "documentation_url": DOCS}, {}
        if self._actor == pull.author and event in ("APPROVE", "REQUEST_CHANGES"):
            what = "approve" if event == "APPROVE" else "request changes on"
            return 422, {"message": "Unprocessable Entity", "errors": [f"Can not {what} your own pull request"],
                         "documentation_url": DOCS}, {}
        text = body.get("body") if isinstance(body.get("body"), str) else ""
        if event in ("REQUEST_CHANGES", "COMMENT") and not text.strip():
            return 422, {"message": "Unprocessable Entity", "errors": [
                f"Review body is required when the event is {event}"], "documentation_url": DOCS}, {}
        commit_id = body.get("commit_id") or pull.head_sha
        if commit_id not in self._known_shas:
            return 422, {"message": "Unprocessable Entity", "errors": [f"No commit found for SHA: {commit_id}"],
                         "documentation_url": DOCS}, {}
        review = FakeReview(next(self._ids), self._actor, states[event], commit_id, self._tick(), text)
        pull.reviews.append(review)
        return 200, {"id": review.id, "node_id": review.node_id, "user": self._user_json(review.reviewer),
                     "body": text, "state": review.state, "commit_id": commit_id, "submitted_at": review.submitted_at,
                     "html_url": f"{self.root_url}/{self.repository}/pull/{pull.number}#pullrequestreview-{review.id}",
                     "pull_request_url": f"{self.api_url}/repos/{self.repository}/pulls/{pull.number}",
                     "author_association": "MEMBER"}, {}

    def _resolve_ref(self, ref: str) -> str:
        if ref in self._known_shas:
            return ref
        if ref == self.default_branch:
            return self._base_sha
        for pull in self._pulls.values():
            if pull.head_ref == ref and pull.state == "open":
                return pull.head_sha
        raise _Problem("UNPROCESSABLE", f"No commit found for SHA: {ref}", 422)

    def _rest_combined_status(self, ref: str, path: str, query: dict[str, str], **_: Any) -> tuple[
            int, Any, dict[str, str]]:
        sha = self._resolve_ref(ref)
        statuses = self._latest_contexts(sha)[1]
        states = {s.state for s in statuses}
        state = ("failure" if states & {"failure", "error"} else
                 "pending" if not statuses or "pending" in states else "success")
        page, headers = self._page(statuses, path, query)
        return 200, {
            "state": state, "sha": sha, "total_count": len(statuses), "repository": self._repo_json(),
            "commit_url": f"{self.api_url}/repos/{self.repository}/commits/{sha}",
            "url": f"{self.api_url}/repos/{self.repository}/commits/{sha}/status",
            "statuses": [
                {"id": s.id, "node_id": f"SC_fake{s.id}", "state": s.state, "context": s.context,
                 "description": s.description, "target_url": None, "avatar_url": None, "created_at": s.created_at,
                 "updated_at": s.created_at, "url": f"{self.api_url}/repos/{self.repository}/statuses/{sha}"}
                for s in page
            ],
        }, headers

    def _rest_check_runs(self, ref: str, path: str, query: dict[str, str], **_: Any) -> tuple[
            int, Any, dict[str, str]]:
        sha = self._resolve_ref(ref)
        runs = self._checks.get(sha, []) if query.get("filter") == "all" else self._latest_contexts(sha)[0]
        if "check_name" in query:
            runs = [r for r in runs if r.name == query["check_name"]]
        if "status" in query:
            runs = [r for r in runs if r.status == query["status"]]
        page, headers = self._page(runs, path, query)
        return 200, {"total_count": len(runs), "check_runs": [
            {"id": r.id, "node_id": f"CR_fake{r.id}", "head_sha": r.head_sha, "external_id": "", "name": r.name,
             "status": r.status, "conclusion": r.conclusion, "started_at": r.started_at,
             "completed_at": r.completed_at, "url": f"{self.api_url}/repos/{self.repository}/check-runs/{r.id}",
             "html_url": f"{self.root_url}/{self.repository}/runs/{r.id}", "details_url": None,
             "output": {"title": None, "summary": None, "text": None, "annotations_count": 0},
             "check_suite": {"id": r.id}, "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"},
             "pull_requests": []}
            for r in page
        ]}, headers

    # ------------------------------------------------------------------ GraphQL

    def _graphql(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return {"errors": [{"message": "A query attribute must be specified and must be a string."}]}
        variables = body.get("variables") or {}
        if not isinstance(variables, dict):
            return {"errors": [{"message": "Variables are invalid JSON."}]}
        operation = body.get("operationName")
        schema = github_schema()
        try:
            document = parse(body["query"])
        except GraphQLSyntaxError as error:
            return {"errors": [_format_error(error)]}
        errors = validate(schema, document)
        if errors:
            return {"errors": [_format_error(error) for error in errors]}
        problems = _pagination_problems(schema, document, variables)
        if problems:
            return {"errors": problems}
        result = execute(schema, document, root_value=self, context_value=self, variable_values=variables,
                         operation_name=operation if isinstance(operation, str) else None,
                         field_resolver=_resolve_field, type_resolver=_resolve_type)
        assert isinstance(result, ExecutionResult), "resolvers are synchronous"
        if self.after_query is not None:
            self.after_query(_operation_name(document, operation))
        answer: dict[str, Any] = {"data": result.data}
        if result.errors:
            answer["errors"] = [_format_error(error) for error in result.errors]
        return answer


# The keywords that make a pull request close an issue when it merges into the default branch.
CLOSING_REFERENCE = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+#(\d+)\b", re.IGNORECASE)


def closing_references(text: str) -> list[int]:
    """The issue numbers `text` says it closes ("Closes #12", "fixes #3", "Resolved: #7"), as GitHub reads them."""
    return list(dict.fromkeys(int(n) for n in CLOSING_REFERENCE.findall(text or "")))


# --------------------------------------------------------------------------------------------- GraphQL resolvers


def _format_error(error: GraphQLError) -> dict[str, Any]:
    formatted: dict[str, Any] = dict(error.formatted)
    original = error.original_error
    if isinstance(original, _Problem):
        formatted = {"type": original.kind, **formatted}
    undefined = re.fullmatch(r"Cannot query field '(\w+)' on type '(\w+)'\.(.*)", error.message, re.S)
    if undefined:  # GitHub (graphql-ruby) words this one differently
        field_name, type_name, _ = undefined.groups()
        formatted["message"] = f"Field '{field_name}' doesn't exist on type '{type_name}'"
        formatted["extensions"] = {"code": "undefinedField", "typeName": type_name, "fieldName": field_name}
    return formatted


def _operation_name(document: DocumentNode, requested: object) -> str | None:
    if isinstance(requested, str):
        return requested
    names = [d.name.value if d.name else None for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return names[0] if len(names) == 1 else None


def _pagination_problems(schema: GraphQLSchema, document: DocumentNode, variables: dict[str, Any]) -> list[Any]:
    """GitHub checks every connection before executing: first/last at most 100, and one of them given."""
    values = dict(variables)
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            for var in definition.variable_definitions or ():
                if var.default_value is not None and var.variable.name.value not in values:
                    values[var.variable.name.value] = value_from_ast(var.default_value, GraphQLInt)
    type_info = TypeInfo(schema)
    problems: list[Any] = []

    class Check(Visitor):
        def enter_field(self, node: FieldNode, *_: Any) -> None:
            definition = type_info.get_field_def()
            if definition is None or not get_named_type(definition.type).name.endswith("Connection"):
                return
            bounds = {}
            for argument in node.arguments or ():
                if argument.name.value in ("first", "last"):
                    bounds[argument.name.value] = value_from_ast(argument.value, GraphQLInt, values)
            where = [{"line": loc.line, "column": loc.column} for loc in (GraphQLError("", node).locations or [])]
            name = node.name.value
            for bound, value in bounds.items():
                if isinstance(value, int) and value > 100:
                    problems.append({"type": "EXCESSIVE_PAGINATION", "locations": where, "message":
                                     f"Requesting {value} records on the `{name}` connection exceeds the `{bound}` "
                                     "limit of 100 records."})
            selected = {s.name.value for s in node.selection_set.selections if isinstance(s, FieldNode)} \
                if node.selection_set else set()
            if not any(isinstance(v, int) for v in bounds.values()) and selected & {"nodes", "edges"}:
                problems.append({"type": "MISSING_PAGINATION_BOUNDARIES", "locations": where, "message":
                                 f"You must provide a `first` or `last` value to properly paginate the `{name}` "
                                 "connection."})

    visit(document, TypeInfoVisitor(type_info, Check()))
    return problems


def _cursor(key: Any) -> str:
    return base64.b64encode(f"cursor:v2:{json.dumps(key)}".encode()).decode()


def _uncursor(cursor: str, argument: str) -> Any:
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
        if not text.startswith("cursor:v2:"):
            raise ValueError(text)
        return json.loads(text[len("cursor:v2:"):])
    except ValueError:
        raise _Problem("INVALID_CURSOR_ARGUMENTS", f"`{argument}` does not appear to be a valid cursor.") from None


def _connection(items: list[Any], args: dict[str, Any], key: Callable[[int, Any], Any] | None = None,
                descending: bool = False, **extra: Any) -> dict[str, Any]:
    """A Relay connection over items (already in order). Cursors carry each item's sort key, so that
    `after` still means "after that item" when items before it have gone (merged) meanwhile."""
    keys = [list(key(i, item)) if key else [i] for i, item in enumerate(items)]

    def beyond(item_key: list[Any], mark: list[Any]) -> bool:
        return item_key < mark if descending else item_key > mark

    indexes = list(range(len(items)))
    if args.get("after"):
        mark = _uncursor(args["after"], "after")
        indexes = [i for i in indexes if beyond(keys[i], mark)]
    if args.get("before"):
        mark = _uncursor(args["before"], "before")
        indexes = [i for i in indexes if beyond(mark, keys[i])]
    first, last = args.get("first"), args.get("last")
    for name, value in (("first", first), ("last", last)):
        if value is not None and value < 0:
            raise _Problem("UNPROCESSABLE", f"`{name}` must be a non-negative integer.")
    has_next = first is not None and len(indexes) > first
    if first is not None:
        indexes = indexes[:first]
    has_previous = last is not None and len(indexes) > last
    if last is not None:
        indexes = indexes[len(indexes) - last:] if last else []
    edges = [{"cursor": _cursor(keys[i]), "node": items[i]} for i in indexes]
    return {
        "totalCount": len(items), "edges": edges, "nodes": [edge["node"] for edge in edges],
        "pageInfo": {"hasNextPage": has_next, "hasPreviousPage": has_previous,
                     "startCursor": edges[0]["cursor"] if edges else None,
                     "endCursor": edges[-1]["cursor"] if edges else None},
        **extra,
    }


def _pull_requests(gh: FakeGitHub, args: dict[str, Any]) -> dict[str, Any]:
    pulls = list(gh._pulls.values())
    state_of = {"open": "OPEN"}
    if args.get("states"):
        pulls = [p for p in pulls if ("MERGED" if p.merged else state_of.get(p.state, "CLOSED")) in args["states"]]
    if args.get("labels"):
        pulls = [p for p in pulls if set(p.labels) & set(args["labels"])]
    if args.get("baseRefName"):
        pulls = [p for p in pulls if p.base == args["baseRefName"]]
    if args.get("headRefName"):
        pulls = [p for p in pulls if p.head_ref == args["headRefName"]]
    order = args.get("orderBy")
    if order:
        attribute = "updated_at" if order["field"] == "UPDATED_AT" else "created_at"
        descending = order["direction"] == "DESC"
        pulls.sort(key=lambda p: (getattr(p, attribute), p.number), reverse=descending)
        return _connection(pulls, args, lambda _, p: (getattr(p, attribute), p.number), descending)
    pulls.sort(key=lambda p: p.number)
    return _connection(pulls, args, lambda _, p: (p.number,))


def _issues(gh: FakeGitHub, args: dict[str, Any]) -> dict[str, Any]:
    """Repository.issues: GitHub's `labels` filter matches issues carrying any of the labels."""
    issues = sorted(gh._issues.values(), key=lambda issue: issue["number"])
    if args.get("states"):
        issues = [i for i in issues if i["state"] in args["states"]]
    if args.get("labels") is not None:
        issues = [i for i in issues if set(i["labels"]) & set(args["labels"])]
    return _connection(issues, args, lambda _, issue: (issue["number"],))


def _find_pull(gh: FakeGitHub, number: int) -> FakePull:
    pull = gh._pulls.get(number)
    if pull is None:
        raise _Problem("NOT_FOUND", f"Could not resolve to a PullRequest with the number of {number}.")
    return pull


def _node(gh: FakeGitHub, node_id: str) -> Any:
    if node_id == "R_fake00000001":
        return gh
    for pull in gh._pulls.values():
        if pull.node_id == node_id:
            return pull
        for review in pull.reviews:
            if review.node_id == node_id:
                return review
    raise _Problem("NOT_FOUND", f"Could not resolve to a node with the global id of '{node_id}'")


def _repository(gh: FakeGitHub, args: dict[str, Any]) -> FakeGitHub:
    if args["owner"].lower() != gh.owner.lower() or args["name"].lower() != gh.name.lower():
        wanted = f"{args['owner']}/{args['name']}"
        raise _Problem("NOT_FOUND", f"Could not resolve to a Repository with the name '{wanted}'.")
    return gh


def _merge_mutation(gh: FakeGitHub, args: dict[str, Any]) -> dict[str, Any]:
    data = args["input"]
    target = _node(gh, data["pullRequestId"])
    if not isinstance(target, FakePull):
        wanted = data["pullRequestId"]
        raise _Problem("NOT_FOUND", f"Could not resolve to a PullRequest with the global id of '{wanted}'")
    method = str(data.get("mergeMethod") or "MERGE").lower()
    pull = gh._merge(target.number, method, data.get("expectedHeadOid"), data.get("commitHeadline"),
                     data.get("commitBody"))
    return {"clientMutationId": data.get("clientMutationId"), "pullRequest": pull, "actor": _Actor("fleet-bot")}


def _enqueue_mutation(gh: FakeGitHub, args: dict[str, Any]) -> dict[str, Any]:
    data = args["input"]
    target = _node(gh, data["pullRequestId"])
    if not isinstance(target, FakePull):
        wanted = data["pullRequestId"]
        raise _Problem("NOT_FOUND", f"Could not resolve to a PullRequest with the global id of '{wanted}'")
    entry = gh._enqueue(target.number, data.get("expectedHeadOid"))
    return {"clientMutationId": data.get("clientMutationId"), "mergeQueueEntry": entry}


def _rate_limit(gh: FakeGitHub, args: dict[str, Any]) -> dict[str, Any]:
    bucket = gh._buckets["graphql"]
    return {"cost": 1, "limit": bucket.limit, "remaining": bucket.remaining, "used": bucket.used, "nodeCount": 0,
            "resetAt": _iso(datetime.fromtimestamp(bucket.reset, UTC))}


def _contexts(gh: FakeGitHub, rollup: _Rollup, args: dict[str, Any]) -> dict[str, Any]:
    checks, statuses = gh._latest_contexts(rollup.sha)

    def counts(items: list[Any], state: Callable[[Any], str]) -> list[dict[str, Any]]:
        tally: dict[str, int] = {}
        for item in items:
            tally[state(item)] = tally.get(state(item), 0) + 1
        return [{"state": s, "count": n} for s, n in tally.items()]

    return _connection([*checks, *statuses], args, checkRunCount=len(checks), statusContextCount=len(statuses),
                       checkRunCountsByState=counts(checks, lambda r: (r.conclusion or r.status).upper()),
                       statusContextCountsByState=counts(statuses, lambda s: s.state.upper()))


def _url(gh: FakeGitHub, suffix: str) -> str:
    return f"{gh.root_url}/{gh.repository}{suffix}"


Resolver = Callable[[Any, FakeGitHub, dict[str, Any]], Any]

_RESOLVERS: dict[str, Resolver] = {
    "Query.repository": lambda _, gh, a: _repository(gh, a),
    "Query.node": lambda _, gh, a: _node(gh, a["id"]),
    "Query.nodes": lambda _, gh, a: [_node(gh, i) for i in a["ids"]],
    "Query.rateLimit": lambda _, gh, a: _rate_limit(gh, a),
    "Query.viewer": lambda _, gh, a: _Actor("fleet-bot"),
    "Mutation.mergePullRequest": lambda _, gh, a: _merge_mutation(gh, a),
    "Mutation.enqueuePullRequest": lambda _, gh, a: _enqueue_mutation(gh, a),
    # Repository (the source is the FakeGitHub itself)
    "Repository.id": lambda gh, _, a: "R_fake00000001",
    "Repository.databaseId": lambda gh, _, a: 1,
    "Repository.name": lambda gh, _, a: gh.name,
    "Repository.nameWithOwner": lambda gh, _, a: gh.repository,
    "Repository.owner": lambda gh, _, a: _Actor(gh.owner, "Organization"),
    "Repository.url": lambda gh, _, a: _url(gh, ""),
    "Repository.isArchived": lambda gh, _, a: False,
    "Repository.isPrivate": lambda gh, _, a: True,
    "Repository.squashMergeAllowed": lambda gh, _, a: gh.allow_squash_merge,
    "Repository.mergeCommitAllowed": lambda gh, _, a: gh.allow_merge_commit,
    "Repository.rebaseMergeAllowed": lambda gh, _, a: gh.allow_rebase_merge,
    "Repository.autoMergeAllowed": lambda gh, _, a: False,
    "Repository.deleteBranchOnMerge": lambda gh, _, a: False,
    "Repository.viewerPermission": lambda gh, _, a: "WRITE",
    "Repository.defaultBranchRef": lambda gh, _, a: {
        "__typename": "Ref", "id": f"REF_fake{gh.default_branch}", "name": gh.default_branch,
        "prefix": "refs/heads/", "target": _Commit(gh._base_sha)},
    "Repository.pullRequests": lambda gh, _, a: _pull_requests(gh, a),
    "Repository.issues": lambda gh, _, a: _issues(gh, a),
    "Repository.pullRequest": lambda gh, _, a: _find_pull(gh, a["number"]),
    # PullRequest
    "PullRequest.id": lambda p, gh, a: p.node_id,
    "PullRequest.databaseId": lambda p, gh, a: 100000 + p.number,
    "PullRequest.body": lambda p, gh, a: p.body,
    "PullRequest.isDraft": lambda p, gh, a: p.draft,
    "PullRequest.state": lambda p, gh, a: "MERGED" if p.merged else p.state.upper(),
    "PullRequest.closed": lambda p, gh, a: p.state != "open",
    "PullRequest.locked": lambda p, gh, a: False,
    "PullRequest.mergedAt": lambda p, gh, a: p.merged_at,
    "PullRequest.closedAt": lambda p, gh, a: p.closed_at,
    "PullRequest.createdAt": lambda p, gh, a: p.created_at,
    "PullRequest.updatedAt": lambda p, gh, a: p.updated_at,
    "PullRequest.headRefOid": lambda p, gh, a: p.head_sha,
    "PullRequest.headRefName": lambda p, gh, a: p.head_ref,
    "PullRequest.baseRefName": lambda p, gh, a: p.base,
    "PullRequest.baseRefOid": lambda p, gh, a: gh._base_sha,
    "PullRequest.isCrossRepository": lambda p, gh, a: False,
    "PullRequest.url": lambda p, gh, a: _url(gh, f"/pull/{p.number}"),
    "PullRequest.permalink": lambda p, gh, a: _url(gh, f"/pull/{p.number}"),
    "PullRequest.author": lambda p, gh, a: _Actor(p.author, "Bot" if p.author.endswith("[bot]") else "User"),
    "PullRequest.repository": lambda p, gh, a: gh,
    "PullRequest.baseRepository": lambda p, gh, a: gh,
    "PullRequest.headRepository": lambda p, gh, a: gh,
    "PullRequest.labels": lambda p, gh, a: _connection(
        [{"__typename": "Label", "id": f"LA_fake{n}", "name": n, "color": "ededed"} for n in p.labels], a),
    "PullRequest.mergeable": lambda p, gh, a: gh._mergeable(p),
    "PullRequest.mergeStateStatus": lambda p, gh, a: gh._merge_state_status(p),
    "PullRequest.reviewDecision": lambda p, gh, a: gh._review_decision(p) if p.state == "open" else None,
    "PullRequest.latestOpinionatedReviews": lambda p, gh, a: _connection(
        gh._latest_opinionated(p, writers_only=bool(a.get("writersOnly"))), a),
    "PullRequest.latestReviews": lambda p, gh, a: _connection(
        list({r.reviewer: r for r in p.reviews if r.state != "DISMISSED"}.values()), a),
    "PullRequest.reviews": lambda p, gh, a: _connection(
        [r for r in p.reviews if not a.get("states") or r.state in a["states"]], a),
    "PullRequest.commits": lambda p, gh, a: _connection(
        [{"__typename": "PullRequestCommit", "id": f"PURC_fake{p.head_sha[:12]}", "commit": _Commit(p.head_sha),
          "url": _url(gh, f"/pull/{p.number}/commits/{p.head_sha}")}], a),
    "PullRequest.isMergeQueueEnabled": lambda p, gh, a: gh._queue_enabled(p),
    "PullRequest.isInMergeQueue": lambda p, gh, a: p.queue_entry is not None,
    "PullRequest.mergeQueueEntry": lambda p, gh, a: p.queue_entry,
    "MergeQueueEntry.id": lambda e, gh, a: f"MQE_fake{e.id}",
    "MergeQueueEntry.position": lambda e, gh, a: gh._queue_position(e),
    "MergeQueueEntry.enqueuedAt": lambda e, gh, a: e.enqueued_at,
    "MergeQueueEntry.headCommit": lambda e, gh, a: _Commit(e.head_sha),
    "MergeQueueEntry.jump": lambda e, gh, a: False,
    "MergeQueueEntry.solo": lambda e, gh, a: False,
    "MergeQueueEntry.pullRequest": lambda e, gh, a: next(
        (p for p in gh._pulls.values() if p.queue_entry is e), None),
    "PullRequest.mergeCommit": lambda p, gh, a: _Commit(p.merge_commit_sha) if p.merge_commit_sha else None,
    "PullRequest.mergedBy": lambda p, gh, a: _Actor(p.merged_by or "fleet-bot") if p.merged else None,
    # Reviews, users, commits, checks
    "PullRequestReview.id": lambda r, gh, a: r.node_id,
    "PullRequestReview.author": lambda r, gh, a: _Actor(r.reviewer),
    "PullRequestReview.authorCanPushToRepository": lambda r, gh, a: gh.can_push(r.reviewer),
    "PullRequestReview.submittedAt": lambda r, gh, a: r.submitted_at,
    "PullRequestReview.createdAt": lambda r, gh, a: r.submitted_at,
    "PullRequestReview.commit": lambda r, gh, a: _Commit(r.commit_id),
    "Commit.id": lambda c, gh, a: f"C_fake{c.oid}",
    "Commit.abbreviatedOid": lambda c, gh, a: c.oid[:7],
    "Commit.url": lambda c, gh, a: _url(gh, f"/commit/{c.oid}"),
    "Commit.statusCheckRollup": lambda c, gh, a: (
        _Rollup(c.oid, state) if (state := gh._rollup_state(c.oid)) else None),
    "StatusCheckRollup.id": lambda r, gh, a: f"SCR_fake{r.sha}",
    "StatusCheckRollup.commit": lambda r, gh, a: _Commit(r.sha),
    "StatusCheckRollup.contexts": lambda r, gh, a: _contexts(gh, r, a),
    "CheckRun.id": lambda r, gh, a: f"CR_fake{r.id}",
    "CheckRun.databaseId": lambda r, gh, a: r.id,
    "CheckRun.status": lambda r, gh, a: r.status.upper(),
    "CheckRun.conclusion": lambda r, gh, a: r.conclusion.upper() if r.conclusion else None,
    "CheckRun.startedAt": lambda r, gh, a: r.started_at,
    "CheckRun.completedAt": lambda r, gh, a: r.completed_at,
    "CheckRun.detailsUrl": lambda r, gh, a: _url(gh, f"/runs/{r.id}"),
    "CheckRun.url": lambda r, gh, a: _url(gh, f"/runs/{r.id}"),
    "CheckRun.isRequired": lambda r, gh, a: r.name in gh.required_checks,
    "CheckRun.checkSuite": lambda r, gh, a: {
        "__typename": "CheckSuite", "id": f"CS_fake{r.id}", "databaseId": r.id,
        "app": {"__typename": "App", "id": "A_fake15368", "slug": "github-actions", "name": "GitHub Actions"}},
    "StatusContext.id": lambda s, gh, a: f"SC_fake{s.id}",
    "StatusContext.state": lambda s, gh, a: s.state.upper(),
    "StatusContext.createdAt": lambda s, gh, a: s.created_at,
    "StatusContext.targetUrl": lambda s, gh, a: None,
    "StatusContext.commit": lambda s, gh, a: _Commit(s.sha),
    "StatusContext.isRequired": lambda s, gh, a: s.context in gh.required_checks,
}
for _kind in ("User", "Bot", "Organization"):
    _RESOLVERS[f"{_kind}.id"] = lambda u, gh, a: f"U_fake{u.login}"
    _RESOLVERS[f"{_kind}.url"] = lambda u, gh, a: f"{gh.root_url}/{u.login}"
    _RESOLVERS[f"{_kind}.avatarUrl"] = lambda u, gh, a: f"{gh.root_url}/{u.login}.png"


# What a token with permissions (an installation's) needs to read each field; a classic token reads them all.
GRAPHQL_PERMISSIONS: dict[str, tuple[str, str]] = {
    "Repository.pullRequests": ("pull_requests", "read"),
    "Repository.pullRequest": ("pull_requests", "read"),
    "Repository.issues": ("issues", "read"),
    "Mutation.mergePullRequest": ("contents", "write"),
}


def _resolve_field(source: Any, info: GraphQLResolveInfo[Any], **args: Any) -> Any:
    field_key = f"{info.parent_type.name}.{info.field_name}"
    if (needs := GRAPHQL_PERMISSIONS.get(field_key)) is not None:
        info.context.require(*needs)
    if field_key == "Query.repository" and info.context._reach is not None and str(args.get("name", "")).lower() \
            not in {r.lower() for r in info.context._reach}:
        raise _Problem("NOT_FOUND", f"Could not resolve to a Repository with the name "
                                    f"'{args.get('owner')}/{args.get('name')}'.")
    resolver = _RESOLVERS.get(field_key)
    if resolver is not None:
        return resolver(source, info.context, args)
    if isinstance(source, FakeGitHub):  # never expose the fake's own attributes by accident
        return None
    return default_field_resolver(source, info, **args)


def _resolve_type(value: Any, info: GraphQLResolveInfo[Any], abstract_type: GraphQLAbstractType) -> str | None:
    if isinstance(value, FakeCheckRun):  # a token without checks read: this item null, FORBIDDEN at its path
        info.context.require("checks")
    elif isinstance(value, FakeStatus):
        info.context.require("statuses")
    if isinstance(value, FakeGitHub):
        return "Repository"
    if isinstance(value, dict):
        return value.get("__typename")
    return getattr(value, "typename", None)


# ------------------------------------------------------------------------------------------------------ HTTP server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeGitHub

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet: no tracebacks on stderr
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGitHub/1.0"
    timeout = 30
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet; never logs headers
        pass

    def _serve(self) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            response, fault = fake._handle(self.command, self.path, headers, raw)
        except Exception as exc:  # a bug in the fake: answer 500 and keep the traceback for the test to see
            fake.server_errors.append(traceback.format_exc())
            response, fault = _Response(500, {"message": f"fake GitHub error: {type(exc).__name__}: {exc}"}, {}), None
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if response.body is None:
            payload, content_type = b"", None
        elif isinstance(response.body, bytes | str):
            payload = response.body.encode() if isinstance(response.body, str) else response.body
            content_type = "text/plain; charset=utf-8"
        else:
            payload, content_type = json.dumps(response.body).encode(), "application/json; charset=utf-8"
        out = {"x-github-request-id": f"FAKE:{next(fake._ids)}", "x-github-media-type": "github.v3; format=json"}
        if content_type:
            out["content-type"] = content_type
        out |= response.headers
        if fault is not None and fault.trickle:
            self._trickle(response.status, out, payload if self.command != "HEAD" else b"", fault)
            return
        self.send_response(response.status)
        for key, value in out.items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _trickle(self, status: int, headers: dict[str, str], payload: bytes, fault: Fault) -> None:
        """Write the answer one byte every `fault.trickle` seconds (the head at once with trickle_body_only)."""
        self.close_connection = True
        lines = [f"{self.protocol_version} {status} {self.responses.get(status, ('',))[0]}"]
        lines += [f"{key}: {value}" for key, value in headers.items()]
        lines += [f"content-length: {len(payload)}", "connection: close", "", ""]
        head = "\r\n".join(lines).encode("latin-1")
        stopping = self.server.fake._stopping
        try:
            if fault.trickle_body_only:
                self.wfile.write(head)
                head = b""
            data = head + payload
            for index in range(len(data)):
                if stopping.wait(fault.trickle):
                    return
                self.wfile.write(data[index : index + 1])
        except OSError:  # the client gave up and closed the connection
            return

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve
