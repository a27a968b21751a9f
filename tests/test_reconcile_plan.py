"""The reconcile planner is pure: desired roles + inventory + time in, a plan out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from coordinator.fleet import Department, Mode, Role, RoleSpec
from coordinator.identities import AppIdentity, MintedToken, MintFailure, TokenIdentity
from coordinator.redact import Secret
from coordinator.runtime import AgentRecord, Phase, slot_name
from coordinator.steps.inventory import Inventory
from coordinator.steps.reconcile import (
    AgentContext,
    BackoffPolicy,
    ReconcilePlan,
    SlowStart,
    Spawn,
    SpawnOutcome,
    SpawnResult,
    agent_env,
    agent_launch,
    execute_plan,
    plan_reconcile,
    slow_start_groups,
)
from tests.fakes.runtime import MemoryRuntime
from tests.keys import private_key_pem

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FLEET = "f"


def spec(key: str, count: int, image: str = "agent:1") -> RoleSpec:
    role = Role(key, key.title(), count, Department.ENGINEERING, Mode.TASK_DRIVEN, f"{key} brief.")
    return RoleSpec(role, image=image)


def agent(
    role: str,
    slot: int,
    phase: Phase = Phase.ALIVE,
    *,
    aside: str | None = None,
    created: timedelta = timedelta(minutes=30),
    exit_code: int | None = None,
    ran: timedelta = timedelta(seconds=5),
    ended: timedelta = timedelta(seconds=10),
    streak: int = 0,
    idle: int = 0,
    started: bool = True,
    lost_for: timedelta | None = None,
    earlier: tuple[timedelta, ...] = (),
) -> AgentRecord:
    """One agent record; `aside` names an agent moved out of its slot's name (kept aside)."""
    name = slot_name(FLEET, role, slot) + (f".{aside}" if aside else "")
    finished = phase is Phase.FINISHED and exit_code is not None
    return AgentRecord(
        id=f"{role}{slot}{phase}{aside or ''}{created}".ljust(64, "0"),
        name=name,
        role=role,
        slot=slot,
        phase=phase,
        created_at=NOW - created,
        started_at=NOW - ended - ran if finished and started else None,
        finished_at=NOW - ended if finished else None,
        exit_code=exit_code if finished else None,
        lost_since=NOW - lost_for if lost_for is not None else None,
        crash_streak=streak,
        idle_streak=idle,
        earlier_spawns=tuple(NOW - age for age in earlier),
        holds_slot=aside is None,
    )


def inventory(agents: list[AgentRecord], lost_after: timedelta = timedelta(seconds=300)) -> Inventory:
    return Inventory(tuple(agents), taken_at=NOW, node_lost_after=lost_after)


def plan(roster: list[RoleSpec], agents: list[AgentRecord], **kwargs: object) -> ReconcilePlan:
    return plan_reconcile(FLEET, roster, inventory(agents), now=NOW, **kwargs)  # type: ignore[arg-type]


def test_cold_start_spawns_every_slot_under_deterministic_names() -> None:
    result = plan([spec("api", 3), spec("ui", 1)], [])
    assert [(s.spec.key, s.slot, s.name) for s in result.spawns] == [
        ("api", 1, "f-api-1"), ("ui", 1, "f-ui-1"), ("api", 2, "f-api-2"), ("api", 3, "f-api-3")
    ]


def test_nothing_to_do_when_every_slot_runs() -> None:
    result = plan([spec("api", 2)], [agent("api", 1), agent("api", 2)])
    assert result.spawns == () and result.discard == ()


def test_lowest_free_slots_are_filled() -> None:
    result = plan([spec("api", 3)], [agent("api", 2)])
    assert [s.slot for s in result.spawns] == [1, 3]


def test_scale_down_spawns_nothing_and_plans_no_stop() -> None:
    result = plan([spec("api", 1)], [agent("api", 1), agent("api", 2), agent("api", 3)])
    assert result.spawns == () and result.discard == ()


def test_agents_above_desired_slots_count_as_running() -> None:
    # Scaled from 5 to 3 while slots 4 and 5 still run: only one more is needed, in the lowest free slot.
    result = plan([spec("api", 3)], [agent("api", 4), agent("api", 5)])
    assert [s.slot for s in result.spawns] == [1]


def test_the_finished_holder_is_vacated_and_older_agents_kept_aside_are_discarded() -> None:
    holder = agent("api", 1, Phase.FINISHED, exit_code=0, ran=timedelta(hours=1), created=timedelta(hours=2))
    older = agent("api", 1, Phase.FINISHED, aside="old", exit_code=0, ran=timedelta(hours=1),
                  created=timedelta(hours=5), ended=timedelta(hours=4))
    result = plan([spec("api", 1)], [holder, older])
    (spawn,) = result.spawns
    assert spawn.vacate == holder
    # Once the holder is kept aside it is the slot's newest finished agent; the older one goes.
    assert result.discard == (older,)


def test_a_created_but_never_started_holder_is_vacated() -> None:
    stale = agent("api", 1, Phase.FINISHED, started=False)
    (spawn,) = plan([spec("api", 1)], [stale]).spawns
    assert spawn.vacate == stale


def test_a_first_crash_is_respawned_at_once() -> None:
    crashed = agent("api", 1, Phase.FINISHED, exit_code=137, ran=timedelta(seconds=2), ended=timedelta(seconds=1))
    (spawn,) = plan([spec("api", 1)], [crashed]).spawns
    assert spawn.crash_streak == 1


def test_repeated_crashes_start_backoff_from_the_exit_time() -> None:
    crashed = agent("api", 1, Phase.FINISHED, exit_code=3, ran=timedelta(seconds=2), ended=timedelta(seconds=30),
                    streak=1)
    result = plan([spec("api", 1)], [crashed], backoff=BackoffPolicy(base_s=60, max_s=3600))
    assert result.spawns == ()
    (wait,) = result.waits
    assert (wait.role, wait.slot, wait.crashes) == ("api", 1, 2)
    assert wait.until == NOW - timedelta(seconds=30) + timedelta(seconds=60)


def test_backoff_doubles_with_the_streak_carried_by_the_label() -> None:
    crashed = agent("api", 1, Phase.FINISHED, exit_code=1, ended=timedelta(seconds=100), streak=3)
    (wait,) = plan([spec("api", 1)], [crashed], backoff=BackoffPolicy(base_s=60, max_s=3600)).waits
    assert wait.crashes == 4
    assert wait.until == NOW - timedelta(seconds=100) + timedelta(seconds=240)


@pytest.mark.parametrize("streak", [30, 1_000, 10**9])
def test_backoff_is_capped_and_a_streak_of_weeks_neither_overflows_nor_grows(streak: int) -> None:
    crashed = agent("api", 1, Phase.FINISHED, exit_code=1, ended=timedelta(seconds=10), streak=streak)
    (wait,) = plan([spec("api", 1)], [crashed], backoff=BackoffPolicy(base_s=60, max_s=600)).waits
    assert wait.until == NOW - timedelta(seconds=10) + timedelta(seconds=600)
    assert wait.crashes <= 100  # what would be written on the next agent's label is bounded


def test_backoff_policy_never_overflows() -> None:
    policy = BackoffPolicy(base_s=1e300, max_s=3600)
    assert policy.delay(10**6) == timedelta(seconds=3600)
    assert BackoffPolicy().delay(1) == timedelta(0)


def test_slot_respawns_after_its_backoff_with_the_streak() -> None:
    crashed = agent("api", 1, Phase.FINISHED, exit_code=1, ended=timedelta(seconds=200), streak=2)
    (spawn,) = plan([spec("api", 1)], [crashed], backoff=BackoffPolicy(base_s=60)).spawns
    assert spawn.crash_streak == 3


def test_long_run_then_failure_is_not_a_crash() -> None:
    worked = agent("api", 1, Phase.FINISHED, exit_code=1, ran=timedelta(minutes=30), streak=4)
    (spawn,) = plan([spec("api", 1)], [worked]).spawns
    assert spawn.crash_streak == 0


def test_clean_exit_resets_the_streak() -> None:
    done = agent("api", 1, Phase.FINISHED, exit_code=0, ran=timedelta(seconds=1), streak=3)
    (spawn,) = plan([spec("api", 1)], [done]).spawns
    assert spawn.crash_streak == 0


def test_spawn_budget_counts_the_past_hours_spawns() -> None:
    recent = [agent("api", n, Phase.FINISHED, aside="x", created=timedelta(minutes=10), exit_code=0,
                    ran=timedelta(minutes=5)) for n in (1, 2)]
    old = agent("api", 3, Phase.FINISHED, aside="x", created=timedelta(hours=2), exit_code=0)
    result = plan([spec("api", 3), spec("ui", 2)], [*recent, old], max_spawns_per_hour=4)
    assert result.budget is not None
    assert (result.budget.used, result.budget.limit, result.budget.remaining) == (2, 4, 0)
    # Fair cut: the lowest slot of each role first.
    assert [(s.spec.key, s.slot) for s in result.spawns] == [("api", 1), ("ui", 1)]
    assert [(s.spec.key, s.slot) for s in result.deferred] == [("api", 2), ("ui", 2), ("api", 3)]


def test_the_budget_counts_spawns_carried_on_labels_once() -> None:
    # On an engine that removes a finished agent to fill its slot, the new agent carries its predecessors'
    # spawn times; where the predecessor is still there (kept aside), the same spawn is not counted twice.
    kept = agent("api", 1, Phase.FINISHED, aside="k", created=timedelta(minutes=40), exit_code=0)
    running = agent("api", 1, created=timedelta(minutes=5), earlier=(timedelta(minutes=40), timedelta(minutes=20)))
    other = agent("ui", 1, created=timedelta(minutes=1), earlier=(timedelta(minutes=90),))  # outside the window
    result = plan([spec("api", 1), spec("ui", 1)], [kept, running, other], max_spawns_per_hour=10)
    assert result.budget is not None and result.budget.used == 4


def test_a_spawn_carries_its_slots_spawn_times_within_the_window() -> None:
    holder = agent("api", 1, Phase.FINISHED, exit_code=0, ran=timedelta(minutes=5), created=timedelta(minutes=10),
                   earlier=(timedelta(minutes=30), timedelta(hours=3)))
    (spawn,) = plan([spec("api", 1)], [holder], max_spawns_per_hour=10).spawns
    assert spawn.earlier_spawns == (NOW - timedelta(minutes=30), NOW - timedelta(minutes=10))
    (unbudgeted,) = plan([spec("api", 1)], [holder]).spawns
    assert unbudgeted.earlier_spawns == ()


def test_budget_exhausted_spawns_nothing() -> None:
    recent = [agent("api", 1, created=timedelta(minutes=1))]
    result = plan([spec("api", 3)], recent, max_spawns_per_hour=1)
    assert result.spawns == () and len(result.deferred) == 2


def test_housekeeping_keeps_the_newest_agent_kept_aside_per_slot() -> None:
    running = agent("api", 1)
    aside = [agent("api", 1, Phase.FINISHED, aside=str(age), created=timedelta(hours=age), exit_code=0)
             for age in (2, 3, 4)]
    result = plan([spec("api", 1)], [running, *aside])
    assert {r.name for r in result.discard} == {"f-api-1.3", "f-api-1.4"}


def test_housekeeping_spares_the_budget_window() -> None:
    running = agent("api", 1)
    aside = [agent("api", 1, Phase.FINISHED, aside=str(m), created=timedelta(minutes=m), exit_code=0)
             for m in (10, 20, 90)]
    result = plan([spec("api", 1)], [running, *aside], max_spawns_per_hour=100)
    assert {r.name for r in result.discard} == {"f-api-1.90"}


def test_finished_agents_above_the_count_and_of_removed_roles_are_discarded() -> None:
    # Scaled from 300 to 1: the finished holders of slots 2.. are needed by neither the backoff nor the advice.
    above = [agent("api", n, Phase.FINISHED, exit_code=0, ran=timedelta(minutes=9)) for n in range(2, 301)]
    removed = agent("gone", 1, Phase.FINISHED, exit_code=1)
    result = plan([spec("api", 1)], [agent("api", 1), *above, removed])
    assert set(result.discard) == {*above, removed}
    # Running agents are never discarded, wherever they are.
    assert plan([spec("api", 1)], [agent("api", 1), agent("api", 2), agent("gone", 1)]).discard == ()


def test_discarding_above_the_count_spares_the_budget_window() -> None:
    recent = agent("api", 2, Phase.FINISHED, exit_code=0, created=timedelta(minutes=5))
    old = agent("api", 3, Phase.FINISHED, exit_code=0, created=timedelta(hours=5))
    assert plan([spec("api", 1)], [agent("api", 1), recent, old], max_spawns_per_hour=10).discard == (old,)


def test_the_holder_of_a_waiting_slot_is_kept() -> None:
    crashed = agent("api", 1, Phase.FINISHED, exit_code=3, ran=timedelta(seconds=1), streak=4)
    result = plan([spec("api", 1)], [crashed])
    assert result.waits and result.discard == ()


def test_an_idle_exit_lengthens_the_slots_idle_streak() -> None:
    idle = agent("api", 1, Phase.FINISHED, exit_code=0, ran=timedelta(seconds=20), idle=2)
    (spawn,) = plan([spec("api", 1)], [idle]).spawns
    assert spawn.idle_streak == 3 and spawn.crash_streak == 0


def test_work_or_a_crash_ends_the_idle_streak() -> None:
    worked = agent("api", 1, Phase.FINISHED, exit_code=0, ran=timedelta(hours=1), idle=4)
    crashed = agent("ui", 1, Phase.FINISHED, exit_code=2, ran=timedelta(seconds=1), idle=4)
    spawns = plan([spec("api", 1), spec("ui", 1)], [worked, crashed]).spawns
    assert [(s.spec.key, s.idle_streak) for s in spawns] == [("api", 0), ("ui", 0)]


def test_idle_exits_per_role_are_the_streaks_the_newest_agents_show() -> None:
    agents = [
        agent("api", 1, Phase.FINISHED, exit_code=0, ran=timedelta(seconds=5), created=timedelta(minutes=2), idle=2),
        agent("api", 1, Phase.FINISHED, aside="old", exit_code=0, created=timedelta(minutes=9), idle=1),
        agent("api", 2, created=timedelta(minutes=5), idle=4),
        agent("api", 3, created=timedelta(hours=3), idle=7),  # it found work: no longer counts
    ]
    assert inventory(agents).idle_exits_by_role() == {"api": 3 + 4}


# ------------------------------------------------------------------------------------------ lost nodes


def test_an_agent_on_a_lost_node_counts_as_running_until_its_node_is_lost_for_long_enough() -> None:
    lost = agent("api", 1, Phase.LOST, lost_for=timedelta(seconds=120))
    assert plan([spec("api", 1)], [lost]).spawns == ()
    gone = agent("api", 1, Phase.LOST, lost_for=timedelta(seconds=301))
    (spawn,) = plan([spec("api", 1)], [gone]).spawns
    assert spawn.vacate == gone  # its service goes, so the slot's name is free on another node
    assert inventory([replace(gone, node="node-3")]).lost_nodes() == ["node-3"]
    assert inventory([lost]).lost_nodes() == []


def test_a_lost_agent_above_the_count_is_discarded_once_gone() -> None:
    gone = agent("api", 2, Phase.LOST, lost_for=timedelta(hours=1))
    still = agent("api", 3, Phase.LOST, lost_for=timedelta(seconds=10))
    assert plan([spec("api", 1)], [agent("api", 1), gone, still]).discard == (gone,)


# ------------------------------------------------------------------------------------------ slow start


def answers(*outcomes: SpawnOutcome) -> list[SpawnResult]:
    spawn = Spawn(spec("api", 1), 1, "f-api-1")
    return [SpawnResult(spawn, outcome) for outcome in outcomes]


def test_slow_start_lets_one_more_spawn_fly_for_each_that_succeeds_up_to_the_limit() -> None:
    ramp = SlowStart(limit=8)
    assert ramp.may_start(0) and not ramp.may_start(1)  # one at first
    for result in answers(SpawnOutcome.SPAWNED):
        ramp.answered(result)
    assert ramp.may_start(1) and not ramp.may_start(2)  # 2 in flight after one success: doubles per round
    for result in answers(SpawnOutcome.SPAWNED, SpawnOutcome.TAKEN):
        ramp.answered(result)
    assert ramp.may_start(3) and not ramp.may_start(4)  # 4 after two more
    for result in answers(*[SpawnOutcome.SPAWNED] * 20):
        ramp.answered(result)
    assert ramp.may_start(7) and not ramp.may_start(8)  # never more than the limit


def test_slow_start_starts_nothing_more_after_a_failure() -> None:
    ramp = SlowStart(limit=8, window=6)
    for result in answers(SpawnOutcome.FAILED, SpawnOutcome.SPAWNED):
        ramp.answered(result)
    assert not ramp.may_start(0)


def test_execution_ramps_up_to_the_concurrency_and_a_bad_image_costs_one_spawn() -> None:
    runtime = MemoryRuntime(spawn_latency_s=0.02)
    runtime.refuse_image("bad:1")
    result = plan([spec("api", 30), spec("broken", 10, image="bad:1")], [])
    execution = execute_plan(result, runtime, AgentContext("f"), concurrency=8)
    assert runtime.most_in_flight == 8
    outcomes = [r.outcome for r in execution.results]
    assert outcomes.count(SpawnOutcome.SPAWNED) == 30 and outcomes.count(SpawnOutcome.FAILED) == 1
    assert len(execution.held_back) == 9 and {s.spec.key for s in execution.held_back} == {"broken"}
    assert len(runtime.calls) == 31 and all(call.startswith("spawn ") for call in runtime.calls)


def test_slow_start_groups_by_image_and_puts_slots_that_never_started_last() -> None:
    never_started = agent("api", 1, Phase.FINISHED, started=False)
    spawns = [
        Spawn(spec("api", 2), 1, "f-api-1", vacate=never_started),
        Spawn(spec("ui", 2), 1, "f-ui-1"),
        Spawn(spec("own", 1, image="own:1"), 1, "f-own-1"),
        Spawn(spec("api", 2), 2, "f-api-2"),
    ]
    groups = slow_start_groups(spawns)
    assert [[s.name for s in group] for group in groups] == [["f-ui-1", "f-api-2", "f-api-1"], ["f-own-1"]]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (Mode.TASK_DRIVEN, {"AGENT_COUNT": "3", "BACKLOG_LABELS": "feature,bug"}),
        (Mode.SENTINEL, {"AGENT_COUNT": "3", "HEALTH_URL": "https://example.com/healthz", "HEALTH_EXPECT": "200-399"}),
        (Mode.REVIEWER, {"AGENT_COUNT": "3"}),
    ],
)
def test_an_agent_is_told_its_roles_count_and_what_its_mode_needs(mode: Mode, expected: dict[str, str]) -> None:
    role = Role("worker", "Worker", 3, Department.ENGINEERING, mode, "The brief.")
    context = AgentContext("f", repository="acme/webapp", health_url="https://example.com/healthz",
                           health_expect="200-399", backlog_labels=("feature", "bug"))
    env = agent_env(Spawn(RoleSpec(role, "agent:1"), 2, "f-worker-2"), context)
    optional = {"AGENT_COUNT", "BACKLOG_LABELS", "HEALTH_URL", "HEALTH_EXPECT"}
    assert {k: v for k, v in env.items() if k in optional} == expected
    assert env["AGENT_SLOT"] == "2"


# --- GitHub identities at the spawn ------------------------------------------------------------------------------


class _Minter:
    """Mints a numbered token per call, or refuses the App whose id is in `refuse`."""

    def __init__(self, refuse: int | None = None) -> None:
        self.refuse = refuse
        self.asked: list[tuple[int, dict[str, str]]] = []

    def mint(self, app: AppIdentity, permissions: Mapping[str, str]) -> MintedToken:
        if app.app_id == self.refuse:
            raise MintFailure(f"App {app.app_id}: no installation {app.installation_id} (404: Not Found)")
        self.asked.append((app.app_id, dict(permissions)))
        return MintedToken(Secret(f"ghs_minted_{len(self.asked)}"), NOW + timedelta(hours=1))


def reviewer_spec(count: int = 1) -> RoleSpec:
    role = Role("review", "Review", count, Department.GATES, Mode.REVIEWER, "Reviews.")
    return RoleSpec(role, image="agent:1")


IDENTITIES = {"author": TokenIdentity(Secret("ghp_author_0123")),
              "reviewer": AppIdentity(7, 70, Secret(private_key_pem("reviewer")))}


def test_the_identitys_token_is_the_agents_github_token_a_minted_one_its_own_with_its_expiry() -> None:
    minter = _Minter()
    context = AgentContext(FLEET, secrets={"GITHUB_TOKEN": Secret("ghp_shared_0123"), "KEY": Secret("key-0123456")},
                           identities=IDENTITIES, minter=minter)
    builder = agent_launch(Spawn(spec("api", 1), 1, "f-api-1"), context)
    assert {s.name: (s.value.reveal(), s.per_agent) for s in builder.secrets} == {
        "GITHUB_TOKEN": ("ghp_author_0123", False), "KEY": ("key-0123456", False)}
    assert "GITHUB_TOKEN_EXPIRES_AT" not in builder.env
    review = agent_launch(Spawn(reviewer_spec(), 1, "f-review-1"), context)
    assert {s.name: (s.value.reveal(), s.per_agent) for s in review.secrets} == {
        "GITHUB_TOKEN": ("ghs_minted_1", True), "KEY": ("key-0123456", False)}
    assert review.env["GITHUB_TOKEN_EXPIRES_AT"] == "2026-11-25T13:00:00Z"
    assert minter.asked == [(7, {"checks": "read", "contents": "read", "pull_requests": "write", "statuses": "read"})]
    # A role's env naming another secret as its token gives way to the identity's GITHUB_TOKEN.
    named = RoleSpec(spec("api", 1).role, "agent:1", env={"AGENT_GITHUB_TOKEN_SECRET": "OTHER_TOKEN", "X": "y"})
    assert agent_launch(Spawn(named, 1, "f-api-1"), context).env.get("AGENT_GITHUB_TOKEN_SECRET") is None
    without = agent_launch(Spawn(named, 1, "f-api-1"), AgentContext(FLEET))
    assert without.env["AGENT_GITHUB_TOKEN_SECRET"] == "OTHER_TOKEN"
    # Without identities, today's agent secret as it is.
    plain = agent_launch(Spawn(reviewer_spec(), 1, "f-review-1"), AgentContext(FLEET, secrets=context.secrets))
    assert {s.name: s.value.reveal() for s in plain.secrets}["GITHUB_TOKEN"] == "ghp_shared_0123"


def test_a_refused_mint_fails_that_spawn_and_holds_back_no_other_of_its_image() -> None:
    runtime = MemoryRuntime()
    result = plan([reviewer_spec(3), spec("api", 4)], [])
    context = AgentContext(FLEET, identities=IDENTITIES, minter=_Minter(refuse=7))
    execution = execute_plan(result, runtime, context, concurrency=8)
    failed = [r for r in execution.results if r.outcome is SpawnOutcome.FAILED]
    assert [r.spawn.spec.key for r in failed] == ["review"] * 3 and execution.held_back == ()
    assert all(r.error == "no GitHub token: App 7: no installation 70 (404: Not Found)" and r.before_engine
               for r in failed)
    assert len(runtime.calls) == 4  # the engine was asked only for the builders, all spawned
