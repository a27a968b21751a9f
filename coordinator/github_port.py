"""The GitHub port: what the merge step needs from GitHub (`GitHubPort`), what each call answers, and how it fails.

The core declares it; `coordinator.edges.github.GitHubClient` implements it, so the dependency points from edge to
core.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from coordinator.pull_requests import PullSnapshot, QueueEntry


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
