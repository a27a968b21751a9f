"""Step 2, reconcile: spawn the deficit, never kill.

`plan_reconcile` is pure: desired roles, the inventory and the time in; a `ReconcilePlan` out.
`execute_plan` carries a plan out against Docker, spawns concurrently and bounded.

Why overlapping cycles cannot overshoot: every agent of role R in slot n is created under the
one name `<fleet>-<R>-<n>`, Docker refuses a second container with a name in use, and a plan
only ever spawns into the lowest free slots 1..desired. Two cycles that plan at once choose
the same lowest slots, so the slower one's creates fail with "name taken"; a cycle whose
inventory failed plans every slot and meets the same refusals. Running agents are never
renamed, stopped or removed; exited ones are renamed aside (kept for `docker logs`) only when
their slot is taken again, and removal is never forced, so the engine itself refuses to remove
anything that started running meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from coordinator import labels
from coordinator.edges.docker import AgentLaunch, ContainerRecord, DockerError, DockerPort, NameTaken
from coordinator.fleet import RoleSpec
from coordinator.report import SpawnBudget
from coordinator.steps.inventory import Agent, Inventory, idle_streak_shown

log = logging.getLogger(__name__)

BUDGET_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class BackoffPolicy:
    """How long a slot waits after its n-th crash in a row: not at all after one (an agent killed by
    accident is replaced at once), then base, 2 * base, 4 * base, ... up to `max_s`."""

    base_s: float = 60.0
    max_s: float = 3600.0

    def delay(self, crashes: int) -> timedelta:
        if crashes <= 1:
            return timedelta(0)
        return timedelta(seconds=min(self.base_s * 2 ** (crashes - 2), self.max_s))


def slot_name(fleet_id: str, role: str, slot: int) -> str:
    return f"{fleet_id}-{role}-{slot}"


def archive_name(record: ContainerRecord) -> str:
    """Where an exited agent moves when its slot is taken again: still inspectable, out of the way."""
    return f"{record.name}.{record.id[:12]}"


@dataclass(frozen=True)
class Deficit:
    role: str
    desired: int
    running: int

    @property
    def missing(self) -> int:
        return max(0, self.desired - self.running)


@dataclass(frozen=True)
class Spawn:
    """One agent to start in a slot. `clear` holds the slot's name now (exited or never started);
    `retire` are older exited agents of the slot that are no longer the last one."""

    spec: RoleSpec
    slot: int
    name: str
    crash_streak: int = 0
    idle_streak: int = 0
    clear: ContainerRecord | None = None
    retire: tuple[ContainerRecord, ...] = ()


@dataclass(frozen=True)
class Wait:
    """A crash-looping slot held back until `until`."""

    role: str
    slot: int
    until: datetime
    crashes: int


@dataclass(frozen=True)
class ReconcilePlan:
    deficits: tuple[Deficit, ...] = ()
    spawns: tuple[Spawn, ...] = ()
    waits: tuple[Wait, ...] = ()
    deferred: tuple[Spawn, ...] = ()  # held back by the spawn budget
    budget: SpawnBudget | None = None
    prune: tuple[ContainerRecord, ...] = ()  # exited agents past what is kept for inspection


def _last_exit_time(agent: Agent) -> datetime:
    if agent.exit is not None and agent.exit.finished_at is not None:
        return agent.exit.finished_at
    return agent.record.created_at


def plan_reconcile(
    fleet_id: str,
    roster: Sequence[RoleSpec],
    inventory: Inventory,
    *,
    now: datetime,
    backoff: BackoffPolicy = BackoffPolicy(),
    max_spawns_per_hour: int | None = None,
) -> ReconcilePlan:
    alive = inventory.alive_by_role()
    by_slot: dict[tuple[str, int], list[Agent]] = {}
    for agent in inventory.agents:
        if agent.record.slot is not None:
            by_slot.setdefault((agent.record.role, agent.record.slot), []).append(agent)

    deficits: list[Deficit] = []
    candidates: list[tuple[int, int, Spawn]] = []  # (slot, roster position, spawn) for a fair budget cut
    waits: list[Wait] = []
    for position, spec in enumerate(roster):
        deficit = Deficit(spec.key, spec.role.count, alive[spec.key])
        deficits.append(deficit)
        free = [
            n for n in range(1, deficit.desired + 1)
            if not any(a.record.alive for a in by_slot.get((spec.key, n), ()))
        ]
        for slot in free[: deficit.missing]:
            spawn, wait = _plan_slot(
                fleet_id, spec, slot, by_slot.get((spec.key, slot), []), now, backoff,
                keep_since=now - BUDGET_WINDOW if max_spawns_per_hour is not None else None,
            )
            if wait is not None:
                waits.append(wait)
            elif spawn is not None:
                candidates.append((slot, position, spawn))

    candidates.sort(key=lambda c: (c[0], c[1]))
    ordered = [spawn for _, _, spawn in candidates]
    budget: SpawnBudget | None = None
    deferred: list[Spawn] = []
    if max_spawns_per_hour is not None:
        used = sum(1 for a in inventory.agents if a.record.created_at > now - BUDGET_WINDOW)
        remaining = max(0, max_spawns_per_hour - used)
        ordered, deferred = ordered[:remaining], ordered[remaining:]
        budget = SpawnBudget(limit=max_spawns_per_hour, used=used, remaining=remaining - len(ordered))

    retiring = {r.id for s in ordered for r in s.retire}
    prune = tuple(
        record for record in _prunable(by_slot, fleet_id, now, keep_budget_window=max_spawns_per_hour is not None)
        if record.id not in retiring
    )
    return ReconcilePlan(
        deficits=tuple(deficits),
        spawns=tuple(ordered),
        waits=tuple(waits),
        deferred=tuple(deferred),
        budget=budget,
        prune=prune,
    )


def _plan_slot(
    fleet_id: str,
    spec: RoleSpec,
    slot: int,
    agents: list[Agent],
    now: datetime,
    backoff: BackoffPolicy,
    keep_since: datetime | None,
) -> tuple[Spawn | None, Wait | None]:
    name = slot_name(fleet_id, spec.key, slot)
    holder = next((a.record for a in agents if a.record.name == name), None)
    archived = [a.record for a in agents if a.record.name != name and not a.record.alive]
    exited = [a for a in agents if a.exit is not None]
    streak = idle = 0
    if exited:
        last = max(exited, key=_last_exit_time)
        # The new agent carries the streak its predecessor shows: the one the inventory counts.
        idle = idle_streak_shown(last, now)
        if last.crashed:
            streak = last.record.crash_streak + 1
            until = _last_exit_time(last) + backoff.delay(streak)
            if now < until:
                return None, Wait(spec.key, slot, until, streak)
    # Once the holder is archived it is the slot's last exited agent; older archived ones go,
    # except, with a spawn budget, those of the past hour: they are the budget's evidence.
    retire: tuple[ContainerRecord, ...] = ()
    if holder is not None and holder.state == "exited":
        retire = tuple(r for r in archived if keep_since is None or r.created_at <= keep_since)
    return Spawn(spec, slot, name, crash_streak=streak, idle_streak=idle, clear=holder, retire=retire), None


def _prunable(
    by_slot: Mapping[tuple[str, int], list[Agent]], fleet_id: str, now: datetime, *, keep_budget_window: bool
) -> Iterable[ContainerRecord]:
    """Archived agents of a slot beyond its newest one; with a budget, the past hour's are its evidence."""
    for (role, slot), agents in by_slot.items():
        name = slot_name(fleet_id, role, slot)
        archived = sorted(
            (a.record for a in agents if a.record.name != name and a.record.state in ("exited", "dead")),
            key=lambda r: r.created_at,
            reverse=True,
        )
        for record in archived[1:]:
            if keep_budget_window and record.created_at > now - BUDGET_WINDOW:
                continue
            yield record


class SpawnOutcome(StrEnum):
    SPAWNED = "spawned"
    TAKEN = "taken"  # another cycle took the slot first: not a failure
    FAILED = "failed"


@dataclass(frozen=True)
class SpawnResult:
    spawn: Spawn
    outcome: SpawnOutcome
    container_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class AgentContext:
    """What every agent is told besides its role: the fleet, the repository, the network."""

    fleet_id: str
    repository: str | None = None
    network: str = "bridge"


def agent_launch(spawn: Spawn, context: AgentContext) -> AgentLaunch:
    role = spawn.spec.role
    env = {
        **spawn.spec.env,
        "AGENT_ROLE": role.key,
        "AGENT_BRIEF": role.brief,
        "AGENT_MODE": role.mode.value,
        "AGENT_SLOT": str(spawn.slot),
    }
    if context.repository:
        env["GITHUB_REPOSITORY"] = context.repository
    return AgentLaunch(
        name=spawn.name,
        image=spawn.spec.image,
        command=spawn.spec.command,
        env=env,
        labels={
            labels.FLEET: context.fleet_id,
            labels.COMPONENT: labels.AGENT,
            labels.ROLE: role.key,
            labels.SLOT: str(spawn.slot),
            labels.CRASH_STREAK: str(spawn.crash_streak),
            labels.IDLE_STREAK: str(spawn.idle_streak),
        },
        network=context.network,
    )


def _clear_slot(docker: DockerPort, holder: ContainerRecord) -> None:
    if holder.state == "exited":
        # Gone or already moved by another cycle: the create that follows settles who owns the slot.
        with contextlib.suppress(DockerError):
            docker.rename(holder.id, archive_name(holder))
    else:  # created (a spawn that never started) or dead: nothing there worth keeping
        try:
            docker.remove(holder.id)
        except DockerError as exc:
            # Most likely it was started meanwhile by the cycle that created it: that agent now holds the slot.
            log.debug("could not clear %s: %s", holder.name, exc)


def _spawn_one(docker: DockerPort, spawn: Spawn, context: AgentContext) -> SpawnResult:
    if spawn.clear is not None:
        _clear_slot(docker, spawn.clear)
    try:
        container_id = docker.launch(agent_launch(spawn, context))
    except NameTaken:
        return SpawnResult(spawn, SpawnOutcome.TAKEN)
    except Exception as exc:  # one spawn's failure, whatever it is, must not stop the others
        return SpawnResult(spawn, SpawnOutcome.FAILED, error=str(exc) or type(exc).__name__)
    for old in spawn.retire:
        _remove_quietly(docker, old)
    return SpawnResult(spawn, SpawnOutcome.SPAWNED, container_id=container_id)


def _remove_quietly(docker: DockerPort, record: ContainerRecord) -> None:
    try:
        docker.remove(record.id)
    except DockerError as exc:
        log.debug("could not prune %s: %s", record.name, exc)


def execute_plan(
    plan: ReconcilePlan,
    docker: DockerPort,
    context: AgentContext,
    *,
    concurrency: int = 8,
    on_result: Callable[[SpawnResult], None] = lambda result: None,
) -> list[SpawnResult]:
    """Spawn concurrently (at most `concurrency` at once); one failure never stops the others."""
    results: list[SpawnResult] = []
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="spawn") as pool:
        for result in pool.map(lambda s: _spawn_one(docker, s, context), plan.spawns):
            on_result(result)
            results.append(result)
    for record in plan.prune:
        _remove_quietly(docker, record)
    return results
