"""The plan for one cycle: `plan_merges(pulls, policy, max_per_cycle, updates_per_cycle)` orders the open pull
requests (oldest first), caps the merges, picks the behind ones to bring up to date, and counts the review queue.

Pure, like the rules it applies (`coordinator.steps.merge_rules.decide`); `coordinator.steps.merge` carries it out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from coordinator.pull_requests import Mergeable, MergeQueueEntryState, PullSnapshot, ReviewState
from coordinator.report import MergeOutcome
from coordinator.steps.merge_rules import MergeDecision, MergePolicy, Refusal, ReviewStatus, decide, review_status

QUEUE_ENTRY_FAILED = "merge queue entry unmergeable"


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
