"""The scheduler: its time limit as a plain function, the loop with real processes on seconds-scale schedules.

The tick arithmetic itself (next tick, intervals, missed ticks) is tested in test_cron.py.

Each loop test starts a real scheduler process (`run_schedule` behind a few lines of driver) whose
cycle is `fake_cycle.py`: each run appends its start and end to a record file and does what the
plan says for that run (sleep, exit with a code, kill itself, hang with a child that ignores SIGTERM,
write a report, write a line and stop half-way through the next, write megabytes, leave a process
behind that holds its stdout). The driver can feed a `FleetMetrics` and write what it would serve
to a file at the end. `CycleOutputTee`, the piece that passes a cycle's stdout through and picks
its report, is also tested on its own over a real pipe.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from coordinator.cron import next_tick
from coordinator.heartbeat import read_heartbeat, write_heartbeat
from coordinator.report import EventLog, parse_reports
from coordinator.schedule import CycleOutputTee, cycle_time_limit, describe_exit, run_schedule, timeouts_in_a_row
from coordinator.settings import MAX_CYCLE_TIMEOUT_S

ROOT = Path(__file__).resolve().parents[1]
EVERY_SECOND = "* * * * * *"
EVERY_2_S = "* * * * * */2"
ONCE_A_YEAR = "0 0 1 1 *"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- the time limit -------------------------------------------------------------------------


def test_time_limit_defaults_to_one_schedule_interval_capped_at_a_day() -> None:
    assert cycle_time_limit("*/5 * * * *", None, at("2024-05-01T12:03:00")) == 300
    assert cycle_time_limit("*/5 * * * *", 42.0, at("2024-05-01T12:03:00")) == 42.0
    # A yearly schedule's interval would be refused by the cycle it is handed to (COORDINATOR_CYCLE_TIMEOUT_S).
    assert cycle_time_limit(ONCE_A_YEAR, None, at("2024-05-01T12:03:00")) == MAX_CYCLE_TIMEOUT_S


@pytest.mark.parametrize(
    ("previous", "timed_out", "expected"), [(0, False, 0), (0, True, 1), (1, True, 2), (5, False, 0)]
)
def test_timeouts_in_a_row_count_up_and_reset(previous: int, timed_out: bool, expected: int) -> None:
    assert timeouts_in_a_row(previous, timed_out) == expected


def test_describe_exit() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(2) == "exit code 2"
    assert describe_exit(-9) == "killed by SIGKILL"


# --- the loop, with real processes ---------------------------------------------------------

FAKE_CYCLE = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, time
    from pathlib import Path

    records = Path(os.environ["FAKE_CYCLE_RECORDS"])
    heartbeat = Path(os.environ["FAKE_CYCLE_HEARTBEAT"])
    plan = os.environ["FAKE_CYCLE_PLAN"].split(",")
    lines = records.read_text().splitlines() if records.exists() else []
    run = sum(1 for line in lines if json.loads(line)["what"] == "start")
    step = plan[min(run, len(plan) - 1)]
    kind, _, arg = step.partition(":")

    def record(what, **fields):
        with records.open("a") as out:
            out.write(json.dumps({"run": run, "what": what, "at": time.time(), **fields}) + "\\n")

    def report(verdict, errors):  # a cycle.report as the real cycle writes it, cut down to what metrics read
        return json.dumps({
            "event": "cycle.report", "fleet": "test", "run": run, "verdict": verdict,
            "roles": {"coder": {"desired": 2, "running": 1, "spawned": 1, "present": 2}},
            "merge": {"status": "skipped"}, "health": {"status": "skipped"},
            "errors": [{"step": name, "message": "boom"} for name in errors],
        })

    seen = json.loads(heartbeat.read_text()) if heartbeat.exists() else None
    record("start", pid=os.getpid(), pgid=os.getpgid(0), step=step, heartbeat_seen=seen,
           time_limit=os.environ.get("COORDINATOR_CYCLE_TIMEOUT_S"))
    print(json.dumps({"event": "fake.cycle", "run": run}), flush=True)  # reaches the scheduler's stdout

    if kind in ("hang", "orphan"):
        # hang: the cycle and its child both ignore SIGTERM; orphan: only the child does.
        if kind == "hang":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
        child = subprocess.Popen([sys.executable, "-c", stubborn])
        record("child", pid=child.pid)
        time.sleep(300)
    elif kind == "signal":
        os.kill(os.getpid(), getattr(signal, arg))
    elif kind == "sleep":
        time.sleep(float(arg))
    elif kind == "report":  # ends with its report: healthy on exit 0, a merge error on exit 1
        print(report("healthy" if arg == "0" else "degraded", [] if arg == "0" else ["merge"]), flush=True)
    elif kind == "termreport":  # like the real cycle: SIGTERM cuts the step off, the report is still written
        def on_term(signum, frame):
            print(report("broken", ["merge"]), flush=True)
            sys.exit(1)
        signal.signal(signal.SIGTERM, on_term)
        time.sleep(300)
    elif kind == "partial":  # one line whole, then half a report, and nothing more until it is killed
        sys.stdout.write('{"event": "fake.line"}\\n{"event": "cycle.report", "verdict": "bro')
        sys.stdout.flush()
        record("partial")
        time.sleep(300)
    elif kind == "payload":  # bytes of every kind, megabytes of them, then exit 0
        sys.stdout.buffer.write(Path(os.environ["FAKE_CYCLE_PAYLOAD"]).read_bytes())
        sys.stdout.flush()
    elif kind == "linger":  # leaves a process of another session behind, holding its stdout, and exits 0
        late = "import sys, time; time.sleep(2); sys.stdout.write('late line\\\\n'); sys.stdout.flush(); time.sleep(2)"
        child = subprocess.Popen([sys.executable, "-c", late], start_new_session=True)
        record("child", pid=child.pid)
    record("end")
    sys.exit(int(arg) if kind in ("exit", "report") else 0)
    """
)

DRIVER = textwrap.dedent(
    """
    import json, sys, threading
    from pathlib import Path
    from prometheus_client import generate_latest
    from coordinator.metrics import FleetMetrics
    from coordinator.report import EventLog
    from coordinator.schedule import install_signal_handlers, run_schedule

    config = json.loads(sys.argv[1])
    stop = threading.Event()
    install_signal_handlers(stop)
    metrics = FleetMetrics() if config["metrics_file"] else None
    if metrics is not None and config["serve"]:  # as `schedule` serves it, on a free port of the loopback
        server = metrics.serve(port=0, addr="127.0.0.1")
        print(json.dumps({"event": "test.serving", "port": server.port}), flush=True)
    returncode = run_schedule(
        schedule=config["schedule"],
        cycle_argv=config["cycle_argv"],
        timeout_s=config["timeout_s"],
        heartbeat_file=Path(config["heartbeat_file"]),
        log=EventLog("test"),
        stop=stop,
        max_cycles=config["max_cycles"],
        kill_grace_s=config["kill_grace_s"],
        metrics=metrics,
        drain_s=config["drain_s"],
    )
    if metrics is not None:
        Path(config["metrics_file"]).write_bytes(generate_latest(metrics.registry))
    sys.exit(returncode)
    """
)


@dataclass
class Scheduler:
    process: subprocess.Popen[bytes]
    log_file: Path
    records_file: Path
    heartbeat_file: Path
    metrics_file: Path

    def log_bytes(self) -> bytes:
        return self.log_file.read_bytes() if self.log_file.exists() else b""

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        events = []
        for line in self.log_bytes().decode(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):  # a cycle's line cut off by a kill
                    events.append(json.loads(line))
        return [e for e in events if name is None or e["event"] == name]

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """What the scheduler's FleetMetrics would serve at the end: (sample name, labels) -> value."""
        families = text_string_to_metric_families(self.metrics_file.read_text())
        return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}

    def records(self, what: str) -> list[dict[str, Any]]:
        lines = self.records_file.read_text().splitlines() if self.records_file.exists() else []
        return [r for r in map(json.loads, lines) if r["what"] == what]

    def cycles(self) -> list[tuple[float, float]]:
        """(start, end) of each cycle run that ended by itself."""
        ends = {r["run"]: r["at"] for r in self.records("end")}
        return [(r["at"], ends[r["run"]]) for r in self.records("start") if r["run"] in ends]

    def finish(self, timeout: float = 60) -> int:
        """Wait for the scheduler to exit by itself; the bound only keeps a broken scheduler from hanging the suite."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"the scheduler did not exit; its log:\n{self.log_file.read_text()}")


@pytest.fixture
def start_scheduler(tmp_path: Path) -> Iterator[Callable[..., Scheduler]]:
    started: list[Scheduler] = []
    script = tmp_path / "fake_cycle.py"
    script.write_text(FAKE_CYCLE)

    def start(
        *,
        schedule: str,
        plan: str,
        timeout_s: float | None = None,
        max_cycles: int | None = None,
        kill_grace_s: float = 0.5,
        before: Callable[[Path], None] | None = None,
        metrics: bool = False,
        drain_s: float = 5.0,
        payload: bytes = b"",
        serve: bool = False,
    ) -> Scheduler:
        scheduler_dir = tmp_path / f"scheduler-{len(started)}"
        scheduler_dir.mkdir()
        heartbeat_file = scheduler_dir / "state" / "heartbeat.json"
        if before is not None:
            before(heartbeat_file)  # e.g. the heartbeat a previous scheduler left
        config = {
            "schedule": schedule,
            "cycle_argv": [sys.executable, str(script)],
            "timeout_s": timeout_s,
            "heartbeat_file": str(heartbeat_file),
            "max_cycles": max_cycles,
            "kill_grace_s": kill_grace_s,
            "metrics_file": str(scheduler_dir / "metrics.txt") if metrics else None,
            "drain_s": drain_s,
            "serve": serve,
        }
        payload_file = scheduler_dir / "payload.bin"
        payload_file.write_bytes(payload)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "FAKE_CYCLE_RECORDS": str(scheduler_dir / "records.jsonl"),
            "FAKE_CYCLE_HEARTBEAT": str(heartbeat_file),
            "FAKE_CYCLE_PLAN": plan,
            "FAKE_CYCLE_PAYLOAD": str(payload_file),
        }
        log_file = scheduler_dir / "scheduler.log"
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", DRIVER, json.dumps(config)], stdout=log, stderr=subprocess.STDOUT, env=env
            )
        scheduler = Scheduler(process, log_file, scheduler_dir / "records.jsonl", heartbeat_file,
                              scheduler_dir / "metrics.txt")
        started.append(scheduler)
        return scheduler

    yield start
    for scheduler in started:  # a failed test must not leave a scheduler or its cycles running
        if scheduler.process.poll() is None:
            scheduler.process.kill()
            scheduler.process.wait()
        for record in scheduler.records("start") + scheduler.records("child"):
            if alive(record["pid"]):
                os.kill(record["pid"], signal.SIGKILL)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30) -> None:
    """Poll until `condition` holds; the bound only turns a hang into a failure with a message."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (an orphan's zombie waits for init, which may be slow)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_first_cycle_runs_at_start_then_the_scheduler_waits_and_stops_on_sigterm(
    start_scheduler: Callable[..., Scheduler],
) -> None:
    # The next tick is months away, so the one cycle that runs can only be the one at start.
    scheduler = start_scheduler(schedule=ONCE_A_YEAR, plan="exit:0")
    wait_for(lambda: scheduler.events("schedule.cycle_finished"), "the first cycle to finish")

    scheduler.process.send_signal(signal.SIGTERM)
    returncode = scheduler.finish()

    events = scheduler.events()
    assert returncode == 0
    assert [e["event"] for e in events if e["event"] != "fake.cycle"] == [
        "schedule.started",
        "schedule.cycle_started",
        "schedule.cycle_finished",
        "schedule.stopped",
    ]
    assert scheduler.events("fake.cycle") == [{"event": "fake.cycle", "run": 0}]  # the cycle's output reached ours
    started = scheduler.events("schedule.cycle_started")[0]
    assert (started["reason"], started["tick"]) == ("start", None)
    finished = scheduler.events("schedule.cycle_finished")[0]
    assert finished["exit_code"] == 0 and finished["next_tick"].endswith("-01-01T00:00:00Z")
    assert read_heartbeat(scheduler.heartbeat_file) is not None
    assert scheduler.events("schedule.stopped")[0]["reason"] == "stop requested"


def test_after_the_first_cycle_each_cycle_starts_at_its_own_tick(start_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = start_scheduler(schedule=EVERY_2_S, plan="sleep:0.2", max_cycles=3)

    assert scheduler.finish() == 0

    started = scheduler.events("schedule.cycle_started")
    runs = scheduler.records("start")
    ticks = [datetime.fromisoformat(e["tick"]).timestamp() for e in started[1:]]
    assert len(runs) == 3
    assert all(tick % 2 == 0 for tick in ticks)  # on the schedule's ticks
    assert ticks[0] < ticks[1]
    for tick, run in zip(ticks, runs[1:], strict=True):
        assert run["at"] >= tick  # never before its tick


def test_an_overrunning_cycle_makes_the_next_ticks_skip_and_cycles_never_overlap(
    start_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = start_scheduler(schedule=EVERY_SECOND, plan="sleep:2.5,sleep:2.5,exit:0", timeout_s=30, max_cycles=3)

    assert scheduler.finish() == 0

    cycles = scheduler.cycles()
    assert len(cycles) == 3
    for (_, previous_end), (next_start, _) in itertools.pairwise(cycles):
        assert next_start >= previous_end
    finished = scheduler.events("schedule.cycle_finished")
    skipped = scheduler.events("schedule.skipped")
    started_ticks = [e["tick"] for e in scheduler.events("schedule.cycle_started")[1:]]
    assert len(skipped) == 2  # after each of the two overrunning cycles, none after the short one
    next_runs = scheduler.records("start")[1:]
    for skip, before, tick, run in zip(skipped, finished[:2], started_ticks, next_runs, strict=True):
        # A 2.5 s cycle on a 1 s schedule overruns at least two ticks; all of them before it finished,
        # and the next cycle ran at the first tick after that.
        assert len(skip["missed"]) >= 2
        finished_at = datetime.fromisoformat(before["finished_at"])
        assert all(datetime.fromisoformat(missed) <= finished_at for missed in skip["missed"])
        assert tick == skip["next_tick"] == before["next_tick"]
        assert datetime.fromisoformat(tick) == next_tick(EVERY_SECOND, finished_at)
        assert tick not in skip["missed"]
        assert run["at"] >= datetime.fromisoformat(tick).timestamp()  # and not before that tick


def test_a_cycle_over_its_time_limit_is_killed_with_its_process_group_and_the_scheduler_goes_on(
    start_scheduler: Callable[..., Scheduler],
) -> None:
    # No timeout given: the limit is one schedule interval, 2 s. The cycle and its child ignore
    # SIGTERM, so only the SIGKILL after the grace period ends them.
    scheduler = start_scheduler(schedule=EVERY_2_S, plan="hang,exit:0", max_cycles=2, kill_grace_s=0.5)

    assert scheduler.finish() == 0

    timeout = scheduler.events("cycle.timeout")
    first, second = scheduler.events("schedule.cycle_finished")
    hung = scheduler.records("start")[0]
    child = scheduler.records("child")[0]
    assert len(timeout) == 1 and timeout[0]["time_limit_s"] == 2.0 and timeout[0]["pid"] == hung["pid"]
    assert (first["exit_code"], first["outcome"], first["timed_out"]) == (-9, "killed by SIGKILL", True)
    assert first["timeouts_in_a_row"] == 1
    assert not alive(hung["pid"]) and not alive(child["pid"])
    assert (second["exit_code"], second["timed_out"], second["timeouts_in_a_row"]) == (0, False, 0)
    heartbeat = read_heartbeat(scheduler.heartbeat_file)
    assert heartbeat is not None and heartbeat.exit_code == 0
    assert (heartbeat.timed_out, heartbeat.timeouts_in_a_row) == (False, 0)


def test_the_heartbeat_counts_cycles_timed_out_in_a_row_even_across_a_restart(
    start_scheduler: Callable[..., Scheduler],
) -> None:
    def one_timeout_so_far(path: Path) -> None:  # what the scheduler before this one recorded
        write_heartbeat(path, finished_at=datetime.now(UTC), exit_code=-15, timed_out=True, timeouts_in_a_row=1)

    # A cycle that dies on SIGTERM at its 1 s limit, twice.
    scheduler = start_scheduler(
        schedule=EVERY_SECOND, plan="sleep:30", timeout_s=1, max_cycles=2, before=one_timeout_so_far
    )

    assert scheduler.finish() == 0

    finished = scheduler.events("schedule.cycle_finished")
    assert [(e["timed_out"], e["timeouts_in_a_row"]) for e in finished] == [(True, 2), (True, 3)]
    heartbeat = read_heartbeat(scheduler.heartbeat_file)
    assert heartbeat is not None and (heartbeat.timed_out, heartbeat.timeouts_in_a_row) == (True, 3)


def test_a_crashing_cycle_does_not_stop_the_scheduler_and_still_writes_the_heartbeat(
    start_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = start_scheduler(schedule=EVERY_SECOND, plan="exit:3,signal:SIGKILL,exit:0", max_cycles=3)

    assert scheduler.finish() == 0

    finished = scheduler.events("schedule.cycle_finished")
    runs = scheduler.records("start")
    assert [e["exit_code"] for e in finished] == [3, -9, 0]
    # Each run read the heartbeat its predecessor left: written after an exit 3 and after a SIGKILL alike.
    assert [run["heartbeat_seen"] and run["heartbeat_seen"]["exit_code"] for run in runs] == [None, 3, -9]
    heartbeat = read_heartbeat(scheduler.heartbeat_file)
    assert heartbeat is not None and heartbeat.exit_code == 0


def test_sigterm_stops_the_scheduler_and_its_running_cycle(start_scheduler: Callable[..., Scheduler]) -> None:
    # The cycle dies on SIGTERM but leaves a child that ignores it: the group kill must get that one too.
    scheduler = start_scheduler(schedule=EVERY_SECOND, plan="orphan", timeout_s=300, kill_grace_s=0.5)
    wait_for(lambda: scheduler.records("child"), "the cycle to start its child")

    scheduler.process.send_signal(signal.SIGTERM)
    returncode = scheduler.finish()

    cycle = scheduler.records("start")[0]
    child = scheduler.records("child")[0]
    assert returncode == 0
    assert not alive(cycle["pid"]) and not alive(child["pid"])
    assert [e["event"] for e in scheduler.events()][-3:] == [
        "schedule.stopping",
        "schedule.cycle_stopped",
        "schedule.stopped",
    ]
    assert scheduler.events("schedule.cycle_stopped")[0]["exit_code"] == -signal.SIGTERM
    assert read_heartbeat(scheduler.heartbeat_file) is None  # the cycle never finished


def test_each_cycle_is_told_its_time_limit(start_scheduler: Callable[..., Scheduler]) -> None:
    # The cycle's merge step uses it to end cleanly before the scheduler would kill it.
    scheduler = start_scheduler(schedule="* * * * * */1", plan="exit:0", timeout_s=7.5, max_cycles=2)
    assert scheduler.finish() == 0
    assert [r["time_limit"] for r in scheduler.records("start")] == ["7.500", "7.500"]
    default = start_scheduler(schedule="* * * * * */2", plan="exit:0", max_cycles=1)
    assert default.finish() == 0
    assert [r["time_limit"] for r in default.records("start")] == ["2.000"]


def test_a_cycle_that_cannot_start_is_logged_and_the_scheduler_goes_on(tmp_path: Path) -> None:
    out = io.StringIO()
    heartbeat_file = tmp_path / "heartbeat.json"

    returncode = run_schedule(
        schedule=EVERY_SECOND,
        cycle_argv=[str(tmp_path / "no-such-program")],
        timeout_s=None,
        heartbeat_file=heartbeat_file,
        log=EventLog("test", stream=out),
        max_cycles=2,
    )

    events = [json.loads(line) for line in out.getvalue().splitlines()]
    not_started = [e for e in events if e["event"] == "schedule.cycle_not_started"]
    assert returncode == 0
    assert len(not_started) == 2 and "no-such-program" in not_started[0]["error"]
    assert not heartbeat_file.exists()  # no cycle finished, so the health check will say so


def test_bad_arguments_are_refused_before_anything_runs(tmp_path: Path) -> None:
    log = EventLog("test", stream=io.StringIO())
    common: dict[str, Any] = {"heartbeat_file": tmp_path / "hb", "log": log, "max_cycles": 1}

    with pytest.raises(ValueError, match="not a cron expression"):
        run_schedule(schedule="every minute", cycle_argv=["true"], timeout_s=None, **common)
    with pytest.raises(ValueError, match="never fires"):  # croniter would raise CroniterBadDateError at the tick
        run_schedule(schedule="0 0 30 2 *", cycle_argv=["true"], timeout_s=None, **common)
    with pytest.raises(ValueError, match="cycle_argv is empty"):
        run_schedule(schedule=EVERY_SECOND, cycle_argv=[], timeout_s=None, **common)
    with pytest.raises(ValueError, match="is not more than 0 seconds"):
        run_schedule(schedule=EVERY_SECOND, cycle_argv=["true"], timeout_s=0, **common)
    with pytest.raises(ValueError, match="is not a finite number"):
        run_schedule(schedule=EVERY_SECOND, cycle_argv=["true"], timeout_s=float("inf"), **common)


# --- the cycle's output: teed to the log, its report to the metrics --------------------------------


def metric(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_every_cycle_feeds_the_metrics_whether_it_reported_failed_crashed_or_timed_out(
    start_scheduler: Callable[..., Scheduler],
) -> None:
    plan = "report:0,report:1,exit:1,exit:3,signal:SIGKILL,hang,termreport"
    scheduler = start_scheduler(schedule=EVERY_SECOND, plan=plan, timeout_s=1.5, max_cycles=7, metrics=True)

    assert scheduler.finish() == 0

    finished = scheduler.events("schedule.cycle_finished")
    assert [(e["exit_code"], e["timed_out"]) for e in finished] == [
        (0, False), (1, False), (1, False), (3, False), (-9, False), (-9, True), (1, True)]
    samples = scheduler.metrics()
    # Every cycle's wall time, the killed ones included.
    assert metric(samples, "agent_fleet_cycle_duration_seconds_count") == 7
    duration_sum = metric(samples, "agent_fleet_cycle_duration_seconds_sum")
    assert duration_sum is not None and duration_sum >= 2 * 1.5  # the two stopped at their limit lasted it
    # exit 1 without a report, exit 3 and SIGKILL crashed; two were stopped at their time limit, one of which
    # still wrote its report on SIGTERM, as the real cycle does; the reports' own errors are counted by step.
    assert metric(samples, "agent_fleet_cycle_errors_total", step="cycle") == 3
    assert metric(samples, "agent_fleet_cycle_errors_total", step="timeout") == 2
    assert metric(samples, "agent_fleet_cycle_errors_total", step="merge") == 2
    # Three reports, each spawning one coder; the gauges hold the last report's picture (the one at the kill).
    assert metric(samples, "agent_fleet_spawns_total", role="coder", outcome="spawned") == 3
    assert metric(samples, "agent_fleet_agents_running", role="coder") == 2
    assert metric(samples, "agent_fleet_verdict", verdict="broken") == 1
    assert metric(samples, "agent_fleet_verdict", verdict="healthy") == 0
    # The moment the last cycle ended: the heartbeat's.
    heartbeat = read_heartbeat(scheduler.heartbeat_file)
    assert heartbeat is not None
    assert metric(samples, "agent_fleet_last_cycle_timestamp_seconds") == heartbeat.finished_at.timestamp()
    # The schedule's own interval, which the AgentFleetNoCycle alert measures lateness by.
    assert metric(samples, "agent_fleet_schedule_interval_seconds") == 1
    # And the log has every line the cycles wrote, reports included, before the scheduler says each ended:
    # what `coordinator status` reads is what it read before the tee.
    log = scheduler.log_bytes().decode().splitlines()
    assert [r["run"] for r in parse_reports(log)] == [0, 1, 6]
    assert [e["run"] for e in scheduler.events("fake.cycle")] == list(range(7))
    order = [e["event"] for e in scheduler.events() if e["event"] in ("fake.cycle", "schedule.cycle_finished")]
    assert order == ["fake.cycle", "schedule.cycle_finished"] * 7


def test_a_line_reaches_the_log_as_soon_as_the_cycle_writes_it_and_a_line_cut_by_the_kill_stays_as_it_was(
    start_scheduler: Callable[..., Scheduler],
) -> None:
    scheduler = start_scheduler(schedule=EVERY_SECOND, plan="partial,report:0", timeout_s=30, max_cycles=2,
                                metrics=True, kill_grace_s=0.5)
    wait_for(lambda: scheduler.records("partial"), "the cycle to write a line and a half")
    cycle = scheduler.records("start")[0]
    half = b'{"event": "cycle.report", "verdict": "bro'
    # Both the whole line and the half one, while the cycle still runs (for 30 s): no waiting for a newline.
    wait_for(lambda: b'{"event": "fake.line"}\n' + half in scheduler.log_bytes(), "the half line in the log", 5)
    assert alive(cycle["pid"])

    os.kill(cycle["pid"], signal.SIGKILL)  # killed mid-line
    assert scheduler.finish() == 0

    log = scheduler.log_bytes()
    # Unchanged: nothing is added to the cut line; the scheduler's next event follows it, as it always did.
    assert half + b'{"ts": ' in log
    assert log.count(half) == 1
    samples = scheduler.metrics()
    assert metric(samples, "agent_fleet_cycle_errors_total", step="cycle") == 1  # killed, and no report seen
    assert metric(samples, "agent_fleet_verdict", verdict="healthy") == 1  # the second cycle's report
    assert metric(samples, "agent_fleet_cycle_duration_seconds_count") == 2


def test_megabytes_of_any_bytes_pass_through_unchanged_without_blocking_the_cycle(
    start_scheduler: Callable[..., Scheduler],
) -> None:
    # Far more than a pipe holds (64 KiB): the cycle would block for good if nobody read it.
    payload = b"".join([
        b"plain line\n",
        b"\xff\xfe not UTF-8 \x80\n",
        b"carriage\rreturn\r\n",
        b"\x00NUL\x00\n",
        b"x" * 3_000_000 + b"\n",  # one line of 3 MB
        b"".join(b"line %d of many\n" % i for i in range(200_000)),
        b'{"event": "cycle.report", "verdict": "healthy", "roles": {"coder": {"desired": 1, "running": 1}}}\n',
        b"no newline at the end",
    ])
    scheduler = start_scheduler(schedule=EVERY_SECOND, plan="payload", timeout_s=60, max_cycles=1, metrics=True,
                                payload=payload)

    assert scheduler.finish() == 0

    # Byte for byte; the last line, without its newline, runs into the scheduler's next event as it always did.
    assert payload + b'{"ts": ' in scheduler.log_bytes()
    heartbeat = read_heartbeat(scheduler.heartbeat_file)
    assert heartbeat is not None and (heartbeat.exit_code, heartbeat.timed_out) == (0, False)
    samples = scheduler.metrics()
    assert metric(samples, "agent_fleet_verdict", verdict="healthy") == 1
    assert metric(samples, "agent_fleet_cycle_errors_total", step="cycle") == 0


def test_a_process_left_holding_the_cycles_output_does_not_hold_up_the_scheduler(
    start_scheduler: Callable[..., Scheduler],
) -> None:
    # The cycle exits at once, but a process of another session (out of reach of the group kill) keeps its
    # stdout open for 4 s: the scheduler waits its drain time, says so, and goes on; the late line still passes.
    scheduler = start_scheduler(schedule=ONCE_A_YEAR, plan="linger", drain_s=0.5)
    wait_for(lambda: scheduler.events("schedule.cycle_finished"), "the cycle to finish", 10)
    left_behind = scheduler.records("child")[0]
    (still_open,) = scheduler.events("schedule.cycle_output_open")
    assert still_open["waited_s"] == 0.5
    assert alive(left_behind["pid"])  # the cycle finished while its output was still open
    wait_for(lambda: b"late line\n" in scheduler.log_bytes(), "the late line to pass through", 10)

    scheduler.process.send_signal(signal.SIGTERM)
    assert scheduler.finish() == 0


# --- CycleOutputTee on its own, over a real pipe --------------------------------------------------


class Sink(io.BytesIO):
    """An output that fails, like a log whose reader went away."""

    def write(self, data: Any) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def tee_through_pipe(chunks: list[bytes], out: io.BytesIO, **kwargs: Any) -> CycleOutputTee:
    read_end, write_end = os.pipe()
    tee = CycleOutputTee(os.fdopen(read_end, "rb", buffering=0), out, **kwargs).start()

    def writer() -> None:
        with os.fdopen(write_end, "wb", buffering=0) as pipe:
            for chunk in chunks:
                pipe.write(chunk)

    thread = threading.Thread(target=writer)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the writer blocked: the tee stopped reading"
    assert tee.wait(timeout=30)
    return tee


def report_line(verdict: str) -> bytes:
    return json.dumps({"event": "cycle.report", "verdict": verdict}).encode() + b"\n"


def test_the_tee_picks_the_last_report_however_the_output_is_cut_into_reads() -> None:
    output = report_line("degraded") + b"noise\n" + report_line("healthy") + b'{"event": "cycle.done"}\n'
    out = io.BytesIO()
    # One byte per write: every line arrives in pieces.
    tee = tee_through_pipe([output[i:i + 1] for i in range(len(output))], out)
    assert out.getvalue() == output
    assert tee.report == {"event": "cycle.report", "verdict": "healthy"}


def test_the_tee_reads_a_last_line_without_newline_but_not_half_a_report() -> None:
    whole = tee_through_pipe([b"start\n", report_line("broken").rstrip(b"\n")], io.BytesIO())
    assert whole.report == {"event": "cycle.report", "verdict": "broken"}
    half = tee_through_pipe([report_line("healthy"), report_line("broken")[:20]], io.BytesIO())
    assert half.report == {"event": "cycle.report", "verdict": "healthy"}


def test_the_tee_holds_at_most_one_line_of_its_limit_and_passes_longer_ones_through_unread() -> None:
    long_report = json.dumps({"event": "cycle.report", "verdict": "broken", "padding": "x" * 5000}).encode() + b"\n"
    out = io.BytesIO()
    tee = tee_through_pipe([report_line("healthy"), long_report, b"after\n"], out, max_line_bytes=1024)
    assert out.getvalue() == report_line("healthy") + long_report + b"after\n"
    assert tee.report == {"event": "cycle.report", "verdict": "healthy"}  # the long one was not held, so not read
    # The next line after an overlong one is read again.
    tee = tee_through_pipe([long_report[:3000], long_report[3000:] + report_line("degraded")], io.BytesIO(),
                           max_line_bytes=1024)
    assert tee.report == {"event": "cycle.report", "verdict": "degraded"}


def test_a_failing_log_never_blocks_the_cycle_and_its_report_is_still_read() -> None:
    tee = tee_through_pipe([b"y" * 1_000_000 + b"\n", report_line("healthy"), b"z" * 1_000_000], Sink())
    assert tee.report == {"event": "cycle.report", "verdict": "healthy"}


def test_a_report_nested_too_deep_is_no_report_and_no_crash() -> None:
    deep = b'{"event": "cycle.report", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    tee = tee_through_pipe([report_line("healthy"), deep], io.BytesIO())
    assert tee.report == {"event": "cycle.report", "verdict": "healthy"}


# --- the HTTP server under idle connections (issue 20, finding 6) ----------------------------------

IDLE_CONNECTIONS = 1000


def threads_and_fds(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    threads = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Threads:"))
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


def test_a_thousand_idle_connections_leave_threads_and_open_files_bounded_and_cycles_and_scrapes_going(
    start_scheduler: Callable[..., Scheduler],
) -> None:
    from coordinator.web import MAX_CONNECTIONS, REQUEST_TIMEOUT_S

    scheduler = start_scheduler(schedule=EVERY_2_S, plan="report:0", metrics=True, serve=True)
    wait_for(lambda: scheduler.events("test.serving") and scheduler.events("schedule.cycle_finished"),
             "the scheduler to serve and finish its first cycle")
    port = scheduler.events("test.serving")[0]["port"]
    pid = scheduler.process.pid
    threads_before, fds_before = threads_and_fds(pid)
    # Fixed ceilings: the loop's one thread and a cycle's tee, and the capped connections plus a cycle's pipes.
    max_threads = threads_before + 2
    max_fds = fds_before + MAX_CONNECTIONS + 8

    held: list[socket.socket] = []
    peak_threads = peak_fds = 0
    try:
        for _ in range(IDLE_CONNECTIONS):  # connected and silent, as an attacker's sockets are
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        cycles_before = len(scheduler.records("start"))
        # Longer than the server's request timeout, so the idle connections it holds time out meanwhile.
        watch_until = time.monotonic() + REQUEST_TIMEOUT_S + 2
        scrapes = []
        while time.monotonic() < watch_until:
            threads, fds = threads_and_fds(pid)
            peak_threads, peak_fds = max(peak_threads, threads), max(peak_fds, fds)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                scrapes.append((response.status, response.read()))
            time.sleep(0.2)
        cycles_during = scheduler.records("start")[cycles_before:]
    finally:
        for sock in held:
            sock.close()

    assert peak_threads <= max_threads, f"{peak_threads} threads, from {threads_before}"
    assert peak_fds <= max_fds, f"{peak_fds} open files, from {fds_before}"
    # Every scrape answered while the thousand sockets were held, with the cycles' report in it.
    assert scrapes and all(status == 200 for status, _ in scrapes)
    assert b'agent_fleet_verdict{verdict="healthy"} 1.0' in scrapes[-1][1]
    # The cycles went on at their ticks (every 2 s) meanwhile, each less than a second late.
    assert len(cycles_during) >= 2
    for run in cycles_during:
        assert run["at"] % 2 < 1, f"a cycle started {run['at'] % 2:.2f}s after its tick"
