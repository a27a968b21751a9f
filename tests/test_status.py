"""`coordinator status` against the log of a real container that printed crafted cycle reports."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import docker
import pytest

from coordinator import labels
from coordinator.report import (
    CycleReport,
    HealthReport,
    HealthStatus,
    MergeOutcome,
    MergeReport,
    PullOutcome,
    RoleTally,
    StepError,
    StepResult,
    StepStatus,
    parse_reports,
    to_dict,
)
from coordinator.runtimes.docker import DockerRuntime
from coordinator.status import render_status, run_status, status_json
from coordinator.verdict import advise, judge
from tests.conftest import ROOT
from tests.terminal import Terminal

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
UP = HealthReport(status=HealthStatus.UP, code=200, latency_ms=41.7, attempts=1)


def report_line(fleet: str, minute: int, **fields: object) -> str:
    report = CycleReport(
        fleet=fleet,
        started_at=T0 + timedelta(minutes=minute),
        roles={
            "api_builder": RoleTally(desired=3, running=3, mode="Task-driven"),
            "code_reviewer": RoleTally(desired=4, running=4, mode="Reviewer"),
        },
        merge=MergeReport(status=StepStatus.OK, review_queue=2),
        health=UP,
    )
    for name, value in fields.items():
        setattr(report, name, value)
    report.verdict = judge(report)
    report.advice = advise(report)
    return json.dumps(to_dict(report))


def crafted_log(fleet: str) -> list[str]:
    """Three cycles: healthy (two merges), broken (production 503), degraded (queue of 14, a merge error)."""
    return [
        "agent-fleet coordinator starting",  # not JSON
        json.dumps({"event": "cycle.started", "fleet": fleet}),  # another event
        report_line(
            fleet, 0,
            merge=MergeReport(
                status=StepStatus.OK,
                pulls=[PullOutcome(7, MergeOutcome.MERGED, "merged"), PullOutcome(8, MergeOutcome.MERGED, "merged")],
            ),
        ),
        '{"event": "cycle.report", "fleet": ',  # a line cut short
        report_line(fleet, 5, health=HealthReport(status=HealthStatus.DOWN, code=503, error="unexpected status 503")),
        report_line(
            fleet, 10,
            merge=MergeReport(status=StepStatus.FAILED, review_queue=14),
            errors=[StepError("merge", "GitHub answered 502")],
            steps={"merge": StepResult(StepStatus.FAILED, "GitHub answered 502")},
        ),
    ]


def start_coordinator(
    client: docker.DockerClient, image: str, fleet: str, lines: list[str], *, stderr_lines: list[str] | None = None
) -> docker.models.containers.Container:
    """A stand-in coordinator: a labelled container that prints the given log lines and exits."""
    container = client.containers.run(
        image,
        ["sh", "-c", 'printf "%s\\n" "$LOG_LINES"; printf "%s\\n" "$ERR_LINES" >&2'],
        environment={"LOG_LINES": "\n".join(lines), "ERR_LINES": "\n".join(stderr_lines or [])},
        labels={labels.FLEET: fleet, labels.COMPONENT: labels.COORDINATOR},
        name=f"{fleet}-coordinator-{len(lines)}",
        detach=True,
    )
    assert container.wait(timeout=60)["StatusCode"] == 0
    return container


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("2025-")]


@pytest.mark.docker
def test_status_shows_the_last_cycles_and_the_current_advice(
    docker_client: docker.DockerClient, base_image: str, fleet_id: str
) -> None:
    # A report on stderr is not the coordinator's record (the report goes to stdout).
    stray = report_line(fleet_id, 59, health=HealthReport(status=HealthStatus.DOWN, error="timeout"))
    start_coordinator(docker_client, base_image, fleet_id, crafted_log(fleet_id), stderr_lines=[stray])
    out = io.StringIO()

    assert run_status(fleet_id=fleet_id, out=out, runtime=DockerRuntime()) == 0

    text = out.getvalue()
    rows = table_rows(text)
    assert len(rows) == 3
    assert rows[0].split() == ["2025-03-01", "12:00:00", "7/7", "0", "2", "up,", "HTTP", "200,", "42", "ms", "healthy",
                                "0"]
    assert rows[1].split() == ["2025-03-01", "12:05:00", "7/7", "0", "0", "down,", "HTTP", "503", "broken", "0"]
    assert rows[2].split() == ["2025-03-01", "12:10:00", "7/7", "0", "0", "up,", "HTTP", "200,", "42", "ms", "degraded",
                                "1"]
    assert f"fleet {fleet_id}: degraded at 2025-03-01 12:10:00 UTC" in text
    assert "  merge: GitHub answered 502" in text
    advice = "  - raise the count of code_reviewer: 14 pull requests await review (review_queue 14 > 10)"
    assert advice in text
    assert "timeout" not in text


@pytest.mark.docker
def test_status_shows_only_the_last_n(docker_client: docker.DockerClient, base_image: str, fleet_id: str) -> None:
    start_coordinator(docker_client, base_image, fleet_id, crafted_log(fleet_id))
    out = io.StringIO()
    assert run_status(fleet_id=fleet_id, last=2, out=out, runtime=DockerRuntime()) == 0
    assert [row.split()[1] for row in table_rows(out.getvalue())] == ["12:05:00", "12:10:00"]


@pytest.mark.docker
def test_status_json_is_the_reports_and_the_current_advice(
    docker_client: docker.DockerClient, base_image: str, fleet_id: str
) -> None:
    container = start_coordinator(docker_client, base_image, fleet_id, crafted_log(fleet_id))
    out = io.StringIO()
    assert run_status(fleet_id=fleet_id, output="json", out=out, runtime=DockerRuntime()) == 0
    data = json.loads(out.getvalue())
    assert data["source"] == f"container {container.name}"
    assert data["verdict"] == "degraded"
    assert [r["verdict"] for r in data["reports"]] == ["healthy", "broken", "degraded"]
    assert data["advice"] == [
        {
            "role": "code_reviewer",
            "signal": "review_queue",
            "value": 14,
            "threshold": 10,
            "action": "raise the count of code_reviewer: 14 pull requests await review",
        }
    ]


@pytest.mark.docker
def test_status_reads_the_newest_coordinator_or_the_named_one(
    docker_client: docker.DockerClient, base_image: str, fleet_id: str
) -> None:
    older = start_coordinator(docker_client, base_image, fleet_id, [report_line(fleet_id, 0)])
    start_coordinator(docker_client, base_image, fleet_id, crafted_log(fleet_id))

    newest = io.StringIO()
    assert run_status(fleet_id=fleet_id, out=newest, runtime=DockerRuntime()) == 0
    assert len(table_rows(newest.getvalue())) == 3

    named = io.StringIO()
    assert run_status(fleet_id="ignored", source=older.name, out=named, runtime=DockerRuntime()) == 0
    assert len(table_rows(named.getvalue())) == 1
    assert f"coordinator container {older.name}" in named.getvalue()


@pytest.mark.docker
def test_no_coordinator_is_a_clear_error(docker_client: docker.DockerClient, fleet_id: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_status(fleet_id=fleet_id, out=out, err=err, runtime=DockerRuntime()) == 1
    assert f"no coordinator container of fleet {fleet_id!r}" in err.getvalue()
    assert "--fleet" in err.getvalue()
    assert out.getvalue() == ""

    err = io.StringIO()
    assert run_status(fleet_id=fleet_id, source=f"{fleet_id}-absent", out=out, err=err, runtime=DockerRuntime()) == 1
    assert f"no container named '{fleet_id}-absent'" in err.getvalue()


@pytest.mark.docker
def test_a_coordinator_without_reports_yet_says_so(
    docker_client: docker.DockerClient, base_image: str, fleet_id: str
) -> None:
    start_coordinator(docker_client, base_image, fleet_id, ["agent-fleet coordinator starting"])
    out = io.StringIO()
    assert run_status(fleet_id=fleet_id, out=out, runtime=DockerRuntime()) == 0
    assert "no cycle reports in the log yet" in out.getvalue()


@pytest.mark.docker
def test_python_m_coordinator_status(docker_client: docker.DockerClient, base_image: str, fleet_id: str) -> None:
    start_coordinator(docker_client, base_image, fleet_id, crafted_log(fleet_id))
    env = {**os.environ, "FLEET_ID": fleet_id}
    result = subprocess.run(
        [sys.executable, "-m", "coordinator", "status", "--last", "1", "--format", "text"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(table_rows(result.stdout)) == 1
    assert "degraded" in result.stdout


@pytest.mark.parametrize("last", [0, -3])
def test_last_must_be_positive(last: int) -> None:
    err = io.StringIO()
    assert run_status(fleet_id="any", last=last, out=io.StringIO(), err=err) == 2
    assert "--last must be 1 or more" in err.getvalue()


def test_parse_reports_keeps_only_whole_cycle_reports() -> None:
    lines = crafted_log("f")
    reports = parse_reports(lines)
    assert [r["started_at"] for r in reports] == [
        "2025-03-01T12:00:00Z",
        "2025-03-01T12:05:00Z",
        "2025-03-01T12:10:00Z",
    ]
    assert parse_reports(["", "null", "[1, 2]", '{"event": "cycle.started"}']) == []


def test_render_status_marks_plans_and_shows_spawn_failures() -> None:
    line = report_line(
        "f", 0,
        roles={"api_builder": RoleTally(desired=3, running=0, mode="Task-driven", spawned=2, failed=1)},
        dry_run=True,
    )
    text = render_status(parse_reports([line]))
    [row] = table_rows(text)
    assert "(plan)" in row
    assert "0/3" in row and "2 (1 failed)" in row
    assert text.rstrip().endswith("advice: none")


def test_render_status_says_why_the_latest_cycle_is_not_healthy() -> None:
    healthy = report_line("f", 0)
    degraded = report_line("f", 5, errors=[StepError("merge", "GitHub answered 502")],
                           verdict_reasons=["errors in merge"])
    text = render_status(parse_reports([healthy, degraded]))
    assert text.splitlines()[1] == "the latest cycle's own verdict: degraded, because: errors in merge"
    assert text.splitlines()[2] == "across the last hour's cycles: healthy"
    assert "because" not in render_status(parse_reports([healthy]))


def test_status_shows_the_judgment_across_cycles_beside_the_cycles_own_verdict_even_from_unshown_cycles() -> None:
    failing = {"merge": MergeReport(status=StepStatus.FAILED), "errors": [StepError("merge", "GitHub answered 502")],
               "steps": {"merge": StepResult(StepStatus.FAILED, "GitHub answered 502")},
               "verdict_reasons": ["errors in merge"]}
    reports = parse_reports([report_line("f", minute, **failing) for minute in (0, 5, 10)])
    across = ("across the last hour's cycles: broken, because: GitHub API errors persisting across cycles: the merge "
              "step failed in each of the last 3 cycles (latest: GitHub answered 502)")
    # Only the latest is shown (--last 1); the two before it are read for the judgment.
    text = render_status(reports[-1:], earlier=reports[:-1])
    assert text.splitlines()[:3] == [
        "fleet f: broken at 2025-03-01 12:10:00 UTC (last 1 cycle)",
        "the latest cycle's own verdict: degraded, because: errors in merge",
        across,
    ]
    data = status_json(reports[-1:], source="container c", earlier=reports[:-1])
    assert (data["verdict"], data["verdict_now"]) == ("degraded", "broken")
    assert data["across_cycles"]["judgments"][0]["name"] == "github_errors_persisting"
    assert len(data["reports"]) == 1


# --- output that fits where it goes: a terminal, a pipe --------------------------------------------


def status_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "coordinator", "status", *args]


@pytest.mark.docker
def test_status_is_a_table_on_a_terminal_and_json_through_a_pipe(
    docker_client: docker.DockerClient, base_image: str, fleet_id: str
) -> None:
    start_coordinator(docker_client, base_image, fleet_id, crafted_log(fleet_id))
    env = {**os.environ, "FLEET_ID": fleet_id}

    terminal = Terminal(status_command(), env)
    try:
        screen = terminal.read_until(lambda text: terminal.process.poll() is not None and "advice" in text,
                                     "the table")
    finally:
        terminal.close()
    assert terminal.process.returncode == 0
    assert f"fleet {fleet_id}: degraded at 2025-03-01 12:10:00 UTC" in screen
    assert len(table_rows(screen.replace("\r\n", "\n"))) == 3
    assert "\x1b[" not in screen  # no screen control without --watch

    piped = subprocess.run(status_command(), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert piped.returncode == 0, piped.stderr
    data = json.loads(piped.stdout)
    assert (data["verdict"], data["verdict_now"], data["across_cycles"]["verdict"]) == ("degraded", "degraded",
                                                                                         "healthy")
    assert [r["verdict"] for r in data["reports"]] == ["healthy", "broken", "degraded"]

    # --format overrides both ways.
    as_text = subprocess.run(status_command("--format", "text"), env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=60, check=False)
    assert len(table_rows(as_text.stdout)) == 3
    terminal = Terminal(status_command("--format", "json"), env)
    try:
        screen = terminal.read_until(lambda text: terminal.process.poll() is not None and text.rstrip().endswith("}"),
                                     "the JSON")
    finally:
        terminal.close()
    assert json.loads(screen)["verdict"] == "degraded"


@pytest.mark.docker
def test_status_watch_redraws_when_a_new_cycle_has_reported(
    docker_client: docker.DockerClient, base_image: str, fleet_id: str
) -> None:
    start_coordinator(docker_client, base_image, fleet_id, crafted_log(fleet_id))
    env = {**os.environ, "FLEET_ID": fleet_id}
    clear = "\x1b[H\x1b[2J"
    terminal = Terminal(status_command("--watch", "--every", "0.3"), env)
    try:
        terminal.read_until(lambda text: "12:10:00" in text and "advice" in text, "the first drawing")
        # Reads of an unchanged log draw nothing more: a second of reads every 0.3 s, watched as they come.
        assert terminal.drain(1.0).count(clear) == 1
        # The next cycle reports (a newer coordinator's log, as after `pulumi up` replaced it).
        start_coordinator(docker_client, base_image, fleet_id, [*crafted_log(fleet_id), report_line(fleet_id, 15)])
        screen = terminal.read_until(lambda text: "12:15:00" in text and text.rstrip().endswith("advice: none"),
                                     "the drawing after the new cycle")
        # While the newer coordinator's container starts, a read may find its log not yet written and draw
        # the source it did find; whatever came between, the last drawing is the new cycle's.
        assert screen.count(clear) >= 2
        latest = screen.split(clear)[-1]
        assert f"fleet {fleet_id}: healthy at 2025-03-01 12:15:00 UTC" in latest
        assert len(table_rows(latest.replace("\r\n", "\n"))) == 4
        terminal.process.send_signal(signal.SIGINT)  # Ctrl-C ends the watch
        assert terminal.process.wait(timeout=30) == 0
    finally:
        terminal.close()


# --- the scheduler's read-back of the day's reports, for its page ----------------------------------


@pytest.mark.docker
def test_the_scheduler_reads_the_reports_back_from_the_coordinators_log_as_status_does(
    docker_client: docker.DockerClient, base_image: str, fleet_id: str
) -> None:
    from coordinator.cli import read_back_history
    from coordinator.history import ReportHistory
    from coordinator.report import EventLog

    history, events = ReportHistory(), io.StringIO()
    missing = read_back_history(fleet_id, history, EventLog(fleet_id, stream=events), runtime=DockerRuntime())
    missing.join(timeout=60)
    assert [json.loads(line)["event"] for line in events.getvalue().splitlines()] == ["schedule.history_unavailable"]
    assert history.held() == []

    plan = report_line(fleet_id, 12, dry_run=True)  # a plan's report is no cycle
    start_coordinator(docker_client, base_image, fleet_id, [*crafted_log(fleet_id), plan])
    events = io.StringIO()
    found = read_back_history(fleet_id, history, EventLog(fleet_id, stream=events), runtime=DockerRuntime())
    found.join(timeout=60)
    assert json.loads(events.getvalue().splitlines()[-1])["event"] == "schedule.history_read"
    assert [r["started_at"] for r in history.held()] == [
        "2025-03-01T12:00:00Z", "2025-03-01T12:05:00Z", "2025-03-01T12:10:00Z"]
    # The same report seen again, as from the cycle that wrote it, is kept once.
    history.add(parse_reports(crafted_log(fleet_id))[-1:])
    assert len(history.held()) == 3


def test_render_status_lists_the_merge_queue_and_branch_updates_with_their_reasons() -> None:
    merge = MergeReport(status=StepStatus.OK, pulls=[
        PullOutcome(3, MergeOutcome.QUEUED, "enqueued (AWAITING_CHECKS, position 1)"),
        PullOutcome(4, MergeOutcome.QUEUE_FAILED, "merge queue entry unmergeable"),
        PullOutcome(5, MergeOutcome.UPDATED, "brought up to date; merges once its checks pass on the new head"),
        PullOutcome(6, MergeOutcome.SKIPPED, "not approved"),
    ])
    text = render_status(parse_reports([report_line("f", 0), report_line("f", 5, merge=merge)]))
    assert "failed in the merge queue (latest cycle): 1\n  #4: merge queue entry unmergeable\n" in text
    assert "in the merge queue (latest cycle): 1\n  #3: enqueued (AWAITING_CHECKS, position 1)\n" in text
    assert "brought up to date (latest cycle): 1\n  #5: brought up to date;" in text
    assert "#6" not in text
    assert "merge queue" not in render_status(parse_reports([report_line("f", 0)]))
