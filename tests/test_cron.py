"""Cron schedules (coordinator/cron.py): which are refused and why, the tick arithmetic, the longest interval."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from coordinator.cron import (
    DEFAULT_SCHEDULE,
    interval_around,
    longest_interval,
    missed_ticks,
    next_tick,
    previous_tick,
    validate,
)
from coordinator.values import ValueProblem

EVERY_SECOND = "* * * * * *"
EVERY_2_S = "* * * * * */2"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("0 0 30 2 *", "never fires"),  # croniter: CroniterBadDateError at the first tick
        ("0 0 31 4 *", "never fires"),
        ("0 0 31 2,4 *", "never fires"),
        ("0 0 30 2 * *", "never fires"),
        ("0 0 29 2 *", "fires less than twice in two years"),  # a leap day: the health check would mean nothing
        ("* * * * * * *", "it has 7 fields, not 5"),  # croniter reads a 7th field as a year
        # Seconds first, as Quartz and Spring write them: here every second of minutes 0, 20 and 40.
        ("*/20 * * * * *", "looks written with seconds first, as Quartz and Spring write them, but here seconds come "
         "last (minute hour day-of-month month day-of-week second): it would fire every second of the minutes '*/20'"),
        ("0 * * * * *", "it would fire every second of the minutes '0'"),
        ("0 0 1 1 * 2020", "its second field '2020' is not valid"),
        ("every five minutes", "it has 3 fields"),
        ("@daily", "it has 1 field,"),
        ("", "it has 0 fields"),
        ("60 * * * *", "its minute field '60' is not valid"),
        ("* 24 * * *", "its hour field '24' is not valid"),
        ("* * 0 * *", "its day-of-month field '0' is not valid"),
        ("0 0 1 13 *", "its month field '13' is not valid"),
        ("* * * * 8", "its day-of-week field '8' is not valid"),
        ("*/0 * * * *", "its minute field '*/0' is not valid"),
        ("\x00 * * * *", "a character no cron field has"),
        ("٣ * * * *", "a character no cron field has"),  # an Arabic-Indic digit
    ],
)
def test_a_schedule_that_can_never_work_is_refused_naming_the_field(expr: str, reason: str) -> None:
    with pytest.raises(ValueProblem) as refused:
        validate(expr)
    assert reason in refused.value.reason
    assert refused.value.fix


def test_seconds_written_first_are_refused_with_both_readings_spelled_out() -> None:
    with pytest.raises(ValueProblem) as refused:
        validate("*/20 * * * * *")
    assert refused.value.fix == ("for seconds '*/20' write '* * * * * */20'; to mean every second of those minutes, "
                                 "write the seconds out: '*/20 * * * * 0-59'")
    for written in ("* * * * * */20", "*/20 * * * * 0-59", "* * * * * *"):  # what it suggests, and every second
        assert validate(written) == written


@pytest.mark.parametrize(
    ("expr", "normalised"),
    [
        (DEFAULT_SCHEDULE, "*/5 * * * *"),
        ("  0   9 * *  1-5 ", "0 9 * * 1-5"),
        ("* * * * *\n", "* * * * *"),
        (EVERY_2_S, EVERY_2_S),
        ("0 0 1 1 *", "0 0 1 1 *"),  # yearly: twice within two years
        ("0 0 L 2 *", "0 0 L 2 *"),  # the last day of February, every year
        ("0 0 29 2 MON", "0 0 29 2 MON"),  # day-of-month OR day-of-week: every Monday too
        ("0 0 ? * MON-FRI", "0 0 ? * MON-FRI"),
    ],
)
def test_a_working_schedule_is_kept_with_its_spaces_normalised(expr: str, normalised: str) -> None:
    assert validate(expr) == normalised


def test_validation_is_fast_even_for_a_schedule_that_never_fires() -> None:
    started = time.monotonic()
    for expr in ("0 0 30 2 *", "0 0 31 4 *", "0 0 29 2 *"):
        with pytest.raises(ValueProblem):
            validate(expr)
    validate(EVERY_SECOND)
    validate("0 0 1 1 *")
    assert time.monotonic() - started < 1.0


# --- the tick arithmetic -------------------------------------------------------------------------


def test_next_tick_is_strictly_after_and_previous_strictly_before() -> None:
    assert next_tick("*/5 * * * *", at("2024-05-01T12:03:10")) == at("2024-05-01T12:05:00")
    assert next_tick("*/5 * * * *", at("2024-05-01T12:05:00")) == at("2024-05-01T12:10:00")
    assert next_tick(EVERY_2_S, at("2024-05-01T12:00:00.500")) == at("2024-05-01T12:00:02")
    assert previous_tick("*/5 * * * *", at("2024-05-01T12:05:00")) == at("2024-05-01T12:00:00")


@pytest.mark.parametrize(
    ("expr", "moment", "seconds"),
    [
        ("*/5 * * * *", "2024-05-01T12:03:10", 300),
        ("*/5 * * * *", "2024-05-01T12:05:00", 300),  # on a tick: the slot that starts there
        (EVERY_2_S, "2024-05-01T12:00:01.250", 2),
        (EVERY_SECOND, "2024-05-01T12:00:00", 1),
        ("0 9,17 * * *", "2024-05-01T12:00:00", 8 * 3600),  # uneven schedules: the interval around the time
        ("0 9,17 * * *", "2024-05-01T20:00:00", 16 * 3600),
    ],
)
def test_the_interval_around_a_moment_is_the_gap_between_its_ticks(expr: str, moment: str, seconds: float) -> None:
    assert interval_around(expr, at(moment)) == seconds


def test_missed_ticks_are_those_after_the_start_up_to_the_finish() -> None:
    started = at("2024-05-01T12:00:00.010")

    assert missed_ticks(EVERY_SECOND, started, at("2024-05-01T12:00:00.900")) == []
    assert missed_ticks(EVERY_SECOND, started, at("2024-05-01T12:00:03")) == [
        at("2024-05-01T12:00:01"),
        at("2024-05-01T12:00:02"),
        at("2024-05-01T12:00:03"),
    ]
    assert missed_ticks("*/5 * * * *", at("2024-05-01T12:00:00"), at("2024-05-01T12:04:59")) == []
    assert missed_ticks("*/5 * * * *", at("2024-05-01T12:00:00"), at("2024-05-01T12:07:00")) == [
        at("2024-05-01T12:05:00")
    ]
    assert len(missed_ticks(EVERY_SECOND, started, at("2024-05-02T12:00:00"), limit=51)) == 51


def test_missed_ticks_stop_at_the_limit_for_a_long_stall() -> None:
    start = at("2024-05-01T00:00:00")
    assert missed_ticks(EVERY_SECOND, start, start + timedelta(days=1), limit=3)[-1] == at("2024-05-01T00:00:03")


# --- the longest interval --------------------------------------------------------------------------

DAY = 24 * 3600


@pytest.mark.parametrize(
    ("expr", "seconds"),
    [
        ("*/5 * * * *", 300),
        ("* * * * *", 60),
        (EVERY_SECOND, 1),
        ("* * * * * */30", 30),
        ("0 9,17 * * *", 16 * 3600),
        ("0 9 * * 1-5", 3 * DAY),  # Friday 9:00 to Monday 9:00
        # Friday 17:55 to Monday 9:00; a sample of the next 500 ticks (the old way) saw only a night.
        ("*/5 9-17 * * 1-5", 3 * DAY - (17 * 3600 + 55 * 60) + 9 * 3600),
        ("0 0 31 * *", 61 * DAY),  # 31 May to 31 July
        ("0 0 1 1 *", 366 * DAY),  # across a leap year
        ("0 0 ? * MON", 7 * DAY),
    ],
)
def test_the_longest_interval_is_exact(expr: str, seconds: int) -> None:
    assert longest_interval(expr) == seconds


def test_the_longest_interval_is_quick_for_any_schedule() -> None:
    started = time.monotonic()
    for expr in (EVERY_SECOND, "*/5 9-17 * * 1-5", "0 0 1 1 *", "* * 1-15 * * *"):
        longest_interval(expr)
    assert time.monotonic() - started < 2.0
