"""monitoring/: the alert rules, their unit tests and the example Prometheus config, through the real promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, prometheus_tool

MONITORING = ROOT / "monitoring"
ALERTS = MONITORING / "alerts.yml"
ALERTS_TEST = MONITORING / "alerts_test.yml"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"
PROMETHEUS_SWARM_CONFIG = MONITORING / "prometheus-swarm.yml"
RUNBOOK = "docs/operations.md"
SEVERITIES = {"critical", "warning"}


@pytest.fixture(scope="module")
def promtool() -> str:
    return prometheus_tool("promtool")


def run_promtool(promtool: str, *args: str | Path) -> str:
    result = subprocess.run([promtool, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(map(str, args))} failed:\n{output}"
    return output


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_alert_rules_pass_promtool_check(promtool: str) -> None:
    output = run_promtool(promtool, "check", "rules", ALERTS)
    assert f"SUCCESS: {len(alert_rules())} rules found" in output


@pytest.mark.parametrize("config", [PROMETHEUS_CONFIG, PROMETHEUS_SWARM_CONFIG], ids=lambda path: path.name)
def test_the_example_prometheus_configs_pass_promtool_check_with_their_rules(promtool: str, config: Path) -> None:
    output = run_promtool(promtool, "check", "config", config)
    assert "SUCCESS: 1 rule files found" in output


def test_the_alert_rules_pass_their_unit_tests(promtool: str) -> None:
    output = run_promtool(promtool, "test", "rules", ALERTS_TEST)
    assert "SUCCESS" in output


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: str(rule["alert"]))
def test_every_alert_has_a_severity_a_summary_and_its_runbook_anchor(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["annotations"]["summary"].strip()
    assert rule["annotations"]["runbook_url"] == f"{RUNBOOK}#{rule['alert'].lower()}"


def test_every_alert_is_tested_both_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(ALERTS_TEST.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested staying silent"


def test_the_scrape_job_finds_coordinators_by_label_and_is_the_one_the_rules_watch() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    (discovery,) = job["docker_sd_configs"]
    assert {"name": "label", "values": ["agent-fleet.component=coordinator"]} in discovery["filters"]
    relabel = job["relabel_configs"]
    fleet_label = ["__meta_docker_container_label_agent_fleet_fleet"]
    assert any(r.get("target_label") == "fleet" and r["source_labels"] == fleet_label for r in relabel)
    assert any(r.get("target_label") == "__address__" and r["replacement"].endswith(":9464") for r in relabel)
    coordinator_down = next(rule for rule in alert_rules() if rule["alert"] == "AgentFleetCoordinatorDown")
    assert f'job="{job["job_name"]}"' in coordinator_down["expr"]


def test_the_swarm_scrape_job_finds_coordinator_tasks_by_label_and_is_the_one_the_rules_watch() -> None:
    (job,) = yaml.safe_load(PROMETHEUS_SWARM_CONFIG.read_text())["scrape_configs"]
    (shipped,) = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    assert job["job_name"] == shipped["job_name"]  # the one AgentFleetCoordinatorDown watches
    (discovery,) = job["dockerswarm_sd_configs"]
    assert discovery["role"] == "tasks"
    assert {"name": "label", "values": ["agent-fleet.component=coordinator"]} in discovery["filters"]
    assert any(r.get("target_label") == "fleet" for r in job["relabel_configs"])
