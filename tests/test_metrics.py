"""The Prometheus metrics: reports fed in, the real HTTP endpoint scraped and parsed as Prometheus would."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from coordinator.metrics import CYCLE_STEPS, FleetMetrics, MetricsServer, last_report
from coordinator.report import (
    CycleReport,
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
    UnprovenAgent,
    Verdict,
    to_dict,
)
from tests.conftest import ROOT

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TOKEN = "fake-token-metricsSECRET0123456789abc"
HEALTH_URL = "https://prod.example.invalid/healthz?key=fake-url-secret"

# The table of the issue: name -> (type, label names). Counters are listed as exposed, with `_total`.
TABLE: dict[str, tuple[str, frozenset[str]]] = {
    "agent_fleet_agents_running": ("gauge", frozenset({"role"})),
    "agent_fleet_agents_desired": ("gauge", frozenset({"role"})),
    "agent_fleet_spawns_total": ("counter", frozenset({"role", "outcome"})),
    "agent_fleet_merged_pulls_total": ("counter", frozenset()),
    "agent_fleet_review_queue": ("gauge", frozenset()),
    "agent_fleet_conflicting_pulls": ("gauge", frozenset()),
    "agent_fleet_health_up": ("gauge", frozenset()),
    "agent_fleet_health_latency_seconds": ("gauge", frozenset()),
    "agent_fleet_verdict": ("gauge", frozenset({"verdict"})),
    "agent_fleet_cycle_duration_seconds": ("histogram", frozenset()),
    "agent_fleet_last_cycle_timestamp_seconds": ("gauge", frozenset()),
    "agent_fleet_cycle_errors_total": ("counter", frozenset({"step"})),
    "agent_fleet_github_rate_limit_remaining": ("gauge", frozenset()),
}
# Added beside the table (it allows more): what AgentFleetNoCycle measures lateness by; the merge queue
# and the up-to-date policy (issue 24).
ADDED: dict[str, tuple[str, frozenset[str]]] = {
    "agent_fleet_schedule_interval_seconds": ("gauge", frozenset()),
    "agent_fleet_judgment_across_cycles": ("gauge", frozenset({"judgment"})),
    "agent_fleet_queued_pulls": ("gauge", frozenset()),
    "agent_fleet_queue_failed_pulls": ("gauge", frozenset()),
    "agent_fleet_branch_updates_total": ("counter", frozenset()),
}


def family_name(name: str) -> str:
    """The family name the text parser gives: a counter's family drops `_total`."""
    return name.removesuffix("_total")


def report(
    *,
    roles: dict[str, RoleTally] | None = None,
    merged: tuple[int, ...] = (5,),
    verdict: Verdict = Verdict.HEALTHY,
    health: HealthReport | None = None,
    errors: tuple[StepError, ...] = (),
    rate_limit_remaining: int | None = 4990,
    dry_run: bool = False,
    minute: int = 0,
) -> dict[str, Any]:
    """A `cycle.report` as the cycle writes it (through `to_dict` and JSON), plus the coming rate-limit field."""
    pulls = [PullOutcome(number, MergeOutcome.MERGED, "merged") for number in merged]
    pulls.append(PullOutcome(9, MergeOutcome.SKIPPED, "checks pending"))
    pulls += [PullOutcome(11, MergeOutcome.QUEUED, "enqueued (AWAITING_CHECKS, position 1)"),
              PullOutcome(12, MergeOutcome.QUEUED, "in the merge queue (QUEUED, position 2)"),
              PullOutcome(13, MergeOutcome.QUEUE_FAILED, "merge queue entry unmergeable"),
              PullOutcome(14, MergeOutcome.UPDATED, "brought up to date; merges once its checks pass on the new head")]
    cycle = CycleReport(
        fleet="f",
        started_at=T0 + timedelta(minutes=minute),
        duration_s=1.2,
        roles=roles
        if roles is not None
        else {
            "coder": RoleTally(
                desired=3, running=2, mode="Task-driven", spawned=1,
                waiting=[SlotWait(slot=2, until=T0 + timedelta(minutes=10), crashes=3)],
            ),
        },
        merge=MergeReport(status=StepStatus.OK, pulls=pulls, open=4, review_queue=2, conflicting=1, api_calls=3),
        health=health if health is not None else HealthReport(HealthStatus.UP, code=200, latency_ms=12.5, attempts=1),
        errors=list(errors),
        steps={"inventory": StepResult(StepStatus.OK, duration_s=0.01)},
        verdict=verdict,
        dry_run=dry_run,
    )
    data: dict[str, Any] = json.loads(json.dumps(to_dict(cycle)))
    data["merge"]["rate_limit_remaining"] = rate_limit_remaining
    return data


@pytest.fixture
def metrics() -> FleetMetrics:
    return FleetMetrics()


@pytest.fixture
def server(metrics: FleetMetrics) -> Iterator[MetricsServer]:
    served = metrics.serve(port=0, addr="127.0.0.1")
    yield served
    served.stop()


def scrape_text(server: MetricsServer) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
        assert response.status == 200
        body: bytes = response.read()
    return body.decode()


def scrape(server: MetricsServer) -> dict[str, list[Sample]]:
    """Sample name -> samples, the way Prometheus reads the endpoint."""
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(scrape_text(server)):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float | None:
    found = [s.value for s in samples.get(name, []) if s.labels == labels]
    assert len(found) <= 1, f"{name}{labels} appears {len(found)} times"
    return found[0] if found else None


def finish(metrics: FleetMetrics, duration_s: float = 1.5, *, exit_code: int | None = 0, timed_out: bool = False,
           at: datetime = T0, reported: bool | None = None) -> None:
    metrics.observe_cycle(duration_s, exit_code=exit_code, timed_out=timed_out, finished_at=at, reported=reported)


# --- the table ---------------------------------------------------------------------------------


def test_every_metric_of_the_table_is_served_with_its_type_and_labels(
    metrics: FleetMetrics, server: MetricsServer
) -> None:
    metrics.observe_report(report(errors=(StepError("merge", "GitHub said 502"),)))
    finish(metrics, 1.5, at=T0)
    metrics.observe_schedule(300.0)

    families = {f.name: f for f in text_string_to_metric_families(scrape_text(server))}

    for name, (kind, label_names) in {**TABLE, **ADDED}.items():
        family = families.get(family_name(name))
        assert family is not None, f"{name} is not served"
        assert family.type == kind, f"{name} is a {family.type}, not a {kind}"
        own_samples = [s for s in family.samples if not s.name.endswith("_created")]
        assert own_samples, f"{name} has no sample after a full report and a cycle"
        for sample in own_samples:
            expected = label_names | {"le"} if sample.name.endswith("_bucket") else label_names
            assert set(sample.labels) == expected, f"{sample.name} has labels {sorted(sample.labels)}"
    # Nothing besides the table (and prometheus_client's `_created` companions of counters and histograms).
    extra = {name for name in families if not name.endswith("_created")} - {family_name(n) for n in {**TABLE, **ADDED}}
    assert not extra
    assert value(scrape(server), "agent_fleet_schedule_interval_seconds") == 300.0

    samples = scrape(server)
    assert value(samples, "agent_fleet_agents_running", role="coder") == 3  # 2 found running + 1 spawned
    assert value(samples, "agent_fleet_agents_desired", role="coder") == 3
    assert value(samples, "agent_fleet_spawns_total", role="coder", outcome="spawned") == 1
    assert value(samples, "agent_fleet_spawns_total", role="coder", outcome="failed") == 0
    assert value(samples, "agent_fleet_spawns_total", role="coder", outcome="deferred") == 0
    assert value(samples, "agent_fleet_spawns_total", role="coder", outcome="waiting") == 1
    assert value(samples, "agent_fleet_merged_pulls_total") == 1
    assert value(samples, "agent_fleet_review_queue") == 2
    assert value(samples, "agent_fleet_conflicting_pulls") == 1
    assert value(samples, "agent_fleet_queued_pulls") == 2
    assert value(samples, "agent_fleet_queue_failed_pulls") == 1
    assert value(samples, "agent_fleet_branch_updates_total") == 1
    assert value(samples, "agent_fleet_health_up") == 1
    assert value(samples, "agent_fleet_health_latency_seconds") == pytest.approx(0.0125)
    assert value(samples, "agent_fleet_verdict", verdict="healthy") == 1
    assert value(samples, "agent_fleet_cycle_duration_seconds_count") == 1
    assert value(samples, "agent_fleet_cycle_duration_seconds_sum") == pytest.approx(1.5)
    assert value(samples, "agent_fleet_cycle_duration_seconds_bucket", le="2.5") == 1
    assert value(samples, "agent_fleet_cycle_duration_seconds_bucket", le="1.0") == 0
    assert value(samples, "agent_fleet_last_cycle_timestamp_seconds") == T0.timestamp()
    assert value(samples, "agent_fleet_cycle_errors_total", step="merge") == 1
    assert value(samples, "agent_fleet_cycle_errors_total", step="health") == 0
    assert value(samples, "agent_fleet_github_rate_limit_remaining") == 4990


def test_before_any_cycle_the_gauges_are_absent_and_the_error_counters_zero(server: MetricsServer) -> None:
    samples = scrape(server)
    for name in ("agent_fleet_agents_running", "agent_fleet_health_up", "agent_fleet_verdict",
                 "agent_fleet_review_queue", "agent_fleet_github_rate_limit_remaining",
                 "agent_fleet_last_cycle_timestamp_seconds"):
        assert name not in samples, f"{name} has a value before any report; alerts would read it as real"
    for step in (*CYCLE_STEPS, "cycle", "timeout"):
        assert value(samples, "agent_fleet_cycle_errors_total", step=step) == 0


def test_metrics_live_in_their_own_registry_not_the_global_one() -> None:
    first, second = FleetMetrics(), FleetMetrics()  # a second one would collide in a shared registry
    first.observe_report(report())
    assert first.registry is not second.registry
    assert not [name for name in REGISTRY._names_to_collectors if name.startswith("agent_fleet")]


# --- reports over time ---------------------------------------------------------------------------


def test_counters_accumulate_across_reports(metrics: FleetMetrics, server: MetricsServer) -> None:
    wait = SlotWait(slot=1, until=T0, crashes=3)
    metrics.observe_report(report(
        roles={"coder": RoleTally(desired=3, running=1, spawned=1, failed=1, deferred=1, waiting=[wait])},
        merged=(5,), errors=(StepError("merge", "boom"),),
    ))
    metrics.observe_report(report(
        roles={"coder": RoleTally(desired=4, running=1, spawned=2, deferred=3, waiting=[wait, wait])},
        merged=(6, 7), errors=(StepError("merge", "boom"), StepError("health", "timeout")), minute=5,
    ))

    samples = scrape(server)
    assert value(samples, "agent_fleet_spawns_total", role="coder", outcome="spawned") == 3
    assert value(samples, "agent_fleet_spawns_total", role="coder", outcome="failed") == 1
    assert value(samples, "agent_fleet_spawns_total", role="coder", outcome="deferred") == 4
    assert value(samples, "agent_fleet_spawns_total", role="coder", outcome="waiting") == 3
    assert value(samples, "agent_fleet_merged_pulls_total") == 3
    assert value(samples, "agent_fleet_cycle_errors_total", step="merge") == 2
    assert value(samples, "agent_fleet_cycle_errors_total", step="health") == 1
    # The gauges are the latest report's, not a sum.
    assert value(samples, "agent_fleet_agents_running", role="coder") == 3
    assert value(samples, "agent_fleet_agents_desired", role="coder") == 4


def test_agents_running_counts_the_agents_the_cycle_left_running_spawned_ones_included(
    metrics: FleetMetrics, server: MetricsServer
) -> None:
    # The alert on a role below its desired count reads this gauge: a role kept full must never look short.
    metrics.observe_report(report(roles={
        # An agent finished since the last cycle, and this cycle replaced it: full.
        "coder": RoleTally(desired=3, running=2, spawned=1),
        # The first cycle: nothing running yet, every agent spawned.
        "tester": RoleTally(desired=2, running=0, spawned=2),
        # Two first cycles overlapped, and the other one spawned both agents (this one's creates met them, 409).
        "sentinel": RoleTally(desired=2, running=0, filled_by_other_cycle=2),
        # Not refilled: one spawn failed, one deferred by the spawn budget, one slot waiting out a crash loop.
        "code_reviewer": RoleTally(desired=4, running=1, failed=1, deferred=1,
                                   waiting=[SlotWait(slot=3, until=T0, crashes=2)]),
        # Removed from the roster, its last agent still at work: shown until it exits.
        "legacy": RoleTally(desired=0, running=1),
        # A crash loop: the agent respawned into slot 1 after two crashes is likely gone already; not counted.
        "flaky": RoleTally(desired=1, running=0, spawned=1, unproven=[UnprovenAgent(slot=1, crashes=2)]),
    }))

    samples = scrape(server)
    running = {s.labels["role"]: s.value for s in samples["agent_fleet_agents_running"]}
    desired = {s.labels["role"]: s.value for s in samples["agent_fleet_agents_desired"]}
    assert running == {"coder": 3, "tester": 2, "sentinel": 2, "code_reviewer": 1, "legacy": 1, "flaky": 0}
    assert desired == {"coder": 3, "tester": 2, "sentinel": 2, "code_reviewer": 4, "legacy": 0, "flaky": 1}
    assert [role for role in running if running[role] < desired[role]] == ["code_reviewer", "flaky"]


def test_a_role_gone_from_the_report_disappears(metrics: FleetMetrics, server: MetricsServer) -> None:
    metrics.observe_report(report(roles={
        "coder": RoleTally(desired=3, running=3),
        "code_reviewer": RoleTally(desired=2, running=1, spawned=1),
    }))
    assert value(scrape(server), "agent_fleet_agents_desired", role="code_reviewer") == 2

    metrics.observe_report(report(roles={"coder": RoleTally(desired=3, running=3)}, minute=5))

    samples = scrape(server)
    assert value(samples, "agent_fleet_agents_running", role="code_reviewer") is None
    assert value(samples, "agent_fleet_agents_desired", role="code_reviewer") is None
    assert value(samples, "agent_fleet_agents_running", role="coder") == 3
    # A counter is history: what the role did while it existed stays counted.
    assert value(samples, "agent_fleet_spawns_total", role="code_reviewer", outcome="spawned") == 1


def test_the_verdict_gauge_is_one_hot(metrics: FleetMetrics, server: MetricsServer) -> None:
    for minute, verdict in enumerate([Verdict.HEALTHY, Verdict.BROKEN, Verdict.DEGRADED, Verdict.HEALTHY]):
        metrics.observe_report(report(verdict=verdict, minute=minute))
        samples = scrape(server)
        by_word = {s.labels["verdict"]: s.value for s in samples["agent_fleet_verdict"]}
        assert by_word == {v.value: (1.0 if v is verdict else 0.0) for v in Verdict}


def test_an_unknown_verdict_word_sets_every_verdict_to_zero(metrics: FleetMetrics, server: MetricsServer) -> None:
    data = report(verdict=Verdict.BROKEN)
    metrics.observe_report(data)
    metrics.observe_report({**data, "verdict": "mysterious"})
    samples = scrape(server)
    assert {s.labels["verdict"]: s.value for s in samples["agent_fleet_verdict"]} == {v.value: 0.0 for v in Verdict}


def test_production_down_is_zero_and_a_skipped_health_check_is_absent(
    metrics: FleetMetrics, server: MetricsServer
) -> None:
    metrics.observe_report(report(health=HealthReport(HealthStatus.DOWN, code=503, latency_ms=40.0,
                                                      error="unexpected status 503", attempts=3)))
    samples = scrape(server)
    assert value(samples, "agent_fleet_health_up") == 0
    assert value(samples, "agent_fleet_health_latency_seconds") == pytest.approx(0.04)

    metrics.observe_report(report(health=HealthReport(), minute=5))  # HEALTH_URL not set: the step is skipped
    samples = scrape(server)
    assert "agent_fleet_health_up" not in samples
    assert "agent_fleet_health_latency_seconds" not in samples


def test_merge_numbers_are_absent_when_the_merge_step_did_not_run(metrics: FleetMetrics, server: MetricsServer) -> None:
    data = report(rate_limit_remaining=None)
    data["merge"].update(status="failed", review_queue=0, conflicting=0)
    metrics.observe_report(data)
    samples = scrape(server)
    for name in ("agent_fleet_review_queue", "agent_fleet_conflicting_pulls",
                 "agent_fleet_github_rate_limit_remaining"):
        assert name not in samples


def test_a_dry_run_report_changes_nothing(metrics: FleetMetrics, server: MetricsServer) -> None:
    assert metrics.observe_report(report()) is True
    before = scrape(server)

    assert metrics.observe_report(report(
        roles={"other_role": RoleTally(desired=9, running=0, spawned=9)}, merged=(1, 2, 3),
        verdict=Verdict.BROKEN, dry_run=True, minute=5,
    )) is False

    assert scrape(server) == before


def test_missing_unknown_and_ill_typed_fields_are_tolerated(metrics: FleetMetrics, server: MetricsServer) -> None:
    metrics.observe_report(report())
    metrics.observe_report({
        "event": "cycle.report",
        "roles": {"coder": {"desired": "three", "running": -1, "waiting": "none", "future_field": [1]},
                  "Bad Role": {"desired": 1}, "tester": None},
        "merge": ["not", "a", "mapping"],
        "health": {"status": "sideways"},
        "errors": [{"message": "no step"}, "not a mapping"],
        "something_new": {"nested": True},
    })
    metrics.observe_report({})

    samples = scrape(server)
    assert "agent_fleet_agents_running" not in samples  # the last report ({}) has no roles
    assert "agent_fleet_verdict" not in samples
    assert value(samples, "agent_fleet_spawns_total", role="tester", outcome="spawned") == 0
    assert value(samples, "agent_fleet_cycle_errors_total", step="other") == 2
    assert value(samples, "agent_fleet_merged_pulls_total") == 1


def test_no_token_url_or_title_reaches_the_scrape(metrics: FleetMetrics, server: MetricsServer) -> None:
    data = report(errors=(StepError("merge", f"401 Bad credentials for token {TOKEN}"),
                          StepError(TOKEN, "a step name that is not one"),
                          StepError("health", f"GET {HEALTH_URL} timed out")))
    data["merge"]["pulls"][0].update(reason=f"merged: Leak {TOKEN}", title=f"Add {TOKEN} to the config")
    data["merge"]["stopped"] = f"rate limit of {TOKEN}"
    data["health"].update(error=f"refused by {HEALTH_URL}", url=HEALTH_URL)
    data["roles"][f"coder-{TOKEN}"] = data["roles"]["coder"]
    data["roles"][HEALTH_URL] = data["roles"]["coder"]
    data["verdict_reasons"] = [f"production {HEALTH_URL} down {TOKEN}"]
    data["advice"] = [{"role": TOKEN, "action": TOKEN, "signal": TOKEN, "value": 1, "threshold": 0}]
    data["fleet"] = TOKEN
    metrics.observe_report(data)
    finish(metrics)

    text = scrape_text(server)
    for secret in (TOKEN, "SECRET", HEALTH_URL, "prod.example", "fake-url-secret", "Add "):
        assert secret not in text
    label_values = {v for f in text_string_to_metric_families(text) for s in f.samples for v in s.labels.values()}
    allowed = re.compile(r"[a-z][a-z0-9_]*|\+Inf|[0-9.]+")
    assert all(allowed.fullmatch(v) for v in label_values), sorted(label_values)
    assert value(scrape(server), "agent_fleet_cycle_errors_total", step="other") == 1


# --- cycles as the scheduler saw them ------------------------------------------------------------


@pytest.mark.parametrize(
    ("exit_code", "timed_out", "reported", "crash", "timeout"),
    [
        (0, False, None, 0, 0),  # every step ok
        (1, False, None, 0, 0),  # a step failed: counted from the report, not here
        (1, False, True, 0, 0),
        (1, False, False, 1, 0),  # exit 1 without a report: an uncaught exception
        (2, False, None, 1, 0),  # bad settings
        (-9, False, None, 1, 0),  # killed by a signal
        (-15, True, None, 0, 1),  # terminated at its time limit: a timeout, not also a crash
        (-9, True, False, 0, 1),
    ],
)
def test_how_a_cycle_ended_is_counted_under_one_step(
    metrics: FleetMetrics, server: MetricsServer,
    exit_code: int, timed_out: bool, reported: bool | None, crash: int, timeout: int,
) -> None:
    finish(metrics, 300.2 if timed_out else 2.0, exit_code=exit_code, timed_out=timed_out, reported=reported, at=T0)

    samples = scrape(server)
    assert value(samples, "agent_fleet_cycle_errors_total", step="cycle") == crash
    assert value(samples, "agent_fleet_cycle_errors_total", step="timeout") == timeout
    assert value(samples, "agent_fleet_cycle_duration_seconds_count") == 1
    assert value(samples, "agent_fleet_last_cycle_timestamp_seconds") == T0.timestamp()


def test_a_cycle_that_could_not_start_counts_as_a_crash_but_is_no_finished_cycle(
    metrics: FleetMetrics, server: MetricsServer
) -> None:
    finish(metrics, 3.0, at=T0)
    finish(metrics, 0.0, exit_code=None, at=T0 + timedelta(minutes=5))

    samples = scrape(server)
    assert value(samples, "agent_fleet_cycle_errors_total", step="cycle") == 1
    assert value(samples, "agent_fleet_cycle_duration_seconds_count") == 1
    assert value(samples, "agent_fleet_last_cycle_timestamp_seconds") == T0.timestamp()


def test_a_naive_finish_time_is_refused(metrics: FleetMetrics) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        metrics.observe_cycle(1.0, exit_code=0, timed_out=False, finished_at=datetime(2025, 3, 1, 12, 0))


def test_every_step_the_cycle_runs_has_its_own_error_label() -> None:
    # The step names are literals in cycle.py; a new step would otherwise be counted as "other" unnoticed.
    source = (ROOT / "coordinator" / "cycle.py").read_text()
    steps = set(re.findall(r"steps\.(?:run|skip|fail)\(\s*\"(\w+)\"", source))
    assert steps
    assert steps <= set(CYCLE_STEPS)


# --- the endpoint and the report picker ----------------------------------------------------------


def test_serve_stops(metrics: FleetMetrics) -> None:
    served = metrics.serve(port=0, addr="127.0.0.1")
    assert scrape_text(served)
    served.stop()
    assert not served.thread.is_alive()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{served.port}/metrics", timeout=2)


def test_last_report_is_the_last_cycle_report_among_the_lines() -> None:
    first, second = report(), report(verdict=Verdict.DEGRADED, minute=5)
    seen: list[str] = []

    def cycle_output() -> Iterator[str]:  # as the scheduler tees a cycle's stdout: each line passes through
        for line in [
            "agent-fleet coordinator starting\n",
            json.dumps({"event": "cycle.started", "fleet": "f"}) + "\n",
            json.dumps(first) + "\n",
            "{not json\n",
            json.dumps(second) + "\n",
            json.dumps({"event": "schedule.cycle_finished", "exit_code": 0}) + "\n",
        ]:
            seen.append(line)
            yield line

    assert last_report(cycle_output()) == second
    assert len(seen) == 6
    assert last_report(["Traceback (most recent call last):", '{"event": "cycle.started"}']) is None
    assert last_report([]) is None
