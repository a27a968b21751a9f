"""The reports the scheduler has seen: the last day's, kept in memory for the status page and the judgments.

Fed by each cycle's report as the scheduler reads it from the cycle's output, and at the scheduler's
start with the reports `coordinator status` would read back from the coordinator's log, so a restarted
scheduler shows the day it has not seen itself. A report read twice (from the log, then from the cycle)
is kept once: its cycle's start time is its key. Plans' reports are not cycles and are left out.
Thread-safe: the scheduler's thread adds, the HTTP server's thread reads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime, timedelta

from coordinator.report import Report, report_time

DAY = timedelta(days=1)
# A day of one-minute cycles; a faster schedule shows the last this many.
MAX_REPORTS = 1440


class ReportHistory:
    def __init__(self, *, span: timedelta = DAY, max_reports: int = MAX_REPORTS) -> None:
        self._span = span
        self._max_reports = max_reports
        self._reports: dict[datetime, Report] = {}
        self._lock = threading.Lock()

    def add(self, reports: Iterable[Report]) -> None:
        """Take in reports in any order; those without a readable start time and plans' are ignored."""
        with self._lock:
            for report in reports:
                moment = report_time(report)
                if moment is not None and report.get("dry_run") is not True:
                    self._reports[moment] = report
            if len(self._reports) > self._max_reports:
                for moment in sorted(self._reports)[: len(self._reports) - self._max_reports]:
                    del self._reports[moment]

    def held(self) -> list[Report]:
        """Every report held, oldest first, however old."""
        with self._lock:
            return [self._reports[moment] for moment in sorted(self._reports)]

    def last_day(self, now: datetime) -> list[Report]:
        """The reports of cycles that started within the span before `now`, oldest first."""
        with self._lock:
            moments = sorted(moment for moment in self._reports if now - self._span <= moment <= now)
            for moment in [moment for moment in self._reports if moment < now - self._span]:
                del self._reports[moment]
            return [self._reports[moment] for moment in moments]
