"""A crash loop over many cycles, with the pure functions a cycle is made of: the verdict must not flap.

Each simulated cycle takes the inventory of a simulated engine, tallies the roles (`role_tallies`), plans
(`plan_reconcile`), counts the spawns (`count_spawn`) and judges (`verdict.judge`), as `run_cycle` does; between
cycles the engine lets each agent of a crashing role exit non-zero one second after it started.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from coordinator import verdict
from coordinator.cycle import count_spawn, role_tallies
from coordinator.fleet import Department, Mode, Role, RoleSpec
from coordinator.report import CycleReport, RoleTally, SlotWait, Verdict
from coordinator.runtime import AgentRecord, Phase
from coordinator.steps.inventory import CRASH_WINDOW_S, Inventory
from coordinator.steps.reconcile import BackoffPolicy, SpawnOutcome, SpawnResult, plan_reconcile

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FLEET = "f"
BACKOFF = BackoffPolicy(base_s=60.0, max_s=3600.0)


def spec(key: str, count: int) -> RoleSpec:
    return RoleSpec(Role(key, key.title(), count, Department.ENGINEERING, Mode.TASK_DRIVEN, f"{key}."), "agent:1")


@dataclass
class Engine:
    """The agents an engine holds; `crashing` roles' agents exit 3 one second after they start."""

    crashing: set[str]
    agents: list[AgentRecord] = field(default_factory=list)
    made: int = 0

    def advance(self, now: datetime) -> None:
        for index, agent in enumerate(self.agents):
            end = (agent.started_at or agent.created_at) + timedelta(seconds=1)
            if agent.phase is Phase.ALIVE and agent.role in self.crashing and end <= now:
                self.agents[index] = replace(agent, phase=Phase.FINISHED, finished_at=end, exit_code=3)


@dataclass(frozen=True)
class Cycle:
    at: datetime
    verdict: Verdict
    reasons: list[str]
    tally: RoleTally


def run_cycle(engine: Engine, roster: list[RoleSpec], now: datetime) -> Cycle:
    engine.advance(now)
    inventory = Inventory(tuple(engine.agents), taken_at=now)
    tallies = role_tallies(roster, inventory)
    plan = plan_reconcile(FLEET, roster, inventory, now=now, backoff=BACKOFF)
    for wait in plan.waits:
        tallies[wait.role].waiting.append(SlotWait(wait.slot, wait.until, wait.crashes))
    for spawn in plan.spawns:
        if spawn.vacate is not None:
            engine.agents = [replace(a, holds_slot=False) if a.id == spawn.vacate.id else a for a in engine.agents]
        engine.made += 1
        engine.agents.append(AgentRecord(
            id=f"{engine.made:064d}", name=spawn.name, role=spawn.spec.key, slot=spawn.slot, phase=Phase.ALIVE,
            created_at=now, started_at=now, crash_streak=spawn.crash_streak,
        ))
        count_spawn(tallies[spawn.spec.key], SpawnResult(spawn, SpawnOutcome.SPAWNED))
    discarded = {a.id for a in plan.discard}
    engine.agents = [a for a in engine.agents if a.id not in discarded]
    report = CycleReport(fleet=FLEET, started_at=now, roles=tallies)
    return Cycle(now, verdict.judge(report), [f.reason for f in verdict.findings(report)], tallies["flaky"])


@pytest.mark.parametrize("interval", [timedelta(minutes=1), timedelta(minutes=5)])
def test_a_role_whose_only_agent_always_crashes_is_degraded_on_every_cycle_after_the_first_crash(
    interval: timedelta,
) -> None:
    roster = [spec("flaky", 1), spec("steady", 2)]
    engine = Engine(crashing={"flaky"})
    cycles = [run_cycle(engine, roster, T0 + n * interval) for n in range(24)]

    first, *rest = cycles
    assert first.verdict is Verdict.HEALTHY  # nothing has crashed yet
    # Backoff waits and respawns alternate (both kinds occur at either interval), and the verdict holds.
    assert any(c.tally.waiting for c in rest) and any(c.tally.spawned for c in rest)
    assert [c.verdict for c in rest] == [Verdict.DEGRADED] * len(rest)
    assert all(c.tally.present == 0 for c in rest)  # agent_fleet_agents_running: never the crashed agent
    assert all(any(r.startswith("flaky: crash loop in slot 1 (") for r in c.reasons) for c in rest)
    assert not any("steady" in reason for c in cycles for reason in c.reasons)


def test_the_loop_ends_when_an_agent_lives_past_the_crash_window() -> None:
    roster = [spec("flaky", 1)]
    engine = Engine(crashing={"flaky"})
    now = T0
    for _ in range(6):
        run_cycle(engine, roster, now)
        now += timedelta(minutes=1)
    engine.crashing.clear()  # the image is fixed: the next agent keeps running

    # The next respawn, and that agent while still inside the crash window, are not counted on yet.
    while not (respawn := run_cycle(engine, roster, now)).tally.spawned:
        assert respawn.verdict is Verdict.DEGRADED
        now += timedelta(minutes=1)
    assert respawn.verdict is Verdict.DEGRADED and respawn.tally.present == 0
    young = run_cycle(engine, roster, now + timedelta(seconds=CRASH_WINDOW_S - 1))
    assert young.verdict is Verdict.DEGRADED and young.tally.present == 0 and young.tally.running == 1
    proven = run_cycle(engine, roster, now + timedelta(seconds=CRASH_WINDOW_S))
    assert proven.verdict is Verdict.HEALTHY and proven.tally.present == 1 and proven.reasons == []


@pytest.mark.parametrize(
    ("streak", "started_ago_s", "phase", "unproven"),
    [
        (0, 1, Phase.ALIVE, False),  # no crash before it: counted at once
        (1, 1, Phase.ALIVE, True),  # after a crash, inside the window
        (3, CRASH_WINDOW_S - 0.5, Phase.ALIVE, True),
        (3, CRASH_WINDOW_S, Phase.ALIVE, False),  # lived past the window: the loop is over
        (2, None, Phase.ALIVE, True),  # not started yet (a swarm task waiting for a node)
        (2, 1, Phase.FINISHED, False),  # already gone: not running at all
    ],
)
def test_an_agent_following_crashes_is_unproven_until_it_lives_past_the_crash_window(
    streak: int, started_ago_s: float | None, phase: Phase, unproven: bool
) -> None:
    agent = AgentRecord(
        id="a" * 64, name="f-flaky-1", role="flaky", slot=1, phase=phase, created_at=T0 - timedelta(minutes=2),
        started_at=None if started_ago_s is None else T0 - timedelta(seconds=started_ago_s),
        finished_at=T0 if phase is Phase.FINISHED else None, exit_code=3 if phase is Phase.FINISHED else None,
        crash_streak=streak,
    )
    inventory = Inventory((agent,), taken_at=T0)
    assert inventory.unproven(agent) is unproven
    (tally,) = role_tallies([spec("flaky", 1)], inventory).values()
    assert tally.present == (1 if phase is Phase.ALIVE and not unproven else 0)
