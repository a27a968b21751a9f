"""The reconcile planner is pure: desired roles + inventory + time in, a plan out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from coordinator.edges.docker import ContainerRecord, ExitRecord
from coordinator.fleet import Department, Mode, Role, RoleSpec
from coordinator.steps.inventory import Agent, Inventory
from coordinator.steps.reconcile import BackoffPolicy, plan_reconcile, slot_name

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FLEET = "f"


def spec(key: str, count: int) -> RoleSpec:
    role = Role(key, key.title(), count, Department.ENGINEERING, Mode.TASK_DRIVEN, f"{key} brief.")
    return RoleSpec(role, image="agent:1")


def agent(
    role: str,
    slot: int,
    state: str = "running",
    *,
    name: str | None = None,
    created: timedelta = timedelta(minutes=30),
    exit_code: int | None = None,
    ran: timedelta = timedelta(seconds=5),
    ended: timedelta = timedelta(seconds=10),
    streak: int = 0,
    cid: str | None = None,
) -> Agent:
    record = ContainerRecord(
        id=cid or f"{role}{slot}{state}{name or ''}".ljust(64, "0"),
        name=name or slot_name(FLEET, role, slot),
        role=role,
        slot=slot,
        state=state,
        created_at=NOW - created,
        crash_streak=streak,
    )
    exit_record = None
    if exit_code is not None:
        exit_record = ExitRecord(exit_code, NOW - ended - ran, NOW - ended)
    return Agent(record, exit_record)


def plan(roster: list[RoleSpec], agents: list[Agent], **kwargs: object):  # type: ignore[no-untyped-def]
    return plan_reconcile(FLEET, roster, Inventory(tuple(agents)), now=NOW, **kwargs)  # type: ignore[arg-type]


def test_cold_start_spawns_every_slot_under_deterministic_names() -> None:
    result = plan([spec("api", 3), spec("ui", 1)], [])
    assert [(s.spec.key, s.slot, s.name) for s in result.spawns] == [
        ("api", 1, "f-api-1"), ("ui", 1, "f-ui-1"), ("api", 2, "f-api-2"), ("api", 3, "f-api-3")
    ]
    assert [(d.role, d.missing) for d in result.deficits] == [("api", 3), ("ui", 1)]


def test_nothing_to_do_when_every_slot_runs() -> None:
    result = plan([spec("api", 2)], [agent("api", 1), agent("api", 2)])
    assert result.spawns == () and result.prune == ()


def test_lowest_free_slots_are_filled() -> None:
    result = plan([spec("api", 3)], [agent("api", 2)])
    assert [s.slot for s in result.spawns] == [1, 3]


def test_scale_down_spawns_nothing_and_plans_no_stop() -> None:
    result = plan([spec("api", 1)], [agent("api", 1), agent("api", 2), agent("api", 3)])
    assert result.spawns == ()
    assert result.deficits[0].running == 3 and result.deficits[0].missing == 0


def test_agents_above_desired_slots_count_as_running() -> None:
    # Scaled from 5 to 3 while slots 4 and 5 still run: only one more is needed, in the lowest free slot.
    result = plan([spec("api", 3)], [agent("api", 4), agent("api", 5)])
    assert [s.slot for s in result.spawns] == [1]


def test_paused_agents_count_as_running() -> None:
    result = plan([spec("api", 1)], [agent("api", 1, "paused")])
    assert result.spawns == ()


def test_exited_holder_is_cleared_and_older_archive_retired() -> None:
    holder = agent("api", 1, "exited", exit_code=0, ran=timedelta(hours=1), created=timedelta(hours=2))
    older = agent("api", 1, "exited", name="f-api-1.old", exit_code=0, ran=timedelta(hours=1),
                  created=timedelta(hours=5), ended=timedelta(hours=4))
    result = plan([spec("api", 1)], [holder, older])
    (spawn,) = result.spawns
    assert spawn.clear == holder.record
    assert spawn.retire == (older.record,)
    assert result.prune == ()


def test_created_but_never_started_holder_is_cleared() -> None:
    stale = agent("api", 1, "created")
    (spawn,) = plan([spec("api", 1)], [stale]).spawns
    assert spawn.clear == stale.record and spawn.retire == ()


def test_a_first_crash_is_respawned_at_once() -> None:
    crashed = agent("api", 1, "exited", exit_code=137, ran=timedelta(seconds=2), ended=timedelta(seconds=1))
    (spawn,) = plan([spec("api", 1)], [crashed]).spawns
    assert spawn.crash_streak == 1


def test_repeated_crashes_start_backoff_from_the_exit_time() -> None:
    crashed = agent("api", 1, "exited", exit_code=3, ran=timedelta(seconds=2), ended=timedelta(seconds=30), streak=1)
    result = plan([spec("api", 1)], [crashed], backoff=BackoffPolicy(base_s=60, max_s=3600))
    assert result.spawns == ()
    (wait,) = result.waits
    assert (wait.role, wait.slot, wait.crashes) == ("api", 1, 2)
    assert wait.until == NOW - timedelta(seconds=30) + timedelta(seconds=60)


def test_backoff_doubles_with_the_streak_carried_by_the_label() -> None:
    crashed = agent("api", 1, "exited", exit_code=1, ended=timedelta(seconds=100), streak=3)
    (wait,) = plan([spec("api", 1)], [crashed], backoff=BackoffPolicy(base_s=60, max_s=3600)).waits
    assert wait.crashes == 4
    assert wait.until == NOW - timedelta(seconds=100) + timedelta(seconds=240)


def test_backoff_is_capped() -> None:
    crashed = agent("api", 1, "exited", exit_code=1, ended=timedelta(seconds=10), streak=30)
    (wait,) = plan([spec("api", 1)], [crashed], backoff=BackoffPolicy(base_s=60, max_s=600)).waits
    assert wait.until == NOW - timedelta(seconds=10) + timedelta(seconds=600)


def test_slot_respawns_after_its_backoff_with_the_streak() -> None:
    crashed = agent("api", 1, "exited", exit_code=1, ended=timedelta(seconds=200), streak=2)
    (spawn,) = plan([spec("api", 1)], [crashed], backoff=BackoffPolicy(base_s=60)).spawns
    assert spawn.crash_streak == 3


def test_long_run_then_failure_is_not_a_crash() -> None:
    worked = agent("api", 1, "exited", exit_code=1, ran=timedelta(minutes=30), streak=4)
    (spawn,) = plan([spec("api", 1)], [worked]).spawns
    assert spawn.crash_streak == 0


def test_clean_exit_resets_the_streak() -> None:
    done = agent("api", 1, "exited", exit_code=0, ran=timedelta(seconds=1), streak=3)
    (spawn,) = plan([spec("api", 1)], [done]).spawns
    assert spawn.crash_streak == 0


def test_spawn_budget_counts_what_docker_holds_from_the_past_hour() -> None:
    recent = [agent("api", n, "exited", name=f"f-api-{n}.x", created=timedelta(minutes=10), exit_code=0,
                    ran=timedelta(minutes=5)) for n in (1, 2)]
    old = agent("api", 3, "exited", name="f-api-3.x", created=timedelta(hours=2), exit_code=0)
    result = plan([spec("api", 3), spec("ui", 2)], [*recent, old], max_spawns_per_hour=4)
    assert result.budget is not None
    assert (result.budget.used, result.budget.limit, result.budget.remaining) == (2, 4, 0)
    # Fair cut: the lowest slot of each role first.
    assert [(s.spec.key, s.slot) for s in result.spawns] == [("api", 1), ("ui", 1)]
    assert [(s.spec.key, s.slot) for s in result.deferred] == [("api", 2), ("ui", 2), ("api", 3)]


def test_budget_exhausted_spawns_nothing() -> None:
    recent = [agent("api", 1, "running", created=timedelta(minutes=1))]
    result = plan([spec("api", 3)], recent, max_spawns_per_hour=1)
    assert result.spawns == () and len(result.deferred) == 2


def test_prune_keeps_the_newest_archived_agent_per_slot() -> None:
    running = agent("api", 1)
    archives = [
        agent("api", 1, "exited", name=f"f-api-1.{age}", created=timedelta(hours=age), exit_code=0, cid=str(age) * 12)
        for age in (2, 3, 4)
    ]
    result = plan([spec("api", 1)], [running, *archives])
    assert {r.name for r in result.prune} == {"f-api-1.3", "f-api-1.4"}


def test_prune_spares_the_budget_window() -> None:
    running = agent("api", 1)
    archives = [
        agent("api", 1, "exited", name=f"f-api-1.{m}", created=timedelta(minutes=m), exit_code=0, cid=str(m) * 12)
        for m in (10, 20, 90)
    ]
    result = plan([spec("api", 1)], [running, *archives], max_spawns_per_hour=100)
    assert {r.name for r in result.prune} == {"f-api-1.90"}


def test_removed_role_is_not_spawned_and_not_touched() -> None:
    result = plan([spec("api", 1)], [agent("api", 1), agent("gone", 1)])
    assert result.spawns == () and result.prune == ()


def test_retiring_spares_the_budget_window() -> None:
    holder = agent("api", 1, "exited", exit_code=0, ran=timedelta(minutes=5), created=timedelta(minutes=10))
    recent = agent("api", 1, "exited", name="f-api-1.r", exit_code=0, created=timedelta(minutes=30), cid="r" * 12)
    (spawn,) = plan([spec("api", 1)], [holder, recent], max_spawns_per_hour=10).spawns
    assert spawn.clear == holder.record and spawn.retire == ()
    (spawn,) = plan([spec("api", 1)], [holder, recent]).spawns
    assert spawn.retire == (recent.record,)


def test_an_idle_exit_lengthens_the_slots_idle_streak() -> None:
    idle = agent("api", 1, "exited", exit_code=0, ran=timedelta(seconds=20), streak=0)
    idle = Agent(replace(idle.record, idle_streak=2), idle.exit)
    (spawn,) = plan([spec("api", 1)], [idle]).spawns
    assert spawn.idle_streak == 3 and spawn.crash_streak == 0


def test_work_or_a_crash_ends_the_idle_streak() -> None:
    worked = agent("api", 1, "exited", exit_code=0, ran=timedelta(hours=1))
    crashed = agent("ui", 1, "exited", exit_code=2, ran=timedelta(seconds=1))
    spawns = plan([spec("api", 1), spec("ui", 1)],
                  [Agent(replace(a.record, idle_streak=4), a.exit) for a in (worked, crashed)]).spawns
    assert [(s.spec.key, s.idle_streak) for s in spawns] == [("api", 0), ("ui", 0)]


def test_idle_exits_per_role_are_the_streaks_the_newest_agents_show() -> None:
    just_idled = agent("api", 1, "exited", exit_code=0, ran=timedelta(seconds=5), created=timedelta(minutes=2))
    older = agent("api", 1, "exited", name="f-api-1.old", exit_code=0, created=timedelta(minutes=9))
    running_after_idles = agent("api", 2, created=timedelta(minutes=5))
    long_running = agent("api", 3, created=timedelta(hours=3))
    inventory = Inventory((
        Agent(replace(just_idled.record, idle_streak=2), just_idled.exit),
        Agent(replace(older.record, idle_streak=1), older.exit),
        Agent(replace(running_after_idles.record, idle_streak=4), None),
        Agent(replace(long_running.record, idle_streak=7), None),  # it found work: no longer counts
    ))
    assert inventory.idle_exits_by_role(NOW) == {"api": 3 + 4}
