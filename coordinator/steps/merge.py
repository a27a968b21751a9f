"""The merge step: squash-merge the open pull requests that GitHub itself says are ready.

A pure core decides, a thin shell acts:

- `PullSnapshot` (`coordinator.pull_requests`) is everything GitHub said about one open pull request, read in one
  GraphQL query.
- `decide(pull, policy)` (`coordinator.steps.merge_rules`) returns a `MergeDecision`: eligible, or every `Refusal`
  that applies.
- `plan_merges(pulls, policy, max_per_cycle)` (`coordinator.steps.merge_plan`) orders and caps the merges and
  counts the review queue.
- `run_merge(github, settings, ...)`, here, reads, plans and merges through a `GitHubPort`
  (`coordinator.github_port`); immediately before each merge it reads that one pull request again and merges only
  if `decide` still says so, pinned to the head just read: the listing may be a minute old by the last merge of a
  busy cycle, and GitHub enforces neither labels nor, without a required review, a change request.
- Where the base requires GitHub's merge queue it enqueues instead of merging (the same rules, the same read
  before); under the up-to-date policy it brings behind but otherwise eligible pull requests up to date, a few a
  cycle (`MergePlan.to_update`), and merges them on a later cycle once green on the new head.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import assert_never

from coordinator.github_port import (
    BranchUpdated,
    Enqueued,
    GitHubError,
    GitHubPort,
    Merged,
    MergeFailure,
    MergeRefused,
    MergeResult,
    RateLimited,
)
from coordinator.pull_requests import PullSnapshot
from coordinator.report import EventLog, MergeOutcome, MergeReport, PullOutcome, StepStatus
from coordinator.settings import GitHubSettings
from coordinator.steps.merge_plan import commit_title, only_behind, plan_merges, queue_reason
from coordinator.steps.merge_rules import MergeDecision, MergePolicy, decide

# How the report shows a pull request the step did not act on, or what it did.
LIMIT_REACHED = "merge limit reached"
STOPPED_EARLY = "stopped early"
DRY_RUN = "would merge (dry run)"
DRY_RUN_ENQUEUE = "would enqueue (dry run)"
DRY_RUN_UPDATE = "would bring up to date (dry run)"
ENQUEUED = "enqueued"
UPDATED = "brought up to date; merges once its checks pass on the new head"
ALREADY_UP_TO_DATE = "up to date already; merges next cycle"
# No answer to an enqueue or an update: it may have been applied; the next cycle's read shows it. Never resent.
ENQUEUE_UNCERTAIN = "enqueue outcome unknown"
UPDATE_UNCERTAIN = "update outcome unknown"


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
