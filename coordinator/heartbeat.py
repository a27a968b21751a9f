"""The heartbeat: a small file the scheduler rewrites after each finished cycle, and the health check that reads it.

The container's health check (`healthcheck_main`, every 30 s) answers one question: is the
scheduler still finishing cycles? It is healthy iff a cycle finished within two schedule
intervals. A cycle's exit code does not matter here: a cycle that fails still proves the
scheduler is alive, and its failure is in the cycle's own report. What the health check
catches is a scheduler that is stuck or gone.

The verdict (`judge_heartbeat`) is a pure function of the heartbeat, the schedule and the time;
reading the file and the clock happens in `healthcheck_main`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from coordinator.schedule import schedule_interval
from coordinator.settings import ConfigError, load_settings


class HeartbeatError(Exception):
    """The heartbeat file exists but cannot be read or understood; the message names the file."""


@dataclass(frozen=True)
class Heartbeat:
    finished_at: datetime  # when the last cycle finished, timezone-aware
    exit_code: int  # its exit code; negative: killed by that signal (as subprocess reports it)


@dataclass(frozen=True)
class HeartbeatVerdict:
    healthy: bool
    message: str


def write_heartbeat(path: Path, *, finished_at: datetime, exit_code: int) -> None:
    """Replace the heartbeat file in one step, so the health check never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"finished_at": finished_at.astimezone(UTC).isoformat(), "exit_code": exit_code})
    # The temporary file is in the same directory, because os.replace is atomic only within a file system.
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as temp:
            temp.write(body + "\n")
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


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
    except (ValueError, KeyError, TypeError) as exc:
        raise HeartbeatError(f"heartbeat file {path} is not a heartbeat ({exc!r}): {text[:200]!r}") from None
    if finished_at.tzinfo is None or not isinstance(exit_code, int):
        raise HeartbeatError(f"heartbeat file {path} is not a heartbeat: {text[:200]!r}")
    return Heartbeat(finished_at=finished_at, exit_code=exit_code)


def judge_heartbeat(heartbeat: Heartbeat | None, *, schedule: str, now: datetime) -> HeartbeatVerdict:
    """Healthy iff a cycle finished within two schedule intervals before `now`.

    The interval is the one around the last finished cycle: the next cycle was due at the
    following tick and, with the default time limit, had one interval to finish, so silence
    for two intervals means the scheduler is stuck or gone.
    """
    if heartbeat is None:
        return HeartbeatVerdict(False, "unhealthy: no cycle has finished yet")
    limit_s = 2 * schedule_interval(schedule, heartbeat.finished_at)
    age_s = (now - heartbeat.finished_at).total_seconds()
    last = f"the last cycle finished at {_iso(heartbeat.finished_at)} with exit code {heartbeat.exit_code}"
    if age_s <= limit_s:
        return HeartbeatVerdict(True, f"healthy: {last}, {max(age_s, 0):.0f}s ago")
    return HeartbeatVerdict(
        False,
        f"unhealthy: no cycle has finished for {age_s:.0f}s, more than two schedule intervals ({limit_s:.0f}s); {last}",
    )


def healthcheck_main(env: Mapping[str, str], out: TextIO | None = None) -> int:
    """The container's health check: prints one line; 0 healthy, 1 unhealthy (Docker reserves 2)."""
    out = sys.stdout if out is None else out
    try:
        settings = load_settings(env)
        verdict = judge_heartbeat(
            read_heartbeat(settings.heartbeat_file), schedule=settings.schedule, now=datetime.now(UTC)
        )
    except (ConfigError, HeartbeatError) as exc:
        verdict = HeartbeatVerdict(False, f"unhealthy: {exc}")
    out.write(verdict.message + "\n")
    out.flush()
    return 0 if verdict.healthy else 1


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
