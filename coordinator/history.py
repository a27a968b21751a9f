"""The reports the scheduler has seen: the last day's, kept in memory for the status page and the judgments.

Fed by each cycle's report as the scheduler reads it from the cycle's output, and at the scheduler's
start with the reports `coordinator status` would read back from the coordinator's log, so a restarted
scheduler shows the day it has not seen itself. A report read twice (from the log, then from the cycle)
is kept once: its cycle's start time is its key. Plans' reports are not cycles and are left out.
Each report is read to the typed report once, as it is added (the page and the judgments read the typed
one on every request and scrape); the report as written is kept beside it for /reports.json.
Thread-safe: the scheduler's thread adds, the HTTP server's thread reads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime, timedelta

from coordinator.report import CycleReport, Report, read_report

DAY = timedelta(days=1)
# A day of one-minute cycles; a faster schedule shows the last this many.
MAX_REPORTS = 1440


class ReportHistory:
    def __init__(self, *, span: timedelta = DAY, max_reports: int = MAX_REPORTS) -> None:
        self._span = span
        self._max_reports = max_reports
        self._reports: dict[datetime, tuple[Report, CycleReport]] = {}
        self._lock = threading.Lock()

    def add(self, reports: Iterable[Report]) -> None:
        """Take in reports in any order; those without a readable start time and plans' are ignored."""
        self.add_read((report, read_report(report)) for report in reports)

    def add_read(self, reports: Iterable[tuple[Report, CycleReport]]) -> None:
        """`add` for reports their caller has read already (each as written, and read back)."""
        with self._lock:
            for report, typed in reports:
                if typed.started_at is not None and not typed.dry_run:
                    self._reports[typed.started_at] = (report, typed)
            if len(self._reports) > self._max_reports:
                for moment in sorted(self._reports)[: len(self._reports) - self._max_reports]:
                    del self._reports[moment]

    def held(self) -> list[Report]:
        """Every report held as written, oldest first, however old."""
        return [raw for raw, _ in self._held()]

    def held_typed(self) -> list[CycleReport]:
        """Every report held, read, oldest first, however old."""
        return [typed for _, typed in self._held()]

    def last_day(self, now: datetime) -> list[Report]:
        """The reports as written of cycles that started within the span before `now`, oldest first."""
        return [raw for raw, _ in self._last_day(now)]

    def last_day_typed(self, now: datetime) -> list[CycleReport]:
        """The reports, read, of cycles that started within the span before `now`, oldest first."""
        return [typed for _, typed in self._last_day(now)]

    def _held(self) -> list[tuple[Report, CycleReport]]:
        with self._lock:
            return [self._reports[moment] for moment in sorted(self._reports)]

    def _last_day(self, now: datetime) -> list[tuple[Report, CycleReport]]:
        with self._lock:
            moments = sorted(moment for moment in self._reports if now - self._span <= moment <= now)
            for moment in [moment for moment in self._reports if moment < now - self._span]:
                del self._reports[moment]
            return [self._reports[moment] for moment in moments]
