"""`python -m coordinator status`: the record of the last cycles, read back from the coordinator's log.

The coordinator keeps no state, and needs none for this: every cycle ends with a `cycle.report`
JSON line on the coordinator's stdout, and the engine keeps the log. `run_status` reads the tail
of that log through the agent runtime (the container's log on one engine, the service's log on a
swarm) and shows the last N reports as a table, with the latest cycle's advice and errors under
it. The pure pieces, `parse_reports` and `render_status`, know nothing of any engine.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TextIO

from coordinator.cli import EXIT_CONFIG as EXIT_USAGE
from coordinator.cli import EXIT_FAILED, EXIT_OK
from coordinator.report import REPORT_EVENT
from coordinator.runtime import AgentRuntime, RuntimeFailure
from coordinator.settings import ConfigError, load_runtime_settings

# Log lines read per cycle shown: a cycle writes a few events per spawn and per pull request
# besides its report, so this is generous; older lines are never read.
LOG_LINES_PER_CYCLE = 200
MIN_LOG_LINES = 2000

Report = dict[str, Any]


class StatusError(Exception):
    """The record cannot be read; the message says what is missing and what to do."""


def parse_reports(lines: Iterable[str]) -> list[Report]:
    """The `cycle.report` objects among log lines, in order; other events and non-JSON lines are skipped."""
    reports: list[Report] = []
    for line in lines:
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and data.get("event") == REPORT_EVENT:
            reports.append(data)
    return reports


def _time(report: Report) -> str:
    raw = str(report.get("started_at", "?"))
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return raw


def _spawned(report: Report) -> str:
    spawned = report.get("spawned", 0)
    failed = sum(int(tally.get("failed", 0)) for tally in (report.get("roles") or {}).values())
    return f"{spawned} ({failed} failed)" if failed else str(spawned)


def _health(report: Report) -> str:
    health = report.get("health") or {}
    bits = [str(health.get("status", "?"))]
    if health.get("code") is not None:
        bits.append(str(health["code"]))
    if health.get("error") and health.get("error") != f"unexpected status {health.get('code')}":
        bits.append(str(health["error"]))
    if health.get("latency_ms") is not None and health.get("status") == "up":
        bits.append(f"{float(health['latency_ms']):.0f}ms")
    return " ".join(bits)


def _row(report: Report) -> list[str]:
    merged = (report.get("merge") or {}).get("merged") or []
    return [
        _time(report) + (" (plan)" if report.get("dry_run") else ""),
        f"{report.get('running', '?')}/{report.get('desired', '?')}",
        _spawned(report),
        str(len(merged)),
        _health(report),
        str(report.get("verdict", "?")),
        str(len(report.get("errors") or [])),
    ]


HEADER = ["time (UTC)", "agents", "spawned", "merged", "health", "verdict", "errors"]


def render_status(reports: Sequence[Report]) -> str:
    """The last cycles as a table, oldest first, then the latest cycle's errors and advice."""
    if not reports:
        return "no cycle reports in the log yet: the first cycle runs when the container starts\n"
    latest = reports[-1]
    rows = [HEADER] + [_row(report) for report in reports]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = [
        f"fleet {latest.get('fleet', '?')}: {latest.get('verdict', '?')} at {_time(latest)} UTC "
        f"(last {len(reports)} cycle{'s' if len(reports) != 1 else ''})",
    ]
    if latest.get("verdict_reasons"):
        lines.append("because: " + "; ".join(str(reason) for reason in latest["verdict_reasons"]))
    lines.append("")
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    errors = latest.get("errors") or []
    if errors:
        lines += ["", "errors in the latest cycle:"]
        lines += [f"  {e.get('step', '?')}: {e.get('message', '')}" for e in errors]
    advice = latest.get("advice") or []
    lines.append("")
    if advice:
        lines.append("advice (latest cycle; change the roster and run `pulumi up` to follow it):")
        for item in advice:
            # The action names the role ("raise the count of code_reviewer: ..."); the signal shows the numbers.
            lines.append(
                f"  - {item.get('action') or item.get('role', '?')} "
                f"({item.get('signal', '?')} {item.get('value', 0):g} > {item.get('threshold', 0):g})"
            )
    else:
        lines.append("advice: none")
    return "\n".join(lines) + "\n"


def status_json(reports: Sequence[Report], *, source: str) -> dict[str, Any]:
    latest = reports[-1] if reports else {}
    return {
        "source": source,
        "verdict": latest.get("verdict"),
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
    as_json: bool = False,
    out: TextIO,
    runtime: AgentRuntime | None = None,
    err: TextIO | None = None,
) -> int:
    """Print the last `last` cycles of the coordinator; 0 when shown, 1 when they cannot be read."""
    err = err if err is not None else sys.stderr
    if last < 1:
        err.write(f"coordinator status: --last must be 1 or more, not {last}\n")
        return EXIT_USAGE
    try:
        if runtime is None:
            from coordinator.runtimes import open_runtime

            runtime = open_runtime(load_runtime_settings(os.environ))
        found, reports = read_reports(runtime, fleet_id=fleet_id, source=source, last=last)
    except (RuntimeFailure, ConfigError) as exc:
        err.write(f"coordinator status: {exc}\n")
        return EXIT_FAILED
    if as_json:
        out.write(json.dumps(status_json(reports, source=found), indent=2) + "\n")
    else:
        out.write(f"coordinator {found}\n" + render_status(reports))
    return EXIT_OK
