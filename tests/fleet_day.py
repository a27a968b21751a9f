"""A day of cycle reports of a fleet of N agents, made by the real report code (CycleReport, the verdict's
`findings`, `advise`, `to_dict`) and parsed back from the JSON lines the event log writes, as the scheduler
and `status` read them. For the status page's tests and benchmark.

The day has weather: a spell where production is down, a spell where the merge step fails (a GitHub
5xx), a role crash-looping, spawn failures now and then, a review queue that swells and drains, idle exits.
"""

from __future__ import annotations

import io
import json
import math
from datetime import datetime, timedelta
from typing import Any

from coordinator.report import (
    CycleReport,
    EventLog,
    HealthReport,
    HealthStatus,
    MergeOutcome,
    MergeReport,
    PullOutcome,
    RoleTally,
    SlotWait,
    StepError,
    StepResult,
    StepStatus,
    parse_reports,
    read_report,
    to_dict,
)
from coordinator.verdict import advise, findings, judge
from roster import ROSTER

INTERVAL = timedelta(minutes=5)


def scaled_counts(agents: int) -> dict[str, tuple[int, str]]:
    """The roster's roles with counts scaled to sum to `agents` (largest remainders), and each role's mode."""
    total = sum(role.count for role in ROSTER)
    shares = [(role, role.count * agents / total) for role in ROSTER]
    counts = {role.key: math.floor(share) for role, share in shares}
    by_remainder = sorted(shares, key=lambda pair: pair[1] - math.floor(pair[1]), reverse=True)
    for role, _ in by_remainder[: agents - sum(counts.values())]:
        counts[role.key] += 1
    return {role.key: (counts[role.key], role.mode.value) for role in ROSTER}


def cycle_report(index: int, started_at: datetime, counts: dict[str, tuple[int, str]], *,
                 fleet: str, secret: str = "", merge_failing: bool = False) -> CycleReport:
    """The report of cycle `index` of the day (0 the oldest), judged and advised as the cycle does."""
    roles: dict[str, RoleTally] = {}
    for position, (key, (desired, mode)) in enumerate(counts.items()):
        finished = (index + position) % 7 == 0 and desired > 0  # an agent of this role finished: replaced now
        failing = index % 23 == 0 and position == 3  # a spawn that fails now and then
        tally = RoleTally(desired=desired, running=desired - (1 if finished or failing else 0), mode=mode,
                          spawned=1 if finished and not failing else 0, failed=1 if failing else 0,
                          idle_exits=3 if key == "documentation_engineer" and index >= 280 else 0)
        if position == 5 and index >= 268 and desired > 1:  # crash-looping since late in the day
            tally.running = desired - 1
            tally.waiting = [SlotWait(slot=1, until=started_at + timedelta(minutes=8), crashes=3 + index % 4)]
        roles[key] = tally
    queue = 4 + round(8 * math.sin(index / 30) ** 2) + (index % 5)
    if merge_failing:
        merge = MergeReport(status=StepStatus.FAILED, api_calls=2)
    else:
        merged = [1000 + index * 3 + n for n in range(index % 3)]
        pulls = [PullOutcome(number, MergeOutcome.MERGED, "merged") for number in merged]
        pulls += [PullOutcome(900 + n, MergeOutcome.SKIPPED, "not approved") for n in range(queue)]
        merge = MergeReport(status=StepStatus.OK, pulls=pulls, open=queue + 3, review_queue=queue,
                            conflicting=index % 4, api_calls=2 + len(merged), rate_limit_remaining=4800)
    down = 60 <= index < 66
    health = (HealthReport(HealthStatus.DOWN, code=503, error="unexpected status 503", attempts=3) if down
              else HealthReport(HealthStatus.UP, code=200, latency_ms=40 + 30 * math.sin(index / 9) ** 2,
                                attempts=1))
    steps = {"inventory": StepResult(StepStatus.OK, duration_s=0.2), "reconcile": StepResult(StepStatus.OK),
             "merge": StepResult(StepStatus.FAILED, detail=f"GitHub answered 502 (token {secret})")
             if merge_failing else StepResult(StepStatus.OK),
             "health": StepResult(StepStatus.OK)}
    errors = [StepError("merge", f"GitHub answered 502 Bad Gateway; the token {secret} was refused")] \
        if merge_failing else []
    if any(tally.failed for tally in roles.values()):
        errors.append(StepError("reconcile", "spawn of slot 2 failed: image pull timed out"))
    report = CycleReport(fleet=fleet, started_at=started_at, duration_s=3.5, roles=roles, merge=merge,
                         health=health, errors=errors, steps=steps)
    reasons = findings(report)
    report.verdict = judge(report)
    report.verdict_reasons = [finding.reason for finding in reasons]
    report.advice = advise(report)
    return report


def day_of_reports(*, agents: int, end: datetime, cycles: int = 288, fleet: str = "fleet-day",
                   secret: str = "", log_knows_secret: bool = True,
                   merge_failing_last: int = 4) -> list[dict[str, Any]]:
    """`cycles` reports 5 minutes apart, the last at `end`, as the event log writes them and `status` reads them.

    The failing merge steps quote `secret`. When `log_knows_secret`, the event log is given it, as the cycle's
    is given its token, and the lines hold *** instead; otherwise the secret stays in the reports, as in a
    report of a cycle that did not know it, for whatever shows them to scrub. The last `merge_failing_last`
    cycles' merge step fails.
    """
    counts = scaled_counts(agents)
    out = io.StringIO()
    log = EventLog(fleet, [secret] if secret and log_knows_secret else [], stream=out)
    for index in range(cycles):
        started_at = end - INTERVAL * (cycles - 1 - index)
        report = cycle_report(index, started_at, counts, fleet=fleet, secret=secret,
                              merge_failing=index >= cycles - merge_failing_last)
        log.write(to_dict(report))
    return parse_reports(out.getvalue().splitlines())


def as_log_lines(reports: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(report) for report in reports]


def read_all(reports: list[dict[str, Any]]) -> list[CycleReport]:
    """The reports read to typed reports, as the scheduler's history holds them for the page."""
    return [read_report(report) for report in reports]
