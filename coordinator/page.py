"""The status page: the last day's cycle reports as one self-contained HTML page, for people to look at.

`render_page` is a pure function of the reports (read, oldest first, as `ReportHistory.last_day_typed` gives them),
the time now and the schedule's interval: no I/O, no clock. The page fetches nothing: its style is
inline, its charts inline SVG, it has no script and no font or image from anywhere (its Content
Security Policy says so to the browser too), and it reloads itself every schedule interval. It reads the
same without colour: every mark carries its verdict as text.

What it shows: the verdict now (the worse of the latest cycle's own and the judgments across cycles,
each shown with its reasons) and the advice; each role's agents present against desired as bars, with
its crash-loop waits and idle exits; one mark per cycle on a timeline of the day, coloured by the cycle's
own verdict; merges, spawns and spawn failures per hour; the review queue and conflicting pull requests,
and production's health and latency, over the day; the latest error of each step. Every text from a report
is scrubbed with the known secrets (as the report itself is) and HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from coordinator.across_cycles import Judgment, judge_across_cycles, verdict_now, verdict_of
from coordinator.redact import scrub
from coordinator.report import CycleReport, HealthStatus, MergeOutcome, StepStatus
from coordinator.verdict import IDLE_EXITS_LIMIT

DAY = timedelta(days=1)
HOURS = 24
WIDTH = 720  # the charts' drawing width, in SVG user units
CHART_HEIGHT = 90
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'"
COLOURS = {"healthy": "#2e7d32", "degraded": "#e0a100", "broken": "#c62828"}
UNKNOWN_COLOUR = "#9e9e9e"

_STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#1d2125}
main{max-width:760px;margin:0 auto;padding:16px}
header{padding:14px 18px;border-radius:8px;color:#fff;margin-bottom:14px}
header h1{margin:0;font-size:24px}header p{margin:4px 0 0}
section{background:#fff;border-radius:8px;padding:12px 18px;margin-bottom:14px;box-shadow:0 1px 2px #0002}
h2{font-size:17px;margin:2px 0 8px}h3{font-size:15px;margin:10px 0 4px}
ul{margin:4px 0;padding-left:20px}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:3px 6px;vertical-align:middle}
th{font-weight:600;border-bottom:1px solid #ddd}tr+tr td{border-top:1px solid #f0f0f0}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.muted{color:#666}.warn{color:#b05a00;font-weight:600}
.tag{display:inline-block;padding:0 7px;border-radius:9px;color:#fff;font-size:13px}
svg{display:block;max-width:100%;height:auto}svg text{font:11px system-ui,sans-serif;fill:#555}
.legend span{margin-right:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
code{font-size:13px;word-break:break-word}
"""


def render_page(reports: Sequence[CycleReport], *, now: datetime, refresh_s: float, secrets: Iterable[str] = ()) -> str:
    """The page for `reports` (oldest first) as of `now`; it reloads itself every `refresh_s` seconds."""
    known = tuple(secret for secret in secrets if secret)
    shown: dict[str, str] = {}  # the same reasons recur cycle after cycle: scrub each text once

    def text(value: object) -> str:
        raw = str(value)
        if raw not in shown:
            shown[raw] = html.escape(scrub(raw, known))
        return shown[raw]

    timed = [(moment, report) for report in reports if (moment := report.started_at) is not None]
    judgments = judge_across_cycles(reports)
    now_verdict = verdict_now(reports[-1].verdict, judgments).value if reports else "unknown"
    fleet = text(reports[-1].fleet or "agent-fleet") if reports else "agent-fleet"
    parts = [
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">",
        f"<meta http-equiv=\"refresh\" content=\"{max(1, round(refresh_s))}\">",
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
        f"<title>{fleet}: {now_verdict}</title><style>{_STYLE}</style></head><body><main>",
        _header(fleet, now_verdict, reports, now),
    ]
    if not reports:
        parts.append("<section id=\"empty\"><p>No cycle reports in the last day yet: the first cycle runs when the "
                     "scheduler starts, and its report shows here.</p></section>")
    else:
        parts += [
            _why(reports[-1], judgments, text),
            _roles(reports[-1], text),
            _timeline(timed, now, text),
            _activity(timed, now),
            _pulls(timed, now, text),
            _production(timed, now, text),
            _errors(timed, text),
        ]
    parts.append("<p class=\"muted\">Served by the coordinator's scheduler; the same reports as JSON at "
                 "<code>/reports.json</code>, the metrics at <code>/metrics</code>.</p></main></body></html>\n")
    return "".join(parts)


# --- pieces ------------------------------------------------------------------------------------


def _colour(verdict: object) -> str:
    return COLOURS.get(verdict, UNKNOWN_COLOUR) if isinstance(verdict, str) else UNKNOWN_COLOUR






def _timestamp(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else 0.0


def _clock(moment: datetime | None) -> str:
    return moment.strftime("%H:%M") if moment is not None else "?"


def _header(fleet: str, now_verdict: str, reports: Sequence[CycleReport], now: datetime) -> str:
    latest_at = reports[-1].started_at if reports else None
    when = (f"latest cycle at {latest_at:%Y-%m-%d %H:%M} UTC; {len(reports)} cycle"
            f"{'s' if len(reports) != 1 else ''} in the last day") if reports else "no cycles yet"
    return (f"<header id=\"now\" style=\"background:{_colour(now_verdict)}\"><h1>Fleet {fleet}: "
            f"<span id=\"verdict-now\">{now_verdict}</span></h1><p>{when} (page drawn at {now:%H:%M:%S} UTC)</p>"
            "</header>")


def _tag(verdict: str) -> str:
    return f"<span class=\"tag\" style=\"background:{_colour(verdict)}\">{html.escape(verdict)}</span>"


def _verdict_word(report: CycleReport) -> str:
    """A cycle's own verdict as the page shows it: its word as written; "unknown" when the report has none."""
    return str(report.verdict) or "unknown"


def _why(latest: CycleReport, judgments: Sequence[Judgment], text: Callable[[object], str]) -> str:
    cycle_verdict = _verdict_word(latest)
    reasons = "".join(f"<li>{text(reason)}</li>" for reason in latest.verdict_reasons)
    across = verdict_of(judgments).value
    across_items = "".join(f"<li data-judgment=\"{j.name}\">{text(j.reason)}</li>" for j in judgments)
    advice = "".join(
        f"<li>{text(item.action)} <span class=\"muted\">({text(item.signal)} {item.value:g} &gt; {item.threshold:g})"
        f"</span></li>"
        for item in latest.advice
    )
    return (
        "<section id=\"why\"><h2>Why</h2>"
        f"<h3>The latest cycle's own verdict: <span id=\"verdict-cycle\">{_tag(cycle_verdict)}</span></h3>"
        f"<ul id=\"cycle-reasons\">{reasons or '<li class=muted>nothing wrong in that cycle</li>'}</ul>"
        f"<h3>Across the last hour's cycles: <span id=\"verdict-across\">{_tag(across)}</span></h3>"
        f"<ul id=\"across-reasons\">{across_items or '<li class=muted>nothing persisting</li>'}</ul>"
        "<h3>Advice <span class=\"muted\">(change the roster and run <code>pulumi up</code> to follow it)</span></h3>"
        f"<ul id=\"advice\">{advice or '<li class=muted>none</li>'}</ul></section>"
    )


def _roles(latest: CycleReport, text: Callable[[object], str]) -> str:
    roles = latest.roles
    widest = max([t.desired for t in roles.values()] + [max(t.present, 0) for t in roles.values()] + [1])
    rows = []
    for role in sorted(roles):
        tally = roles[role]
        desired, present = tally.desired, max(tally.present, 0)
        scale = 200 / widest
        colour = COLOURS["healthy"] if present >= desired else COLOURS["degraded"]
        bar = (f"<svg viewBox=\"0 0 204 14\" width=\"204\" height=\"14\" role=\"img\" aria-label=\"{present} of "
               f"{desired}\"><rect x=\"1\" y=\"1\" width=\"{desired * scale:.1f}\" height=\"12\" fill=\"#eceff1\" "
               f"stroke=\"#90a4ae\"/><rect x=\"1\" y=\"1\" width=\"{min(present, widest) * scale:.1f}\" height=\"12\" "
               f"fill=\"{colour}\"/></svg>")
        crash = "; ".join(
            f"slot {w.slot} waits until {_clock(w.until)} ({w.crashes} crashes)" for w in tally.waiting
        )
        crash_cell = f"<span class=\"warn\">crash loop: {crash}</span>" if crash else "<span class=\"muted\">no</span>"
        idle = tally.idle_exits
        idle_cell = (f"<span class=\"warn\">{idle} &gt; {IDLE_EXITS_LIMIT}</span>" if idle > IDLE_EXITS_LIMIT
                     else str(idle))
        rows.append(
            f"<tr data-role=\"{text(role)}\"><td>{text(role)}</td><td>{bar}</td>"
            f"<td class=\"num counts\">{present} / {desired}</td>"
            f"<td>{crash_cell}</td>"
            f"<td class=\"num\">{idle_cell}</td></tr>"
        )
    return ("<section id=\"roles\"><h2>Roles: agents present after the latest cycle, against desired</h2>"
            "<table><tr><th>role</th><th>agents</th><th class=\"num\">present / desired</th><th>crash loop</th>"
            f"<th class=\"num\">idle exits</th></tr>{''.join(rows)}</table></section>")


def _x(moment: datetime, now: datetime) -> float:
    return max(0.0, min(1.0, 1 - (now - moment) / DAY)) * WIDTH


def _hour_axis(now: datetime, y: int) -> str:
    marks = []
    for hours_ago in range(HOURS, -1, -6):
        moment = now - timedelta(hours=hours_ago)
        x = _x(moment, now)
        anchor = "start" if hours_ago == HOURS else "end" if hours_ago == 0 else "middle"
        marks.append(f"<text x=\"{x:.1f}\" y=\"{y}\" text-anchor=\"{anchor}\">{moment:%H:%M}</text>")
    return "".join(marks)


Timed = Sequence[tuple[datetime, CycleReport]]  # the reports with their cycles' start times, oldest first


def _timeline(timed: Timed, now: datetime, text: Callable[[object], str]) -> str:
    # As wide as a cycle's share of the day when they are few, with a gap between neighbours when many.
    width = max(1.0, min(8.0, WIDTH / max(len(timed), 1) - 0.6))
    marks = []
    for moment, report in timed:
        verdict = _verdict_word(report)
        reasons = "; ".join(report.verdict_reasons)
        left = max(0.0, _x(moment, now) - width)
        marks.append(
            f"<rect class=\"cycle\" data-verdict=\"{text(verdict)}\" x=\"{left:.1f}\" y=\"4\" "
            f"width=\"{width:.1f}\" height=\"28\" fill=\"{_colour(verdict)}\"><title>{moment:%H:%M} {text(verdict)}"
            f"{': ' + text(reasons) if reasons else ''}</title></rect>"
        )
    counts = {verdict: sum(1 for _, r in timed if r.verdict == verdict) for verdict in COLOURS}
    legend = "".join(f"<span><i style=\"background:{colour}\"></i>{verdict} {counts[verdict]}</span>"
                     for verdict, colour in COLOURS.items())
    return (f"<section id=\"timeline\"><h2>The last day's cycles, by their own verdict</h2>"
            f"<svg viewBox=\"0 0 {WIDTH} 50\" width=\"{WIDTH}\" height=\"50\" role=\"img\" "
            f"aria-label=\"{len(marks)} cycles\"><rect x=\"0\" y=\"4\" width=\"{WIDTH}\" height=\"28\" "
            f"fill=\"#f1f3f5\"/>{''.join(marks)}{_hour_axis(now, 46)}</svg>"
            f"<p class=\"legend\">{legend}</p></section>")


def _per_hour(timed: Timed, now: datetime) -> dict[str, list[int]]:
    """Merged pull requests, spawns and spawn failures in each hour of the day up to `now`, in one pass."""
    bins = {"merged": [0] * HOURS, "spawned": [0] * HOURS, "failed": [0] * HOURS}
    for moment, report in timed:
        if not now - DAY <= moment <= now:
            continue
        hour = min(HOURS - 1, int((moment - (now - DAY)) / timedelta(hours=1)))
        bins["merged"][hour] += len(report.merge.merged)
        bins["spawned"][hour] += report.spawned
        bins["failed"][hour] += report.spawn_failures
    return bins


def _bars(title: str, bins: list[int], colour: str, now: datetime, chart_id: str) -> str:
    top = max([*bins, 1])
    step = WIDTH / HOURS
    bars = "".join(
        f"<rect x=\"{i * step + 1:.1f}\" y=\"{CHART_HEIGHT - value / top * (CHART_HEIGHT - 12):.1f}\" "
        f"width=\"{step - 2:.1f}\" height=\"{value / top * (CHART_HEIGHT - 12):.1f}\" fill=\"{colour}\">"
        f"<title>{value}</title></rect>" for i, value in enumerate(bins) if value
    )
    return (f"<h3>{title} <span class=\"muted\">({sum(bins)} in the day, at most {max(bins)} in an hour)</span></h3>"
            f"<svg id=\"{chart_id}\" viewBox=\"0 0 {WIDTH} {CHART_HEIGHT + 16}\" width=\"{WIDTH}\" "
            f"height=\"{CHART_HEIGHT + 16}\" role=\"img\" aria-label=\"{title} per hour\">"
            f"<line x1=\"0\" y1=\"{CHART_HEIGHT}\" x2=\"{WIDTH}\" y2=\"{CHART_HEIGHT}\" stroke=\"#ccc\"/>"
            f"{bars}{_hour_axis(now, CHART_HEIGHT + 13)}</svg>")


def _activity(timed: Timed, now: datetime) -> str:
    bins = _per_hour(timed, now)
    return ("<section id=\"activity\"><h2>Per hour</h2>"
            + _bars("Pull requests merged", bins["merged"], "#1565c0", now, "merges")
            + _bars("Agents spawned", bins["spawned"], "#2e7d32", now, "spawns")
            + _bars("Spawn failures", bins["failed"], "#c62828", now, "spawn-failures")
            + "</section>")


def _lines(series: list[tuple[str, str, list[tuple[datetime, float]]]], now: datetime, unit: str,
           chart_id: str, marks: str = "") -> str:
    """A line per series over the day, on one scale; `marks` is more SVG drawn over them."""
    top = max([value for _, _, points in series for _, value in points] + [1.0])
    drawn = []
    for _, colour, points in series:
        coords = " ".join(f"{_x(moment, now):.1f},{CHART_HEIGHT - value / top * (CHART_HEIGHT - 12):.1f}"
                          for moment, value in points)
        if coords:
            drawn.append(f"<polyline points=\"{coords}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"/>")
    legend = "".join(f"<span><i style=\"background:{colour}\"></i>{name}</span>" for name, colour, _ in series)
    return (f"<svg id=\"{chart_id}\" viewBox=\"0 0 {WIDTH} {CHART_HEIGHT + 16}\" width=\"{WIDTH}\" "
            f"height=\"{CHART_HEIGHT + 16}\" role=\"img\" aria-label=\"{chart_id}\">"
            f"<line x1=\"0\" y1=\"{CHART_HEIGHT}\" x2=\"{WIDTH}\" y2=\"{CHART_HEIGHT}\" stroke=\"#ccc\"/>"
            f"<text x=\"2\" y=\"10\">{top:.0f}{unit}</text>{''.join(drawn)}{marks}"
            f"{_hour_axis(now, CHART_HEIGHT + 13)}</svg>"
            f"<p class=\"legend\">{legend}</p>")


def _pulls(timed: Timed, now: datetime, text: Callable[[object], str]) -> str:
    queue, conflicting, queued, queue_failed = [], [], [], []
    latest_failed: list[str] = []
    for moment, report in timed:
        merge = report.merge
        if merge.status is StepStatus.OK:  # the step read the pulls in this cycle
            queue.append((moment, float(merge.review_queue)))
            conflicting.append((moment, float(merge.conflicting)))
            queued.append((moment, float(len(merge.queued))))
            queue_failed.append((moment, float(len(merge.queue_failed))))
            # A merge queue's entries that failed, each with its reason, as the latest read saw them.
            latest_failed = [f"#{pull.number}: {text(pull.reason)}" for pull in merge.pulls
                             if pull.outcome is MergeOutcome.QUEUE_FAILED]
    latest = (f"now {int(queue[-1][1])} awaiting review, {int(conflicting[-1][1])} conflicting, "
              f"{int(queued[-1][1])} in the merge queue, {int(queue_failed[-1][1])} failed in it" if queue
              else "not read in the last day")
    series = [("review queue", "#6a1b9a", queue), ("conflicting", "#ef6c00", conflicting)]
    if any(value for _, value in queued + queue_failed):  # a base branch with a merge queue
        series += [("in the merge queue", "#1565c0", queued), ("failed in the queue", "#c62828", queue_failed)]
    failed = ("<p>Failed in the merge queue:</p><ul id=\"queue-failed\">"
              + "".join(f"<li>{entry}</li>" for entry in latest_failed) + "</ul>") if latest_failed else ""
    return ("<section id=\"pulls\"><h2>Pull requests over the day <span class=\"muted\">("
            f"{latest})</span></h2>"
            + _lines(series, now, "", "pull-chart")
            + failed
            + "</section>")


def _production(timed: Timed, now: datetime, text: Callable[[object], str]) -> str:
    latency, downs = [], []
    for moment, report in timed:
        health = report.health
        if health.status is HealthStatus.UP and health.latency_ms is not None:
            latency.append((moment, health.latency_ms))
        elif health.status is HealthStatus.DOWN:
            downs.append((moment, str(health.error or health.code or "no answer")))
    checked = len(latency) + len(downs)
    if not checked:
        return ("<section id=\"production\"><h2>Production</h2><p class=\"muted\">No health check in the last day "
                "(HEALTH_URL is not set, or no cycle ran it).</p></section>")
    marks = "".join(
        f"<rect class=\"down\" x=\"{_x(moment, now) - 1.5:.1f}\" y=\"0\" width=\"3\" height=\"{CHART_HEIGHT}\" "
        f"fill=\"#c62828\" opacity=\"0.5\"><title>{moment:%H:%M} down: {text(error)}</title></rect>"
        for moment, error in downs
    )
    chart = _lines([("latency (ms)", "#00838f", latency)], now, " ms", "latency-chart", marks)
    last_down = f"; last down at {downs[-1][0]:%H:%M} UTC ({text(downs[-1][1])})" if downs else ""
    return (f"<section id=\"production\"><h2>Production <span class=\"muted\">(up in {len(latency)} of {checked} "
            f"checks{last_down})</span></h2>{chart}<p class=\"legend\"><span><i style=\"background:#c62828\"></i>"
            "down</span></p></section>")


def _errors(timed: Timed, text: Callable[[object], str]) -> str:
    latest: dict[str, tuple[str, datetime | None]] = {}
    counts: dict[str, int] = {}
    for moment, report in timed:
        for error in report.errors:
            latest[error.step] = (error.message, moment)
            counts[error.step] = counts.get(error.step, 0) + 1
    if not latest:
        return "<section id=\"errors\"><h2>Errors</h2><p class=\"muted\">None in the last day.</p></section>"
    rows = "".join(
        f"<tr data-step=\"{text(step)}\"><td>{text(step)}</td><td class=\"num\">{counts[step]}</td>"
        f"<td class=\"num\">{_clock(latest[step][1])}</td><td><code>{text(latest[step][0])}</code></td></tr>"
        for step in sorted(latest, key=lambda s: _timestamp(latest[s][1]), reverse=True)
    )
    return ("<section id=\"errors\"><h2>Latest error of each step</h2><table><tr><th>step</th>"
            f"<th class=\"num\">in the day</th><th class=\"num\">latest</th><th>message</th></tr>{rows}</table>"
            "</section>")
