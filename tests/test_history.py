"""The reports the scheduler keeps for its page: the last day's, each cycle once, no plan's, bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from coordinator.history import ReportHistory
from coordinator.report import Verdict, read_report

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def report(minutes: int, **fields: Any) -> dict[str, Any]:
    return {"event": "cycle.report", "started_at": (T0 + timedelta(minutes=minutes)).isoformat(), **fields}


def test_the_last_day_oldest_first_whatever_order_they_came_in() -> None:
    history = ReportHistory()
    history.add([report(10), report(-2000), report(0)])
    history.add([report(5)])
    now = T0 + timedelta(minutes=10)
    assert [r["started_at"] for r in history.last_day(now)] == [report(m)["started_at"] for m in (0, 5, 10)]
    assert len(history.held()) == 3  # what is older than a day is let go once seen


def test_a_cycle_seen_twice_is_kept_once_the_later_copy_winning() -> None:
    history = ReportHistory()
    history.add([report(0, verdict="healthy")])
    history.add([report(0, verdict="degraded")])
    assert [r["verdict"] for r in history.held()] == ["degraded"]


def test_plans_and_reports_without_a_readable_time_are_left_out() -> None:
    history = ReportHistory()
    history.add([report(0, dry_run=True), {"event": "cycle.report", "started_at": "yesterday"},
                 {"event": "cycle.report"}, {"event": "cycle.report", "started_at": "2026-03-01T12:00:00"}])
    assert history.held() == []


def test_at_most_max_reports_the_newest_kept() -> None:
    history = ReportHistory(max_reports=3)
    history.add([report(minute) for minute in range(10)])
    assert [r["started_at"] for r in history.held()] == [report(m)["started_at"] for m in (7, 8, 9)]


def test_each_report_is_held_as_written_and_read() -> None:
    history = ReportHistory()
    history.add([report(0, verdict="wobbly", fleet="f"), report(5, verdict="healthy")])
    now = T0 + timedelta(minutes=5)
    assert [r.verdict for r in history.last_day_typed(now)] == ["wobbly", Verdict.HEALTHY]
    assert history.held_typed() == [read_report(r) for r in history.held()] == history.last_day_typed(now)
    assert history.held_typed()[0].started_at == T0 and history.held_typed()[0].fleet == "f"
