"""The heartbeat: a small file the scheduler rewrites after each finished cycle, written and read here.

`write_heartbeat` (the scheduler) and `read_heartbeat` (the health check, `coordinator.healthcheck`) own its format
both ways: one JSON object, replaced in one step so that no reader ever sees half of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from coordinator.files import replace_file


class HeartbeatError(Exception):
    """The heartbeat file exists but cannot be read or understood; the message names the file."""


@dataclass(frozen=True)
class Heartbeat:
    finished_at: datetime  # when the last cycle finished, timezone-aware
    exit_code: int  # its exit code; negative: killed by that signal (as subprocess reports it)
    timed_out: bool = False  # it was stopped at its time limit
    timeouts_in_a_row: int = 0  # how many cycles up to and including it were stopped at their time limit


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
