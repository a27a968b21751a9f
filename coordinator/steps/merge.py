"""The merge step: squash-merge the open pull requests that GitHub itself says are ready.

A pure core decides, a thin shell acts:

- `PullSnapshot` is everything GitHub said about one open pull request, read in one GraphQL query.
- `decide(pull, policy)` returns a `MergeDecision`: eligible, or every `Refusal` that applies.
- `plan_merges(pulls, policy, max_per_cycle)` orders and caps the merges and counts the review queue.
- `run_merge(github, settings, ...)` reads, plans and merges through a `GitHubPort`; immediately before each
  merge it reads that one pull request again and merges only if `decide` still says so, pinned to the head
  just read: the listing may be a minute old by the last merge of a busy cycle, and GitHub enforces neither
  labels nor, without a required review, a change request.
- Where the base requires GitHub's merge queue it enqueues instead of merging (the same rules, the same read
  before); under the up-to-date policy it brings behind but otherwise eligible pull requests up to date, a few a
  cycle (`MergePlan.to_update`), and merges them on a later cycle once green on the new head.

Why so strict: the guide's authors once merged a pull request whose CI was still running and had a
four-hour outage. Nothing here passes unless GitHub reported it as good on the exact head commit that
is then merged; a value this code does not know (GitHub adds enum values) is a refusal, never a pass.

This module declares the port it needs (`GitHubPort`, `Merged`, `MergeRefused`, `RateLimited`,
`GitHubError`); `coordinator.edges.github` implements it, so the dependency points from edge to core.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Protocol, TypeVar, assert_never

from coordinator.fleet import BLOCKING_LABEL
from coordinator.report import EventLog, MergeOutcome, MergeReport, PullOutcome, StepStatus
from coordinator.settings import GitHubSettings

# --------------------------------------------------------------------------------------------------
# GitHub's enums, value for value as in schema.graphql


class PullState(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    MERGED = "MERGED"


class Mergeable(StrEnum):
    MERGEABLE = "MERGEABLE"
    CONFLICTING = "CONFLICTING"
    UNKNOWN = "UNKNOWN"


class MergeStateStatus(StrEnum):
    BEHIND = "BEHIND"
    BLOCKED = "BLOCKED"
    CLEAN = "CLEAN"
    DIRTY = "DIRTY"
    DRAFT = "DRAFT"  # deprecated by GitHub, still in the schema
    HAS_HOOKS = "HAS_HOOKS"
    UNKNOWN = "UNKNOWN"
    UNSTABLE = "UNSTABLE"


class ReviewDecision(StrEnum):
    APPROVED = "APPROVED"
    CHANGES_REQUESTED = "CHANGES_REQUESTED"
    REVIEW_REQUIRED = "REVIEW_REQUIRED"


class ReviewState(StrEnum):
    APPROVED = "APPROVED"
    CHANGES_REQUESTED = "CHANGES_REQUESTED"
    COMMENTED = "COMMENTED"
    DISMISSED = "DISMISSED"
    PENDING = "PENDING"


class StatusState(StrEnum):
    """The rollup's combined state, and the state of one commit status (StatusContext)."""

    SUCCESS = "SUCCESS"
    PENDING = "PENDING"
    EXPECTED = "EXPECTED"  # a required status has not reported yet
    FAILURE = "FAILURE"
    ERROR = "ERROR"


class MergeQueueEntryState(StrEnum):
    AWAITING_CHECKS = "AWAITING_CHECKS"
    LOCKED = "LOCKED"
    MERGEABLE = "MERGEABLE"
    QUEUED = "QUEUED"
    UNMERGEABLE = "UNMERGEABLE"  # the queue's checks failed on the merged result: the entry will not land


class CheckStatus(StrEnum):
    COMPLETED = "COMPLETED"
    IN_PROGRESS = "IN_PROGRESS"
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    REQUESTED = "REQUESTED"
    WAITING = "WAITING"


class CheckConclusion(StrEnum):
    ACTION_REQUIRED = "ACTION_REQUIRED"
    CANCELLED = "CANCELLED"
    FAILURE = "FAILURE"
    NEUTRAL = "NEUTRAL"
    SKIPPED = "SKIPPED"
    STALE = "STALE"
    STARTUP_FAILURE = "STARTUP_FAILURE"
    SUCCESS = "SUCCESS"
    TIMED_OUT = "TIMED_OUT"


@dataclass(frozen=True)
class Unrecognized:
    """An enum value GitHub sent that this code does not know; every rule reads it as a refusal."""

    field: str
    value: str

    def __str__(self) -> str:
        return f"{self.field}={self.value!r}"


E = TypeVar("E", bound=Enum)


def parse_enum(kind: type[E], raw: str, field_name: str) -> E | Unrecognized:
    try:
        return kind(raw)
    except ValueError:
        return Unrecognized(field_name, raw)


# --------------------------------------------------------------------------------------------------
# The snapshot: what GitHub said about one pull request


@dataclass(frozen=True)
class CheckRun:
    """A check run (GitHub Actions and other apps) on the rollup's commit."""

    name: str
    status: CheckStatus | Unrecognized
    conclusion: CheckConclusion | Unrecognized | None  # None until completed


@dataclass(frozen=True)
class CommitStatus:
    """A commit status (the older statuses API) on the rollup's commit."""

    context: str
    state: StatusState | Unrecognized


ReportedCheck = CheckRun | CommitStatus


@dataclass(frozen=True)
class Review:
    """One reviewer's latest approving or change-requesting review, and whether that reviewer can push.

    Anyone can review a public repository; only the opinion of someone with write access counts.
    """

    state: ReviewState | Unrecognized
    author_can_push: bool
    submitted_at: datetime | None = None  # orders the up-to-date updates: oldest approval first


@dataclass(frozen=True)
class QueueEntry:
    """The pull request's entry in its base branch's merge queue."""

    state: MergeQueueEntryState | Unrecognized
    position: int


# What GitHub permission lets a token read each part of a pull request the query asks for.
PERMISSION_TO_READ = {"checks": "checks", "statuses": "statuses", "reviews": "pull_requests", "labels": "issues"}


@dataclass(frozen=True)
class Unreadable:
    """A part of a pull request GitHub would not show this token (an error with a path inside the pull request,
    beside `data`): a fine-grained personal access token cannot read check runs, for one."""

    part: str  # "checks", "reviews", "labels", or the field's name
    message: str  # GitHub's words, e.g. "Resource not accessible by personal access token"

    def __str__(self) -> str:
        permission = PERMISSION_TO_READ.get(self.part)
        fix = f"give the token {permission} read, or use a GitHub App" if permission else \
            "give the token read access to it, or use a GitHub App"
        return f"{self.part} unreadable: {self.message}: {fix}"


@dataclass(frozen=True)
class PullSnapshot:
    number: int
    title: str
    created_at: datetime
    is_draft: bool
    state: PullState | Unrecognized
    base_ref: str
    head_oid: str
    # The commit the status rollup belongs to (`commits(last: 1)`); it must be the head.
    rollup_commit_oid: str | None
    rollup_state: StatusState | Unrecognized | None  # None: nothing has reported on that commit
    checks: tuple[ReportedCheck, ...]
    labels: tuple[str, ...]
    mergeable: Mergeable | Unrecognized
    merge_state_status: MergeStateStatus | Unrecognized
    review_decision: ReviewDecision | Unrecognized | None  # None: the base branch requires no review
    latest_reviews: tuple[Review, ...]  # each reviewer's latest opinionated review
    # Connections that had more items than one page holds (labels, reviews, checks): what is unread
    # might be a blocking label, a change request or a failing check, so a truncated snapshot refuses.
    truncated: tuple[str, ...] = ()
    node_id: str = ""  # GraphQL's id, what enqueuePullRequest takes
    # The base branch requires GitHub's merge queue (a ruleset's merge_queue rule): enqueue, never merge.
    merge_queue_enabled: bool = False
    in_merge_queue: bool = False
    queue_entry: QueueEntry | None = None
    # Parts GitHub refused to show (partial answer): what is hidden might be a failing check, so it refuses.
    unreadable: tuple[Unreadable, ...] = ()

    def unrecognized(self) -> tuple[Unrecognized, ...]:
        values: list[object] = [
            self.queue_entry.state if self.queue_entry is not None else None,
            self.state,
            self.rollup_state,
            self.mergeable,
            self.merge_state_status,
            self.review_decision,
            *(review.state for review in self.latest_reviews),
        ]
        for check in self.checks:
            values += [check.status, check.conclusion] if isinstance(check, CheckRun) else [check.state]
        return tuple(v for v in values if isinstance(v, Unrecognized))


@dataclass(frozen=True)
class MergePolicy:
    default_branch: str
    required_checks: tuple[str, ...] = ()
    blocking_labels: tuple[str, ...] = (BLOCKING_LABEL,)

    def __post_init__(self) -> None:
        # No blocking label would merge a pull request labelled do-not-merge: refused, however it is built.
        if not self.blocking_labels:
            raise ValueError(f"blocking_labels is empty; keep at least {BLOCKING_LABEL!r}")


# --------------------------------------------------------------------------------------------------
# The decision


class Refusal(StrEnum):
    """Why a pull request is not merged this cycle; the values are the report's phrases."""

    CLOSED = "closed"
    ALREADY_MERGED = "already merged"
    DRAFT = "draft"
    NOT_DEFAULT_BRANCH = "not targeting the default branch"
    BLOCKED_BY_LABEL = "blocked by label"
    HEAD_MOVED = "head moved"
    CHANGES_REQUESTED = "changes requested"
    NOT_APPROVED = "not approved"
    NO_CHECKS = "no checks reported"
    CHECKS_PENDING = "checks pending"
    CHECKS_FAILED = "checks failed"
    REQUIRED_CHECK_MISSING = "required check missing"
    CONFLICTING = "conflicting"
    MERGEABILITY_UNKNOWN = "mergeability unknown"
    BEHIND = "behind the base branch"
    BLOCKED = "blocked by branch protection"
    UNSTABLE = "unstable"
    TRUNCATED = "too much to read in one page"
    UNREADABLE = "unreadable"  # reported as what was unreadable, GitHub's words and the fix (Unreadable)
    UNRECOGNIZED = "unrecognized value from GitHub"


@dataclass(frozen=True)
class MergeDecision:
    refusals: tuple[Refusal, ...] = ()  # every reason that applies; the first is the headline
    unreadable: tuple[Unreadable, ...] = ()  # what UNREADABLE stands for

    @property
    def eligible(self) -> bool:
        return not self.refusals

    @property
    def reason(self) -> str:
        if not self.refusals:
            return "eligible"
        if self.refusals[0] is Refusal.UNREADABLE and self.unreadable:
            return "; ".join(dict.fromkeys(str(u) for u in self.unreadable))
        return self.refusals[0].value


class ReviewStatus(Enum):
    APPROVED = "approved"
    CHANGES_REQUESTED = "changes requested"
    AWAITING = "awaiting review"
    UNRECOGNIZED = "unrecognized"


def review_status(pull: PullSnapshot) -> ReviewStatus:
    """GitHub's own review decision; only when it has none (no review required) the latest reviews."""
    decision = pull.review_decision
    if decision is None:
        return _review_status_from_reviews(pull.latest_reviews)
    if isinstance(decision, Unrecognized):
        return ReviewStatus.UNRECOGNIZED
    if decision is ReviewDecision.APPROVED:
        return ReviewStatus.APPROVED
    if decision is ReviewDecision.CHANGES_REQUESTED:
        return ReviewStatus.CHANGES_REQUESTED
    if decision is ReviewDecision.REVIEW_REQUIRED:
        return ReviewStatus.AWAITING
    assert_never(decision)


def _review_status_from_reviews(reviews: Sequence[Review]) -> ReviewStatus:
    # Null is never approval by itself: at least one approval and no outstanding change request, both
    # from people who can push. The query asks for writers only; a review that says otherwise is ignored.
    approved = changes = unknown = False
    for review in (r.state for r in reviews if r.author_can_push):
        if isinstance(review, Unrecognized):
            unknown = True
        elif review is ReviewState.APPROVED:
            approved = True
        elif review is ReviewState.CHANGES_REQUESTED:
            changes = True
        elif review in (ReviewState.COMMENTED, ReviewState.DISMISSED, ReviewState.PENDING):
            pass  # no opinion: GitHub leaves these out of latestOpinionatedReviews anyway
        else:
            assert_never(review)
    if changes:
        return ReviewStatus.CHANGES_REQUESTED
    if unknown:
        return ReviewStatus.UNRECOGNIZED
    return ReviewStatus.APPROVED if approved else ReviewStatus.AWAITING


class CheckOutcome(Enum):
    """Ordered best to worst, so that a combined outcome is the worst of its parts."""

    SUCCESS = 0
    PENDING = 1
    FAILURE = 2
    UNRECOGNIZED = 3


def status_outcome(state: StatusState | Unrecognized) -> CheckOutcome:
    if isinstance(state, Unrecognized):
        return CheckOutcome.UNRECOGNIZED
    if state is StatusState.SUCCESS:
        return CheckOutcome.SUCCESS
    if state in (StatusState.PENDING, StatusState.EXPECTED):  # EXPECTED: a required one has not reported
        return CheckOutcome.PENDING
    if state in (StatusState.FAILURE, StatusState.ERROR):
        return CheckOutcome.FAILURE
    assert_never(state)


def check_outcome(check: ReportedCheck) -> CheckOutcome:
    if isinstance(check, CommitStatus):
        return status_outcome(check.state)
    status, conclusion = check.status, check.conclusion
    if isinstance(status, Unrecognized):
        return CheckOutcome.UNRECOGNIZED
    if status in (
        CheckStatus.IN_PROGRESS,
        CheckStatus.PENDING,
        CheckStatus.QUEUED,
        CheckStatus.REQUESTED,
        CheckStatus.WAITING,
    ):
        return CheckOutcome.PENDING
    if status is not CheckStatus.COMPLETED:
        assert_never(status)
    if conclusion is None:  # completed without a conclusion: not an answer yet
        return CheckOutcome.PENDING
    if isinstance(conclusion, Unrecognized):
        return CheckOutcome.UNRECOGNIZED
    if conclusion in (CheckConclusion.SUCCESS, CheckConclusion.NEUTRAL, CheckConclusion.SKIPPED):
        return CheckOutcome.SUCCESS  # as GitHub counts them
    if conclusion in (
        CheckConclusion.ACTION_REQUIRED,
        CheckConclusion.CANCELLED,
        CheckConclusion.FAILURE,
        CheckConclusion.STALE,
        CheckConclusion.STARTUP_FAILURE,
        CheckConclusion.TIMED_OUT,
    ):
        return CheckOutcome.FAILURE
    assert_never(conclusion)


def check_name(check: ReportedCheck) -> str:
    return check.name if isinstance(check, CheckRun) else check.context


_OUTCOME_REFUSAL = {
    CheckOutcome.PENDING: Refusal.CHECKS_PENDING,
    CheckOutcome.FAILURE: Refusal.CHECKS_FAILED,
    CheckOutcome.UNRECOGNIZED: Refusal.UNRECOGNIZED,
}


def _worst(outcomes: Iterable[CheckOutcome]) -> CheckOutcome:
    return max(outcomes, key=lambda outcome: outcome.value, default=CheckOutcome.SUCCESS)


def _state_rule(pull: PullSnapshot) -> tuple[Refusal, ...]:
    state = pull.state
    if isinstance(state, Unrecognized):
        return (Refusal.UNRECOGNIZED,)
    if state is PullState.OPEN:
        return ()
    if state is PullState.CLOSED:
        return (Refusal.CLOSED,)
    if state is PullState.MERGED:
        return (Refusal.ALREADY_MERGED,)
    assert_never(state)


def _draft_rule(pull: PullSnapshot) -> tuple[Refusal, ...]:
    return (Refusal.DRAFT,) if pull.is_draft else ()


def _base_rule(pull: PullSnapshot, policy: MergePolicy) -> tuple[Refusal, ...]:
    return () if pull.base_ref == policy.default_branch else (Refusal.NOT_DEFAULT_BRANCH,)


def _label_rule(pull: PullSnapshot, policy: MergePolicy) -> tuple[Refusal, ...]:
    # GitHub label names are unique regardless of case, so compare them that way.
    blocking = {label.casefold() for label in policy.blocking_labels}
    return (Refusal.BLOCKED_BY_LABEL,) if any(label.casefold() in blocking for label in pull.labels) else ()


def _head_rule(pull: PullSnapshot) -> tuple[Refusal, ...]:
    # The rollup must describe the head that would be merged; otherwise a push raced the read.
    return () if pull.rollup_commit_oid == pull.head_oid else (Refusal.HEAD_MOVED,)


def _review_rule(pull: PullSnapshot) -> tuple[Refusal, ...]:
    status = review_status(pull)
    if status is ReviewStatus.APPROVED:
        return ()
    if status is ReviewStatus.CHANGES_REQUESTED:
        return (Refusal.CHANGES_REQUESTED,)
    if status is ReviewStatus.AWAITING:
        return (Refusal.NOT_APPROVED,)
    if status is ReviewStatus.UNRECOGNIZED:
        return (Refusal.UNRECOGNIZED,)
    assert_never(status)


def _checks_rule(pull: PullSnapshot) -> tuple[Refusal, ...]:
    if pull.rollup_state is None or not pull.checks:
        return (Refusal.NO_CHECKS,)
    # The rollup and every single check must agree: a snapshot where they do not is not trusted.
    combined = _worst([status_outcome(pull.rollup_state), *(check_outcome(c) for c in pull.checks)])
    return () if combined is CheckOutcome.SUCCESS else (_OUTCOME_REFUSAL[combined],)


def _required_checks_rule(pull: PullSnapshot, policy: MergePolicy) -> tuple[Refusal, ...]:
    refusals: list[Refusal] = []
    for required in policy.required_checks:
        # A name may report more than once (several apps, or a check and a status): all must pass.
        outcomes = [check_outcome(c) for c in pull.checks if check_name(c) == required]
        if not outcomes:
            refusals.append(Refusal.REQUIRED_CHECK_MISSING)
            continue
        worst = _worst(outcomes)
        if worst is not CheckOutcome.SUCCESS:
            refusals.append(_OUTCOME_REFUSAL[worst])
    return tuple(refusals)


def _mergeable_rule(pull: PullSnapshot) -> tuple[Refusal, ...]:
    mergeable = pull.mergeable
    if isinstance(mergeable, Unrecognized):
        return (Refusal.UNRECOGNIZED,)
    if mergeable is Mergeable.MERGEABLE:
        return ()
    if mergeable is Mergeable.CONFLICTING:
        return (Refusal.CONFLICTING,)
    if mergeable is Mergeable.UNKNOWN:  # GitHub is still computing it: ask again next cycle
        return (Refusal.MERGEABILITY_UNKNOWN,)
    assert_never(mergeable)


def _merge_state_rule(pull: PullSnapshot) -> tuple[Refusal, ...]:
    status = pull.merge_state_status
    if isinstance(status, Unrecognized):
        return (Refusal.UNRECOGNIZED,)
    if status in (MergeStateStatus.CLEAN, MergeStateStatus.HAS_HOOKS):
        return ()
    if status is MergeStateStatus.BEHIND:
        # A merge queue tests each entry merged onto the latest base itself: being behind does not matter there.
        return () if pull.merge_queue_enabled else (Refusal.BEHIND,)
    if status is MergeStateStatus.BLOCKED:
        return (Refusal.BLOCKED,)
    if status is MergeStateStatus.DIRTY:
        return (Refusal.CONFLICTING,)
    if status is MergeStateStatus.DRAFT:
        return (Refusal.DRAFT,)
    if status is MergeStateStatus.UNKNOWN:
        return (Refusal.MERGEABILITY_UNKNOWN,)
    if status is MergeStateStatus.UNSTABLE:  # some check is not passing, required or not
        return (Refusal.UNSTABLE,)
    assert_never(status)


def _truncation_rule(pull: PullSnapshot) -> tuple[Refusal, ...]:
    return (Refusal.TRUNCATED,) if pull.truncated else ()


def _unreadable_rule(pull: PullSnapshot) -> tuple[Refusal, ...]:
    return (Refusal.UNREADABLE,) if pull.unreadable else ()


def decide(pull: PullSnapshot, policy: MergePolicy) -> MergeDecision:
    """Whether to merge `pull` now, and if not, every reason, most telling first. Never acts."""
    found = [
        *_unreadable_rule(pull),  # first: every other rule reads what GitHub did not show
        *_state_rule(pull),
        *_draft_rule(pull),
        *_base_rule(pull, policy),
        *_label_rule(pull, policy),
        *_head_rule(pull),
        *_review_rule(pull),
        *_checks_rule(pull),
        *_required_checks_rule(pull, policy),
        *_mergeable_rule(pull),
        *_merge_state_rule(pull),
        *_truncation_rule(pull),
    ]
    return MergeDecision(tuple(dict.fromkeys(found)), pull.unreadable)


# --------------------------------------------------------------------------------------------------
# The plan for one cycle

LIMIT_REACHED = "merge limit reached"
STOPPED_EARLY = "stopped early"
DRY_RUN = "would merge (dry run)"
DRY_RUN_ENQUEUE = "would enqueue (dry run)"
DRY_RUN_UPDATE = "would bring up to date (dry run)"
ENQUEUED = "enqueued"
UPDATED = "brought up to date; merges once its checks pass on the new head"
QUEUE_ENTRY_FAILED = "merge queue entry unmergeable"
ALREADY_UP_TO_DATE = "up to date already; merges next cycle"
# No answer to an enqueue or an update: it may have been applied; the next cycle's read shows it. Never resent.
ENQUEUE_UNCERTAIN = "enqueue outcome unknown"
UPDATE_UNCERTAIN = "update outcome unknown"


def queue_reason(pull: PullSnapshot) -> tuple[MergeOutcome, str]:
    """How the report shows a pull request already in the merge queue: queued with its entry's state and place,
    or a failed entry (UNMERGEABLE: the queue's checks failed on the merged result)."""
    entry = pull.queue_entry
    if entry is None:
        return MergeOutcome.QUEUED, "in the merge queue"
    if entry.state is MergeQueueEntryState.UNMERGEABLE:
        return MergeOutcome.QUEUE_FAILED, QUEUE_ENTRY_FAILED
    return MergeOutcome.QUEUED, f"in the merge queue ({entry.state}, position {entry.position})"


@dataclass(frozen=True)
class MergePlan:
    # Eligible, oldest first, at most max_per_cycle: merged, or enqueued where the base requires the merge queue.
    to_merge: tuple[PullSnapshot, ...]
    over_limit: tuple[PullSnapshot, ...]  # eligible, but past this cycle's cap: next cycle
    refused: tuple[tuple[PullSnapshot, MergeDecision], ...]
    open: int
    review_queue: int  # open, not draft, awaiting a review (neither approved nor changes requested)
    conflicting: int
    in_queue: tuple[PullSnapshot, ...] = ()  # already in the merge queue: GitHub merges them, nothing to do
    # Under the up-to-date policy: eligible but for being behind, oldest approval first, at most
    # updates_per_cycle; their branches are brought up to date and they merge on a later cycle.
    to_update: tuple[PullSnapshot, ...] = ()

    @property
    def considered(self) -> tuple[PullSnapshot, ...]:
        everyone = self.to_merge + self.over_limit + self.in_queue + self.to_update + tuple(p for p, _ in self.refused)
        return tuple(sorted(everyone, key=_age))


def _age(pull: PullSnapshot) -> tuple[datetime, int]:
    return (pull.created_at, pull.number)


def approved_at(pull: PullSnapshot) -> datetime:
    """When the pull request was first approved among the opinions that still count (its creation if unknown)."""
    times = [r.submitted_at for r in pull.latest_reviews
             if r.state is ReviewState.APPROVED and r.author_can_push and r.submitted_at is not None]
    return min(times, default=pull.created_at)


def only_behind(decision: MergeDecision) -> bool:
    """Eligible but for being behind its base: approved, green, mergeable, not a draft. Only such a pull request
    is ever brought up to date (never a draft, a conflicting, failing or unapproved one)."""
    return decision.refusals == (Refusal.BEHIND,)


# What a pull request that was brought up to date shows while its checks run on the new head.
_WAITING_FOR_CHECKS = frozenset({Refusal.CHECKS_PENDING, Refusal.REQUIRED_CHECK_MISSING, Refusal.BLOCKED,
                                 Refusal.UNSTABLE})


def waiting_for_checks(pull: PullSnapshot, decision: MergeDecision) -> bool:
    """Up to date, approved, mergeable, and held back only by checks still running: the pull request in flight.
    While one is, no other is brought up to date (Kodiak's one at a time): the merge it is about to make would leave
    the other behind again, its checks spent on a head already stale."""
    found = set(decision.refusals)
    return Refusal.CHECKS_PENDING in found and found <= _WAITING_FOR_CHECKS


def plan_merges(
    pulls: Iterable[PullSnapshot], policy: MergePolicy, max_per_cycle: int, updates_per_cycle: int = 0
) -> MergePlan:
    if max_per_cycle < 1:
        raise ValueError(f"max_per_cycle must be at least 1, not {max_per_cycle}")
    if updates_per_cycle < 0:
        raise ValueError(f"updates_per_cycle must be at least 0, not {updates_per_cycle}")
    ordered = sorted(pulls, key=_age)  # oldest first: the longest waiting goes first
    eligible: list[PullSnapshot] = []
    in_queue: list[PullSnapshot] = []
    behind: list[PullSnapshot] = []
    in_flight = 0
    refused: list[tuple[PullSnapshot, MergeDecision]] = []
    for pull in ordered:
        if pull.in_merge_queue:
            in_queue.append(pull)
            continue
        decision = decide(pull, policy)
        if decision.eligible:
            eligible.append(pull)
        else:
            refused.append((pull, decision))
            if only_behind(decision):
                behind.append(pull)
            in_flight += waiting_for_checks(pull, decision)
    room = max(0, updates_per_cycle - in_flight)
    to_update = tuple(sorted(behind, key=lambda p: (approved_at(p), *_age(p)))[:room])
    return MergePlan(
        to_merge=tuple(eligible[:max_per_cycle]),
        over_limit=tuple(eligible[max_per_cycle:]),
        refused=tuple((p, d) for p, d in refused if p not in to_update),
        open=len(ordered),
        review_queue=sum(1 for p in ordered if not p.is_draft and review_status(p) is ReviewStatus.AWAITING),
        conflicting=sum(1 for p in ordered if p.mergeable is Mergeable.CONFLICTING),
        in_queue=tuple(in_queue),
        to_update=to_update,
    )


def commit_title(pull: PullSnapshot) -> str:
    return f"{pull.title} (#{pull.number})"


# --------------------------------------------------------------------------------------------------
# The port: what the step needs from GitHub (implemented by coordinator.edges.github.GitHubClient)


class GitHubError(Exception):
    """GitHub could not be used for this step; the message is for people and never holds the token."""


class RateLimited(Exception):
    """GitHub asked us to slow down, or the budget is nearly spent: end the step cleanly."""

    def __init__(self, reason: str, retry_at: datetime | None = None) -> None:
        self.reason = reason
        self.retry_at = retry_at
        super().__init__(self.describe())

    def describe(self) -> str:
        if self.retry_at is None:
            return self.reason
        return f"{self.reason}; retry after {self.retry_at.astimezone(UTC).isoformat().replace('+00:00', 'Z')}"


@dataclass(frozen=True)
class OpenPulls:
    default_branch: str
    pulls: tuple[PullSnapshot, ...]
    backlog: int | None = None  # open issues carrying a backlog label; None when none was asked for


class MergeFailure(StrEnum):
    """Why GitHub did not merge a pull request the core found eligible; values are report phrases."""

    HEAD_MOVED = "head moved"  # 409: a push after evaluation; GitHub refused instead of merging it
    NOT_MERGEABLE = "not mergeable"  # 405
    REJECTED = "merge rejected"  # 422 or `merged: false`
    FORBIDDEN = "forbidden"  # 403 that is not a rate limit
    NOT_FOUND = "not found"  # 404
    UNCERTAIN = "merge outcome unknown"  # 5xx, timeout, malformed answer: GitHub may have merged
    FAILED = "merge failed"  # UNCERTAIN, then a re-read showed it was not merged
    NOT_REREAD = "re-read failed"  # the read just before the merge failed: nothing was merged
    # 405 "Changes must be made through the merge queue": a rule the listing did not show; enqueued instead.
    QUEUE_REQUIRED = "merge queue required"


@dataclass(frozen=True)
class Merged:
    sha: str


@dataclass(frozen=True)
class MergeRefused:
    failure: MergeFailure
    detail: str = ""


MergeResult = Merged | MergeRefused


@dataclass(frozen=True)
class Enqueued:
    entry: QueueEntry | None  # as enqueuePullRequest answered it


@dataclass(frozen=True)
class BranchUpdated:
    """GitHub accepted the update (202): it merges the base into the branch, and the checks run on the new head."""


EnqueueResult = Enqueued | MergeRefused
UpdateResult = BranchUpdated | MergeRefused


class GitHubPort(Protocol):
    @property
    def api_calls(self) -> int:
        """HTTP requests made so far."""
        ...

    @property
    def rate_limit_remaining(self) -> int | None:
        """The smallest remaining budget GitHub reported so far (points or requests), None before any answer."""
        ...

    def fetch_open_pulls(self, *, backlog_labels: Sequence[str] = (), deadline: float | None = None) -> OpenPulls:
        """Every open pull request, oldest first, and the open issues carrying any of `backlog_labels`, counted
        in the same read; raises RateLimited or GitHubError."""
        ...

    def fetch_pull(self, number: int, *, deadline: float | None = None) -> PullSnapshot | None:
        """That one pull request as it is now, every field `decide` reads, in one call (the listing's own
        selection); None when GitHub no longer has it. Raises RateLimited or GitHubError."""
        ...

    def wait_for_merge_slot(self, *, deadline: float | None = None) -> None:
        """Wait until a merge may be sent (GitHub asks for a second between mutations), so that nothing but
        the re-read lies between the wait and the merge; raises RateLimited when the budget or the time left
        allows no merge."""
        ...

    def merge(self, number: int, *, head_sha: str, title: str, deadline: float | None = None) -> MergeResult:
        """One squash-merge pinned to head_sha, never retried; raises RateLimited or GitHubError."""
        ...

    def merged_sha(self, number: int, *, deadline: float | None = None) -> str | None:
        """The merge commit if the pull request is merged, else None; raises RateLimited or GitHubError."""
        ...

    def enqueue(self, number: int, *, pull_id: str, head_sha: str, deadline: float | None = None) -> EnqueueResult:
        """One `enqueuePullRequest` pinned to head_sha (expectedHeadOid), never retried; raises RateLimited or
        GitHubError."""
        ...

    def update_branch(self, number: int, *, head_sha: str, deadline: float | None = None) -> UpdateResult:
        """One `PUT .../pulls/{n}/update-branch` pinned to head_sha (expected_head_sha), never retried; raises
        RateLimited or GitHubError."""
        ...


# --------------------------------------------------------------------------------------------------
# The step


@dataclass
class PullOutcomes:
    """How each pull request considered this cycle fared, by number, as the step goes."""

    log: EventLog
    outcomes: dict[int, PullOutcome] = field(default_factory=dict)

    def record(self, number: int, outcome: MergeOutcome, reason: str) -> None:
        self.outcomes[number] = PullOutcome(number, outcome, reason)


def policy_for(settings: GitHubSettings, default_branch: str) -> MergePolicy:
    return MergePolicy(
        default_branch=default_branch,
        required_checks=settings.required_checks,
        blocking_labels=settings.blocking_labels,
    )


def run_merge(
    github: GitHubPort,
    settings: GitHubSettings,
    *,
    log: EventLog,
    deadline: float | None = None,
    dry_run: bool = False,
    backlog_labels: Sequence[str] = (),
    clock: Callable[[], float] = time.monotonic,
) -> MergeReport:
    """Read, decide; then for each merge (or enqueue, or branch update) read that pull request again, decide
    again, act. Ends cleanly (report.stopped) on rate limits or the deadline; raises GitHubError when the step as a
    whole fails (bad credentials, the pull list unreadable)."""
    report = MergeReport(status=StepStatus.OK)
    run = PullOutcomes(log)
    try:
        opened = github.fetch_open_pulls(backlog_labels=backlog_labels, deadline=deadline)
    except RateLimited as stop:
        report.stopped = stop.describe()
        log.emit("merge.stopped", reason=report.stopped)
        return report
    finally:
        report.api_calls = github.api_calls
        report.rate_limit_remaining = github.rate_limit_remaining
    report.backlog = opened.backlog

    policy = policy_for(settings, opened.default_branch)
    # Branches are brought up to date only where the stack asked for the up-to-date policy (requireUpToDate).
    updates = settings.updates_per_cycle if settings.require_up_to_date else 0
    plan = plan_merges(opened.pulls, policy, settings.max_merges_per_cycle, updates)
    report.open, report.review_queue, report.conflicting = plan.open, plan.review_queue, plan.conflicting
    for pull, decision in plan.refused:
        run.record(pull.number, MergeOutcome.SKIPPED, decision.reason)
        _note_unreadable(log, pull, decision)
    for pull in plan.over_limit:
        run.record(pull.number, MergeOutcome.SKIPPED, LIMIT_REACHED)
    for pull in plan.in_queue:
        run.record(pull.number, *queue_reason(pull))
        _note_unreadable(log, pull, decide(pull, policy))

    actions: list[tuple[PullSnapshot, Callable[[PullSnapshot], None]]] = [
        *((pull, lambda listed: _act_on(github, listed, policy, run, deadline)) for pull in plan.to_merge),
        *((pull, lambda listed: _update_one(github, listed, policy, run, deadline)) for pull in plan.to_update),
    ]
    try:
        for index, (pull, act) in enumerate(actions):
            if dry_run:
                updating = pull in plan.to_update
                run.record(pull.number, MergeOutcome.SKIPPED,
                           DRY_RUN_UPDATE if updating else DRY_RUN_ENQUEUE if pull.merge_queue_enabled else DRY_RUN)
                log.emit("merge.planned", number=pull.number, sha=pull.head_oid,
                         action="update" if updating else "enqueue" if pull.merge_queue_enabled else "merge")
                continue
            if deadline is not None and clock() >= deadline:
                report.stopped = "time budget spent"
                _stop_rest(run, [p for p, _ in actions[index:]])
                break
            try:
                act(pull)
            except RateLimited as stop:
                report.stopped = stop.describe()
                _stop_rest(run, [p for p, _ in actions[index:]])
                break
    finally:
        report.api_calls = github.api_calls
        report.rate_limit_remaining = github.rate_limit_remaining
        # Every pull considered is in the report, in age order, even when an error ends the step.
        report.pulls = [run.outcomes[p.number] for p in plan.considered if p.number in run.outcomes]
    if report.stopped:
        log.emit("merge.stopped", reason=report.stopped)
    return report


def _stop_rest(run: PullOutcomes, rest: Sequence[PullSnapshot]) -> None:
    for pull in rest:
        run.record(pull.number, MergeOutcome.SKIPPED, STOPPED_EARLY)


def _note_unreadable(log: EventLog, pull: PullSnapshot, decision: MergeDecision) -> None:
    """What GitHub would not show (a partial answer), or values this code does not know: logged by name."""
    if pull.unreadable:
        log.emit("merge.unreadable", number=pull.number, reason=decision.reason)
    elif unknown := pull.unrecognized():
        log.emit("merge.unrecognized", number=pull.number, values=[str(u) for u in unknown])


def _read_again(
    github: GitHubPort, listed: PullSnapshot, policy: MergePolicy, run: PullOutcomes, deadline: float | None,
    *, up_to_date: bool = True,
) -> PullSnapshot | None:
    """The pull request as GitHub has it now, if the same rules still say act on it; otherwise None, and why is
    recorded. A failed read changes nothing: only a fresh "eligible" does. One already in the merge queue is
    recorded as such (nothing to do). With `up_to_date=False` (a branch update), being behind is what is expected."""
    number = listed.number
    try:
        pull = github.fetch_pull(number, deadline=deadline)
    except GitHubError as exc:
        run.record(number, MergeOutcome.FAILED, MergeFailure.NOT_REREAD.value)
        run.log.emit("merge.failed", number=number, reason=MergeFailure.NOT_REREAD, detail=str(exc))
        return None
    if pull is None:
        run.record(number, MergeOutcome.FAILED, MergeFailure.NOT_FOUND.value)
        run.log.emit("merge.failed", number=number, reason=MergeFailure.NOT_FOUND,
                     detail=f"#{number} is no longer on GitHub")
        return None
    if pull.in_merge_queue:
        run.record(number, *queue_reason(pull))
        return None
    decision = decide(pull, policy)
    if not up_to_date and decision.eligible:  # brought up to date meanwhile (or queued): it merges next cycle
        run.record(number, MergeOutcome.SKIPPED, ALREADY_UP_TO_DATE)
        return None
    if not (only_behind(decision) if not up_to_date else decision.eligible):
        run.record(number, MergeOutcome.SKIPPED, decision.reason)
        run.log.emit("merge.changed", number=number, reasons=[r.value for r in decision.refusals],
                     listed_head=listed.head_oid, head=pull.head_oid)
        _note_unreadable(run.log, pull, decision)
        return None
    return pull


def _act_on(
    github: GitHubPort, listed: PullSnapshot, policy: MergePolicy, run: PullOutcomes, deadline: float | None
) -> None:
    """Merge it, or enqueue it where its base requires the merge queue; a merge refused with the queue's 405 (a rule
    the reads did not show) is followed, in the same cycle, by an enqueue through the same wait, read and rules."""
    queue_required = False
    while True:
        github.wait_for_merge_slot(deadline=deadline)
        pull = _read_again(github, listed, policy, run, deadline)
        if pull is None:
            return
        if pull.merge_queue_enabled or queue_required:
            _enqueue(github, pull, run, deadline)
            return
        result = _merge(github, pull, run, deadline)
        if not (isinstance(result, MergeRefused) and result.failure is MergeFailure.QUEUE_REQUIRED) or queue_required:
            return
        queue_required = True
        run.log.emit("merge.queue_required", number=pull.number, detail=result.detail)


def _enqueue(github: GitHubPort, pull: PullSnapshot, run: PullOutcomes, deadline: float | None) -> None:
    # Pinned to the head just read and checked: GitHub refuses the entry if the branch moved since.
    result = github.enqueue(pull.number, pull_id=pull.node_id, head_sha=pull.head_oid, deadline=deadline)
    if isinstance(result, Enqueued):
        entry = result.entry
        run.record(pull.number, MergeOutcome.QUEUED,
                   ENQUEUED if entry is None else f"{ENQUEUED} ({entry.state}, position {entry.position})")
        run.log.emit("merge.enqueued", number=pull.number, head=pull.head_oid,
                     state=None if entry is None else str(entry.state),
                     position=None if entry is None else entry.position)
    elif isinstance(result, MergeRefused):
        reason = ENQUEUE_UNCERTAIN if result.failure is MergeFailure.UNCERTAIN else result.failure.value
        run.record(pull.number, MergeOutcome.FAILED, reason)
        run.log.emit("merge.failed", number=pull.number, reason=reason, detail=result.detail, action="enqueue")
    else:
        assert_never(result)


def _merge(github: GitHubPort, pull: PullSnapshot, run: PullOutcomes, deadline: float | None) -> MergeResult:
    # Pinned to the head just read and checked, not the listing's: GitHub refuses (409) if it moves again.
    result = github.merge(pull.number, head_sha=pull.head_oid, title=commit_title(pull), deadline=deadline)
    if isinstance(result, MergeRefused) and result.failure is MergeFailure.UNCERTAIN:
        # A merge is not safe to retry: GitHub may have merged before the error. Ask instead.
        try:
            sha = github.merged_sha(pull.number, deadline=deadline)
        except GitHubError as exc:
            run.record(pull.number, MergeOutcome.FAILED, MergeFailure.UNCERTAIN.value)
            run.log.emit("merge.failed", number=pull.number, reason=MergeFailure.UNCERTAIN, detail=str(exc))
            return result
        result = Merged(sha) if sha is not None else MergeRefused(MergeFailure.FAILED, result.detail)
    if isinstance(result, Merged):
        run.record(pull.number, MergeOutcome.MERGED, "merged")
        run.log.emit("merge.merged", number=pull.number, sha=result.sha, head=pull.head_oid)
    elif isinstance(result, MergeRefused):
        run.record(pull.number, MergeOutcome.FAILED, result.failure.value)
        run.log.emit("merge.failed", number=pull.number, reason=result.failure, detail=result.detail)
    else:
        assert_never(result)
    return result


def _update_one(
    github: GitHubPort, listed: PullSnapshot, policy: MergePolicy, run: PullOutcomes, deadline: float | None
) -> None:
    """Bring one behind pull request up to date, if the read just before still finds it eligible but for being
    behind; pinned to the head that read saw. It merges on a later cycle, once its checks pass on the new head."""
    github.wait_for_merge_slot(deadline=deadline)
    pull = _read_again(github, listed, policy, run, deadline, up_to_date=False)
    if pull is None:
        return
    result = github.update_branch(pull.number, head_sha=pull.head_oid, deadline=deadline)
    if isinstance(result, BranchUpdated):
        run.record(pull.number, MergeOutcome.UPDATED, UPDATED)
        run.log.emit("merge.updated", number=pull.number, head=pull.head_oid)
    elif isinstance(result, MergeRefused):
        reason = UPDATE_UNCERTAIN if result.failure is MergeFailure.UNCERTAIN else result.failure.value
        run.record(pull.number, MergeOutcome.FAILED, reason)
        run.log.emit("merge.failed", number=pull.number, reason=reason, detail=result.detail, action="update")
    else:
        assert_never(result)
