"""The merge rules: `decide(pull, policy)` returns a `MergeDecision`, eligible or every `Refusal` that applies.

Pure: a function of one `PullSnapshot` and the `MergePolicy`, never acting. Why so strict: the guide's authors once
merged a pull request whose CI was still running and had a four-hour outage. Nothing here passes unless GitHub
reported it as good on the exact head commit that is then merged; a value this code does not know (GitHub adds enum
values) is a refusal, never a pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import assert_never

from coordinator.fleet import DEFAULT_BLOCKING_LABELS, require_blocking_labels
from coordinator.pull_requests import (
    CheckConclusion,
    CheckRun,
    CheckStatus,
    CommitStatus,
    Mergeable,
    MergeStateStatus,
    PullSnapshot,
    PullState,
    ReportedCheck,
    Review,
    ReviewDecision,
    ReviewState,
    StatusState,
    Unreadable,
    Unrecognized,
)


@dataclass(frozen=True)
class MergePolicy:
    default_branch: str
    required_checks: tuple[str, ...] = ()
    blocking_labels: tuple[str, ...] = DEFAULT_BLOCKING_LABELS

    def __post_init__(self) -> None:
        require_blocking_labels(self.blocking_labels)


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
