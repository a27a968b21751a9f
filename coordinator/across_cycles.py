"""Judgments across cycles: what the guide calls broken or degraded that no single cycle can see.

A cycle is stateless, so its own verdict (`coordinator.verdict`) judges what that one cycle saw. Some
of the guide's signals need a run of cycles: "GitHub API errors persisting across cycles" (broken),
"PR queue growing", "multiple spawn failures per cycle" and "agents frequently exiting with nothing to
do" (degraded). They are judged here, from the last hour of reports (the cycles that started within the
hour up to the latest one), wherever reports are read
(`status`, the status page, the metrics), never by the cycle itself. The cycle's own verdict stays what
it was; what is shown names both, and the fleet's verdict now is the worse of the two.

Pure functions over the reports read back (`coordinator.report.read_report`), where a missing field reads
as absent and judges nothing. A schedule slower than one cycle every 20 minutes has fewer than three
cycles in an hour, so these judgments never fire for it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from coordinator.report import CycleReport, StepStatus, Verdict
from coordinator.verdict import IDLE_EXITS_LIMIT

WINDOW = timedelta(hours=1)
MERGE_FAILING_CYCLES = 3  # "GitHub API errors persisting across cycles": the merge step failed in each of these
REVIEW_QUEUE_RISING_CYCLES = 6  # the review queue higher in each of these than in the cycle before
SPAWN_FAILING_CYCLES = 3  # at least one failed spawn in each of these
IDLE_EXITS_CYCLES = 3  # a role's idle exits above IDLE_EXITS_LIMIT in each of these

# The names of the judgments: a fixed vocabulary, so they can be metric label values.
GITHUB_ERRORS_PERSISTING = "github_errors_persisting"
REVIEW_QUEUE_RISING = "review_queue_rising"
SPAWN_FAILURES_PERSISTING = "spawn_failures_persisting"
IDLE_EXITS_PERSISTING = "idle_exits_persisting"
JUDGMENTS = (GITHUB_ERRORS_PERSISTING, REVIEW_QUEUE_RISING, SPAWN_FAILURES_PERSISTING, IDLE_EXITS_PERSISTING)

SEVERITY = {Verdict.HEALTHY: 0, Verdict.DEGRADED: 1, Verdict.BROKEN: 2}


@dataclass(frozen=True)
class Judgment:
    name: str  # one of JUDGMENTS
    verdict: Verdict
    reason: str


def recent_cycles(reports: Sequence[CycleReport]) -> list[CycleReport]:
    """The cycles' reports (no plan's) that started within WINDOW up to the latest one, oldest first."""
    timed = sorted(((moment, report) for report in reports
                    if not report.dry_run and (moment := report.started_at) is not None),
                   key=lambda pair: pair[0])
    if not timed:
        return []
    latest = timed[-1][0]
    return [report for moment, report in timed if moment >= latest - WINDOW]


def judge_across_cycles(reports: Sequence[CycleReport]) -> list[Judgment]:
    """Every judgment that holds for the last hour of `reports` (any order), broken ones first."""
    cycles = recent_cycles(reports)
    found = [
        _github_errors(cycles[-MERGE_FAILING_CYCLES:]),
        _review_queue(cycles[-(REVIEW_QUEUE_RISING_CYCLES + 1):]),
        _spawn_failures(cycles[-SPAWN_FAILING_CYCLES:]),
        *_idle_exits(cycles[-IDLE_EXITS_CYCLES:]),
    ]
    judgments = [judgment for judgment in found if judgment is not None]
    return sorted(judgments, key=lambda judgment: -SEVERITY[judgment.verdict])


def verdict_of(judgments: Sequence[Judgment]) -> Verdict:
    return max((j.verdict for j in judgments), key=SEVERITY.__getitem__, default=Verdict.HEALTHY)


def verdict_now(cycle_verdict: object, judgments: Sequence[Judgment]) -> Verdict:
    """The worse of the latest cycle's own verdict and the judgments across cycles."""
    verdicts = [verdict_of(judgments)]
    if isinstance(cycle_verdict, str) and cycle_verdict in {verdict.value for verdict in Verdict}:
        verdicts.append(Verdict(cycle_verdict))
    return max(verdicts, key=SEVERITY.__getitem__)




def _github_errors(cycles: list[CycleReport]) -> Judgment | None:
    if len(cycles) < MERGE_FAILING_CYCLES:
        return None
    merges = [report.steps.get("merge") for report in cycles]
    if not all(merge is not None and merge.status is StepStatus.FAILED for merge in merges):
        return None
    latest = merges[-1]
    detail = (latest.detail if latest is not None else "") or "no detail"
    return Judgment(GITHUB_ERRORS_PERSISTING, Verdict.BROKEN,
                    f"GitHub API errors persisting across cycles: the merge step failed in each of the last "
                    f"{MERGE_FAILING_CYCLES} cycles (latest: {detail})")


def _review_queue(cycles: list[CycleReport]) -> Judgment | None:
    if len(cycles) < REVIEW_QUEUE_RISING_CYCLES + 1:
        return None
    if not all(report.merge.status is StepStatus.OK for report in cycles):
        return None  # a cycle that did not read the queue breaks the run
    queue = [report.merge.review_queue for report in cycles]
    if not all(before < after for before, after in itertools.pairwise(queue)):
        return None
    return Judgment(REVIEW_QUEUE_RISING, Verdict.DEGRADED,
                    f"review queue growing in each of the last {REVIEW_QUEUE_RISING_CYCLES} cycles "
                    f"({queue[0]} to {queue[-1]}): not enough reviewers")


def _spawn_failures(cycles: list[CycleReport]) -> Judgment | None:
    if len(cycles) < SPAWN_FAILING_CYCLES:
        return None
    failures = [report.spawn_failures for report in cycles]
    if not all(failures):
        return None
    return Judgment(SPAWN_FAILURES_PERSISTING, Verdict.DEGRADED,
                    f"spawn failures in each of the last {SPAWN_FAILING_CYCLES} cycles "
                    f"({', '.join(map(str, failures))})")


def _idle_exits(cycles: list[CycleReport]) -> list[Judgment]:
    if len(cycles) < IDLE_EXITS_CYCLES:
        return []
    found = []
    for role in sorted(cycles[-1].roles):
        counts = [tally.idle_exits if (tally := report.roles.get(role)) is not None else 0 for report in cycles]
        if all(count > IDLE_EXITS_LIMIT for count in counts):
            found.append(Judgment(IDLE_EXITS_PERSISTING, Verdict.DEGRADED,
                                  f"{role}: agents exiting with nothing to do in each of the last "
                                  f"{IDLE_EXITS_CYCLES} cycles (idle exits {', '.join(map(str, counts))} "
                                  f"> {IDLE_EXITS_LIMIT})"))
    return found
