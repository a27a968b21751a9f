"""The coordinator's Prometheus metrics: what the cycle reports say, as series a scrape can read.

`FleetMetrics` owns a registry of its own (never prometheus_client's global one) and is fed two
ways by the scheduler: `observe_report` with each cycle's parsed `cycle.report`, and
`observe_cycle` with how each cycle process ended. It keeps the reports it is given (`history`, the
last day's) for the judgments across cycles (`agent_fleet_judgment_across_cycles`, computed at scrape
time) and the status page. `serve` exposes the registry at /metrics, the page at / and the reports at
/reports.json, on the bounded server of `coordinator.web`; `last_report` picks the report out of a
cycle's output lines.

The gauges are a picture of the latest report, swapped whole on each one, so a scrape never sees
half of one report and half of another (the verdict stays one-hot). A value the latest report
does not carry is absent rather than 0: a role gone from the roster, a health check that was
skipped, a rate limit that was not read. An absent series makes no alert fire, where a 0 would
say "production is down" or "no API calls left".

`agent_fleet_agents_running` counts a role's agents as the cycle left them: those its inventory
found running, those it spawned, and those a cycle running beside it spawned into slots it found
empty (the `present` of the report's role tally), the same "present after the cycle" the verdict
judges a role by. Counting only the inventory, taken before
the cycle spawns, would show a role whose agents finish and are replaced every cycle as short at
every cycle, and the alert on a role below its desired count for a sustained time would fire for a
role that is kept full. Counted after the spawns, a role is short only when the cycle could not
refill it: spawns failed, deferred by the spawn budget, or a crash loop (a slot waiting out its
backoff, or holding an agent that follows a crash and has not yet lived past the crash window: such
an agent has likely exited already, and is not counted). With
agents that keep running, it is the number of agents running: the inventory's count once the fleet
is full, and the spawned ones on the first cycle.

No label value comes from free text: roles must be roster keys, steps, outcomes and verdicts come
from fixed vocabularies, and error messages, pull-request titles and URLs are never read. That is
what keeps tokens and other secrets out of the scrape.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from coordinator.across_cycles import JUDGMENTS, judge_across_cycles
from coordinator.exit_codes import EXIT_FAILED, EXIT_OK
from coordinator.fleet import KEY_PATTERN
from coordinator.history import ReportHistory
from coordinator.page import CONTENT_SECURITY_POLICY, render_page
from coordinator.redact import scrub_values
from coordinator.report import CYCLE_STEPS, HealthStatus, Report, StepStatus, Verdict, parse_reports, read_report
from coordinator.settings import DEFAULT_METRICS_PORT
from coordinator.web import HttpServer, Request, Response

# An error of a step not in CYCLE_STEPS is counted as OTHER_STEP, because a step name is a label value and must
# stay a word we chose.
CRASH_STEP = "cycle"  # the cycle process ended without its report: bad exit code, or not started at all
TIMEOUT_STEP = "timeout"  # the scheduler terminated the cycle at its time limit
OTHER_STEP = "other"
ERROR_STEPS = (*CYCLE_STEPS, CRASH_STEP, TIMEOUT_STEP)

VERDICTS = tuple(verdict.value for verdict in Verdict)

# `python -m coordinator cycle` exits 0 (every step ok) or 1 (a step failed) after writing its
# report; any other ending is a crash of the cycle as a whole.
REPORTED_EXIT_CODES = frozenset({EXIT_OK, EXIT_FAILED})

# The page's reload interval when the schedule's is not known yet: the default schedule's.
DEFAULT_REFRESH_S = 300.0

# A cycle takes seconds; its default time limit is one schedule interval (5 minutes).
CYCLE_DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


@dataclass(frozen=True)
class _Picture:
    """The gauge values of one report; None (or a missing role) means absent from the scrape."""

    running: Mapping[str, int] = field(default_factory=dict)
    desired: Mapping[str, int] = field(default_factory=dict)
    review_queue: int | None = None
    conflicting: int | None = None
    queued: int | None = None
    queue_failed: int | None = None
    health_up: int | None = None
    health_latency_s: float | None = None
    verdict: str | None = None
    rate_limit_remaining: int | None = None


class _LatestGauges(Collector):
    """Renders the current `_Picture` at scrape time; replacing `picture` is one atomic assignment."""

    def __init__(self, history: ReportHistory) -> None:
        self.picture = _Picture()
        self.last_cycle_at: float | None = None
        self.schedule_interval_s: float | None = None
        self._history = history

    def describe(self) -> Iterable[Metric]:
        yield from _gauge_families(_Picture(), None, None)
        yield _judgment_family(None)

    def collect(self) -> Iterable[Metric]:
        yield from _gauge_families(self.picture, self.last_cycle_at, self.schedule_interval_s)
        reports = self._history.held_typed()
        yield _judgment_family({j.name for j in judge_across_cycles(reports)} if reports else None)


def _judgment_family(holding: set[str] | None) -> GaugeMetricFamily:
    """1 for each judgment across cycles that holds now, 0 for the others; absent before any report."""
    family = GaugeMetricFamily("agent_fleet_judgment_across_cycles", "1 when the judgment across the last hour's "
                               "cycles holds (e.g. github_errors_persisting: the merge step failed in each of the "
                               "last 3 cycles), 0 when it does not.", labels=["judgment"])
    if holding is not None:
        for name in JUDGMENTS:
            family.add_metric([name], 1.0 if name in holding else 0.0)
    return family


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[])
    if value is not None:
        family.add_metric([], value)
    return family


def _gauge_families(picture: _Picture, last_cycle_at: float | None,
                    schedule_interval_s: float | None) -> Iterator[Metric]:
    running = GaugeMetricFamily("agent_fleet_agents_running", "Agents of the role present after the last cycle: "
                                "found running by its inventory, spawned by it, or by a cycle beside it.",
                                labels=["role"])
    desired = GaugeMetricFamily("agent_fleet_agents_desired", "Agents the roster wants for the role.",
                                labels=["role"])
    for role in sorted(picture.running):
        running.add_metric([role], picture.running[role])
        desired.add_metric([role], picture.desired[role])
    yield running
    yield desired
    yield _gauge("agent_fleet_review_queue", "Open, non-draft pull requests awaiting a review.", picture.review_queue)
    yield _gauge("agent_fleet_conflicting_pulls", "Open pull requests that conflict with their base.",
                 picture.conflicting)
    yield _gauge("agent_fleet_queued_pulls", "Open pull requests in the merge queue (enqueued by the coordinator or "
                 "before), as the last merge step saw them.", picture.queued)
    yield _gauge("agent_fleet_queue_failed_pulls", "Open pull requests whose merge queue entry is UNMERGEABLE (the "
                 "queue's checks failed on the merged result).", picture.queue_failed)
    yield _gauge("agent_fleet_health_up", "1 when production answered the health check, 0 when it did not; "
                 "absent when the check is not configured.", picture.health_up)
    yield _gauge("agent_fleet_health_latency_seconds", "How long production took to answer the health check.",
                 picture.health_latency_s)
    verdict = GaugeMetricFamily("agent_fleet_verdict", "1 for the last cycle's verdict, 0 for the others.",
                                labels=["verdict"])
    if picture.verdict is not None:
        for word in VERDICTS:
            verdict.add_metric([word], 1.0 if word == picture.verdict else 0.0)
    yield verdict
    yield _gauge("agent_fleet_github_rate_limit_remaining", "GitHub API calls left in the rate-limit window, "
                 "as the last merge step saw it.", picture.rate_limit_remaining)
    yield _gauge("agent_fleet_last_cycle_timestamp_seconds", "Unix time the last cycle process ended, "
                 "whatever its outcome (the heartbeat's moment).", last_cycle_at)
    yield _gauge("agent_fleet_schedule_interval_seconds", "Seconds between the schedule's ticks around the last "
                 "cycle (COORDINATOR_SCHEDULE): how late a cycle may be before it is missed.", schedule_interval_s)


class FleetMetrics:
    """The coordinator's metrics, in a registry of their own."""

    def __init__(self, history: ReportHistory | None = None) -> None:
        # The reports seen, for the judgments across cycles and the status page.
        self.history = history if history is not None else ReportHistory()
        self.registry = CollectorRegistry()
        self._gauges = _LatestGauges(self.history)
        self.registry.register(self._gauges)
        self._spawns = Counter(
            "agent_fleet_spawns_total",
            "Slots of a role by what the cycle did with them: spawned, failed to spawn, deferred by the spawn "
            "budget, or waiting out a crash-loop backoff (counted once per cycle they wait).",
            ["role", "outcome"],
            registry=self.registry,
        )
        self._merged = Counter(
            "agent_fleet_merged_pulls_total", "Pull requests the coordinator merged.", registry=self.registry
        )
        self._updated = Counter(
            "agent_fleet_branch_updates_total",
            "Pull request branches the coordinator brought up to date with their base (the up-to-date policy).",
            registry=self.registry,
        )
        self._errors = Counter(
            "agent_fleet_cycle_errors_total",
            "Errors by step: the cycle's own steps from its report, 'cycle' for a cycle that crashed or could not "
            "start, 'timeout' for one terminated at its time limit.",
            ["step"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "agent_fleet_cycle_duration_seconds",
            "Wall time of each cycle process, as the scheduler measured it.",
            buckets=CYCLE_DURATION_BUCKETS,
            registry=self.registry,
        )
        # Created at 0 so that increase() sees the first error instead of the series appearing with it.
        for step in ERROR_STEPS:
            self._errors.labels(step=step)

    def observe_report(self, report: Mapping[str, object]) -> bool:
        """Take in one cycle's parsed `cycle.report`; False (and nothing changes) for a plan's dry-run report.

        Each report must be observed once: its spawns, merges and errors are added to the counters.
        Unknown fields are ignored, missing or ill-typed ones read as absent or 0.
        """
        read = read_report(report)
        if read.dry_run:
            return False
        self.history.add_read([(dict(report), read)])  # read once, for the counters and the page alike
        running: dict[str, int] = {}
        desired: dict[str, int] = {}
        for role, tally in read.roles.items():
            if not KEY_PATTERN.fullmatch(role):
                continue
            # Present after the cycle, as the report's tally counts it (see the module's text).
            running[role] = max(tally.present, 0)
            desired[role] = tally.desired
            counts = {"spawned": tally.spawned, "failed": tally.failed, "deferred": tally.deferred,
                      "waiting": len(tally.waiting)}
            for outcome, count in counts.items():
                self._spawns.labels(role=role, outcome=outcome).inc(count)

        merge = read.merge
        self._merged.inc(len(merge.merged))
        self._updated.inc(len(merge.updated))
        merge_ran = merge.status is StepStatus.OK

        up_or_down = {HealthStatus.UP: 1, HealthStatus.DOWN: 0}
        health_up = up_or_down.get(read.health.status) if isinstance(read.health.status, HealthStatus) else None
        latency_ms = read.health.latency_ms if health_up is not None else None

        for error in read.errors:
            self._errors.labels(step=_step_label(error.step)).inc()

        self._gauges.picture = _Picture(
            running=running,
            desired=desired,
            review_queue=merge.review_queue if merge_ran else None,
            conflicting=merge.conflicting if merge_ran else None,
            queued=len(merge.queued) if merge_ran else None,
            queue_failed=len(merge.queue_failed) if merge_ran else None,
            health_up=health_up,
            health_latency_s=latency_ms / 1000 if latency_ms is not None else None,
            # An unknown verdict word sets all three to 0: the fleet is in none of the states we know.
            verdict=str(read.verdict) or None,
            rate_limit_remaining=merge.rate_limit_remaining,
        )
        return True

    def observe_cycle(
        self,
        duration_s: float,
        *,
        exit_code: int | None,
        timed_out: bool,
        finished_at: datetime,
        reported: bool | None = None,
    ) -> None:
        """Take in how one cycle process ended, whatever the ending.

        `exit_code` None means the process could not be started: that counts as a crash, but it has
        no duration and, like the heartbeat, does not move the last-cycle time. A timeout counts
        under step "timeout" only. `reported` is whether the cycle's report was seen (None: not
        known); a cycle that exited 0 or 1 without one crashed (an uncaught exception also exits 1).
        Not for a cycle cut short because the scheduler itself is stopping.
        """
        if finished_at.tzinfo is None:
            raise ValueError("finished_at must be timezone-aware, or its Unix time would depend on the local zone")
        if timed_out:
            self._errors.labels(step=TIMEOUT_STEP).inc()
        elif exit_code not in REPORTED_EXIT_CODES or reported is False:
            self._errors.labels(step=CRASH_STEP).inc()
        if exit_code is None:
            return
        self._duration.observe(duration_s)
        self._gauges.last_cycle_at = finished_at.timestamp()

    def observe_schedule(self, interval_s: float) -> None:
        """The schedule's interval around now, so that an alert can tell a late cycle whatever the schedule."""
        self._gauges.schedule_interval_s = interval_s

    def serve(
        self, port: int = DEFAULT_METRICS_PORT, addr: str = "0.0.0.0", *, secrets: Iterable[str] = ()
    ) -> MetricsServer:
        """Serve /metrics, the status page at / and /reports.json at http://addr:port in a daemon thread.

        Port 0 picks a free port. `secrets` are scrubbed from what the page and /reports.json show,
        as the event log scrubs them from the reports in the first place.
        """
        known = tuple(secrets)

        def status_page(request: Request) -> Response:
            now = datetime.now(UTC)
            page = render_page(self.history.last_day_typed(now), now=now,
                               refresh_s=self._gauges.schedule_interval_s or DEFAULT_REFRESH_S, secrets=known)
            return Response(200, page.encode(), "text/html; charset=utf-8",
                            {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-store"})

        # A day of reports is megabytes to scrub and serialise: done once per new report, not once per request.
        cached: dict[tuple[int, object, object], bytes] = {}

        def reports_json(request: Request) -> Response:
            reports = self.history.last_day(datetime.now(UTC))
            key = (len(reports), reports[0].get("started_at") if reports else None,
                   reports[-1].get("started_at") if reports else None)
            if key not in cached:
                cached.clear()
                cached[key] = json.dumps({"reports": scrub_values(reports, known)}).encode()
            return Response(200, cached[key], "application/json")

        return HttpServer({"/metrics": self.metrics_page, "/": status_page, "/reports.json": reports_json}).start(
            port, addr)

    def metrics_page(self, request: Request) -> Response:
        """/metrics as prometheus_client's own handler answers it: the format the Accept header asks
        for, gzip when accepted, and only the families named by `name[]` parameters when given."""
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        names = request.query.get("name[]")
        body = encoder(self.registry.restricted_registry(names) if names else self.registry)
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(200, gzip.compress(body), content_type, {"Content-Encoding": "gzip"})
        return Response(200, body, content_type)


# The coordinator's HTTP server (coordinator.web), whose routes include /metrics.
MetricsServer = HttpServer


def last_report(lines: Iterable[str]) -> Report | None:
    """The last `cycle.report` object among a cycle's output lines, or None when it wrote none."""
    reports = parse_reports(lines)
    return reports[-1] if reports else None






def _step_label(step: object) -> str:
    return step if isinstance(step, str) and step in CYCLE_STEPS else OTHER_STEP
