"""The merge step: squash-merge the open pull requests that GitHub itself says are ready.

A pure core decides, a thin shell acts:

- `PullSnapshot` is everything GitHub said about one open pull request, read in one GraphQL query.
- `decide(pull, policy)` returns a `MergeDecision`: eligible, or every `Refusal` that applies.
- `plan_merges(pulls, policy, max_per_cycle)` orders and caps the merges and counts the review queue.
- `run_merge(github, settings, ...)` reads, plans and merges through a `GitHubPort`; immediately before each
  merge it reads that one pull request again and merges only if `decide` still says so, pinned to the head
  just read: the listing may be a minute old by the last merge of a busy cycle, and GitHub enforces neither
  labels nor, without a required review, a change request.

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

    def unrecognized(self) -> tuple[Unrecognized, ...]:
        values: list[object] = [
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
    UNRECOGNIZED = "unrecognized value from GitHub"


@dataclass(frozen=True)
class MergeDecision:
    refusals: tuple[Refusal, ...] = ()  # every reason that applies; the first is the headline

    @property
    def eligible(self) -> bool:
        return not self.refusals

    @property
    def reason(self) -> str:
        return self.refusals[0].value if self.refusals else "eligible"


ELIGIBLE = MergeDecision()


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
        return (Refusal.BEHIND,)
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


def decide(pull: PullSnapshot, policy: MergePolicy) -> MergeDecision:
    """Whether to merge `pull` now, and if not, every reason, most telling first. Never acts."""
    found = [
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
    return MergeDecision(tuple(dict.fromkeys(found)))


# --------------------------------------------------------------------------------------------------
# The plan for one cycle

LIMIT_REACHED = "merge limit reached"
STOPPED_EARLY = "stopped early"
DRY_RUN = "would merge (dry run)"


@dataclass(frozen=True)
class MergePlan:
    to_merge: tuple[PullSnapshot, ...]  # eligible, oldest first, at most max_per_cycle
    over_limit: tuple[PullSnapshot, ...]  # eligible, but past this cycle's cap: next cycle
    refused: tuple[tuple[PullSnapshot, MergeDecision], ...]
    open: int
    review_queue: int  # open, not draft, awaiting a review (neither approved nor changes requested)
    conflicting: int

    @property
    def considered(self) -> tuple[PullSnapshot, ...]:
        return tuple(sorted(self.to_merge + self.over_limit + tuple(p for p, _ in self.refused), key=_age))


def _age(pull: PullSnapshot) -> tuple[datetime, int]:
    return (pull.created_at, pull.number)


def plan_merges(pulls: Iterable[PullSnapshot], policy: MergePolicy, max_per_cycle: int) -> MergePlan:
    if max_per_cycle < 1:
        raise ValueError(f"max_per_cycle must be at least 1, not {max_per_cycle}")
    ordered = sorted(pulls, key=_age)  # oldest first: the longest waiting goes first
    eligible: list[PullSnapshot] = []
    refused: list[tuple[PullSnapshot, MergeDecision]] = []
    for pull in ordered:
        decision = decide(pull, policy)
        if decision.eligible:
            eligible.append(pull)
        else:
            refused.append((pull, decision))
    return MergePlan(
        to_merge=tuple(eligible[:max_per_cycle]),
        over_limit=tuple(eligible[max_per_cycle:]),
        refused=tuple(refused),
        open=len(ordered),
        review_queue=sum(1 for p in ordered if not p.is_draft and review_status(p) is ReviewStatus.AWAITING),
        conflicting=sum(1 for p in ordered if p.mergeable is Mergeable.CONFLICTING),
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


@dataclass(frozen=True)
class Merged:
    sha: str


@dataclass(frozen=True)
class MergeRefused:
    failure: MergeFailure
    detail: str = ""


MergeResult = Merged | MergeRefused


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
    """Read, decide; then for each merge read that pull request again, decide again, merge. Ends cleanly
    (report.stopped) on rate limits or the deadline; raises GitHubError when the step as a whole fails (bad
    credentials, the pull list unreadable)."""
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
    plan = plan_merges(opened.pulls, policy, settings.max_merges_per_cycle)
    report.open, report.review_queue, report.conflicting = plan.open, plan.review_queue, plan.conflicting
    for pull, decision in plan.refused:
        run.record(pull.number, MergeOutcome.SKIPPED, decision.reason)
        _note_unrecognized(log, pull)
    for pull in plan.over_limit:
        run.record(pull.number, MergeOutcome.SKIPPED, LIMIT_REACHED)

    try:
        for index, pull in enumerate(plan.to_merge):
            if dry_run:
                run.record(pull.number, MergeOutcome.SKIPPED, DRY_RUN)
                log.emit("merge.planned", number=pull.number, sha=pull.head_oid)
                continue
            if deadline is not None and clock() >= deadline:
                report.stopped = "time budget spent"
                _stop_rest(run, plan.to_merge[index:])
                break
            try:
                _merge_one(github, pull, policy, run, deadline)
            except RateLimited as stop:
                report.stopped = stop.describe()
                _stop_rest(run, plan.to_merge[index:])
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


def _note_unrecognized(log: EventLog, pull: PullSnapshot) -> None:
    if unknown := pull.unrecognized():
        log.emit("merge.unrecognized", number=pull.number, values=[str(u) for u in unknown])


def _read_again(
    github: GitHubPort, listed: PullSnapshot, policy: MergePolicy, run: PullOutcomes, deadline: float | None
) -> PullSnapshot | None:
    """The pull request as GitHub has it now, if the same rules still say merge it; otherwise None, and why
    is recorded. A failed read merges nothing: only a fresh "eligible" does."""
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
    decision = decide(pull, policy)
    if not decision.eligible:
        run.record(number, MergeOutcome.SKIPPED, decision.reason)
        run.log.emit("merge.changed", number=number, reasons=[r.value for r in decision.refusals],
                     listed_head=listed.head_oid, head=pull.head_oid)
        _note_unrecognized(run.log, pull)
        return None
    return pull


def _merge_one(
    github: GitHubPort, listed: PullSnapshot, policy: MergePolicy, run: PullOutcomes, deadline: float | None
) -> None:
    github.wait_for_merge_slot(deadline=deadline)
    pull = _read_again(github, listed, policy, run, deadline)
    if pull is None:
        return
    # Pinned to the head just read and checked, not the listing's: GitHub refuses (409) if it moves again.
    result = github.merge(pull.number, head_sha=pull.head_oid, title=commit_title(pull), deadline=deadline)
    if isinstance(result, MergeRefused) and result.failure is MergeFailure.UNCERTAIN:
        # A merge is not safe to retry: GitHub may have merged before the error. Ask instead.
        try:
            sha = github.merged_sha(pull.number, deadline=deadline)
        except GitHubError as exc:
            run.record(pull.number, MergeOutcome.FAILED, MergeFailure.UNCERTAIN.value)
            run.log.emit("merge.failed", number=pull.number, reason=MergeFailure.UNCERTAIN, detail=str(exc))
            return
        result = Merged(sha) if sha is not None else MergeRefused(MergeFailure.FAILED, result.detail)
    if isinstance(result, Merged):
        run.record(pull.number, MergeOutcome.MERGED, "merged")
        run.log.emit("merge.merged", number=pull.number, sha=result.sha, head=pull.head_oid)
    elif isinstance(result, MergeRefused):
        run.record(pull.number, MergeOutcome.FAILED, result.failure.value)
        run.log.emit("merge.failed", number=pull.number, reason=result.failure, detail=result.detail)
    else:
        assert_never(result)
