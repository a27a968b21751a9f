"""The scheduler: runs one cycle at start, then one per cron tick, each in a fresh process, never two at once.

The tick arithmetic lives in `coordinator.cron` (pure). Thin shell: `run_schedule` owns the
clock, the cycle's process, its time limit, the heartbeat file and the metrics' feed.

A cycle that runs past the next tick makes that tick (and any other passed while it ran) skip:
the next cycle starts at the first tick after the previous one finished. A cycle over its time
limit (default: one schedule interval, at most a day) is terminated with its whole process group,
SIGTERM first and SIGKILL after a grace period. Whatever way a cycle ends (ok, failed, crashed,
killed), the heartbeat is written, with how many cycles in a row were stopped at their time limit,
and the scheduler goes on; only a stop request (SIGTERM/SIGINT) ends it.

The cycle's stdout is teed: a thread of the scheduler reads it as it comes and writes every byte
through to the scheduler's own stdout at once (the container log, which `coordinator status`
reads), unchanged, a line cut off by a kill included; on the way it keeps the cycle's last
`cycle.report` line, which, with how the process ended, feeds the metrics (`FleetMetrics`) after
every cycle: finished, failed, crashed or timed out. It holds one line at a time, never the log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, BinaryIO

from coordinator import cron
from coordinator.exit_codes import EXIT_OK
from coordinator.heartbeat import HeartbeatError, read_heartbeat, write_heartbeat
from coordinator.metrics import FleetMetrics, last_report
from coordinator.redact import shown
from coordinator.report import REPORT_EVENT, EventLog, Report
from coordinator.settings import MAX_CYCLE_TIMEOUT_S
from coordinator.values import ValueProblem, check_seconds

# How long a terminated cycle gets to exit before SIGKILL; below Docker's default 10 s stop
# timeout, so a stopping container still ends its cycle itself.
DEFAULT_KILL_GRACE_S = 5.0
# How often a running cycle is checked for exit, time limit and stop request: Popen.wait cannot
# also wake up on a threading.Event, so the wait is cut into short slices.
_POLL_S = 0.05
# The longest single sleep while waiting for a tick; waking up now and then recomputes the wait
# from the wall clock, so a clock adjustment cannot make the scheduler sleep through its ticks.
_MAX_SLEEP_S = 30.0
# At most this many skipped ticks are listed in one `schedule.skipped` event.
_MAX_LISTED_TICKS = 50
# The longest line of a cycle's output the scheduler holds to look for the report in. A report of a fleet at
# the ceilings (5000 agents, 1000 merges) is a fraction of it; a longer line still passes through whole, unread.
MAX_REPORT_LINE_BYTES = 16 * 1024 * 1024
# How long a cycle's output may take to reach its end once the cycle's process has ended. Only a process the
# cycle left behind can hold it open longer; the scheduler then goes on, and that output goes on passing through.
DEFAULT_DRAIN_S = 5.0
# The same wait when the scheduler is stopping, kept short: kill grace and all must fit Docker's 10 s stop timeout.
_STOP_DRAIN_S = 1.0
# What one read of the cycle's stdout takes at most: whatever is there, up to this.
_READ_BYTES = 64 * 1024
_REPORT_MARK = REPORT_EVENT.encode()


# --- pure core --------------------------------------------------------------------------------


def cycle_time_limit(expr: str, timeout_s: float | None, started_at: datetime) -> float:
    """The configured time limit, or by default one schedule interval (the slot the cycle runs in).

    The default is capped at MAX_CYCLE_TIMEOUT_S, because the cycle is told its limit through
    COORDINATOR_CYCLE_TIMEOUT_S and would refuse a larger one (a yearly schedule's interval).
    """
    if timeout_s is not None:
        return timeout_s
    return min(cron.interval_around(expr, started_at), MAX_CYCLE_TIMEOUT_S)


def timeouts_in_a_row(previous: int, timed_out: bool) -> int:
    """How many cycles in a row have been stopped at their time limit, after one more cycle."""
    return previous + 1 if timed_out else 0


def describe_exit(returncode: int) -> str:
    """'exit code 1' or 'killed by SIGKILL' (subprocess reports a signal as a negative code)."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


# --- shell ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CycleOutcome:
    exit_code: int | None  # None: the process could not be started
    duration_s: float
    timed_out: bool = False
    stopped: bool = False  # terminated because the scheduler is stopping
    start_error: str | None = None
    report: Report | None = None  # the last `cycle.report` the cycle wrote, if it wrote one


class CycleOutputTee:
    """Passes a cycle's stdout through to `out` as it arrives, byte for byte, and keeps its last report.

    It reads in a thread of its own, so the cycle never blocks on a full pipe, and writes whatever one
    read returned at once, so a line shows as promptly as when the cycle wrote to the log itself, and a
    line cut short by a kill shows as far as it got. It holds one line (at most `max_line_bytes`; a
    longer one is passed through, not looked at) and the last report, never the whole output. If `out`
    fails, it goes on reading and dropping the output, so the cycle still never blocks.
    """

    def __init__(self, source: IO[bytes], out: BinaryIO | None, *, max_line_bytes: int = MAX_REPORT_LINE_BYTES):
        self._source = source
        self._out = out
        self._max_line_bytes = max_line_bytes
        self.report: Report | None = None  # replaced whole, so another thread reads either the old or the new
        self._thread = threading.Thread(target=self._pump, name="cycle-output", daemon=True)

    def start(self) -> CycleOutputTee:
        self._thread.start()
        return self

    def wait(self, timeout: float | None) -> bool:
        """Wait for the end of the output (every process holding the pipe gone); False if it did not come in time."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _pump(self) -> None:
        line = bytearray()
        overlong = False
        fd = self._source.fileno()
        try:
            while True:
                try:
                    chunk = os.read(fd, _READ_BYTES)
                except OSError:
                    break
                if not chunk:
                    break
                self._write(chunk)
                start = 0
                while start <= len(chunk):
                    newline = chunk.find(b"\n", start)
                    end = len(chunk) if newline < 0 else newline
                    if not overlong:
                        if len(line) + end - start > self._max_line_bytes:
                            overlong = True
                            line.clear()
                        else:
                            line += chunk[start:end]
                    if newline < 0:
                        break
                    if not overlong:
                        self._consider(bytes(line))
                    line.clear()
                    overlong = False
                    start = newline + 1
            if line and not overlong:
                self._consider(bytes(line))  # the last line, without its newline
        finally:
            self._source.close()

    def _write(self, chunk: bytes) -> None:
        if self._out is None:
            return
        try:
            self._out.write(chunk)
            self._out.flush()
        except (OSError, ValueError):  # the log is gone (closed, broken pipe): drop the output from now on
            self._out = None

    def _consider(self, line: bytes) -> None:
        if _REPORT_MARK not in line:  # most lines: no JSON parsing at all
            return
        try:
            found = last_report([line.decode("utf-8", errors="replace")])
        except (ValueError, RecursionError):  # e.g. a JSON nested too deep for the parser
            return
        if found is not None:
            self.report = found


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM (docker stop) and SIGINT (Ctrl-C) set `stop`; call from the main thread.

    The container runs the scheduler as PID 1, which has no default action for SIGTERM: without
    a handler `docker stop` would wait its 10 s and SIGKILL everything.
    """

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def run_schedule(
    *,
    schedule: str,
    cycle_argv: Sequence[str],
    timeout_s: float | None,
    heartbeat_file: Path,
    log: EventLog,
    stop: threading.Event | None = None,
    max_cycles: int | None = None,
    env: Mapping[str, str] | None = None,
    kill_grace_s: float = DEFAULT_KILL_GRACE_S,
    metrics: FleetMetrics | None = None,
    output: BinaryIO | None = None,
    drain_s: float = DEFAULT_DRAIN_S,
) -> int:
    """Run `cycle_argv` once now, then at each tick after the previous cycle finished, until `stop` is set.

    `max_cycles` ends the loop after that many cycles (for tests and one-off runs); `env` is the
    cycles' environment (default: this process's). Each cycle's stdout passes through to `output`
    (default: this process's stdout); `metrics`, when given, takes in each cycle's report and
    ending. Returns EXIT_OK: a failing cycle is the cycle's report's business, not the scheduler's.
    """
    try:
        schedule = cron.validate(schedule)
    except ValueProblem as problem:
        raise ValueError(f"schedule {shown(schedule)} {problem}") from None
    if not cycle_argv:
        raise ValueError("cycle_argv is empty; give the command of one cycle")
    if timeout_s is not None:
        try:
            check_seconds(timeout_s, maximum=MAX_CYCLE_TIMEOUT_S)
        except ValueProblem as problem:
            raise ValueError(f"timeout_s={timeout_s!r} {problem}, or None for one schedule interval") from None
    stop = threading.Event() if stop is None else stop
    output = _stdout_bytes() if output is None else output
    streak = _previous_streak(heartbeat_file)
    log.emit(
        "schedule.started",
        schedule=schedule,
        time_limit_s=timeout_s,
        time_limit="configured" if timeout_s is not None else "one schedule interval",
        heartbeat_file=str(heartbeat_file),
        cycle_argv=list(cycle_argv),
    )
    if metrics is not None:
        metrics.observe_schedule(cron.interval_around(schedule, datetime.now(UTC)))
    cycles = 0
    tick: datetime | None = None  # the tick the coming cycle belongs to; None for the one at start
    while not stop.is_set():
        started_at = datetime.now(UTC)
        time_limit_s = cycle_time_limit(schedule, timeout_s, started_at)
        outcome = _run_cycle(
            cycle_argv, env=env, time_limit_s=time_limit_s, kill_grace_s=kill_grace_s, stop=stop, log=log, tick=tick,
            output=output, drain_s=drain_s,
        )
        finished_at = datetime.now(UTC)
        cycles += 1
        if outcome.stopped:
            # Not a finished cycle: no heartbeat, the container is going away.
            log.emit(
                "schedule.cycle_stopped",
                exit_code=outcome.exit_code,
                outcome=describe_exit(outcome.exit_code) if outcome.exit_code is not None else None,
                duration_s=round(outcome.duration_s, 3),
            )
            break
        following = cron.next_tick(schedule, finished_at)
        if metrics is not None:
            metrics.observe_schedule(cron.interval_around(schedule, finished_at))
            _observe(metrics, outcome, finished_at=finished_at, log=log)
        if outcome.exit_code is not None:
            streak = timeouts_in_a_row(streak, outcome.timed_out)
        _report_cycle(outcome, finished_at=finished_at, following=following, log=log, streak=streak)
        if outcome.exit_code is not None:
            try:
                write_heartbeat(
                    heartbeat_file,
                    finished_at=finished_at,
                    exit_code=outcome.exit_code,
                    timed_out=outcome.timed_out,
                    timeouts_in_a_row=streak,
                )
            except OSError as exc:
                # The health check will say so; the scheduler itself can go on.
                log.emit("schedule.heartbeat_failed", path=str(heartbeat_file), error=str(exc))
        skipped = cron.missed_ticks(schedule, started_at, finished_at, limit=_MAX_LISTED_TICKS + 1)
        if skipped:
            log.emit(
                "schedule.skipped",
                missed=skipped[:_MAX_LISTED_TICKS],
                more=len(skipped) > _MAX_LISTED_TICKS,
                reason="the previous cycle was still running at these ticks",
                next_tick=following,
            )
        if max_cycles is not None and cycles >= max_cycles:
            break
        if _sleep_until(following, stop):
            break
        tick = following
    log.emit("schedule.stopped", cycles=cycles, reason="stop requested" if stop.is_set() else "max_cycles reached")
    return EXIT_OK


def _stdout_bytes() -> BinaryIO:
    """This process's stdout as bytes: where the cycles' output goes, beside the scheduler's own events."""
    buffer: BinaryIO | None = getattr(sys.stdout, "buffer", None)
    return buffer if buffer is not None else open(sys.stdout.fileno(), "wb", closefd=False)


def _observe(metrics: FleetMetrics, outcome: CycleOutcome, *, finished_at: datetime, log: EventLog) -> None:
    """Feed one cycle's report and ending to the metrics; a fault there is logged, never stops the scheduler."""
    try:
        if outcome.report is not None:
            metrics.observe_report(outcome.report)
        metrics.observe_cycle(
            outcome.duration_s,
            exit_code=outcome.exit_code,
            timed_out=outcome.timed_out,
            finished_at=finished_at,
            reported=None if outcome.exit_code is None else outcome.report is not None,
        )
    except Exception as exc:  # the metrics are an extra; the fleet's cycles come first
        log.emit("schedule.metrics_failed", error=f"{type(exc).__name__}: {exc}")


def _previous_streak(heartbeat_file: Path) -> int:
    """The timeouts in a row the last heartbeat recorded, so a restarted scheduler goes on counting."""
    try:
        heartbeat = read_heartbeat(heartbeat_file)
    except HeartbeatError:
        return 0
    return heartbeat.timeouts_in_a_row if heartbeat is not None else 0


def _report_cycle(
    outcome: CycleOutcome, *, finished_at: datetime, following: datetime, log: EventLog, streak: int
) -> None:
    if outcome.exit_code is None:
        log.emit("schedule.cycle_not_started", error=outcome.start_error, next_tick=following)
        return
    log.emit(
        "schedule.cycle_finished",
        exit_code=outcome.exit_code,
        outcome=describe_exit(outcome.exit_code),
        timed_out=outcome.timed_out,
        timeouts_in_a_row=streak,
        duration_s=round(outcome.duration_s, 3),
        finished_at=finished_at,
        next_tick=following,
    )


def _sleep_until(moment: datetime, stop: threading.Event) -> bool:
    """Wait until the wall clock reaches `moment`; True if a stop was requested meanwhile."""
    while True:
        remaining = (moment - datetime.now(UTC)).total_seconds()
        if remaining <= 0:
            return stop.is_set()
        if stop.wait(min(remaining, _MAX_SLEEP_S)):
            return True


def _run_cycle(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None,
    time_limit_s: float,
    kill_grace_s: float,
    stop: threading.Event,
    log: EventLog,
    tick: datetime | None,
    output: BinaryIO,
    drain_s: float,
) -> CycleOutcome:
    """One cycle in its own process group; its stdout teed to `output` (the container log), its stderr not touched."""
    began = time.monotonic()
    try:
        # A new session makes the cycle a process group leader, so it and anything it started
        # can be signalled together, and a Ctrl-C at a terminal reaches only the scheduler.
        # The cycle is told its time limit, so that its merge step can end cleanly before the kill.
        cycle_env = {**(os.environ if env is None else env), "COORDINATOR_CYCLE_TIMEOUT_S": f"{time_limit_s:.3f}"}
        process = subprocess.Popen(list(argv), env=cycle_env, start_new_session=True, stdout=subprocess.PIPE)
    except OSError as exc:
        return CycleOutcome(exit_code=None, duration_s=0.0, start_error=f"{argv[0]}: {exc.strerror or exc}")
    assert process.stdout is not None
    tee = CycleOutputTee(process.stdout, output).start()
    log.emit(
        "schedule.cycle_started",
        pid=process.pid,
        tick=tick,
        reason="start" if tick is None else "tick",
        time_limit_s=round(time_limit_s, 3),
    )
    deadline = began + time_limit_s
    timed_out = stopped = False
    while True:
        try:
            returncode = process.wait(timeout=_POLL_S)
            break
        except subprocess.TimeoutExpired:
            pass
        if stop.is_set():
            log.emit("schedule.stopping", reason="stop requested", cycle_pid=process.pid)
            returncode = terminate_process_group(process, kill_grace_s)
            stopped = True
            break
        if time.monotonic() >= deadline:
            log.emit("cycle.timeout", pid=process.pid, time_limit_s=round(time_limit_s, 3), grace_s=kill_grace_s)
            returncode = terminate_process_group(process, kill_grace_s)
            timed_out = True
            break
    duration_s = time.monotonic() - began
    # The rest of its output, before the scheduler says the cycle ended: the log keeps today's order.
    waited_s = min(drain_s, _STOP_DRAIN_S) if stopped else drain_s
    if not tee.wait(waited_s):
        log.emit(
            "schedule.cycle_output_open",
            pid=process.pid,
            waited_s=waited_s,
            reason="a process the cycle started still holds its stdout; what it writes goes on passing through",
        )
    return CycleOutcome(
        exit_code=returncode, duration_s=duration_s, timed_out=timed_out, stopped=stopped, report=tee.report
    )


def terminate_process_group(process: subprocess.Popen[bytes], grace_s: float) -> int:
    """SIGTERM the process's group, SIGKILL whatever is left after `grace_s`; returns the leader's exit code.

    The process must lead its own group (started with start_new_session=True).
    """
    group = process.pid
    _signal_group(group, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _signal_group(group, signal.SIGKILL)
        return process.wait()
    # The leader is gone, but a child of it may have ignored SIGTERM; wait out the rest of the grace for it.
    grace_ends = time.monotonic() + grace_s
    while _group_exists(group) and time.monotonic() < grace_ends:
        time.sleep(_POLL_S)
    if _group_exists(group):
        _signal_group(group, signal.SIGKILL)
    return process.returncode


def _signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has already exited
        os.killpg(group, signum)


def _group_exists(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
