"""Cron schedules, in one place: what a valid schedule is, when it ticks, and how long its gaps are.

The runtime's COORDINATOR_SCHEDULE (`coordinator.settings`), the stack's `agent-fleet:schedule`
(`deploy.stack_config`), the scheduler (`coordinator.schedule`) and the health check
(`coordinator.healthcheck`) all use these functions. Times are UTC.

A schedule is 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds last. It is
refused up front when it would never work: a wrong number of fields, a field croniter cannot read, a
day that never comes (`0 0 30 2 *`), or ticks so rare (less than twice in two years, like a leap day)
that the health check, which waits two intervals, would mean nothing. Without this, `schedule` would
crash on its first tick with CroniterBadDateError, and the container would restart forever. Also refused: seconds
written first, as Quartz and Spring write them (`*/20 * * * * *`, which here fires every second of three minutes
an hour).

Pure: no clock is read here; every function takes the moment it is about.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from croniter import CroniterBadDateError, croniter

from coordinator.redact import shown
from coordinator.values import ValueProblem

DEFAULT_SCHEDULE = "*/5 * * * *"
FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week", "second")
# Validation looks at the ticks after this fixed moment, so a schedule is valid or not whatever the
# date, and `longest_interval` gives the same answer on every `pulumi preview`.
REFERENCE = datetime(2024, 1, 1, tzinfo=UTC)
# A schedule must tick twice within this horizon: a yearly schedule does, a leap-day one does not.
# Checking two ticks is fast, whatever the schedule (croniter gives up on impossible dates quickly).
HORIZON = timedelta(days=2 * 366)
# `longest_interval` looks at the firing days over four years and a day: a whole leap-year cycle.
_DAY_SPAN = timedelta(days=4 * 365 + 2)
FIX = "use 5 fields like '*/5 * * * *' (minute hour day-of-month month day-of-week), or 6 with seconds last"


def fields(expr: str) -> list[str]:
    return expr.split()


def validate(expr: str) -> str:
    """The expression with its whitespace normalised, or ValueProblem naming what is wrong and the field."""
    parts = fields(expr)
    if len(parts) not in (5, 6):
        count = f"{len(parts)} field{'s' if len(parts) != 1 else ''}"
        raise ValueProblem(f"is not a cron expression: it has {count}, not 5 (or 6 with seconds last)", FIX)
    if not all(part.isascii() and part.isprintable() for part in parts):
        raise ValueProblem("is not a cron expression: it holds a character no cron field has", FIX)
    text = " ".join(parts)
    if not croniter.is_valid(text):
        for index, part in enumerate(parts):
            alone = ["*"] * len(parts)
            alone[index] = part
            if not croniter.is_valid(" ".join(alone)):
                raise ValueProblem(
                    f"is not a cron expression: its {FIELD_NAMES[index]} field {shown(part)} is not valid", FIX
                )
        raise ValueProblem("is not a cron expression croniter can read", FIX)
    try:
        ticks = croniter(text, REFERENCE)
        first: datetime = ticks.get_next(datetime)
        second: datetime = ticks.get_next(datetime)
    except CroniterBadDateError:
        raise ValueProblem(
            "never fires: no date has that day-of-month in those months (like 30 February)",
            "choose a day that every chosen month has, like '0 0 28 2 *' or '0 0 L 2 *' (the last day)",
        ) from None
    if second - REFERENCE > HORIZON:
        raise ValueProblem(
            f"fires less than twice in two years (e.g. {first:%Y-%m-%d}, then {second:%Y-%m-%d})",
            "schedule a cycle at least once a year, like '0 0 1 * *'",
        )
    if len(parts) == 6 and parts[5] == "*" and parts[0] != "*":
        # Quartz and Spring put seconds first: their '*/20 * * * * *' is every 20 seconds, ours every second of
        # minutes 0, 20 and 40 (a cycle a second, sixty in a row). Refused, naming both readings.
        seconds_last = " ".join([*parts[1:], parts[0]])
        raise ValueProblem(
            "looks written with seconds first, as Quartz and Spring write them, but here seconds come last (minute "
            f"hour day-of-month month day-of-week second): it would fire every second of the minutes {shown(parts[0])}",
            f"for seconds {shown(parts[0])} write {shown(seconds_last)}; to mean every second of those minutes, "
            f"write the seconds out: {shown(' '.join([*parts[:5], '0-59']))}",
        )
    return text


def next_tick(expr: str, after: datetime) -> datetime:
    """The first tick of `expr` strictly after `after` (timezone-aware)."""
    tick: datetime = croniter(expr, after).get_next(datetime)
    return tick


def previous_tick(expr: str, before: datetime) -> datetime:
    """The last tick of `expr` strictly before `before`."""
    tick: datetime = croniter(expr, before).get_prev(datetime)
    return tick


def interval_around(expr: str, at: datetime) -> float:
    """Seconds between the ticks around `at`: the last tick at or before it and the first after it."""
    following = next_tick(expr, at)
    return (following - previous_tick(expr, following)).total_seconds()


def missed_ticks(expr: str, since: datetime, until: datetime, *, limit: int | None = None) -> list[datetime]:
    """The ticks in (since, until]: the ones that passed while a cycle started at `since` ran.

    `limit` caps the list, since a long stall under a seconds schedule would otherwise list thousands.
    """
    ticks: list[datetime] = []
    iterator = croniter(expr, since)
    while limit is None or len(ticks) < limit:
        tick: datetime = iterator.get_next(datetime)
        if tick > until:
            break
        ticks.append(tick)
    return ticks


def _values(field: list[int | str], size: int) -> list[int]:
    return list(range(size)) if field == ["*"] else sorted(int(value) for value in field)


def longest_interval(expr: str) -> float:
    """The longest gap in seconds between two ticks of a valid `expr`, exactly, from a fixed date.

    Cron's times of day (second, minute, hour) are the same on every day it fires, so the longest gap is
    either the longest between two times of one day, or the one from the last time of a firing day to the
    first time of the next firing day. Only the firing days need walking: none at all when every day fires,
    else four years of them. Walking the ticks themselves would take a million steps for a seconds schedule,
    and a sample (as before) missed the weekend of '*/5 9-17 * * 1-5'.
    """
    parts = fields(validate(expr))
    expanded = croniter(" ".join(parts), REFERENCE).expanded
    seconds = _values(expanded[5], 60) if len(parts) == 6 else [0]
    times = sorted(
        hour * 3600 + minute * 60 + second
        for hour in _values(expanded[1], 24)
        for minute in _values(expanded[0], 60)
        for second in seconds
    )
    within_a_day = max((later - earlier for earlier, later in pairwise(times)), default=0)
    if all(part in ("*", "?") for part in parts[2:5]):
        day_gaps = [86400.0]
    else:
        day_ticks = croniter(f"0 0 {' '.join(parts[2:5])}", REFERENCE - timedelta(seconds=1))
        days: list[datetime] = [day_ticks.get_next(datetime)]
        while days[-1] - REFERENCE <= _DAY_SPAN:
            days.append(day_ticks.get_next(datetime))
        day_gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(days)]
    across_days = max(day_gaps) - times[-1] + times[0]
    return float(max(within_a_day, across_days))
