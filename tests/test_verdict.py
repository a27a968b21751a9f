"""Verdicts and scaling advice from crafted cycle data, at and around each threshold."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from coordinator.report import (
    CycleReport,
    HealthReport,
    HealthStatus,
    MergeReport,
    RoleTally,
    SlotWait,
    StepError,
    StepResult,
    StepStatus,
    UnprovenAgent,
    Verdict,
    render_text,
)
from coordinator.verdict import (
    BACKLOG_PER_BUILDER,
    CONFLICTS_LIMIT,
    IDLE_EXITS_LIMIT,
    REVIEW_QUEUE_LIMIT,
    advise,
    findings,
    judge,
)


def roles(**overrides: dict[str, Any]) -> dict[str, RoleTally]:
    """A small fleet at its desired size: two builder roles, a reviewer role and a self-directed one."""
    base = {
        "api_builder": RoleTally(desired=3, running=3, mode="Task-driven"),
        "ui_builder": RoleTally(desired=3, running=3, mode="Task-driven"),
        "code_reviewer": RoleTally(desired=4, running=4, mode="Reviewer"),
        "unit_tester": RoleTally(desired=2, running=2, mode="Self-directed"),
    }
    for key, fields in overrides.items():
        for name, value in fields.items():
            setattr(base[key], name, value)
    return base


def cycle(
    *,
    tallies: dict[str, RoleTally] | None = None,
    health: HealthReport | None = None,
    review_queue: int = 2,
    conflicting: int = 0,
    errors: list[StepError] | None = None,
    steps: dict[str, StepResult] | None = None,
) -> CycleReport:
    return CycleReport(
        fleet="test",
        started_at=datetime(2025, 1, 1, 12, 0, tzinfo=UTC),
        roles=roles() if tallies is None else tallies,
        merge=MergeReport(status=StepStatus.OK, open=5, review_queue=review_queue, conflicting=conflicting),
        health=health or HealthReport(status=HealthStatus.UP, code=200, latency_ms=40.0, attempts=1),
        errors=errors or [],
        steps=steps or {},
    )


def test_a_fleet_at_size_with_production_up_is_healthy_with_no_advice() -> None:
    report = cycle()
    assert judge(report) is Verdict.HEALTHY
    assert findings(report) == []
    assert advise(report) == []


def test_skipped_health_and_skipped_steps_are_not_problems() -> None:
    report = cycle(
        health=HealthReport(),
        steps={"merge": StepResult(StepStatus.SKIPPED, "GITHUB_REPOSITORY is not set")},
    )
    assert judge(report) is Verdict.HEALTHY


@pytest.mark.parametrize(
    "health",
    [
        HealthReport(status=HealthStatus.DOWN, code=503, error="unexpected status 503", attempts=3),
        HealthReport(status=HealthStatus.DOWN, error="timeout", attempts=1),
        HealthReport(status=HealthStatus.DOWN, error="refused", attempts=3),
        HealthReport(status=HealthStatus.DOWN, code=404, error="unexpected status 404", attempts=1),
        # A 5xx is broken even if someone listed it in HEALTH_EXPECT.
        HealthReport(status=HealthStatus.UP, code=500, attempts=1),
    ],
)
def test_production_down_or_5xx_is_broken(health: HealthReport) -> None:
    assert judge(cycle(health=health)) is Verdict.BROKEN


def test_every_spawn_failing_is_broken() -> None:
    tallies = roles(api_builder={"running": 1, "failed": 2}, unit_tester={"running": 1, "failed": 1})
    report = cycle(tallies=tallies)
    assert judge(report) is Verdict.BROKEN
    assert "every spawn failed (3 of 3)" in [f.reason for f in findings(report)]


@pytest.mark.parametrize(
    ("failed", "held_back", "reason"),
    [
        (1, 1, "every spawn failed (1 of 1, and 1 more waited behind it: slow start)"),
        (2, 5, "every spawn failed (2 of 2, and 5 more waited behind them: slow start)"),
    ],
)
def test_spawns_held_back_behind_a_failure_are_said_to_have_waited_not_failed(
    failed: int, held_back: int, reason: str
) -> None:
    # Two desired, one tried: slow start tries one spawn of an image first, and the second waits behind its failure.
    report = cycle(tallies=roles(api_builder={"running": 0, "failed": failed, "held_back": held_back}))
    assert judge(report) is Verdict.BROKEN
    assert findings(report)[0].reason == reason


def test_a_plan_without_github_or_health_says_so_beside_its_verdict() -> None:
    report = cycle(health=HealthReport(), steps={
        "merge": StepResult(StepStatus.SKIPPED, "GITHUB_REPOSITORY is not set"),
        "health": StepResult(StepStatus.SKIPPED, "HEALTH_URL is not set"),
    })
    report.verdict, report.dry_run = judge(report), True
    text = render_text(report)
    assert "verdict of this cycle: healthy, without merge and health (skipped, below)\n" in text
    assert "skipped: merge (GITHUB_REPOSITORY is not set); health (HEALTH_URL is not set)" in text
    assert "verdict of this cycle: healthy\n" in render_text(cycle())  # nothing skipped: nothing said


def test_a_reconcile_step_that_could_not_try_while_agents_are_missing_is_broken() -> None:
    # Docker unreachable: the step fails before any spawn is attempted, so there are no spawn failures to count.
    tallies = roles(api_builder={"running": 0})
    unreachable = "cannot reach the Docker engine"
    report = cycle(tallies=tallies, steps={"reconcile": StepResult(StepStatus.FAILED, unreachable)},
                   errors=[StepError("reconcile", unreachable)])
    assert judge(report) is Verdict.BROKEN
    assert findings(report)[0].reason == "no agent could be spawned (3 missing): cannot reach the Docker engine"


def test_a_failed_reconcile_with_nothing_missing_is_only_degraded() -> None:
    report = cycle(steps={"reconcile": StepResult(StepStatus.FAILED, "boom")}, errors=[StepError("reconcile", "boom")])
    assert judge(report) is Verdict.DEGRADED


def test_some_spawn_failures_are_degraded() -> None:
    tallies = roles(api_builder={"running": 1, "spawned": 1, "failed": 1})
    assert judge(cycle(tallies=tallies)) is Verdict.DEGRADED


def test_broken_outranks_degraded() -> None:
    report = cycle(
        health=HealthReport(status=HealthStatus.DOWN, code=502, error="unexpected status 502"),
        review_queue=REVIEW_QUEUE_LIMIT + 5,
    )
    assert judge(report) is Verdict.BROKEN
    assert [f.verdict for f in findings(report)] == [Verdict.BROKEN, Verdict.DEGRADED]


@pytest.mark.parametrize(
    ("running", "spawned", "filled_by_other_cycle", "verdict"),
    [
        (3, 0, 0, Verdict.HEALTHY),  # 3 of 4: exactly three quarters is near enough
        (2, 0, 0, Verdict.DEGRADED),  # 2 of 4: well below
        (0, 4, 0, Verdict.HEALTHY),  # the cycle filled the deficit itself
        (1, 2, 0, Verdict.HEALTHY),
        # Cycles overlapped: the one beside this one filled every slot this one found empty (its creates met
        # the slot's own agent, 409); the role is full.
        (0, 0, 4, Verdict.HEALTHY),
        (0, 1, 3, Verdict.HEALTHY),
        (0, 0, 2, Verdict.DEGRADED),
    ],
)
def test_agents_well_below_desired(running: int, spawned: int, filled_by_other_cycle: int, verdict: Verdict) -> None:
    tallies = roles(code_reviewer={"running": running, "spawned": spawned,
                                   "filled_by_other_cycle": filled_by_other_cycle})
    assert judge(cycle(tallies=tallies)) is verdict


def test_a_role_with_none_of_its_single_agent_is_degraded() -> None:
    tallies = {**roles(), "sentinel": RoleTally(desired=1, running=0, mode="Sentinel")}
    report = cycle(tallies=tallies)
    assert judge(report) is Verdict.DEGRADED
    assert [f.reason for f in findings(report)] == ["sentinel: 0 of 1 agents"]


@pytest.mark.parametrize(
    ("tally", "reason"),
    [
        # 3 of 4 is near enough by the ratio, but slot 4 waits out a crash backoff.
        (RoleTally(desired=4, running=3, waiting=[SlotWait(4, datetime(2025, 1, 1, 12, 2, tzinfo=UTC), 2)]),
         "code_reviewer: crash loop in slot 4 (2 crashes in a row)"),
        # Respawned after one crash: not counted on (3 of 4 present) until it lives past the crash window.
        (RoleTally(desired=4, running=3, spawned=1, unproven=[UnprovenAgent(2, 1)]),
         "code_reviewer: crash loop in slot 2 (1 crash in a row)"),
        (RoleTally(desired=4, running=3, unproven=[UnprovenAgent(1, 3)],
                   waiting=[SlotWait(3, datetime(2025, 1, 1, 12, 2, tzinfo=UTC), 5)]),
         "code_reviewer: crash loop in slots 1, 3 (up to 5 crashes in a row)"),
    ],
)
def test_a_crash_looping_slot_degrades_its_role_whether_it_waits_or_was_just_respawned(
    tally: RoleTally, reason: str
) -> None:
    report = cycle(tallies=roles(code_reviewer=vars(tally)))
    assert judge(report) is Verdict.DEGRADED
    assert reason in [f.reason for f in findings(report)]


def test_review_queue_over_the_limit_degrades_and_advises_more_reviewers() -> None:
    assert judge(cycle(review_queue=REVIEW_QUEUE_LIMIT)) is Verdict.HEALTHY
    assert advise(cycle(review_queue=REVIEW_QUEUE_LIMIT)) == []

    report = cycle(review_queue=REVIEW_QUEUE_LIMIT + 4)
    assert judge(report) is Verdict.DEGRADED
    [advice] = advise(report)
    assert advice.role == "code_reviewer"
    assert advice.signal == "review_queue"
    assert (advice.value, advice.threshold) == (REVIEW_QUEUE_LIMIT + 4, REVIEW_QUEUE_LIMIT)
    assert advice.action.startswith("raise the count of code_reviewer")


def test_review_queue_advice_without_any_reviewer_role_asks_for_one() -> None:
    tallies = roles()
    del tallies["code_reviewer"]
    [advice] = advise(cycle(tallies=tallies, review_queue=REVIEW_QUEUE_LIMIT + 1))
    assert advice.role == "Reviewer"
    assert advice.action.startswith("add a role of mode Reviewer")


def test_many_conflicts_degrade_and_advise_fewer_builders_of_every_builder_role() -> None:
    assert judge(cycle(conflicting=CONFLICTS_LIMIT)) is Verdict.HEALTHY
    assert advise(cycle(conflicting=CONFLICTS_LIMIT)) == []

    report = cycle(conflicting=CONFLICTS_LIMIT + 1)
    assert judge(report) is Verdict.DEGRADED
    advice = advise(report)
    assert [(a.role, a.signal, a.value) for a in advice] == [
        ("api_builder", "conflicting_pulls", CONFLICTS_LIMIT + 1),
        ("ui_builder", "conflicting_pulls", CONFLICTS_LIMIT + 1),
    ]
    assert all(a.action.startswith(f"lower the count of {a.role}") for a in advice)


def test_builders_are_found_by_mode_not_by_name() -> None:
    tallies = {
        "growth_engineer": RoleTally(desired=2, running=2, mode="Task-driven"),
        "api_builder_retired": RoleTally(desired=0, running=0, mode="Task-driven"),
        "fake_builder": RoleTally(desired=2, running=2, mode="Self-directed"),
    }
    advice = advise(cycle(tallies=tallies, conflicting=CONFLICTS_LIMIT + 1))
    assert [a.role for a in advice] == ["growth_engineer"]


def test_idle_exits_advise_lowering_that_role_only() -> None:
    tallies = roles(unit_tester={"idle_exits": IDLE_EXITS_LIMIT + 1}, api_builder={"idle_exits": IDLE_EXITS_LIMIT})
    report = cycle(tallies=tallies)
    [advice] = advise(report)
    assert (advice.role, advice.signal, advice.value) == ("unit_tester", "idle_exits", IDLE_EXITS_LIMIT + 1)
    assert advice.action.startswith("lower the count of unit_tester")
    # Idle agents are waste, not damage: the verdict stays healthy.
    assert judge(report) is Verdict.HEALTHY


def test_idle_exits_of_a_role_already_at_zero_need_no_advice() -> None:
    tallies = {**roles(), "old_role": RoleTally(desired=0, running=0, mode="Self-directed", idle_exits=9)}
    assert advise(cycle(tallies=tallies)) == []


def test_errors_in_a_step_degrade() -> None:
    by_error = cycle(errors=[StepError(step="merge", message="GitHub answered 502")])
    by_status = cycle(steps={"inventory": StepResult(StepStatus.FAILED, "docker: connection refused")})
    assert judge(by_error) is Verdict.DEGRADED
    assert judge(by_status) is Verdict.DEGRADED
    assert [f.reason for f in findings(by_status)] == ["errors in inventory"]


@pytest.mark.parametrize(("backlog", "advised"), [(None, False), (0, False), (30, False), (31, True), (500, True)])
def test_a_growing_backlog_advises_raising_every_builder_role(backlog: int | None, advised: bool) -> None:
    # Six desired builders (two Task-driven roles of 3): more than BACKLOG_PER_BUILDER (5) issues each is the signal.
    report = cycle()
    report.merge.backlog = backlog
    advice = [a for a in advise(report) if a.signal == "backlog_per_builder"]
    assert [a.role for a in advice] == (["api_builder", "ui_builder"] if advised else [])
    if advised:
        assert advice[0].threshold == BACKLOG_PER_BUILDER and advice[0].value == round(backlog / 6, 1)  # type: ignore[operator]
        assert f"{backlog} open issues wait for 6 builders" in advice[0].action
    assert judge(report) is Verdict.HEALTHY  # advice, never a verdict


def test_a_backlog_without_any_builder_role_asks_for_one() -> None:
    report = cycle(tallies={"code_reviewer": RoleTally(desired=2, running=2, mode="Reviewer")})
    report.merge.backlog = 3
    (advice,) = advise(report)
    assert advice.role == "Task-driven" and "add a role of mode Task-driven: 3 open issues wait" in advice.action


def test_squatters_unreadable_agents_and_lost_nodes_degrade_by_name() -> None:
    report = cycle()
    report.squatters = ["f-api-3: held by container 0123456789ab"]
    report.unreadable = ["f-odd: label agent-fleet.slot='²' is malformed"]
    report.lost_nodes = ["node-7"]
    assert judge(report) is Verdict.DEGRADED
    reasons = [f.reason for f in findings(report)]
    assert "slot f-api-3: held by container 0123456789ab, which is not the fleet's: remove it" in reasons
    assert any("f-odd" in r for r in reasons) and any("node node-7 lost" in r for r in reasons)
