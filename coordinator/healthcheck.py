"""The container's health check: is the scheduler still getting cycles done?

The health check (`healthcheck_main`, every 30 s) is healthy iff a cycle finished within two schedule
intervals and the last cycles did not all run into their time limit. A cycle's exit code does not
matter otherwise: a cycle that fails still proves the scheduler is alive, and its failure is in the
cycle's own report. What the health check catches is a scheduler that is stuck or gone, and cycles
that never end by themselves (a server that trickles bytes holds each one until it is killed), which
would otherwise look alive because the scheduler dutifully records every kill.

The verdict (`judge_heartbeat`) is a pure function of the heartbeat (`coordinator.heartbeat`), the schedule and
the time; reading the file and the clock happens in `healthcheck_main`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from coordinator.cron import interval_around
from coordinator.exit_codes import EXIT_FAILED, EXIT_OK
from coordinator.heartbeat import Heartbeat, HeartbeatError, read_heartbeat
from coordinator.redact import scrub
from coordinator.settings import ConfigError, known_secrets, load_settings

# Unhealthy when this many cycles in a row were stopped at their time limit: one can be bad luck (a slow
# GitHub), two in a row mean every cycle is being killed and nothing gets done.
UNHEALTHY_TIMEOUTS_IN_A_ROW = 2


@dataclass(frozen=True)
class HeartbeatVerdict:
    healthy: bool
    message: str


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
