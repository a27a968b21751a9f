"""The cycle's behaviour, whole cycles run in-process on the in-memory runtime (`tests/fakes/runtime.py`).

What the cycle decides (backoff, the spawn budget, slow start, scale-down, squatters, overlapping cycles,
housekeeping, the idle streak's advice) does not depend on the engine: the runtime contract
(`tests/test_runtime_contract.py`) proves the fake keeps the port's promises as the Docker engine and the lab
swarm do. So these run in milliseconds, with a clock the test moves, and the engines' files
(`tests/test_cycle_docker.py`, `tests/test_cycle_swarm.py`) keep what only engines show.
"""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from coordinator import cycle, labels
from coordinator.cycle import CycleAdapters
from coordinator.github_port import GitHubPort
from coordinator.report import EventLog, HealthReport
from coordinator.settings import GitHubSettings, HealthSettings, load_settings
from tests.fakes.runtime import FakeClock, MemoryRuntime, State
from tests.fleet_harness import CycleRun, cycle_env, desired, parse_lines, present_by_role, role_spec, write_roster

FLEET = "tfake"
IMAGE = "agent-fleet/agent:test"


def no_github(settings: GitHubSettings) -> GitHubPort:
    raise AssertionError("GitHub is not configured in these tests")


def no_production(settings: HealthSettings, *, deadline: float | None = None) -> HealthReport:
    raise AssertionError("production is not configured in these tests")


@dataclass
class Fleet:
    """A roster file, the environment a cycle reads, and the fake engine every cycle of the test shares."""

    roster: Path
    runtime: MemoryRuntime
    env: dict[str, str] = field(default_factory=dict)

    @property
    def clock(self) -> FakeClock:
        return self.runtime.clock

    def cycle(self, env: Mapping[str, str] | None = None, /, *, dry_run: bool = False, **extra: str) -> CycleRun:
        """One whole cycle, in this thread, with the fleet's environment and `env`/`extra` on top."""
        settings = load_settings({**self.env, **(env or {}), **extra})
        out = io.StringIO()
        adapters = CycleAdapters(runtime=lambda: self.runtime, github=no_github, production=no_production,
                                 clock=self.clock)
        report = cycle.run_cycle(settings, log=EventLog(FLEET, settings.secrets(), stream=out), adapters=adapters,
                                 dry_run=dry_run)
        return CycleRun(1 if report.failed else 0, parse_lines(out.getvalue()), out.getvalue(), "")

    def roles(self, *specs: tuple[str, int] | tuple[str, int, str]) -> None:
        write_roster(self.roster, [role_spec(s[0], s[1], s[2] if len(s) > 2 else IMAGE) for s in specs])

    def running(self) -> Counter[str]:
        return Counter(self.runtime.running_by_role(FLEET))

    def end_all(self, code: int, after_s: float = 5) -> None:
        """Every running agent of the fleet ends with `code`, `after_s` after it started."""
        self.clock.advance(after_s)
        for agent in self.runtime.objects(FLEET):
            if agent.state is State.RUNNING:
                self.runtime.exit(agent.id, code, after_s=after_s)


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    made = Fleet(tmp_path / "roster.json", MemoryRuntime())
    made.roles(("builder", 3), ("reviewer", 2))
    made.env = cycle_env(FLEET, made.roster)
    return made


def spawned_slots(run: CycleRun) -> list[int]:
    return [e["slot"] for e in run.events("agent.spawned")]


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ------------------------------------------------------------------------------------------ converging


def test_cold_start_converges_and_a_second_cycle_changes_nothing(fleet: Fleet) -> None:
    first = fleet.cycle()
    assert first.returncode == 0
    assert fleet.running() == Counter({"builder": 3, "reviewer": 2})
    assert first.report["roles"]["builder"] == {**first.report["roles"]["builder"], "desired": 3, "running": 0,
                                                "spawned": 3, "failed": 0}
    ids = {a.id for a in fleet.runtime.objects(FLEET)}
    with fleet.runtime.counting() as calls:
        second = fleet.cycle()
    assert second.events("agent.spawned") == [] and second.report["roles"]["builder"]["running"] == 3
    assert calls == [f"list {FLEET}"]  # a steady cycle only looks
    assert {a.id for a in fleet.runtime.objects(FLEET)} == ids


def test_a_dry_run_plans_the_spawns_and_changes_nothing(fleet: Fleet) -> None:
    with fleet.runtime.counting() as calls:
        run = fleet.cycle(dry_run=True)
    assert len(run.events("agent.would_spawn")) == 5 and run.events("agent.spawned") == []
    assert calls == [f"list {FLEET}"] and fleet.runtime.objects() == []


def test_a_killed_agent_is_respawned_and_only_the_slots_last_ended_agent_is_kept(fleet: Fleet) -> None:
    fleet.cycle()
    victim = fleet.runtime.get(f"{FLEET}-builder-2")
    fleet.clock.advance(600)
    fleet.runtime.exit(victim.id, 137)
    run = fleet.cycle()
    assert spawned_slots(run) == [2] and fleet.running() == Counter({"builder": 3, "reviewer": 2})
    assert fleet.runtime.get(victim.id).name == f"{FLEET}-builder-2.{victim.id[:12]}"  # kept aside for its log

    second = fleet.runtime.get(f"{FLEET}-builder-2")
    fleet.clock.advance(600)
    fleet.runtime.exit(second.id, 137)
    assert spawned_slots(fleet.cycle()) == [2]
    assert fleet.runtime.get(second.id).state is State.EXITED
    with pytest.raises(KeyError):
        fleet.runtime.get(victim.id)


@pytest.mark.parametrize("renames", [True, False], ids=["kept-aside", "removed"])
def test_scale_down_and_role_removal_kill_nothing_and_only_read(fleet: Fleet, renames: bool) -> None:
    fleet.runtime.renames = renames
    fleet.cycle()
    before = {a.id for a in fleet.runtime.objects(FLEET)}
    fleet.roles(("builder", 1))  # 3 -> 1, reviewer removed
    with fleet.runtime.counting() as calls:
        run = fleet.cycle()
    assert calls == [f"list {FLEET}"]  # nothing spawned, vacated or discarded
    assert {a.id for a in fleet.runtime.objects(FLEET) if a.state is State.RUNNING} == before
    assert run.report["roles"]["builder"]["desired"] == 1 and run.report["roles"]["builder"]["running"] == 3
    assert run.report["roles"]["reviewer"]["desired"] == 0 and run.report["roles"]["reviewer"]["running"] == 2
    # The fleet converges as agents exit: one builder ends, nothing replaces it while two still run.
    fleet.clock.advance(600)
    fleet.runtime.exit(f"{FLEET}-builder-1", 0)
    assert fleet.cycle().events("agent.spawned") == []


def test_finished_agents_above_the_count_are_discarded_after_a_scale_down(fleet: Fleet) -> None:
    fleet.roles(("worker", 6))
    assert len(fleet.cycle().events("agent.spawned")) == 6
    fleet.end_all(0, after_s=600)
    fleet.roles(("worker", 1))
    run = fleet.cycle()
    assert run.events("agents.discarded") == [{**run.events("agents.discarded")[0], "count": 5}]
    left = {a.name: a.state for a in fleet.runtime.objects(FLEET)}
    # Slot 1's new agent, and its predecessor kept aside for its log; nothing of slots 2..6.
    assert sorted(left.values()) == [State.EXITED, State.RUNNING] and f"{FLEET}-worker-1" in left


# ------------------------------------------------------------------------------------------ overlapping cycles


def test_six_overlapping_cycles_in_threads_end_at_exactly_the_desired_counts(tmp_path: Path) -> None:
    made = Fleet(tmp_path / "roster.json", MemoryRuntime(spawn_latency_s=0.005))
    made.roles(("builder", 4), ("reviewer", 2))
    made.env = cycle_env(FLEET, made.roster)
    made.runtime.plan_together(6)  # all six plan from the same, empty inventory
    runs: list[CycleRun] = []

    def one() -> None:
        runs.append(made.cycle())

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    reports = [run.report for run in runs]
    assert len(reports) == 6 and [run.returncode for run in runs] == [0] * 6
    # Each slot was created once; every other cycle met the name in use, which is no failure.
    assert sum(report["spawned"] for report in reports) == 6
    assert sum(len(run.events("agent.slot_taken")) for run in runs) == 6 * 6 - 6
    assert [present_by_role(report) for report in reports] == [{"builder": 4, "reviewer": 2}] * 6
    assert [report["verdict_reasons"] for report in reports] == [[]] * 6
    assert made.running() == Counter({"builder": 4, "reviewer": 2}) and len(made.runtime.objects()) == 6
    assert made.cycle().events("agent.spawned") == []


def test_a_failed_inventory_assumes_none_running_yet_never_overshoots(fleet: Fleet) -> None:
    fleet.cycle()
    fleet.clock.advance(600)
    fleet.runtime.exit(f"{FLEET}-builder-2", 137)
    before = {a.id for a in fleet.runtime.objects(FLEET) if a.state is State.RUNNING}
    fleet.runtime.fail_listing()
    run = fleet.cycle()
    # Every slot was planned (nothing counted as running), and the name check refused every one.
    assert run.report["steps"]["inventory"]["status"] == "failed"
    assert run.report["roles"]["builder"]["running"] == 0 and run.report["roles"]["builder"]["spawned"] == 0
    assert {a.id for a in fleet.runtime.objects(FLEET) if a.state is State.RUNNING} == before
    # The next cycle with a working inventory heals the fleet.
    assert spawned_slots(fleet.cycle()) == [2]
    assert fleet.running() == desired([role_spec("builder", 3, IMAGE), role_spec("reviewer", 2, IMAGE)])


# ------------------------------------------------------------------------------------------ squatters, strangers


def test_another_fleets_agents_and_a_squatter_are_never_touched_and_the_squatter_is_named(fleet: Fleet) -> None:
    other = {labels.FLEET: f"{FLEET}x", labels.COMPONENT: labels.AGENT, labels.ROLE: "builder", labels.SLOT: "1"}
    theirs = fleet.runtime.plant(f"{FLEET}x-builder-1", other)
    stopped = fleet.runtime.plant(f"{FLEET}x-builder-2", {**other, labels.SLOT: "2"}, state=State.EXITED, exit_code=0)
    squatter = fleet.runtime.squat(f"{FLEET}-builder-3")
    before = {a.id: (a.name, a.state) for a in fleet.runtime.objects()}
    run = fleet.cycle()
    assert {i: fleet.runtime.get(i) for i in (theirs, stopped, squatter)} == {
        i: replace(fleet.runtime.get(i), name=before[i][0], state=before[i][1]) for i in (theirs, stopped, squatter)}
    assert run.report["roles"]["builder"]["spawned"] == 2
    assert [e["slot"] for e in run.events("agent.slot_taken")] == [3]
    assert run.report["squatters"] == [f"{FLEET}-builder-3: held by object {squatter[:12]}"]
    assert run.report["verdict"] == "degraded"
    assert f"slot {FLEET}-builder-3: held by object {squatter[:12]}, which is not the fleet's: remove it" \
        in run.report["verdict_reasons"]


@pytest.mark.parametrize(
    ("odd_labels", "named"),
    [
        ({labels.SLOT: "²"}, "label agent-fleet.slot="),
        # 12 digits pass the label's pattern, but lie past the year 9999: once, this failed the whole inventory.
        ({labels.SLOT: "2", labels.EARLIER_SPAWNS: "999999999999"},
         "label agent-fleet.earlier-spawns holds 999999999999, out of range"),
    ],
    ids=["malformed-slot", "spawn-time-out-of-range"],
)
def test_an_agent_with_an_unreadable_label_is_skipped_and_named_and_the_rest_is_reconciled(
    fleet: Fleet, odd_labels: dict[str, str], named: str
) -> None:
    fleet.cycle()
    odd = fleet.runtime.plant(f"{FLEET}-odd", {labels.FLEET: FLEET, labels.COMPONENT: labels.AGENT,
                                               labels.ROLE: "builder", **odd_labels})
    fleet.clock.advance(600)
    fleet.runtime.exit(f"{FLEET}-reviewer-1", 137)
    run = fleet.cycle()
    assert run.report["steps"]["inventory"]["status"] == "ok"
    assert spawned_slots(run) == [1] and fleet.running()["reviewer"] == 2
    (unreadable,) = run.report["unreadable"]
    assert unreadable.startswith(f"{FLEET}-odd: {named}")
    assert run.report["verdict"] == "degraded"
    assert any(f"{FLEET}-odd" in reason for reason in run.report["verdict_reasons"])
    assert fleet.runtime.get(odd).state is State.RUNNING


# ------------------------------------------------------------------------------------------ crash loops, the budget


def test_crash_loop_backs_off_exponentially_from_the_exit_times(fleet: Fleet) -> None:
    fleet.roles(("flaky", 1))
    env = {"AGENT_CRASH_BACKOFF_S": "60"}
    name = f"{FLEET}-flaky-1"
    assert spawned_slots(fleet.cycle(env)) == [1]
    fleet.clock.advance(5)
    fleet.runtime.exit(name, 3)
    # The first crash is replaced at once (it may have been an accident), carrying the streak.
    report = fleet.cycle(env).report
    assert report["roles"]["flaky"]["spawned"] == 1 and report["roles"]["flaky"]["waiting"] == []
    assert fleet.runtime.get(name).labels[labels.CRASH_STREAK] == "1"

    for crashes, delay in ((2, 60), (3, 120), (4, 240)):
        fleet.clock.advance(5)
        finished = fleet.runtime.exit(name, 3).finished_at
        assert finished is not None
        report = fleet.cycle(env).report
        (wait,) = report["roles"]["flaky"]["waiting"]
        assert report["roles"]["flaky"]["spawned"] == 0 and wait["crashes"] == crashes
        assert moment(wait["until"]) - finished == timedelta(seconds=delay)
        fleet.clock.advance(delay - 1)  # a second early: still waiting
        still = fleet.cycle(env).report
        assert still["roles"]["flaky"]["spawned"] == 0
        fleet.clock.advance(1)
        respawn = fleet.cycle(env)
        assert spawned_slots(respawn) == [1]
        assert fleet.runtime.get(name).labels[labels.CRASH_STREAK] == str(crashes)
        # Waiting or just respawned, the loop degrades its role and leaves the slot short: no flapping.
        for judged in (report, still, respawn.report):
            assert judged["verdict"] == "degraded" and judged["roles"]["flaky"]["present"] == 0
            assert any(r.startswith("flaky: crash loop in slot 1 (") for r in judged["verdict_reasons"])


def test_a_crash_after_the_crash_window_is_no_crash_loop(fleet: Fleet) -> None:
    fleet.roles(("flaky", 1))
    for _ in range(3):
        fleet.cycle()
        fleet.clock.advance(61)
        fleet.runtime.exit(f"{FLEET}-flaky-1", 3)
    report = fleet.cycle().report
    assert report["roles"]["flaky"]["spawned"] == 1 and report["roles"]["flaky"]["waiting"] == []


def test_a_slot_that_crashed_for_weeks_neither_fails_the_cycle_nor_grows_its_streak(fleet: Fleet) -> None:
    fleet.roles(("flaky", 1))
    veteran = fleet.runtime.plant(
        f"{FLEET}-flaky-1", {labels.FLEET: FLEET, labels.COMPONENT: labels.AGENT, labels.ROLE: "flaky",
                             labels.SLOT: "1", labels.CRASH_STREAK: "1000"},
        state=State.EXITED, exit_code=3, ran_s=2)
    run = fleet.cycle(AGENT_CRASH_BACKOFF_S="60", AGENT_CRASH_BACKOFF_MAX_S="3600")
    assert run.report["steps"]["reconcile"]["status"] == "ok"
    (wait,) = run.report["roles"]["flaky"]["waiting"]
    assert wait["crashes"] == 100
    finished = fleet.runtime.get(veteran).finished_at
    assert finished is not None and moment(wait["until"]) - finished == timedelta(seconds=3600)


@pytest.mark.parametrize("renames", [True, False], ids=["kept-aside", "removed"])
def test_the_spawn_budget_bounds_spawns_per_rolling_hour(fleet: Fleet, renames: bool) -> None:
    # Removed: the swarm's way; the finished agents are gone, yet their spawns ride on their successors' labels.
    fleet.runtime.renames = renames
    fleet.roles(("quick", 5))
    env = {"FLEET_MAX_SPAWNS_PER_HOUR": "7"}
    first = fleet.cycle(env)
    assert len(first.events("agent.spawned")) == 5
    assert first.report["budget"] == {"limit": 7, "used": 0, "remaining": 2}
    fleet.end_all(0, after_s=600)
    second = fleet.cycle(env)
    assert len(second.events("agent.spawned")) == 2
    assert second.report["budget"] == {"limit": 7, "used": 5, "remaining": 0}
    assert sum(r["deferred"] for r in second.report["roles"].values()) == 3 and second.events("spawn.budget_exhausted")
    fleet.end_all(0, after_s=600)
    third = fleet.cycle(env)
    assert third.events("agent.spawned") == [] and third.report["budget"]["used"] == 7
    # An hour after the first spawns, their share of the budget is back.
    fleet.clock.advance(3600 - 1200 + 1)
    assert len(fleet.cycle(env).events("agent.spawned")) == 5


def test_a_bad_image_costs_one_failed_spawn_and_holds_the_rest_of_its_image_back(fleet: Fleet) -> None:
    fleet.roles(("broken", 5, "agent-fleet/no-such-image:never"), ("fine", 2))
    fleet.runtime.refuse_image("agent-fleet/no-such-image:never")
    run = fleet.cycle()
    assert run.returncode == 1
    assert len(run.events("agent.spawn_failed")) == 1
    assert run.report["roles"]["broken"] == {**run.report["roles"]["broken"], "failed": 1, "held_back": 4}
    assert run.report["roles"]["fine"]["spawned"] == 2  # another image's spawns go on
    (held,) = run.events("spawn.held_back")
    assert held["held_back"] == 4 and "failed" in held["reason"]
    assert fleet.running() == Counter({"fine": 2})


def test_spawns_ramp_up_to_the_concurrency(tmp_path: Path) -> None:
    made = Fleet(tmp_path / "roster.json", MemoryRuntime(spawn_latency_s=0.01))
    made.roles(("builder", 30))
    made.env = cycle_env(FLEET, made.roster, SPAWN_CONCURRENCY="8")
    assert len(made.cycle().events("agent.spawned")) == 30
    assert made.runtime.most_in_flight == 8


# ------------------------------------------------------------------------------------------ idle exits, lost nodes


def test_agents_that_keep_finding_nothing_earn_the_advice_to_lower_their_count(fleet: Fleet) -> None:
    fleet.roles(("idler", 1))
    name = f"{FLEET}-idler-1"
    fleet.cycle()
    report: dict[str, Any] = {}
    for streak in (1, 2, 3):
        fleet.clock.advance(30)
        fleet.runtime.exit(name, 0)
        report = fleet.cycle().report
        assert report["roles"]["idler"]["idle_exits"] == streak
        assert fleet.runtime.get(name).labels[labels.IDLE_STREAK] == str(streak)
    assert [(a["role"], a["signal"], a["value"]) for a in report["advice"]] == [("idler", "idle_exits", 3)]
    assert report["roles"]["idler"]["waiting"] == []  # an idle exit is not a crash


def test_an_agent_that_works_for_long_breaks_the_idle_streak(fleet: Fleet) -> None:
    fleet.roles(("idler", 1))
    name = f"{FLEET}-idler-1"
    fleet.cycle()
    for _ in range(2):
        fleet.clock.advance(30)
        fleet.runtime.exit(name, 0)
        fleet.cycle()
    fleet.clock.advance(1800)
    fleet.runtime.exit(name, 0)
    report = fleet.cycle().report
    assert report["roles"]["idler"]["idle_exits"] == 0 and report["advice"] == []


def test_a_lost_agent_counts_as_running_until_lost_for_long_enough_then_its_slot_is_refilled(tmp_path: Path) -> None:
    made = Fleet(tmp_path / "roster.json", MemoryRuntime(renames=False, node="node-1"))
    made.roles(("builder", 3))
    made.env = cycle_env(FLEET, made.roster, AGENT_NODE_LOST_S="300")
    made.cycle()
    made.runtime.lose(f"{FLEET}-builder-2", node="node-3")
    made.clock.advance(299)
    early = made.cycle()
    assert early.events("agent.spawned") == [] and early.report["lost_nodes"] == []
    made.clock.advance(1)
    run = made.cycle()
    assert spawned_slots(run) == [2]
    assert run.report["lost_nodes"] == ["node-3"] and run.report["verdict"] == "degraded"
    assert made.running() == Counter({"builder": 3})


# ------------------------------------------------------------------------------------------ what agents are given


def test_agents_are_told_their_role_and_where_github_is_and_carry_the_fleets_labels(fleet: Fleet) -> None:
    fleet.cycle(GITHUB_REPOSITORY="acme/webapp", GITHUB_API_URL="https://ghe.example.com/api/v3")
    agent = fleet.runtime.get(f"{FLEET}-reviewer-2")
    assert {k: agent.labels[k] for k in (labels.FLEET, labels.ROLE, labels.SLOT)} == {
        labels.FLEET: FLEET, labels.ROLE: "reviewer", labels.SLOT: "2"}
    assert {k: agent.env[k] for k in ("AGENT_ROLE", "AGENT_SLOT", "AGENT_MODE", "AGENT_BRIEF")} == {
        "AGENT_ROLE": "reviewer", "AGENT_SLOT": "2", "AGENT_MODE": "Task-driven",
        "AGENT_BRIEF": "The reviewer agent."}
    assert agent.env["GITHUB_REPOSITORY"] == "acme/webapp"
    assert agent.env["GITHUB_API_URL"] == "https://ghe.example.com/api/v3"
    assert agent.env["GITHUB_SERVER_URL"] == "https://ghe.example.com"


def test_each_role_receives_the_secrets_it_lists_as_files_and_nowhere_else(fleet: Fleet, tmp_path: Path) -> None:
    token, key = "fake-agent-token-SECRET" + "x1" * 12, "sk-model-SECRET" + "y2" * 12
    secrets = tmp_path / "agent-secrets.json"
    secrets.write_text(json.dumps({"GITHUB_TOKEN": token, "ANTHROPIC_API_KEY": key}))
    reviewer = role_spec("reviewer", 1, IMAGE)
    write_roster(fleet.roster, [role_spec("builder", 1, IMAGE),
                                replace(reviewer, role=replace(reviewer.role, secrets=("GITHUB_TOKEN",)))])
    run = fleet.cycle(AGENT_SECRETS_FILE=str(secrets))
    builder, only = fleet.runtime.get(f"{FLEET}-builder-1"), fleet.runtime.get(f"{FLEET}-reviewer-1")
    assert fleet.runtime.secret_file(builder.id, "ANTHROPIC_API_KEY") == key
    assert fleet.runtime.secret_file(only.id, "GITHUB_TOKEN") == token
    assert sorted(only.files) == ["/run/secrets/GITHUB_TOKEN"]
    for agent in (builder, only):
        shown = fleet.runtime.inspect(agent.id)
        assert token not in shown and key not in shown
    assert token not in run.stdout and key not in run.stdout


def test_an_agent_created_and_never_started_is_cleared_and_its_slot_filled(fleet: Fleet) -> None:
    # What a cycle killed between a create and its start leaves behind.
    fleet.roles(("builder", 2))
    stranded = fleet.runtime.plant(f"{FLEET}-builder-1", {labels.FLEET: FLEET, labels.COMPONENT: labels.AGENT,
                                                          labels.ROLE: "builder", labels.SLOT: "1"},
                                   state=State.CREATED)
    run = fleet.cycle()
    assert sorted(spawned_slots(run)) == [1, 2] and fleet.running() == Counter({"builder": 2})
    with pytest.raises(KeyError):
        fleet.runtime.get(stranded)  # removed, not kept aside: it never ran, so it has no log worth keeping
