"""The heartbeat and the container's health check: the verdict as a table, the file for real, the check as a process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from coordinator.healthcheck import UNHEALTHY_TIMEOUTS_IN_A_ROW, judge_heartbeat
from coordinator.heartbeat import Heartbeat, HeartbeatError, read_heartbeat, write_heartbeat

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
EVERY_5_MIN = "*/5 * * * *"
EVERY_2_S = "* * * * * */2"


@pytest.mark.parametrize(
    ("schedule", "age", "healthy"),
    [
        (EVERY_5_MIN, timedelta(0), True),
        (EVERY_5_MIN, timedelta(minutes=9), True),
        (EVERY_5_MIN, timedelta(minutes=10), True),  # exactly two intervals still counts
        (EVERY_5_MIN, timedelta(minutes=10, seconds=1), False),
        (EVERY_5_MIN, timedelta(hours=3), False),
        (EVERY_5_MIN, -timedelta(minutes=1), True),  # a clock a little ahead is not a stuck scheduler
        (EVERY_2_S, timedelta(seconds=3), True),
        (EVERY_2_S, timedelta(seconds=5), False),
        ("0 * * * *", timedelta(minutes=90), True),
        ("0 * * * *", timedelta(minutes=121), False),
    ],
)
def test_healthy_iff_a_cycle_finished_within_two_schedule_intervals(
    schedule: str, age: timedelta, healthy: bool
) -> None:
    verdict = judge_heartbeat(Heartbeat(finished_at=NOW - age, exit_code=0), schedule=schedule, now=NOW)

    assert verdict.healthy is healthy
    assert verdict.message.startswith("healthy" if healthy else "unhealthy")


def test_no_heartbeat_yet_is_unhealthy() -> None:
    verdict = judge_heartbeat(None, schedule=EVERY_5_MIN, now=NOW)

    assert verdict.healthy is False
    assert "no cycle has finished yet" in verdict.message


def test_a_failed_cycle_still_proves_the_scheduler_alive_and_the_message_says_how_it_ended() -> None:
    verdict = judge_heartbeat(
        Heartbeat(finished_at=NOW - timedelta(minutes=1), exit_code=1), schedule=EVERY_5_MIN, now=NOW
    )
    stale = judge_heartbeat(
        Heartbeat(finished_at=NOW - timedelta(hours=1), exit_code=-9), schedule=EVERY_5_MIN, now=NOW
    )

    assert verdict.healthy is True
    assert "exit code 1" in verdict.message
    assert stale.healthy is False
    assert "600s" in stale.message and "2024-05-01T11:00:00Z" in stale.message and "exit code -9" in stale.message


@pytest.mark.parametrize(
    ("timed_out", "in_a_row", "healthy"),
    [
        (False, 0, True),
        (True, 1, True),  # one cycle stopped at its limit can be bad luck
        (True, UNHEALTHY_TIMEOUTS_IN_A_ROW, False),  # every cycle killed: the scheduler is alive, nothing gets done
        (True, 7, False),
        (False, 0, True),  # the next cycle that finishes by itself makes it healthy again
    ],
)
def test_unhealthy_when_the_last_cycles_in_a_row_all_timed_out(timed_out: bool, in_a_row: int, healthy: bool) -> None:
    beat = Heartbeat(
        finished_at=NOW - timedelta(minutes=1), exit_code=-15, timed_out=timed_out, timeouts_in_a_row=in_a_row
    )
    verdict = judge_heartbeat(beat, schedule=EVERY_5_MIN, now=NOW)

    assert verdict.healthy is healthy
    if not healthy:
        assert f"the last {in_a_row} cycles in a row were stopped at their time limit" in verdict.message
    elif timed_out:
        assert "was stopped at its time limit" in verdict.message


def test_write_then_read_round_trips_and_creates_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "heartbeat.json"
    finished = datetime(2024, 5, 1, 11, 58, 30, 123456, tzinfo=UTC)

    write_heartbeat(path, finished_at=finished, exit_code=-15)
    write_heartbeat(path, finished_at=finished + timedelta(minutes=5), exit_code=-15, timed_out=True,
                    timeouts_in_a_row=3)

    assert read_heartbeat(path) == Heartbeat(
        finished_at=finished + timedelta(minutes=5), exit_code=-15, timed_out=True, timeouts_in_a_row=3
    )
    assert sorted(p.name for p in path.parent.iterdir()) == ["heartbeat.json"]  # no temporary file left behind


def test_a_missing_file_means_no_cycle_has_finished(tmp_path: Path) -> None:
    assert read_heartbeat(tmp_path / "heartbeat.json") is None


def test_a_heartbeat_written_before_timeouts_were_recorded_reads_as_none_timed_out(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.json"
    path.write_text('{"finished_at": "2024-05-01T12:00:00+00:00", "exit_code": 0}')

    assert read_heartbeat(path) == Heartbeat(finished_at=NOW, exit_code=0, timed_out=False, timeouts_in_a_row=0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{not json",
        "[]",
        '{"exit_code": 0}',
        '{"finished_at": "2024-05-01T12:00:00", "exit_code": 0}',
        '{"finished_at": "2024-05-01T12:00:00+00:00", "exit_code": 0, "timeouts_in_a_row": -1}',
        '{"finished_at": "2024-05-01T12:00:00+00:00", "exit_code": 0, "timed_out": "yes"}',
    ],
)
def test_a_file_that_is_not_a_heartbeat_is_an_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "heartbeat.json"
    path.write_text(text)

    with pytest.raises(HeartbeatError, match=str(path)):
        read_heartbeat(path)


def test_a_reader_never_sees_half_a_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.json"
    write_heartbeat(path, finished_at=NOW, exit_code=0)
    done = threading.Event()

    def keep_writing() -> None:
        n = 0
        while not done.is_set():
            n += 1
            write_heartbeat(path, finished_at=NOW + timedelta(seconds=n), exit_code=n % 3)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        beats = [read_heartbeat(path) for _ in range(3000)]
    finally:
        done.set()
        writer.join()

    assert all(isinstance(beat, Heartbeat) for beat in beats)
    assert len({beat.finished_at for beat in beats if beat}) > 1  # the writer really was writing meanwhile


def _healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The health check as Docker runs it: a fresh process, with nothing but the given settings."""
    code = "import os, sys; from coordinator.healthcheck import healthcheck_main; " \
        "sys.exit(healthcheck_main(os.environ))"
    return subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_healthcheck_exit_codes(tmp_path: Path) -> None:
    path = tmp_path / "hb" / "heartbeat.json"
    env = {"COORDINATOR_HEARTBEAT_FILE": str(path), "COORDINATOR_SCHEDULE": EVERY_5_MIN}

    before_any_cycle = _healthcheck(env)
    write_heartbeat(path, finished_at=datetime.now(UTC) - timedelta(minutes=3), exit_code=1)
    fresh = _healthcheck(env)
    write_heartbeat(path, finished_at=datetime.now(UTC) - timedelta(minutes=11), exit_code=0)
    stale = _healthcheck(env)

    assert (before_any_cycle.returncode, before_any_cycle.stdout) == (1, "unhealthy: no cycle has finished yet\n")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert fresh.stdout.startswith("healthy:") and fresh.stdout.count("\n") == 1
    assert stale.returncode == 1
    assert stale.stdout.startswith("unhealthy: no cycle has finished for")

    write_heartbeat(path, finished_at=datetime.now(UTC), exit_code=-15, timed_out=True, timeouts_in_a_row=2)
    timing_out = _healthcheck(env)
    assert timing_out.returncode == 1
    assert timing_out.stdout.startswith("unhealthy: the last 2 cycles in a row were stopped at their time limit")


def test_healthcheck_runs_with_no_settings_at_all(tmp_path: Path) -> None:
    # The default heartbeat file is outside tmp_path, so only the verdict's wording is checked.
    result = _healthcheck({})

    assert result.returncode in (0, 1)
    assert result.stdout.startswith(("healthy:", "unhealthy:"))
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"COORDINATOR_SCHEDULE": "every five minutes"}, "COORDINATOR_SCHEDULE='every five minutes' is not a cron"),
        ({}, "is not a heartbeat"),
    ],
)
def test_healthcheck_is_unhealthy_with_a_clear_line_on_bad_settings_or_file(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    path = tmp_path / "heartbeat.json"
    path.write_text("garbage")

    result = _healthcheck({"COORDINATOR_HEARTBEAT_FILE": str(path), **env})

    assert result.returncode == 1
    assert result.stdout.startswith("unhealthy: ") and expected in result.stdout
    assert result.stderr == ""
