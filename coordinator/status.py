"""`python -m coordinator status`: the record of the last cycles, read back from the coordinator's log.

The coordinator keeps no state, and needs none for this: every cycle ends with a `cycle.report`
JSON line on the coordinator's stdout, and the engine keeps the log. `run_status` reads the tail
of that log through the agent runtime (the container's log on one engine, the service's log on a
swarm) and shows the last N reports as a table, with the latest cycle's advice and errors under
it. The pure pieces, `parse_reports` and `render_status`, know nothing of any engine; `render_status` reads the
reports to typed ones (`coordinator.report.read_report`) and prints each field as the report's own text does.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from coordinator.across_cycles import REVIEW_QUEUE_RISING_CYCLES, judge_across_cycles, verdict_now, verdict_of
from coordinator.exit_codes import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from coordinator.report import (
    CycleReport,
    MergeOutcome,
    Report,
    advice_text,
    error_text,
    health_text,
    parse_reports,
    read_report,
    word_text,
)
from coordinator.runtime import AgentRuntime, RuntimeFailure
from coordinator.settings import ConfigError, load_runtime_settings

# Log lines read per cycle shown: a cycle writes a few events per spawn and per pull request
# besides its report, so this is generous; older lines are never read.
LOG_LINES_PER_CYCLE = 200
MIN_LOG_LINES = 2000

def _time(report: CycleReport) -> str:
    return report.started_at.strftime("%Y-%m-%d %H:%M:%S") if report.started_at is not None else "?"


def _spawned(report: CycleReport) -> str:
    failed = report.spawn_failures
    return f"{report.spawned} ({failed} failed)" if failed else str(report.spawned)


def _row(report: CycleReport) -> list[str]:
    return [
        _time(report) + (" (plan)" if report.dry_run else ""),
        f"{report.running}/{report.desired}",
        _spawned(report),
        str(len(report.merge.merged)),
        health_text(report.health),
        word_text(report.verdict),
        str(len(report.errors)),
    ]


HEADER = ["time (UTC)", "agents", "spawned", "merged", "health", "verdict", "errors"]


# The merge step's outcomes that are neither a merge nor a skip, as `status` lists them, each with its reason.
QUEUE_OUTCOMES = {MergeOutcome.QUEUE_FAILED: "failed in the merge queue", MergeOutcome.QUEUED: "in the merge queue",
                  MergeOutcome.UPDATED: "brought up to date"}


def _queue_lines(report: CycleReport) -> list[str]:
    """The latest cycle's merge queue and branch updates: each pull request with its reason; none when empty."""
    lines: list[str] = []
    for outcome, title in QUEUE_OUTCOMES.items():
        found = [p for p in report.merge.pulls if p.outcome is outcome]
        if found:
            lines += ["", f"{title} (latest cycle): {len(found)}"]
            lines += [f"  #{p.number}: {p.reason}" for p in found]
    return lines


def render_status(reports: Sequence[Report], earlier: Sequence[Report] = ()) -> str:
    """The last cycles as a table, oldest first, then the latest cycle's errors and advice.

    The verdict now is the worse of the latest cycle's own and the judgments across cycles
    (`coordinator.across_cycles`), made from `earlier` and `reports` together; each is shown with its reasons.
    """
    if not reports:
        return "no cycle reports in the log yet: the first cycle runs when the container starts\n"
    shown = [read_report(report) for report in reports]
    latest = shown[-1]
    judgments = judge_across_cycles([*map(read_report, earlier), *shown])
    rows = [HEADER] + [_row(report) for report in shown]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    cycle_reasons = "; ".join(latest.verdict_reasons)
    across_reasons = "; ".join(judgment.reason for judgment in judgments)
    lines = [
        f"fleet {latest.fleet or '?'}: {verdict_now(latest.verdict, judgments)} at {_time(latest)} UTC "
        f"(last {len(reports)} cycle{'s' if len(reports) != 1 else ''})",
        f"the latest cycle's own verdict: {word_text(latest.verdict)}"
        + (f", because: {cycle_reasons}" if cycle_reasons else ""),
        f"across the last hour's cycles: {verdict_of(judgments)}"
        + (f", because: {across_reasons}" if across_reasons else ""),
        "",
    ]
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    lines += _queue_lines(latest)
    if latest.errors:
        lines += ["", "errors in the latest cycle:"]
        lines += [f"  {error_text(error)}" for error in latest.errors]
    advice = latest.advice
    lines.append("")
    if advice:
        lines.append("advice (latest cycle; change the roster and run `pulumi up` to follow it):")
        # The action names the role ("raise the count of code_reviewer: ..."); the signal shows the numbers.
        lines += [f"  - {advice_text(item)}" for item in advice]
    else:
        lines.append("advice: none")
    return "\n".join(lines) + "\n"


def status_json(reports: Sequence[Report], *, source: str, earlier: Sequence[Report] = ()) -> dict[str, Any]:
    """`verdict` is the latest cycle's own; `verdict_now` the worse of it and the judgments `across_cycles`. The
    reports and the advice are given as written."""
    latest = reports[-1] if reports else {}
    judgments = judge_across_cycles([read_report(report) for report in [*earlier, *reports]])
    return {
        "source": source,
        "verdict": latest.get("verdict"),
        "verdict_now": verdict_now(read_report(latest).verdict, judgments).value if reports else None,
        "across_cycles": {
            "verdict": verdict_of(judgments).value,
            "judgments": [{"name": j.name, "verdict": j.verdict.value, "reason": j.reason} for j in judgments],
        },
        "advice": latest.get("advice") or [],
        "reports": list(reports),
    }


def read_reports(runtime: AgentRuntime, *, fleet_id: str, source: str | None, last: int) -> tuple[str, list[Report]]:
    tail = max(last * LOG_LINES_PER_CYCLE, MIN_LOG_LINES)
    log = runtime.coordinator_log(fleet_id, source=source, tail=tail)
    return log.source, parse_reports(log.lines)[-last:]


def run_status(
    *,
    fleet_id: str,
    source: str | None = None,
    last: int = 10,
    output: str = "text",
    out: TextIO,
    runtime: AgentRuntime | None = None,
    err: TextIO | None = None,
    watch_every_s: float | None = None,
) -> int:
    """Print the last `last` cycles of the coordinator as `output` ("text" or "json"); 0 when shown, 1 when
    they cannot be read.

    With `watch_every_s`, read the log again every that many seconds and draw again whenever a new cycle has
    reported (text: the screen cleared first, on a terminal; json: one object a line), until interrupted.
    """
    err = err if err is not None else sys.stderr
    if last < 1:
        err.write(f"coordinator status: --last must be 1 or more, not {last}\n")
        return EXIT_CONFIG
    if watch_every_s is not None and not watch_every_s > 0:
        err.write(f"coordinator status: --every must be more than 0 seconds, not {watch_every_s}\n")
        return EXIT_CONFIG
    # The judgments across cycles need the cycles before the last shown, up to the longest run they look at.
    wanted = max(last, REVIEW_QUEUE_RISING_CYCLES + 1)
    drawn: object = None  # the source and latest report last drawn
    clear = output == "text" and watch_every_s is not None and bool(getattr(out, "isatty", lambda: False)())
    while True:
        try:
            if runtime is None:
                from coordinator.runtimes import open_runtime

                runtime = open_runtime(load_runtime_settings(os.environ))
            found, reports = read_reports(runtime, fleet_id=fleet_id, source=source, last=wanted)
        except (RuntimeFailure, ConfigError) as exc:
            err.write(f"coordinator status: {exc}\n")
            if watch_every_s is None or drawn is None:
                return EXIT_FAILED
            # A passing failure while watching (the engine restarting): the screen stays, the next read tries again.
        else:
            shown, earlier = reports[-last:], reports[:-last]
            newest = (found, reports[-1].get("started_at") if reports else None)
            if newest != drawn:
                if output == "json":
                    body = status_json(shown, source=found, earlier=earlier)
                    text = json.dumps(body, indent=None if watch_every_s is not None else 2) + "\n"
                else:
                    text = ("\x1b[H\x1b[2J" if clear else "") + f"coordinator {found}\n" + render_status(shown, earlier)
                out.write(text)
                out.flush()
                drawn = newest
        if watch_every_s is None:
            return EXIT_OK
        time.sleep(watch_every_s)
