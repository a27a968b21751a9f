"""report.py owns the `cycle.report` line both ways: what `to_dict` writes, its readers read back, forgivingly,
and each field is printed one way wherever a person reads it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.metrics import FleetMetrics
from coordinator.page import render_page
from coordinator.report import (
    Advice,
    CycleReport,
    HealthReport,
    HealthStatus,
    MergeOutcome,
    MergeReport,
    PullOutcome,
    RoleTally,
    SlotWait,
    SpawnBudget,
    StepError,
    StepResult,
    StepStatus,
    UnknownWord,
    UnprovenAgent,
    Verdict,
    advice_text,
    error_text,
    health_text,
    parse_reports,
    read_advice,
    read_errors,
    read_health,
    read_report,
    render_text,
    to_dict,
    word_text,
)
from coordinator.status import render_status, status_json
from tests.fleet_day import INTERVAL, cycle_report, scaled_counts

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

HEALTH = [
    (HealthReport(HealthStatus.UP, code=200, latency_ms=38.2, attempts=1), "up, HTTP 200, 38 ms"),
    (HealthReport(HealthStatus.DOWN, code=503, latency_ms=12.0, error="unexpected status 503", attempts=3),
     "down, HTTP 503"),
    (HealthReport(HealthStatus.DOWN, error="timeout", attempts=3), "down, timeout"),
    (HealthReport(HealthStatus.SKIPPED), "skipped"),
]


def written(report: CycleReport) -> dict[str, Any]:
    """The report as a reader finds it: the JSON line `to_dict` makes, parsed back."""
    return parse_reports([json.dumps(to_dict(report))])[0]


@pytest.mark.parametrize(("health", "shown"), HEALTH)
def test_health_reads_back_as_written_and_prints_the_same_in_the_report_and_in_status(
        health: HealthReport, shown: str) -> None:
    report = CycleReport(fleet="f", started_at=T0, health=health)
    assert read_health(written(report)["health"]) == health
    assert health_text(health) == shown
    assert f"health: {shown}\n" in render_text(report)
    assert f"  {shown}  " in render_status([written(report)])


DAMAGED: list[dict[str, Any]] = [
    {"roles": ["not", "a", "mapping"], "spawned": "three", "errors": ["a string", 5], "advice": [None, "x"]},
    {"roles": {"api_builder": {"failed": "one", "waiting": 3}}, "merge": {"merged": 7, "pulls": "none"},
     "health": {"status": "up", "code": "200", "latency_ms": "fast"}, "verdict_reasons": "one reason"},
    {"health": {"status": ["up"]}, "advice": [{"action": "raise", "value": "many", "threshold": None}],
     "errors": [{"step": "merge"}], "merge": []},
    {"health": "down", "roles": {"x": None}, "verdict": None},
]


@pytest.mark.parametrize("fields", DAMAGED)
def test_every_reader_takes_a_damaged_report_without_raising(fields: dict[str, Any]) -> None:
    """A report from another version of the coordinator, or a damaged line: each reader shows what it can."""
    report = {"event": "cycle.report", "fleet": "f", "started_at": "2026-03-02T09:00:00Z", **fields}
    assert render_status([report]).startswith("fleet f: ")
    assert status_json([report], source="c")["reports"] == [report]
    assert FleetMetrics().observe_report(report) is True
    assert "<html" in render_page([read_report(report)], now=T0, refresh_s=60)


def test_an_unknown_or_missing_health_status_reads_as_unknown() -> None:
    assert read_health({"status": "sideways", "code": 200}) is None
    assert read_health(None) is None
    assert health_text(None) == "?"
    assert read_health({"status": "up", "code": True, "latency_ms": float("nan"), "error": ""}) == HealthReport(
        HealthStatus.UP)


def test_advice_and_errors_read_back_as_written_and_print_the_same_in_the_report_status_and_the_page() -> None:
    advice = Advice(role="code_reviewer", signal="review_queue", value=14, threshold=10,
                    action="raise the count of code_reviewer: 14 pull requests await review")
    error = StepError("merge", "GitHub answered 502")
    report = CycleReport(fleet="f", started_at=T0, advice=[advice], errors=[error])
    read = written(report)
    assert read_advice(read["advice"]) == [advice] and read_errors(read["errors"]) == [error]
    shown = "raise the count of code_reviewer: 14 pull requests await review (review_queue 14 > 10)"
    assert advice_text(advice) == shown and error_text(error) == "merge: GitHub answered 502"
    for text in (render_text(report), render_status([read])):
        assert f"  - {shown}\n" in text and "  merge: GitHub answered 502\n" in text
    assert "(review_queue 14 &gt; 10)" in render_page([read_report(read)], now=T0, refresh_s=60)


def test_damaged_advice_and_errors_read_as_what_they_say() -> None:
    assert read_advice([None, "x", {"action": "", "role": "r", "value": "many"}]) == [
        Advice(role="r", signal="?", value=0.0, threshold=0.0, action="r")]
    assert read_errors(["x", {"step": 5, "message": 7}]) == [StepError("?", ""), StepError("?", "7")]


def test_a_day_of_reports_reads_back_to_the_reports_the_cycles_wrote() -> None:
    counts = scaled_counts(38)
    reports = [cycle_report(index, T0 + INTERVAL * index, counts, fleet="f", merge_failing=index % 50 == 49)
               for index in range(0, 288, 7)]
    assert any(report.roles["documentation_engineer"].idle_exits for report in reports)
    for report in reports:
        assert read_report(written(report)) == report


_COUNTS = st.integers(min_value=0, max_value=10**6)
_NUMBERS = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
_TIMES = st.datetimes(timezones=st.just(UTC))
_WORDS = st.text(max_size=12)


def _words_of(known: type[StrEnum]) -> st.SearchStrategy[Any]:
    return st.sampled_from(list(known))


_TALLIES = st.builds(
    RoleTally, desired=_COUNTS, running=_COUNTS, mode=_WORDS, spawned=_COUNTS, failed=_COUNTS,
    waiting=st.lists(st.builds(SlotWait, slot=_COUNTS, until=_TIMES, crashes=_COUNTS), max_size=2),
    deferred=_COUNTS, held_back=_COUNTS, idle_exits=_COUNTS, filled_by_other_cycle=_COUNTS,
    unproven=st.lists(st.builds(UnprovenAgent, slot=_COUNTS, crashes=_COUNTS), max_size=2))
_REPORTS = st.builds(
    CycleReport, fleet=_WORDS, started_at=_TIMES, duration_s=_NUMBERS,
    roles=st.dictionaries(_WORDS, _TALLIES, max_size=3),
    merge=st.builds(MergeReport, status=_words_of(StepStatus),
                    pulls=st.lists(st.builds(PullOutcome, number=_COUNTS, outcome=_words_of(MergeOutcome),
                                             reason=_WORDS), max_size=3),
                    open=_COUNTS, review_queue=_COUNTS, conflicting=_COUNTS, stopped=st.none() | _WORDS,
                    api_calls=_COUNTS, rate_limit_remaining=st.none() | _COUNTS, backlog=st.none() | _COUNTS),
    health=st.builds(HealthReport, status=_words_of(HealthStatus), code=st.none() | st.integers(100, 599),
                     latency_ms=st.none() | _NUMBERS, error=st.none() | st.text(min_size=1, max_size=12),
                     attempts=_COUNTS),
    errors=st.lists(st.builds(StepError, step=_WORDS, message=_WORDS), max_size=2),
    steps=st.dictionaries(_WORDS, st.builds(StepResult, status=_words_of(StepStatus), detail=_WORDS,
                                            duration_s=_NUMBERS), max_size=3),
    budget=st.none() | st.builds(SpawnBudget, limit=_COUNTS, used=_COUNTS, remaining=_COUNTS),
    verdict=_words_of(Verdict), verdict_reasons=st.lists(_WORDS, max_size=2),
    advice=st.lists(st.builds(Advice, role=_WORDS, signal=_WORDS, value=_NUMBERS, threshold=_NUMBERS,
                              action=st.text(min_size=1, max_size=12)), max_size=2),
    unreadable=st.lists(_WORDS, max_size=2), squatters=st.lists(_WORDS, max_size=2),
    lost_nodes=st.lists(_WORDS, max_size=2), shared_accounts=st.lists(_WORDS, max_size=2), dry_run=st.booleans())


@settings(max_examples=60, deadline=None)
@given(_REPORTS)
def test_any_report_the_code_can_write_reads_back_equal(report: CycleReport) -> None:
    assert read_report(written(report)) == report


def test_words_this_version_does_not_know_are_kept_and_printed_as_written() -> None:
    read = read_report({"event": "cycle.report", "fleet": "f", "started_at": "2026-03-02T09:00:00Z",
                        "verdict": "wobbly", "health": {"status": "sideways", "code": 200},
                        "steps": {"merge": {"status": "postponed"}},
                        "merge": {"status": "ok", "pulls": [{"number": 7, "outcome": "rebased", "reason": "r"}]}})
    assert read.verdict == UnknownWord("wobbly") and isinstance(read.verdict, UnknownWord)
    assert read.steps["merge"].status == "postponed" and isinstance(read.steps["merge"].status, UnknownWord)
    assert read.merge.status is StepStatus.OK and read.merge.pulls[0].outcome == "rebased"
    assert health_text(read.health) == "sideways, HTTP 200"
    text = render_text(read)
    assert "verdict of this cycle: wobbly\n" in text and "  #7: rebased (r)\n" in text
    missing = read_report({})
    assert missing.verdict == "" and word_text(missing.verdict) == "?" and health_text(missing.health) == "?"
    assert missing.started_at is None and missing.fleet == "" and missing.roles == {}


@pytest.mark.parametrize("fields", DAMAGED)
def test_the_typed_reader_takes_a_damaged_report_without_raising(fields: dict[str, Any]) -> None:
    report = read_report({"event": "cycle.report", "fleet": "f", "started_at": "2026-03-02T09:00:00Z", **fields})
    assert report.fleet == "f" and report.started_at == T0
    render_text(report)


@pytest.mark.parametrize("value", [None, 5, "text", [], {"roles": {"r": {"waiting": [{"until": 5}], "unproven": [7]}},
                                                          "steps": {"merge": None}, "budget": [], "duration_s": -1}])
def test_the_typed_reader_takes_anything(value: object) -> None:
    report = read_report(value)
    assert report.duration_s == 0.0
    render_text(report)
