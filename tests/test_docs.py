"""The docs against the code, so that they cannot drift from it.

The configuration reference is the generator's output and names every setting; the README's status example is what
`status` prints; its benchmark figures are the benchmarks' own; every metric, merge reason and log event the code
has is named; every constant the docs quote as `NAME` = value is the code's; every relative link and anchor
resolves, the alerts' runbook links included.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import pkgutil
import re
import sys
import unicodedata
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

import coordinator
from coordinator import verdict
from coordinator.github_port import MergeFailure
from coordinator.metrics import FleetMetrics
from coordinator.report import (
    REPORT_EVENT,
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
    to_dict,
)
from coordinator.settings import VARIABLES
from coordinator.status import render_status
from coordinator.steps.merge import DRY_RUN, LIMIT_REACHED, STOPPED_EARLY
from coordinator.steps.merge_rules import Refusal
from deploy.stack_config import KNOWN_KEYS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
DESIGN = ROOT / "docs" / "design.md"
OPERATIONS = ROOT / "docs" / "operations.md"
# The pages this project's docs are made of: the README and everything under docs/.
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# --- the generated reference ---------------------------------------------------------------------


def reference_script() -> ModuleType:
    """scripts/reference as a module (it has no .py suffix), so its `render` runs in this process."""
    path = ROOT / "scripts" / "reference"
    loader = importlib.machinery.SourceFileLoader("scripts_reference", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # its dataclasses look their module up there
    loader.exec_module(module)
    return module


def test_the_configuration_reference_is_the_generators_output() -> None:
    expected = reference_script().render()
    assert text(CONFIGURATION) == expected, (
        "docs/configuration.md is out of date: run `scripts/reference > docs/configuration.md` and commit it"
    )


@pytest.mark.parametrize("name", sorted(VARIABLES))
def test_every_runtime_variable_is_in_the_configuration_reference(name: str) -> None:
    assert f"| `{name}` |" in text(CONFIGURATION)


@pytest.mark.parametrize("key", KNOWN_KEYS)
def test_every_stack_key_is_in_the_configuration_reference(key: str) -> None:
    assert f"| `{key}` |" in text(CONFIGURATION)


# --- the README ----------------------------------------------------------------------------------


def test_the_readme_names_the_two_set_up_commands() -> None:
    assert "scripts/up      # deploy" in text(README) and "scripts/test    # the whole test suite" in text(README)


def test_the_readme_stays_a_five_minute_read() -> None:
    lines = len(text(README).splitlines())
    assert lines <= 200, f"README.md has {lines} lines; move reference to docs/ (aim for about 150)"


def status_example_reports() -> list[dict[str, Any]]:
    """The four cycles behind the README's `status` example, made and judged by the code itself."""
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    up = HealthReport(status=HealthStatus.UP, code=200, latency_ms=38.2, attempts=1)

    def cycle_report(minute: int, *, builders: RoleTally | None = None, merged: tuple[int, ...] = (),
                     queue: int = 3, health_report: HealthReport = up,
                     errors: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
        report = CycleReport(
            fleet="agent-fleet-prod", started_at=t0 + timedelta(minutes=minute), duration_s=1.2,
            roles={
                "api_builder": builders or RoleTally(desired=3, running=3, mode="Task-driven"),
                "code_reviewer": RoleTally(desired=2, running=2, mode="Reviewer"),
            },
            merge=MergeReport(status=StepStatus.OK, open=queue + 4, review_queue=queue,
                              pulls=[PullOutcome(n, MergeOutcome.MERGED, "merged") for n in merged]),
            health=health_report,
        )
        for step, message in errors:
            report.errors.append(StepError(step, message))
            report.steps[step] = StepResult(StepStatus.FAILED, message)
        report.verdict = verdict.judge(report)
        report.verdict_reasons = [finding.reason for finding in verdict.findings(report)]
        report.advice = verdict.advise(report)
        loaded: dict[str, Any] = json.loads(json.dumps(to_dict(report)))
        return loaded

    missing_image = ("agent-fleet-prod-api_builder-2: image ghcr.io/acme/agent:2 is not on the Docker host and "
                     "pulling it failed: not found")
    return [
        cycle_report(0, merged=(41, 42)),
        cycle_report(5, builders=RoleTally(desired=3, running=2, mode="Task-driven", spawned=1)),
        cycle_report(10, health_report=HealthReport(status=HealthStatus.DOWN, code=503, latency_ms=12.0,
                                                    error="unexpected status 503", attempts=3)),
        cycle_report(15, queue=14, builders=RoleTally(desired=3, running=1, mode="Task-driven", failed=1, held_back=1),
                     errors=(("reconcile", missing_image),)),
    ]


def test_the_readmes_status_example_is_what_status_prints() -> None:
    shown = render_status(status_example_reports())
    assert shown in text(README), f"the README's status example should read:\n{shown}"


def metric_names() -> list[str]:
    names = []
    for family in FleetMetrics().registry.collect():
        names.append(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


@pytest.mark.parametrize("name", metric_names())
def test_every_metric_is_in_the_metrics_table(name: str) -> None:
    """monitoring/README.md owns the table of metrics; the README and the other docs link to it."""
    assert f"| `{name}` |" in text(ROOT / "monitoring" / "README.md")


# --- design and operations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "reason", [*(r.value for r in Refusal), *(f.value for f in MergeFailure), LIMIT_REACHED, STOPPED_EARLY, DRY_RUN]
)
def test_every_merge_reason_is_in_the_design(reason: str) -> None:
    assert f"`{reason}`" in text(DESIGN)


def emitted_events() -> list[str]:
    found = {REPORT_EVENT}
    for path in (ROOT / "coordinator").rglob("*.py"):
        found |= set(re.findall(r'\bemit\(\s*"([a-z_]+\.[a-z_]+)"', text(path)))
    return sorted(found)


@pytest.mark.parametrize("event", emitted_events())
def test_every_event_the_coordinator_logs_is_in_the_runbook(event: str) -> None:
    assert f"`{event}`" in text(OPERATIONS)


def test_the_runbooks_report_example_has_the_reports_fields() -> None:
    [example] = re.findall(r"```json\n(\{\"event\": \"cycle.report\".*?)\n```", text(OPERATIONS), flags=re.DOTALL)
    shown = json.loads(example)
    actual = to_dict(CycleReport(
        fleet="f", started_at=datetime(2026, 3, 2, tzinfo=UTC), roles={"r": RoleTally(desired=1, running=1)},
        merge=MergeReport(pulls=[PullOutcome(1, MergeOutcome.MERGED, "merged")]),
    ))
    assert list(shown) == list(actual)
    assert list(shown["roles"]["api_builder"]) == list(actual["roles"]["r"])
    assert list(shown["merge"]) == list(actual["merge"])
    assert list(shown["merge"]["pulls"][0]) == list(actual["merge"]["pulls"][0])
    assert list(shown["health"]) == list(actual["health"])
    assert list(shown["steps"]["inventory"]) == ["status", "detail", "duration_s"]


def coordinator_modules() -> list[ModuleType]:
    """Every module of the coordinator package (its `__main__` aside, which would run the command line)."""
    found = []
    for info in pkgutil.walk_packages(coordinator.__path__, "coordinator."):
        if not info.name.endswith("__main__"):
            found.append(importlib.import_module(info.name))
    return found


@cache
def constants() -> dict[str, float | None]:
    """The coordinator's named numeric constants; None for a name two modules give different values."""
    found: dict[str, float | None] = {}
    for module in coordinator_modules():
        for name, value in vars(module).items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                found[name] = value if found.get(name, value) == value else None
    return found


QUOTE = re.compile(r"`([A-Z][A-Z0-9_]*)` = ([0-9]+(?:\.[0-9]+)?)")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_constant_the_docs_quote_is_the_codes(page: Path) -> None:
    for name, value in QUOTE.findall(text(page)):
        assert name in constants(), f"{page.name} quotes `{name}`, which the code does not define"
        assert constants()[name] is not None, f"{page.name} quotes `{name}`, which two modules define differently"
        assert float(value) == constants()[name], f"{page.name} says {name} = {value}; the code: {constants()[name]}"


@pytest.mark.parametrize("name", [n for n in constants() if n in vars(verdict)])
def test_every_verdict_threshold_is_quoted_in_the_design(name: str) -> None:
    assert re.search(rf"`{name}` = ", text(DESIGN)), f"docs/design.md should quote `{name}` = {constants()[name]}"


# --- links and anchors ---------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped (hyphens and underscores kept),
    spaces turned into hyphens."""
    plain = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    kept = "".join(ch for ch in plain if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in text(path).splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (match := re.match(r"#{1,6} (.+)", line)):
            anchor = github_anchor(match[1])
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    body = re.sub(r"```.*?```", "", text(path), flags=re.DOTALL)  # code blocks hold no links
    body = re.sub(r"`[^`\n]*`", "", body)
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", body) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_points_at_a_file_and_anchor_that_exist(page: Path) -> None:
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        assert linked.exists(), f"{page.name} links to {target}, which does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name} links to {target}: no such heading in {linked.name}"


def test_every_alerts_runbook_link_has_its_heading_in_the_runbook() -> None:
    rules = yaml.safe_load(text(ROOT / "monitoring" / "alerts.yml"))["groups"][0]["rules"]
    for rule in rules:
        target = rule["annotations"]["runbook_url"]
        file_part, _, anchor = target.partition("#")
        assert (ROOT / file_part).resolve() == OPERATIONS
        assert anchor in anchors(OPERATIONS), f"docs/operations.md needs a heading whose anchor is #{anchor}"


def test_the_anchor_rule_is_githubs() -> None:
    assert github_anchor("AgentFleetBroken") == "agentfleetbroken"
    assert github_anchor("`pulumi destroy`") == "pulumi-destroy"
    assert github_anchor("What to do on each verdict") == "what-to-do-on-each-verdict"
    assert github_anchor("Runtimes: one engine, a swarm, and Kubernetes") == (
        "runtimes-one-engine-a-swarm-and-kubernetes"
    )


def test_the_readmes_benchmark_figures_are_the_benchmarks_own() -> None:
    readme = text(README)
    section = readme[readme.index("## Benchmarks"):readme.index("## Where to read on")]
    figures = re.findall(r"\d+(?:\.\d+)?(?:\u00d7| s\b| MB\b)", section)  # \u00d7: the multiplication sign
    assert figures, "the README's Benchmarks section quotes no figure"
    measured = text(ROOT / "benchmarks" / "README.md")
    missing = [figure for figure in figures if figure not in measured]
    assert not missing, f"the README quotes {missing}, which benchmarks/README.md does not say (any more)"
