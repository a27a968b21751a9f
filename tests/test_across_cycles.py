"""Judgments across cycles, table-tested on sequences of reports as the cycle writes them (to_dict, JSON)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coordinator.across_cycles import (
    GITHUB_ERRORS_PERSISTING,
    IDLE_EXITS_PERSISTING,
    REVIEW_QUEUE_RISING,
    SPAWN_FAILURES_PERSISTING,
    judge_across_cycles,
    verdict_now,
)
from coordinator.report import (
    CycleReport,
    MergeReport,
    RoleTally,
    StepResult,
    StepStatus,
    Verdict,
    read_report,
    to_dict,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def cycle(minute: int, *, merge: str = "ok", queue: int = 2, failed: int = 0, idle: int = 0,
          dry_run: bool = False) -> CycleReport:
    """One cycle's report: `merge` "ok" or "failed" (a GitHub 502), the review queue, spawn failures, idle exits."""
    report = CycleReport(
        fleet="f", started_at=T0 + timedelta(minutes=minute),
        roles={"coder": RoleTally(desired=3, running=3, mode="Task-driven", failed=failed, idle_exits=idle),
               "code_reviewer": RoleTally(desired=1, running=1, mode="Reviewer")},
        merge=MergeReport(status=StepStatus(merge), review_queue=queue if merge == "ok" else 0),
        steps={"merge": StepResult(StepStatus(merge), "GitHub answered 502" if merge == "failed" else "")},
        dry_run=dry_run,
    )
    return read_report(json.loads(json.dumps(to_dict(report))))


def every_5_min(*kinds: dict[str, Any]) -> list[CycleReport]:
    """The given per-cycle fields, one cycle each, five minutes apart."""
    return [cycle(5 * index, **fields) for index, fields in enumerate(kinds)]


FAIL: dict[str, Any] = {"merge": "failed"}
OK: dict[str, Any] = {}


@pytest.mark.parametrize(
    ("reports", "expected"),
    [
        # The merge step failing on each of the last three cycles: broken.
        (every_5_min(OK, FAIL, FAIL, FAIL), {GITHUB_ERRORS_PERSISTING: Verdict.BROKEN}),
        (every_5_min(FAIL, FAIL, FAIL, FAIL, FAIL), {GITHUB_ERRORS_PERSISTING: Verdict.BROKEN}),
        # Two are not three; a success in between breaks the run; the latest succeeding ends it.
        (every_5_min(FAIL, FAIL), {}),
        (every_5_min(FAIL, OK, FAIL, FAIL), {}),
        (every_5_min(FAIL, FAIL, FAIL, OK), {}),
        # Three failures, but not within the hour up to the latest: not persisting now.
        ([cycle(0, merge="failed"), cycle(30, merge="failed"), cycle(65, merge="failed")], {}),
        # A plan's report is no cycle: it neither counts nor breaks the run.
        ([cycle(0, merge="failed"), cycle(5, merge="failed"), cycle(7, dry_run=True), cycle(10, merge="failed")],
         {GITHUB_ERRORS_PERSISTING: Verdict.BROKEN}),
        # The review queue rising on each of the last six cycles (seven readings): degraded.
        (every_5_min(*({"queue": q} for q in (3, 4, 5, 6, 7, 8, 9))), {REVIEW_QUEUE_RISING: Verdict.DEGRADED}),
        (every_5_min(*({"queue": q} for q in (9, 3, 4, 5, 6, 7, 8, 9))), {REVIEW_QUEUE_RISING: Verdict.DEGRADED}),
        # Rising on five only; flat once; a cycle that did not read the queue.
        (every_5_min(*({"queue": q} for q in (4, 5, 6, 7, 8, 9))), {}),
        (every_5_min(*({"queue": q} for q in (3, 4, 5, 5, 7, 8, 9))), {}),
        (every_5_min(*({"queue": q} for q in (3, 4, 5)), FAIL, *({"queue": q} for q in (7, 8, 9))), {}),
        # Spawn failures on each of the last three cycles: degraded.
        (every_5_min({"failed": 1}, {"failed": 2}, {"failed": 1}), {SPAWN_FAILURES_PERSISTING: Verdict.DEGRADED}),
        (every_5_min({"failed": 1}, OK, {"failed": 2}, {"failed": 1}), {}),
        # Idle exits above the limit (2) on each of the last three cycles: degraded.
        (every_5_min({"idle": 3}, {"idle": 4}, {"idle": 3}), {IDLE_EXITS_PERSISTING: Verdict.DEGRADED}),
        (every_5_min({"idle": 3}, {"idle": 2}, {"idle": 3}), {}),
        # Several at once, broken first.
        (every_5_min({"failed": 1, "merge": "failed"}, {"failed": 1, "merge": "failed"},
                     {"failed": 1, "merge": "failed"}),
         {GITHUB_ERRORS_PERSISTING: Verdict.BROKEN, SPAWN_FAILURES_PERSISTING: Verdict.DEGRADED}),
        ([], {}),
    ],
)
def test_judgments_across_cycles(reports: list[CycleReport], expected: dict[str, Verdict]) -> None:
    judgments = judge_across_cycles(reports)
    assert {j.name: j.verdict for j in judgments} == expected
    assert [j.verdict for j in judgments] == sorted((j.verdict for j in judgments),
                                                    key=lambda v: v != Verdict.BROKEN)
    # The same reports in any order (the log read back, then the cycles seen) give the same judgments.
    assert judge_across_cycles(list(reversed(reports))) == judgments


def test_each_judgment_says_why_with_its_numbers() -> None:
    [github] = judge_across_cycles(every_5_min(FAIL, FAIL, FAIL))
    assert github.reason == ("GitHub API errors persisting across cycles: the merge step failed in each of the last "
                             "3 cycles (latest: GitHub answered 502)")
    [queue] = judge_across_cycles(every_5_min(*({"queue": q} for q in (3, 4, 5, 6, 7, 8, 11))))
    assert queue.reason == "review queue growing in each of the last 6 cycles (3 to 11): not enough reviewers"
    [spawns] = judge_across_cycles(every_5_min({"failed": 1}, {"failed": 2}, {"failed": 1}))
    assert spawns.reason == "spawn failures in each of the last 3 cycles (1, 2, 1)"
    [idle] = judge_across_cycles(every_5_min({"idle": 3}, {"idle": 4}, {"idle": 5}))
    assert idle.reason == ("coder: agents exiting with nothing to do in each of the last 3 cycles "
                           "(idle exits 3, 4, 5 > 2)")


@pytest.mark.parametrize(
    ("cycle_verdict", "reports", "expected"),
    [
        ("healthy", every_5_min(FAIL, FAIL, FAIL), Verdict.BROKEN),
        ("broken", every_5_min({"failed": 1}, {"failed": 1}, {"failed": 1}), Verdict.BROKEN),
        ("healthy", every_5_min({"failed": 1}, {"failed": 1}, {"failed": 1}), Verdict.DEGRADED),
        ("degraded", [], Verdict.DEGRADED),
        ("no such word", [], Verdict.HEALTHY),
    ],
)
def test_the_verdict_now_is_the_worse_of_the_cycles_own_and_the_judgments(
    cycle_verdict: str, reports: list[CycleReport], expected: Verdict
) -> None:
    assert verdict_now(cycle_verdict, judge_across_cycles(reports)) is expected


def test_missing_and_ill_typed_fields_judge_nothing_and_raise_nothing() -> None:
    odd: list[dict[str, Any]] = [
        {"event": "cycle.report", "started_at": (T0 + timedelta(minutes=m)).isoformat(), "roles": "x",
         "steps": {"merge": "failed"}, "merge": {"status": "ok", "review_queue": "many"}} for m in range(8)
    ]
    odd.append({"event": "cycle.report", "started_at": "not a time"})
    assert judge_across_cycles([read_report(report) for report in odd]) == []
