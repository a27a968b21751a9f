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
    CycleReport,
    HealthReport,
    HealthStatus,
    health_text,
    parse_reports,
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
