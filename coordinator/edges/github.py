"""The GitHub edge of the merge step: one GraphQL query per 100 open pull requests; per merge, one GraphQL
read of that pull request and one PUT.

`GitHubClient` implements `coordinator.github_port.GitHubPort`, reading each pull request
into a `coordinator.pull_requests.PullSnapshot`:

- every request ends by a wall-clock deadline: its own timeout (`timeout_s`), or the caller's deadline if
  that comes first, however slowly GitHub (or whatever GITHUB_API_URL points at) answers; and no request
  starts with less than `min_request_s` left, a merge not with less than twice that (room for a read-back);
- reads (`fetch_open_pulls`, `fetch_pull`, `merged_sha`) retry 5xx, timeouts and dropped connections by
  the one read policy (`coordinator.edges.http.read_retry`: urllib3's Retry on the reads session),
  Retry-After honoured, never past the deadline;
- an enqueue (`enqueuePullRequest`, where the base requires the merge queue) and a branch update (`PUT
  .../update-branch`, under the up-to-date policy) are mutations too: sent once in the merge slot, never retried,
  pinned to the head the read before them checked; a merge answered 405 "Changes must be made through the merge
  queue" is told apart from any other 405 (`MergeFailure.QUEUE_REQUIRED`);
- a merge is never retried: GitHub may have merged before the error, so the step re-reads instead. A merge
  cut off by its deadline is an unknown outcome; while it may still land, a read-back that finds the pull
  request unmerged does not count as an answer;
- 403/429 with a retry hint, `x-ratelimit-remaining: 0`, GraphQL's `RATE_LIMITED`, or a remaining budget
  under `min_remaining` raise `RateLimited`, which ends the step cleanly; so does `TimeBudgetSpent`, when
  too little time is left to start a merge (checked by `wait_for_merge_slot`, which also keeps GitHub's
  second between merges before the re-read, so that only that read lies between the wait and the merge);
- 401 raises `BadCredentials`, an answer of the wrong shape `MalformedAnswer`; no message ever holds the token.

PyGithub sends the merge, with its own retries and throttling switched off: its default retry would
replay the PUT on 5xx and sleep up to an hour on a rate limit, and its throttle sleeps for real.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import requests
from github import Auth, Github, GithubException

from coordinator.deadline import DeadlineExceeded, run_with_deadline
from coordinator.edges.http import NO_RETRY, Attempts, classify_error, mount, read_retry, send, url_host
from coordinator.github_port import (
    BranchUpdated,
    Enqueued,
    EnqueueResult,
    GitHubError,
    Merged,
    MergeFailure,
    MergeRefused,
    MergeResult,
    OpenPulls,
    RateLimited,
    UpdateResult,
)
from coordinator.pull_requests import (
    CheckConclusion,
    CheckRun,
    CheckStatus,
    CommitStatus,
    Mergeable,
    MergeQueueEntryState,
    MergeStateStatus,
    PullSnapshot,
    PullState,
    QueueEntry,
    ReportedCheck,
    Review,
    ReviewDecision,
    ReviewState,
    StatusState,
    Unreadable,
    Unrecognized,
    parse_enum,
)
from coordinator.redact import scrub
from coordinator.settings import GitHubSettings

__all__ = [
    "ENQUEUE_MUTATION",
    "MERGE_FACTS_FRAGMENT",
    "OPEN_PULLS_QUERY",
    "PULL_BEFORE_MERGE_QUERY",
    "BadCredentials",
    "GitHubClient",
    "GitHubUnavailable",
    "GraphQLAnswer",
    "MalformedAnswer",
    "PathError",
    "TimeBudgetSpent",
    "snapshot_from_node",
]

# Everything the merge rules read about one pull request. Both reads select it through this one fragment, so the
# listing and the re-read before a merge can never disagree on what `decide` sees. The nested pages (labels,
# reviews, checks) are read as one page each; a pull request with more is refused as truncated.
MERGE_FACTS_FRAGMENT = """
fragment MergeFacts on PullRequest {
  id
  number
  title
  createdAt
  isDraft
  state
  baseRefName
  headRefOid
  mergeable
  mergeStateStatus
  reviewDecision
  isMergeQueueEnabled
  isInMergeQueue
  mergeQueueEntry { state position }
  labels(first: 100) { pageInfo { hasNextPage } nodes { name } }
  latestOpinionatedReviews(first: 100, writersOnly: true) {
    pageInfo { hasNextPage }
    nodes { state authorCanPushToRepository submittedAt }
  }
  commits(last: 1) {
    nodes {
      commit {
        oid
        statusCheckRollup {
          state
          contexts(first: 100) {
            pageInfo { hasNextPage }
            nodes {
              __typename
              ... on CheckRun { name status conclusion }
              ... on StatusContext { context state }
            }
          }
        }
      }
    }
  }
}
"""

# Up to 100 open pull requests per request. The first page also counts the open issues that wait for builders
# (the backlog), in the same request.
OPEN_PULLS_QUERY = """
query OpenPullRequests(
  $owner: String!, $name: String!, $cursor: String, $backlogLabels: [String!], $countBacklog: Boolean!
) {
  rateLimit { cost remaining resetAt }
  repository(owner: $owner, name: $name) {
    defaultBranchRef { name }
    backlog: issues(states: [OPEN], labels: $backlogLabels) @include(if: $countBacklog) { totalCount }
    pullRequests(states: [OPEN], first: 100, after: $cursor, orderBy: {field: CREATED_AT, direction: ASC}) {
      pageInfo { hasNextPage endCursor }
      nodes { ...MergeFacts }
    }
  }
}
""" + MERGE_FACTS_FRAGMENT

# One pull request, read again immediately before its merge. A number GitHub no longer resolves answers
# `pullRequest: null` with a NOT_FOUND error at that path.
PULL_BEFORE_MERGE_QUERY = """
query PullRequestBeforeMerge($owner: String!, $name: String!, $number: Int!) {
  rateLimit { cost remaining resetAt }
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) { ...MergeFacts }
  }
}
""" + MERGE_FACTS_FRAGMENT
PULL_PATH = ["repository", "pullRequest"]  # where PULL_BEFORE_MERGE_QUERY's NOT_FOUND points

# Adds a pull request to its base branch's merge queue, pinned to the head the decision saw: no merge method or
# title (the queue's rule sets those). Sent once, never retried: a repeat could jump the entry to the back.
ENQUEUE_MUTATION = """
mutation EnqueuePullRequest($pullRequestId: ID!, $expectedHeadOid: GitObjectID!) {
  enqueuePullRequest(input: {pullRequestId: $pullRequestId, expectedHeadOid: $expectedHeadOid}) {
    mergeQueueEntry { state position }
  }
}
"""
# GitHub's answer to a direct merge on a branch whose ruleset requires the merge queue (HTTP 405).
QUEUE_REQUIRED_MESSAGE = "Changes must be made through the merge queue"


class BadCredentials(GitHubError):
    """401: the token is wrong, expired or revoked; no retry helps."""


class MalformedAnswer(GitHubError):
    """GitHub answered, but not in the shape its API documents."""


class GitHubUnavailable(GitHubError):
    """5xx, timeouts or refused connections outlasted the retries or the time budget."""


class TimeBudgetSpent(RateLimited):
    """Too little of the step's time is left to start another merge: end the step cleanly (nothing was sent)."""

    def __init__(self) -> None:
        super().__init__("time budget spent")


# --------------------------------------------------------------------------------------------------
# Partial answers: `data` beside `errors` that each locate one field GitHub would not show

JsonPath = tuple[str | int, ...]


@dataclass(frozen=True)
class PathError:
    """One GraphQL error with a `path`: GitHub answered the rest, and left this field null."""

    path: JsonPath
    message: str

    def below(self, prefix: JsonPath) -> JsonPath | None:
        """The path relative to `prefix` when it lies strictly inside it, else None."""
        if len(self.path) > len(prefix) and self.path[: len(prefix)] == prefix:
            return self.path[len(prefix):]
        return None


@dataclass(frozen=True)
class GraphQLAnswer:
    data: Mapping[str, Any]
    errors: tuple[PathError, ...] = ()  # only errors inside one pull request reach here; others raise

    def inside(self, prefix: JsonPath) -> tuple[PathError, ...]:
        """The errors inside the node at `prefix` (e.g. ("repository", "pullRequests", "nodes", 3)), relative."""
        found = []
        for error in self.errors:
            relative = error.below(prefix)
            if relative is not None:
                found.append(PathError(relative, error.message))
        return tuple(found)


# Where a pull request node sits in an answer: the open-pulls page (`nodes`, then its index) or one pull request.
PULL_NODE_PREFIXES: tuple[JsonPath, ...] = (("repository", "pullRequests", "nodes"), ("repository", "pullRequest"))


def _inside_one_pull(path: JsonPath) -> bool:
    for prefix in PULL_NODE_PREFIXES:
        depth = len(prefix) + (1 if prefix[-1] == "nodes" else 0)  # the index of the node, for a list
        if len(path) > depth and path[: len(prefix)] == prefix and (depth == len(prefix) or isinstance(
                path[len(prefix)], int)):
            return path[depth] != "number"  # without its number, the pull request cannot be named
    return False


def _path_error(error: object) -> PathError | None:
    """An error that lies inside one pull request, or None (no path, or a path elsewhere)."""
    if not isinstance(error, Mapping):
        return None
    path = error.get("path")
    if not isinstance(path, list) or not all(isinstance(p, str | int) and not isinstance(p, bool) for p in path):
        return None
    if not _inside_one_pull(tuple(path)):
        return None
    return PathError(tuple(path), str(error.get("message", "")).strip()[:200] or "not accessible")


def _part(path: JsonPath) -> str:
    """Which part of a pull request a path (relative to its node) names, as the merge rules report it."""
    if "statusCheckRollup" in path:
        return "checks"
    field_names = [p for p in path if isinstance(p, str)]
    first = field_names[0] if field_names else "pull request"
    return {"latestOpinionatedReviews": "reviews", "labels": "labels"}.get(first, first)


# --------------------------------------------------------------------------------------------------
# Reading a GraphQL answer; every missing or mistyped field names its path


def _fail(path: str, expected: str, value: object) -> NoReturn:
    shown = "null" if value is None else type(value).__name__
    raise MalformedAnswer(f"malformed GitHub answer: {path} should be {expected}, got {shown}")


def _obj(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        _fail(path, "an object", value)
    return value


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        _fail(path, "a list", value)
    return value


def _str(value: object, path: str) -> str:
    if not isinstance(value, str):
        _fail(path, "a string", value)
    return value


def _opt_str(value: object, path: str) -> str | None:
    return None if value is None else _str(value, path)


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        _fail(path, "true or false", value)
    return value


def _int(value: object, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        _fail(path, "a whole number", value)
    return value


def _time(value: object, path: str) -> datetime:
    text = _str(value, path)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        _fail(path, "an ISO 8601 time", value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _not_found_at(error: object, path: Sequence[str] | None) -> bool:
    return (
        path is not None
        and isinstance(error, Mapping)
        and error.get("type") == "NOT_FOUND"
        and error.get("path") == list(path)
    )


def _connection_nodes(conn: object, path: str) -> tuple[list[Any], bool]:
    """A connection's nodes and whether it has more pages than the one read."""
    body = _obj(conn, path)
    nodes = _list(body.get("nodes"), f"{path}.nodes")
    more = False
    if "pageInfo" in body:
        more = _bool(_obj(body["pageInfo"], f"{path}.pageInfo").get("hasNextPage"), f"{path}.pageInfo.hasNextPage")
    return nodes, more


def _check(node: object, path: str) -> ReportedCheck:
    body = _obj(node, path)
    kind = body.get("__typename")
    if kind == "CheckRun":
        conclusion = _opt_str(body.get("conclusion"), f"{path}.conclusion")
        return CheckRun(
            name=_str(body.get("name"), f"{path}.name"),
            status=parse_enum(CheckStatus, _str(body.get("status"), f"{path}.status"), "CheckRun.status"),
            conclusion=None if conclusion is None else parse_enum(CheckConclusion, conclusion, "CheckRun.conclusion"),
        )
    if kind == "StatusContext":
        return CommitStatus(
            context=_str(body.get("context"), f"{path}.context"),
            state=parse_enum(StatusState, _str(body.get("state"), f"{path}.state"), "StatusContext.state"),
        )
    _fail(f"{path}.__typename", "CheckRun or StatusContext", kind)


def _review(node: object, path: str) -> Review:
    body = _obj(node, path)
    submitted = body.get("submittedAt")  # null while a review is pending
    return Review(
        state=parse_enum(ReviewState, _str(body.get("state"), f"{path}.state"), "PullRequestReview.state"),
        author_can_push=_bool(body.get("authorCanPushToRepository"), f"{path}.authorCanPushToRepository"),
        submitted_at=None if submitted is None else _time(submitted, f"{path}.submittedAt"),
    )


def _queue_entry(node: object, path: str) -> QueueEntry | None:
    if node is None:
        return None
    body = _obj(node, path)
    return QueueEntry(
        state=parse_enum(MergeQueueEntryState, _str(body.get("state"), f"{path}.state"), "MergeQueueEntry.state"),
        position=_int(body.get("position"), f"{path}.position"),
    )


def snapshot_from_node(node: object, path: str = "pullRequest", errors: Sequence[PathError] = ()) -> PullSnapshot:
    """One `PullRequest` node as MERGE_FACTS_FRAGMENT selects it, as a snapshot; raises MalformedAnswer.

    `errors` are the answer's errors inside this node (paths relative to it, `GraphQLAnswer.inside`): the fields
    they name are null, and the snapshot carries them as `unreadable`, which the merge rules refuse."""
    if not errors:
        return _snapshot(node, path, ())
    unreadable = tuple(dict.fromkeys(Unreadable(_part(e.path), e.message) for e in errors))
    holes = {e.path for e in errors}
    try:
        return _snapshot(node, path, unreadable, holes)
    except MalformedAnswer:  # a field the rules need is among the hidden ones: the number still names it
        return _unreadable_snapshot(_obj(node, path), path, unreadable)


def _unreadable_snapshot(pr: Mapping[str, Any], path: str, unreadable: tuple[Unreadable, ...]) -> PullSnapshot:
    """What can be read of a pull request whose needed fields GitHub hid; refused for being unreadable."""
    title, created = pr.get("title"), pr.get("createdAt")
    unknown = Unrecognized("unreadable", "null")
    return PullSnapshot(
        number=_int(pr.get("number"), f"{path}.number"),
        title=title if isinstance(title, str) else "",
        created_at=_time(created, f"{path}.createdAt") if isinstance(created, str) else datetime.min.replace(
            tzinfo=UTC),
        is_draft=pr.get("isDraft") is True,
        state=unknown, base_ref="", head_oid="", rollup_commit_oid=None, rollup_state=None, checks=(), labels=(),
        mergeable=unknown, merge_state_status=unknown, review_decision=unknown, latest_reviews=(),
        unreadable=unreadable,
    )


def _hidden_index(holes: set[JsonPath], prefix: JsonPath, index: int) -> bool:
    return any(hole[: len(prefix) + 1] == (*prefix, index) for hole in holes)


def _snapshot(
    node: object, path: str, unreadable: tuple[Unreadable, ...], holes: set[JsonPath] | None = None
) -> PullSnapshot:
    holes = holes or set()
    pr = _obj(node, path)
    number = _int(pr.get("number"), f"{path}.number")  # first, so that errors below read in document order
    truncated: list[str] = []

    label_nodes, more = _connection_nodes(pr.get("labels"), f"{path}.labels")
    labels = tuple(
        _str(_obj(n, f"{path}.labels.nodes[]").get("name"), f"{path}.labels.nodes[].name") for n in label_nodes
    )
    if more:
        truncated.append("labels")

    review_nodes, more = _connection_nodes(pr.get("latestOpinionatedReviews"), f"{path}.latestOpinionatedReviews")
    reviews = tuple(_review(n, f"{path}.latestOpinionatedReviews.nodes[{i}]") for i, n in enumerate(review_nodes))
    if more:
        truncated.append("reviews")

    commit_nodes, _ = _connection_nodes(pr.get("commits"), f"{path}.commits")
    rollup_commit_oid: str | None = None
    rollup_state: StatusState | Unrecognized | None = None
    checks: tuple[ReportedCheck, ...] = ()
    if commit_nodes:
        commit = _obj(
            _obj(commit_nodes[-1], f"{path}.commits.nodes[0]").get("commit"), f"{path}.commits.nodes[0].commit"
        )
        rollup_commit_oid = _str(commit.get("oid"), f"{path}.commits.nodes[0].commit.oid")
        rollup = commit.get("statusCheckRollup")
        if rollup is not None:
            rpath = f"{path}.commits.nodes[0].commit.statusCheckRollup"
            rollup_body = _obj(rollup, rpath)
            rollup_state = parse_enum(StatusState, _str(rollup_body.get("state"), f"{rpath}.state"), "rollup.state")
            context_nodes, more = _connection_nodes(rollup_body.get("contexts"), f"{rpath}.contexts")
            hidden_at = ("commits", "nodes", len(commit_nodes) - 1, "commit", "statusCheckRollup", "contexts", "nodes")
            checks = tuple(  # a context GitHub hid (null, an error at its path) is unreadable, not malformed
                _check(n, f"{rpath}.contexts.nodes[{i}]") for i, n in enumerate(context_nodes)
                if not (n is None and _hidden_index(holes, hidden_at, i))
            )
            if more:
                truncated.append("checks")

    decision = _opt_str(pr.get("reviewDecision"), f"{path}.reviewDecision")
    return PullSnapshot(
        number=number,
        title=_str(pr.get("title"), f"{path}.title"),
        created_at=_time(pr.get("createdAt"), f"{path}.createdAt"),
        is_draft=_bool(pr.get("isDraft"), f"{path}.isDraft"),
        state=parse_enum(PullState, _str(pr.get("state"), f"{path}.state"), "PullRequest.state"),
        base_ref=_str(pr.get("baseRefName"), f"{path}.baseRefName"),
        head_oid=_str(pr.get("headRefOid"), f"{path}.headRefOid"),
        rollup_commit_oid=rollup_commit_oid,
        rollup_state=rollup_state,
        checks=checks,
        labels=labels,
        mergeable=parse_enum(Mergeable, _str(pr.get("mergeable"), f"{path}.mergeable"), "mergeable"),
        merge_state_status=parse_enum(
            MergeStateStatus, _str(pr.get("mergeStateStatus"), f"{path}.mergeStateStatus"), "mergeStateStatus"
        ),
        review_decision=None if decision is None else parse_enum(ReviewDecision, decision, "reviewDecision"),
        latest_reviews=reviews,
        truncated=tuple(truncated),
        node_id=_str(pr.get("id"), f"{path}.id"),
        merge_queue_enabled=_bool(pr.get("isMergeQueueEnabled"), f"{path}.isMergeQueueEnabled"),
        in_merge_queue=_bool(pr.get("isInMergeQueue"), f"{path}.isInMergeQueue"),
        queue_entry=_queue_entry(pr.get("mergeQueueEntry"), f"{path}.mergeQueueEntry"),
        unreadable=unreadable,
    )


# --------------------------------------------------------------------------------------------------
# HTTP answers: rate limits and retry hints


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    try:
        return int(float(headers[name]))
    except (KeyError, ValueError, TypeError):
        return None


def _retry_after(headers: Mapping[str, str], now: datetime) -> datetime | None:
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return now + timedelta(seconds=int(raw))
    try:
        return email.utils.parsedate_to_datetime(raw).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def _reset_at(headers: Mapping[str, str]) -> datetime | None:
    reset = _header_int(headers, "x-ratelimit-reset")
    return None if reset is None else datetime.fromtimestamp(reset, UTC)


# GitHub's advice when a secondary rate limit names no time to wait: at least a minute.
SECONDARY_LIMIT_WAIT = timedelta(minutes=1)


def rate_limit_stop(status: int, headers: Mapping[str, str], now: datetime, body: object = None) -> RateLimited | None:
    """The stop a 403/429 answer asks for, or None when a 403 is a plain refusal."""
    if status not in (403, 429):
        return None
    retry_at = _retry_after(headers, now)
    if retry_at is not None:
        return RateLimited(f"GitHub secondary rate limit (HTTP {status})", retry_at)
    message = body.get("message") if isinstance(body, Mapping) else None
    if isinstance(message, str) and "secondary rate limit" in message.lower():
        # Sometimes without a Retry-After: then the rest of the step waits for a later cycle.
        return RateLimited(f"GitHub secondary rate limit (HTTP {status})", now + SECONDARY_LIMIT_WAIT)
    if headers.get("x-ratelimit-remaining", "").strip() == "0":
        return RateLimited(f"GitHub rate limit exhausted (HTTP {status})", _reset_at(headers))
    if status == 429:
        return RateLimited("GitHub rate limit (HTTP 429)", _reset_at(headers))
    return None


def _lower(headers: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (headers or {}).items()}


class GitHubClient:
    """The concrete GitHubPort over HTTP. Not thread-safe; one per cycle is plenty."""

    def __init__(
        self,
        settings: GitHubSettings,
        *,
        timeout_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 3,
        backoff_s: float = 0.5,
        min_remaining: int = 50,
        write_interval_s: float = 1.0,
        min_request_s: float = 1.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if settings.token is None:
            raise ValueError("GitHubSettings.token is None: mint the coordinator App's token first (coordinator.cycle)")
        self._settings = settings
        self._token = settings.token.reveal()
        self._secrets = (self._token,)  # what `scrub` takes out of every message built from GitHub's words
        self._timeout_s = timeout_s
        self._sleep = sleep  # only for spacing merges; retries wait inside urllib3, within the deadline
        self._min_remaining = min_remaining
        self._write_interval_s = write_interval_s
        self._min_request_s = min_request_s
        self._last_write: float | None = None
        self._slot_taken = False  # wait_for_merge_slot has waited for the next merge, which has not been sent yet
        self._calls = 0
        # Merges cut off by their deadline, by number: an event set once the abandoned request has ended, and why.
        self._merges_in_flight: dict[int, tuple[threading.Event, str]] = {}
        # Remaining budget and reset per rate-limit resource ("graphql", "core"), as last seen.
        self._budget: dict[str, tuple[int, datetime | None]] = {}
        # Reads only (GraphQL queries are POSTs), so the read policy may repeat any of its requests.
        self._reads = mount(
            requests.Session(), read_retry(attempts=max_attempts, backoff_s=backoff_s, methods=("GET", "POST"))
        )
        # Mutations other than the merge (enqueue, branch update): never retried, like the merge.
        self._writes = mount(requests.Session(), NO_RETRY)
        for session in (self._reads, self._writes):
            session.headers.update(
                {
                    "Authorization": f"bearer {self._token}",
                    "Accept": "application/json",
                    "User-Agent": "agent-fleet-coordinator",
                }
            )
        # lazy: get_repo/get_pull build objects without a request, so a merge is exactly one PUT.
        self._gh = Github(
            auth=Auth.Token(self._token),
            base_url=settings.api_url,
            timeout=max(1, round(timeout_s)),
            user_agent="agent-fleet-coordinator",
            retry=NO_RETRY,
            seconds_between_requests=None,
            seconds_between_writes=None,
            lazy=True,
        )
        self._repo = self._gh.get_repo(settings.repository)

    @property
    def api_calls(self) -> int:
        return self._calls

    @property
    def rate_limit_remaining(self) -> int | None:
        return min((remaining for remaining, _ in self._budget.values()), default=None)

    # ---------------------------------------------------------------------------------- helpers

    def _now(self) -> datetime:
        return datetime.now(UTC)

    def _note_budget(self, resource: str, headers: Mapping[str, str]) -> None:
        remaining = _header_int(headers, "x-ratelimit-remaining")
        if remaining is not None:
            self._budget[headers.get("x-ratelimit-resource", resource)] = (remaining, _reset_at(headers))

    def _note_rest_budget(self) -> None:
        # PyGithub keeps the last rate-limit headers it saw, errors included; -1 until it saw any.
        remaining, _limit = self._gh.requester.rate_limiting
        if remaining >= 0:
            reset = self._gh.requester.rate_limiting_resettime
            self._budget["core"] = (remaining, datetime.fromtimestamp(reset, UTC) if reset else None)

    def _check_budget(self, resource: str) -> None:
        remaining, reset = self._budget.get(resource, (None, None))
        if remaining is not None and remaining < self._min_remaining:
            raise RateLimited(f"GitHub {resource} budget low ({remaining} left)", reset)

    def _has_time(self, deadline: float | None, needed_s: float) -> bool:
        return deadline is None or deadline - time.monotonic() >= needed_s

    def _request_deadline(self, deadline: float | None) -> float:
        """When one request (its retries included) must be done: its own timeout, or the caller's deadline."""
        own = time.monotonic() + self._timeout_s
        return own if deadline is None else min(own, deadline)

    def _read(
        self, method: str, url: str, deadline: float | None, *, what: str, resource: str, **kwargs: Any
    ) -> tuple[requests.Response, dict[str, str], Attempts]:
        """One read through the read policy, its retries counted: the answer and its headers (the rate-limit
        budget noted), or GitHubUnavailable when no time is left, it was cut off or GitHub stayed unreachable."""
        self._check_budget(resource)
        if not self._has_time(deadline, self._min_request_s):
            raise GitHubUnavailable(f"no time left in this cycle for {what}")
        attempts = Attempts()
        try:
            response = send(
                self._reads,
                method,
                url,
                deadline=self._request_deadline(deadline),
                what=what,
                attempts=attempts,
                min_attempt_s=self._min_request_s,
                **kwargs,
            )
        except DeadlineExceeded as exc:
            raise GitHubUnavailable(str(exc)) from None
        except requests.RequestException as exc:
            unreachable = f"{what}: GitHub at {url_host(url)} unreachable ({classify_error(exc)})"
            raise GitHubUnavailable(self._gave_up(unreachable, attempts)) from None
        finally:
            self._calls += attempts.count
        headers = _lower(response.headers)
        self._note_budget(resource, headers)
        if response.status_code >= 500:
            raise GitHubUnavailable(self._gave_up(f"{what}: GitHub answered HTTP {response.status_code}", attempts))
        return response, headers, attempts

    def _answer(self, response: requests.Response, headers: Mapping[str, str], what: str) -> object:
        """A 200's JSON body (None when it is not JSON); bad credentials, rate limits and other statuses raise."""
        status = response.status_code
        try:
            body: object = response.json()
        except ValueError:
            body = None
        if status == 401:
            raise BadCredentials("bad credentials: GitHub answered 401; check GITHUB_TOKEN")
        stop = rate_limit_stop(status, headers, self._now(), body)
        if stop is not None:
            raise stop
        if status != 200:
            detail = self._message(body)
            message = f"{what} answered HTTP {status}" + (f": {detail}" if detail else "")
            raise GitHubError(scrub(message, self._secrets))
        return body

    @staticmethod
    def _gave_up(what: str, attempts: Attempts) -> str:
        text = f"{what} after {attempts.count} attempt{'' if attempts.count == 1 else 's'}"
        return text + ("; no time left in this cycle to retry" if attempts.out_of_time else "")

    @staticmethod
    def _message(data: object) -> str:
        if isinstance(data, Mapping) and isinstance(data.get("message"), str):
            return str(data["message"])[:200]
        return ""

    # ---------------------------------------------------------------------------------- GraphQL

    def _graphql(
        self, query: str, variables: Mapping[str, object], deadline: float | None, *,
        may_be_absent: Sequence[str] | None = None,
    ) -> GraphQLAnswer:
        response, headers, _ = self._read(
            "POST", self._settings.graphql_url, deadline, what="GitHub GraphQL query", resource="graphql",
            json={"query": query, "variables": dict(variables)},
        )
        answer = self._graphql_body(response, headers, may_be_absent)
        self._note_graphql_budget(answer.data)
        return answer

    def _graphql_body(
        self, response: requests.Response, headers: Mapping[str, str], may_be_absent: Sequence[str] | None = None
    ) -> GraphQLAnswer:
        """The answer's data, with the errors that each lie inside one pull request (a partial answer: those
        pull requests are refused as unreadable). Any other error, and rate limits, end the read."""
        body = self._answer(response, headers, "GitHub GraphQL")
        answer = _obj(body, "answer")
        errors = answer.get("errors")
        if not errors:
            return GraphQLAnswer(_obj(answer.get("data"), "data"))
        errors = _list(errors, "errors")
        types = {e.get("type") for e in errors if isinstance(e, Mapping)}
        if "RATE_LIMITED" in types:
            raise RateLimited("GitHub GraphQL rate limit (RATE_LIMITED)", _reset_at(headers))
        # A node that does not resolve (NOT_FOUND at the path asked about) is an answer: it is not there.
        errors = [e for e in errors if not _not_found_at(e, may_be_absent)]
        located = [_path_error(e) for e in errors]
        if answer.get("data") is None or any(e is None for e in located):
            messages = "; ".join(str(e.get("message", ""))[:200] for e in errors if isinstance(e, Mapping))
            raise GitHubError(scrub(f"GitHub GraphQL errors: {messages or errors!r}", self._secrets))
        partial = tuple(e for e in located if e is not None)
        return GraphQLAnswer(_obj(answer.get("data"), "data"),
                             tuple(PathError(e.path, scrub(e.message, self._secrets)) for e in partial))

    def _note_graphql_budget(self, data: Mapping[str, Any]) -> None:
        rate = data.get("rateLimit")
        if isinstance(rate, Mapping) and isinstance(rate.get("remaining"), int):
            reset_raw = rate.get("resetAt")
            reset = _time(reset_raw, "rateLimit.resetAt") if reset_raw is not None else None
            self._budget["graphql"] = (rate["remaining"], reset)

    def _repository(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        repo = data.get("repository")
        if repo is None:
            raise GitHubError(f"repository {self._settings.repository} not found, or the token cannot read it")
        return _obj(repo, "repository")

    def fetch_open_pulls(self, *, backlog_labels: Sequence[str] = (), deadline: float | None = None) -> OpenPulls:
        pulls: list[PullSnapshot] = []
        cursor: str | None = None
        seen: set[str] = set()
        default_branch = ""
        backlog: int | None = None
        while True:
            count_backlog = cursor is None and bool(backlog_labels)
            answer = self._graphql(
                OPEN_PULLS_QUERY,
                {"owner": self._settings.owner, "name": self._settings.name, "cursor": cursor,
                 "backlogLabels": list(backlog_labels), "countBacklog": count_backlog},
                deadline,
            )
            data = answer.data
            repo = self._repository(data)
            branch_ref = repo.get("defaultBranchRef")
            if branch_ref is None:
                raise GitHubError(f"repository {self._settings.repository} has no default branch (empty?)")
            default_branch = _str(_obj(branch_ref, "defaultBranchRef").get("name"), "defaultBranchRef.name")
            if count_backlog:
                backlog = _int(_obj(repo.get("backlog"), "repository.backlog").get("totalCount"),
                               "repository.backlog.totalCount")
            conn = _obj(repo.get("pullRequests"), "repository.pullRequests")
            nodes = _list(conn.get("nodes"), "repository.pullRequests.nodes")
            offset = len(pulls)
            pulls += [
                snapshot_from_node(n, f"pullRequests.nodes[{offset + i}]",
                                   answer.inside(("repository", "pullRequests", "nodes", i)))
                for i, n in enumerate(nodes)
            ]
            page = _obj(conn.get("pageInfo"), "repository.pullRequests.pageInfo")
            if not _bool(page.get("hasNextPage"), "pullRequests.pageInfo.hasNextPage"):
                break
            cursor = _str(page.get("endCursor"), "pullRequests.pageInfo.endCursor")
            if cursor in seen:  # a server that repeats a cursor would otherwise keep us here forever
                raise MalformedAnswer("malformed GitHub answer: pullRequests.pageInfo.endCursor repeats")
            seen.add(cursor)
        return OpenPulls(default_branch=default_branch, pulls=tuple(pulls), backlog=backlog)

    def fetch_pull(self, number: int, *, deadline: float | None = None) -> PullSnapshot | None:
        answer = self._graphql(
            PULL_BEFORE_MERGE_QUERY,
            {"owner": self._settings.owner, "name": self._settings.name, "number": number},
            deadline,
            may_be_absent=PULL_PATH,
        )
        node = self._repository(answer.data).get("pullRequest")
        if node is None:
            return None
        pull = snapshot_from_node(node, "repository.pullRequest", answer.inside(("repository", "pullRequest")))
        if pull.number != number:
            raise MalformedAnswer(f"malformed GitHub answer: asked for #{number}, got #{pull.number}")
        return pull

    # ---------------------------------------------------------------------------------- REST

    def _rest_error(self, exc: GithubException) -> GitHubError | RateLimited | None:
        """The step-wide meaning of a REST error, or None when it concerns only this pull request."""
        headers = _lower(exc.headers)
        self._note_budget("core", headers)
        if exc.status == 401:
            return BadCredentials("bad credentials: GitHub answered 401; check GITHUB_TOKEN")
        return rate_limit_stop(exc.status, headers, self._now(), exc.data)

    def wait_for_merge_slot(self, *, deadline: float | None = None) -> None:
        self._check_budget("core")
        wait = 0.0
        if self._last_write is not None:  # GitHub asks for at least a second between mutations
            wait = max(0.0, self._last_write + self._write_interval_s - time.monotonic())
        # Room for the merge and, should its outcome be unclear, for reading it back; else nothing is sent.
        if not self._has_time(deadline, wait + 2 * self._min_request_s):
            raise TimeBudgetSpent()
        if wait > 0:
            self._sleep(wait)
        self._slot_taken = True

    def merge(self, number: int, *, head_sha: str, title: str, deadline: float | None = None) -> MergeResult:
        if not self._slot_taken:  # a caller that did not wait for its slot still keeps GitHub's spacing
            self.wait_for_merge_slot(deadline=deadline)
        self._slot_taken = False
        self._check_budget("core")
        if not self._has_time(deadline, 2 * self._min_request_s):  # the re-read since the slot took too long
            raise TimeBudgetSpent()
        ended = threading.Event()

        def put() -> tuple[object, object]:
            try:
                status = self._repo.get_pull(number).merge(merge_method="squash", sha=head_sha, commit_title=title)
                return status.merged, status.sha
            finally:
                ended.set()

        self._calls += 1
        try:
            merged, sha = run_with_deadline(put, self._request_deadline(deadline), f"the merge of #{number}")
        except DeadlineExceeded as exc:
            self._merges_in_flight[number] = (ended, str(exc))  # abandoned, not cancelled: it may still merge
            return MergeRefused(MergeFailure.UNCERTAIN, str(exc))
        except GithubException as exc:
            stop = self._rest_error(exc)
            if stop is not None:
                raise stop from None
            return self._merge_refusal(exc)
        except requests.RequestException as exc:
            return MergeRefused(MergeFailure.UNCERTAIN, f"no answer ({type(exc).__name__})")
        except (ValueError, KeyError, TypeError, AttributeError):
            return MergeRefused(MergeFailure.UNCERTAIN, "malformed answer to the merge")
        finally:
            self._last_write = time.monotonic()
            self._note_rest_budget()
        if merged is True and isinstance(sha, str) and sha:
            return Merged(sha)
        if merged is False:
            return MergeRefused(MergeFailure.REJECTED, "GitHub answered merged: false")
        return MergeRefused(MergeFailure.UNCERTAIN, "malformed answer to the merge")

    def _merge_refusal(self, exc: GithubException) -> MergeRefused:
        detail = scrub(f"HTTP {exc.status}" + (f": {m}" if (m := self._message(exc.data)) else ""), self._secrets)
        if exc.status == 409:
            return MergeRefused(MergeFailure.HEAD_MOVED, detail)
        if exc.status == 405:
            if QUEUE_REQUIRED_MESSAGE.lower() in self._message(exc.data).lower():
                return MergeRefused(MergeFailure.QUEUE_REQUIRED, detail)
            return MergeRefused(MergeFailure.NOT_MERGEABLE, detail)
        if exc.status == 422:
            return MergeRefused(MergeFailure.REJECTED, detail)
        if exc.status == 403:
            return MergeRefused(MergeFailure.FORBIDDEN, detail)
        if exc.status == 404:
            return MergeRefused(MergeFailure.NOT_FOUND, detail)
        return MergeRefused(MergeFailure.UNCERTAIN, detail)  # 5xx and anything unforeseen: ask, do not assume

    def merged_sha(self, number: int, *, deadline: float | None = None) -> str | None:
        url = f"{self._settings.api_url.rstrip('/')}/repos/{self._settings.repository}/pulls/{number}"
        response, headers, _ = self._read(
            "GET", url, deadline, what=f"reading #{number} from GitHub", resource="core",
            headers={"Accept": "application/vnd.github+json"},
        )
        data = self._answer(response, headers, f"reading #{number}")
        if data is None:
            raise MalformedAnswer(f"malformed GitHub answer reading #{number}: not JSON")
        body = _obj(data, f"pulls/{number}")
        if not _bool(body.get("merged"), f"pulls/{number}.merged"):
            ended, cut_off = self._merges_in_flight.get(number, (None, ""))
            if ended is not None and not ended.is_set():
                raise GitHubUnavailable(f"{cut_off}; #{number} is not merged yet, but that merge may still land")
            return None
        return _str(body.get("merge_commit_sha"), f"pulls/{number}.merge_commit_sha")

    # ---------------------------------------------------------------------------------- queue and updates

    def _write(
        self, method: str, url: str, deadline: float | None, *, what: str, resource: str, **kwargs: Any
    ) -> tuple[requests.Response, dict[str, str], object] | MergeRefused:
        """One mutation, sent once in the merge slot: its answer, headers and JSON body (401 and rate limits
        raised), or an UNCERTAIN refusal when no answer came (it may have landed; the next cycle's read shows it)."""
        if not self._slot_taken:
            self.wait_for_merge_slot(deadline=deadline)
        self._slot_taken = False
        self._check_budget(resource)
        if not self._has_time(deadline, 2 * self._min_request_s):
            raise TimeBudgetSpent()
        attempts = Attempts()
        try:
            response = send(self._writes, method, url, deadline=self._request_deadline(deadline), what=what,
                            attempts=attempts, min_attempt_s=self._min_request_s, **kwargs)
        except DeadlineExceeded as exc:
            return MergeRefused(MergeFailure.UNCERTAIN, str(exc))
        except requests.RequestException as exc:
            return MergeRefused(MergeFailure.UNCERTAIN, f"{what}: no answer ({type(exc).__name__})")
        finally:
            self._calls += attempts.count
            self._last_write = time.monotonic()
        headers = _lower(response.headers)
        self._note_budget(resource, headers)
        try:
            body: object = response.json()
        except ValueError:
            body = None
        if response.status_code == 401:
            raise BadCredentials("bad credentials: GitHub answered 401; check GITHUB_TOKEN")
        stop = rate_limit_stop(response.status_code, headers, self._now(), body)
        if stop is not None:
            raise stop
        return response, headers, body

    def enqueue(self, number: int, *, pull_id: str, head_sha: str, deadline: float | None = None) -> EnqueueResult:
        answer = self._write(
            "POST", self._settings.graphql_url, deadline, what=f"enqueueing #{number}", resource="graphql",
            json={"query": ENQUEUE_MUTATION, "variables": {"pullRequestId": pull_id, "expectedHeadOid": head_sha}},
        )
        if isinstance(answer, MergeRefused):
            return answer
        response, headers, body = answer
        if response.status_code >= 500 or not isinstance(body, Mapping):
            return MergeRefused(MergeFailure.UNCERTAIN, f"HTTP {response.status_code}")
        if response.status_code != 200:
            return self._refusal_for(response.status_code, body)
        errors = body.get("errors")
        if errors:
            found = [e for e in errors if isinstance(e, Mapping)] if isinstance(errors, list) else []
            if any(e.get("type") == "RATE_LIMITED" for e in found):
                raise RateLimited("GitHub GraphQL rate limit (RATE_LIMITED)", _reset_at(headers))
            messages = "; ".join(str(e.get("message", ""))[:200] for e in found) or repr(errors)[:200]
            detail = scrub(messages, self._secrets)
            if "head branch was modified" in messages.lower() or "expected head" in messages.lower():
                return MergeRefused(MergeFailure.HEAD_MOVED, detail)
            if any(e.get("type") == "NOT_FOUND" for e in found):
                return MergeRefused(MergeFailure.NOT_FOUND, detail)
            if any(e.get("type") == "FORBIDDEN" for e in found):
                return MergeRefused(MergeFailure.FORBIDDEN, detail)
            return MergeRefused(MergeFailure.REJECTED, detail)
        data = _obj(body.get("data"), "data")
        payload = data.get("enqueuePullRequest")
        if payload is None:
            return MergeRefused(MergeFailure.UNCERTAIN, "malformed answer to the enqueue")
        payload = _obj(payload, "data.enqueuePullRequest")
        return Enqueued(_queue_entry(payload.get("mergeQueueEntry"), "data.enqueuePullRequest.mergeQueueEntry"))

    def update_branch(self, number: int, *, head_sha: str, deadline: float | None = None) -> UpdateResult:
        url = f"{self._settings.api_url.rstrip('/')}/repos/{self._settings.repository}/pulls/{number}/update-branch"
        answer = self._write(
            "PUT", url, deadline, what=f"updating the branch of #{number}", resource="core",
            headers={"Accept": "application/vnd.github+json"}, json={"expected_head_sha": head_sha},
        )
        if isinstance(answer, MergeRefused):
            return answer
        response, _headers, body = answer
        if response.status_code == 202:
            return BranchUpdated()
        return self._refusal_for(response.status_code, body)

    def _refusal_for(self, status: int, body: object) -> MergeRefused:
        detail = scrub(f"HTTP {status}" + (f": {m}" if (m := self._message(body)) else ""), self._secrets)
        if status == 422 and "expected" in detail.lower() and "head" in detail.lower():
            return MergeRefused(MergeFailure.HEAD_MOVED, detail)  # update-branch: expected_head_sha no longer the head
        failure = {403: MergeFailure.FORBIDDEN, 404: MergeFailure.NOT_FOUND, 405: MergeFailure.NOT_MERGEABLE,
                   409: MergeFailure.HEAD_MOVED, 422: MergeFailure.REJECTED}.get(status, MergeFailure.UNCERTAIN)
        return MergeRefused(failure, detail)
