"""The cycle ends by its deadline and always writes its report, whatever its steps' servers do."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime

from coordinator.cycle import CycleAdapters, run_cycle
from coordinator.report import EventLog, HealthReport, StepStatus
from coordinator.settings import HealthSettings, Settings
from tests.fakes.production import TRICKLE_HEAD, production
from tests.fakes.runtime import MemoryRuntime
from tests.fleet_harness import ROOT, cycle_env, parse_lines


def adapters(probe: object) -> CycleAdapters:
    return CycleAdapters(
        runtime=MemoryRuntime,
        github=lambda settings: None,  # type: ignore[arg-type,return-value]
        production=probe,  # type: ignore[arg-type]
        clock=lambda: datetime.now(UTC),
    )


def test_a_step_still_running_at_the_deadline_is_cut_off_and_the_report_is_written() -> None:
    def hanging_probe(settings: HealthSettings, *, deadline: float | None = None) -> HealthReport:
        time.sleep(30)
        raise AssertionError("never reached")

    settings = replace(Settings(), health=HealthSettings(url="http://127.0.0.1:9/"))
    out = io.StringIO()
    started = time.monotonic()
    report = run_cycle(settings, log=EventLog("f", stream=out), adapters=adapters(hanging_probe),
                       deadline=time.monotonic() + 1.0)
    assert time.monotonic() - started < 6
    assert report.steps["health"].status is StepStatus.FAILED
    assert "cut off at the cycle's deadline" in report.steps["health"].detail
    assert report.steps["inventory"].status is StepStatus.OK
    last = json.loads(out.getvalue().splitlines()[-1])
    assert last["event"] == "cycle.report" and last["steps"]["health"]["status"] == "failed"


def test_a_cycle_stopped_by_sigterm_writes_its_report_before_it_exits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Production trickles its answer and the health check has a long budget: the scheduler's SIGTERM comes first.
    with production(TRICKLE_HEAD) as prod:
        env = cycle_env("tsigterm", None, HEALTH_URL=prod.url, HEALTH_TIMEOUT_S="60",
                        DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
        proc = subprocess.Popen([sys.executable, "-m", "coordinator", "cycle"], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not prod.requests and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 1, stderr
    report = parse_lines(stdout)[-1]
    assert report["event"] == "cycle.report"
    assert report["steps"]["health"]["status"] == "failed"
    assert "stopped by the scheduler" in report["steps"]["health"]["detail"]


def test_a_production_that_trickles_its_answer_ends_the_health_check_at_its_budget(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The probe's case: one byte every 0.5 s, HEALTH_TIMEOUT_S=3. It used to hold the cycle past 45 s, no report.
    with production(TRICKLE_HEAD, trickle_s=0.5) as prod:
        env = cycle_env("ttrickle", None, HEALTH_URL=prod.url, HEALTH_TIMEOUT_S="3",
                        DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
        proc = subprocess.run([sys.executable, "-m", "coordinator", "cycle"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=40)
        assert prod.requests, "the health check never reached production"
    report = parse_lines(proc.stdout)[-1]
    assert report["event"] == "cycle.report", proc.stdout + proc.stderr
    assert report["health"]["status"] == "down", report["health"]
    assert report["health"]["error"] == "timeout", report["health"]
    # Given up at its budget of 3 s, wall clock, however the bytes keep coming: not the 45 s it used to take.
    assert 3000 <= report["health"]["latency_ms"] < 3000 + 2000, report["health"]
    assert report["steps"]["health"]["duration_s"] < 3 + 2, report["steps"]["health"]


def test_a_github_that_trickles_its_answers_ends_the_merge_step_by_the_cycle_deadline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.fakes.github import FakeGitHub

    token = "fake-trickle-token-" + "t7" * 12
    with FakeGitHub(token=token) as github:
        github.fail("POST", "/api/graphql", 200, trickle=0.5, times=None)
        env = cycle_env("ttrickle", None, GITHUB_REPOSITORY=github.repository, GITHUB_TOKEN=token,
                        GITHUB_API_URL=github.api_url, GITHUB_GRAPHQL_URL=github.graphql_url,
                        COORDINATOR_CYCLE_TIMEOUT_S="6", DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
        proc = subprocess.run([sys.executable, "-m", "coordinator", "cycle"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=40)
    report = parse_lines(proc.stdout)[-1]
    assert report["event"] == "cycle.report", proc.stdout + proc.stderr
    assert report["steps"]["merge"]["status"] == "failed", report["steps"]
    assert report["duration_s"] < 6 + 3, report  # the cycle's limit and the steps' grace, not 45 s
    assert token not in proc.stdout + proc.stderr
