"""What GitHub says about one pull request: its enums, value for value as in schema.graphql, and the snapshot.

`PullSnapshot` is everything the merge rules read about one open pull request, as one GraphQL query returns it;
`coordinator.edges.github` builds it, `coordinator.steps.merge_rules` judges it. A value this code does not know
(GitHub adds enum values) is kept as `Unrecognized`, which every rule reads as a refusal, never a pass.

At the bottom of the import graph (it imports nothing of the coordinator), so the edge and the core share it
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from typing import TypeVar

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
