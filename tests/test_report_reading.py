"""report.py owns the `cycle.report` line both ways: what `to_dict` writes, its readers read back, forgivingly,
and each field is printed one way wherever a person reads it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from coordinator.metrics import FleetMetrics
from coordinator.page import render_page
from coordinator.report import (
    Advice,
    CycleReport,
    HealthReport,
    HealthStatus,
    StepError,
    advice_text,
    error_text,
    health_text,
    parse_reports,
    read_advice,
    read_errors,
    read_health,
    render_text,
    to_dict,
)
from coordinator.status import render_status, status_json

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
    assert "<html" in render_page([report], now=T0, refresh_s=60)


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
    assert "(review_queue 14 &gt; 10)" in render_page([read], now=T0, refresh_s=60)


def test_damaged_advice_and_errors_read_as_what_they_say() -> None:
    assert read_advice([None, "x", {"action": "", "role": "r", "value": "many"}]) == [
        Advice(role="r", signal="?", value=0.0, threshold=0.0, action="r")]
    assert read_errors(["x", {"step": 5, "message": 7}]) == [StepError("?", ""), StepError("?", "7")]
