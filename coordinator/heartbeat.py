"""The heartbeat: a small file the scheduler rewrites after each finished cycle, and the health check that reads it.

The container's health check (`healthcheck_main`, every 30 s) answers one question: is the
scheduler still getting cycles done? It is healthy iff a cycle finished within two schedule
intervals and the last cycles did not all run into their time limit. A cycle's exit code does not
matter otherwise: a cycle that fails still proves the scheduler is alive, and its failure is in the
cycle's own report. What the health check catches is a scheduler that is stuck or gone, and cycles
that never end by themselves (a server that trickles bytes holds each one until it is killed), which
would otherwise look alive because the scheduler dutifully records every kill.

The verdict (`judge_heartbeat`) is a pure function of the heartbeat, the schedule and the time;
reading the file and the clock happens in `healthcheck_main`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from coordinator.cron import interval_around
from coordinator.exit_codes import EXIT_FAILED, EXIT_OK
from coordinator.files import replace_file
from coordinator.redact import scrub
from coordinator.settings import ConfigError, known_secrets, load_settings

# Unhealthy when this many cycles in a row were stopped at their time limit: one can be bad luck (a slow
# GitHub), two in a row mean every cycle is being killed and nothing gets done.
UNHEALTHY_TIMEOUTS_IN_A_ROW = 2


class HeartbeatError(Exception):
    """The heartbeat file exists but cannot be read or understood; the message names the file."""


@dataclass(frozen=True)
class Heartbeat:
    finished_at: datetime  # when the last cycle finished, timezone-aware
    exit_code: int  # its exit code; negative: killed by that signal (as subprocess reports it)
    timed_out: bool = False  # it was stopped at its time limit
    timeouts_in_a_row: int = 0  # how many cycles up to and including it were stopped at their time limit


@dataclass(frozen=True)
class HeartbeatVerdict:
    healthy: bool
    message: str


def write_heartbeat(
    path: Path, *, finished_at: datetime, exit_code: int, timed_out: bool = False, timeouts_in_a_row: int = 0
) -> None:
    """Replace the heartbeat file in one step, so the health check never reads half a file."""
    body = json.dumps({
        "finished_at": finished_at.astimezone(UTC).isoformat(),
        "exit_code": exit_code,
        "timed_out": timed_out,
        "timeouts_in_a_row": timeouts_in_a_row,
    })
    replace_file(path, body + "\n")


def read_heartbeat(path: Path) -> Heartbeat | None:
    """The last heartbeat, or None when no cycle has finished yet (no file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HeartbeatError(f"heartbeat file {path} cannot be read ({exc.strerror})") from None
    try:
        data = json.loads(text)
        finished_at = datetime.fromisoformat(data["finished_at"])
        exit_code = data["exit_code"]
        # Absent from a heartbeat written before they existed: no timeout known.
        timed_out = data.get("timed_out", False)
        in_a_row = data.get("timeouts_in_a_row", 0)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise HeartbeatError(f"heartbeat file {path} is not a heartbeat ({exc!r}): {text[:200]!r}") from None
    if (
        finished_at.tzinfo is None
        or isinstance(exit_code, bool) or not isinstance(exit_code, int)
        or not isinstance(timed_out, bool)
        or isinstance(in_a_row, bool) or not isinstance(in_a_row, int) or in_a_row < 0
    ):
        raise HeartbeatError(f"heartbeat file {path} is not a heartbeat: {text[:200]!r}")
    return Heartbeat(finished_at=finished_at, exit_code=exit_code, timed_out=timed_out, timeouts_in_a_row=in_a_row)


def judge_heartbeat(heartbeat: Heartbeat | None, *, schedule: str, now: datetime) -> HeartbeatVerdict:
    """Healthy iff a cycle finished within two schedule intervals before `now`, and the last
    UNHEALTHY_TIMEOUTS_IN_A_ROW cycles were not all stopped at their time limit.

    The interval is the one around the last finished cycle: the next cycle was due at the
    following tick and, with the default time limit, had one interval to finish, so silence
    for two intervals means the scheduler is stuck or gone.
    """
    if heartbeat is None:
        return HeartbeatVerdict(False, "unhealthy: no cycle has finished yet")
    limit_s = 2 * interval_around(schedule, heartbeat.finished_at)
    age_s = (now - heartbeat.finished_at).total_seconds()
    ending = "was stopped at its time limit" if heartbeat.timed_out else f"with exit code {heartbeat.exit_code}"
    last = f"the last cycle finished at {_iso(heartbeat.finished_at)} {ending}"
    if age_s > limit_s:
        return HeartbeatVerdict(
            False,
            f"unhealthy: no cycle has finished for {age_s:.0f}s, more than two schedule intervals ({limit_s:.0f}s); "
            f"{last}",
        )
    if heartbeat.timeouts_in_a_row >= UNHEALTHY_TIMEOUTS_IN_A_ROW:
        return HeartbeatVerdict(
            False,
            f"unhealthy: the last {heartbeat.timeouts_in_a_row} cycles in a row were stopped at their time limit "
            f"(see the cycle.timeout events): cycles are running but none finishes; "
            f"the last finished at {_iso(heartbeat.finished_at)}",
        )
    return HeartbeatVerdict(True, f"healthy: {last}, {max(age_s, 0):.0f}s ago")


def healthcheck_main(env: Mapping[str, str], out: TextIO | None = None) -> int:
    """The container's health check: prints one line; 0 healthy, 1 unhealthy (Docker reserves 2)."""
    out = sys.stdout if out is None else out
    try:
        settings = load_settings(env)
        verdict = judge_heartbeat(
            read_heartbeat(settings.heartbeat_file), schedule=settings.schedule, now=datetime.now(UTC)
        )
    except (ConfigError, HeartbeatError) as exc:
        verdict = HeartbeatVerdict(False, scrub(f"unhealthy: {exc}", known_secrets(env)))
    out.write(verdict.message + "\n")
    out.flush()
    return EXIT_OK if verdict.healthy else EXIT_FAILED


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
