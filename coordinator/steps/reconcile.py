"""Step 2, reconcile: spawn the deficit, never kill, and keep only the finished agents still needed.

`plan_reconcile` is pure: desired roles, the inventory and the time in; a `ReconcilePlan` out.
`execute_plan` carries a plan out through the runtime port, in slow-start batches.

Why overlapping cycles cannot overshoot: every agent of role R in slot n is created under the one
name `<fleet>-<R>-<n>`, the engine refuses a second object under a name in use, and a plan only ever
spawns into the lowest free slots 1..desired. Two cycles that plan at once choose the same lowest
slots, so the slower one's spawns come back `SlotTaken`; a cycle whose inventory failed plans every
slot and meets the same refusals. Running agents are never renamed, stopped or removed; a finished
agent gives up its slot's name (`vacate`) only when the slot is filled again, and housekeeping
(`discard`) acts only on finished agents, by id, so nothing that started running meanwhile is touched.

Housekeeping keeps what the rules need and discards the rest: in a slot that is still desired, the
agent holding the slot's name (its end decides the crash-loop backoff and the idle streak until the
slot is filled again) and the newest agent kept aside (its log shows how the slot's last agent
ended); with a spawn budget, every agent spawned within the budget's window (the budget's evidence).
Slots above a role's count, and roles no longer in the roster, keep nothing beyond that window.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from coordinator.fleet import Mode, Resources, RoleSpec
from coordinator.identities import (
    Identity,
    MintFailure,
    TokenIdentity,
    TokenMinter,
    role_identity,
    token_permissions,
)
from coordinator.redact import Secret
from coordinator.report import SpawnBudget
from coordinator.runtime import (
    MAX_STREAK,
    AgentLaunch,
    AgentRecord,
    AgentRuntime,
    AgentSecret,
    RuntimeFailure,
    SlotTaken,
    slot_name,
    spawn_times,
)
from coordinator.settings import DEFAULT_BACKOFF_MAX_S, DEFAULT_BACKOFF_S
from coordinator.steps.inventory import Inventory, crashed, last_exit_time

BUDGET_WINDOW = timedelta(hours=1)
# The agent's GitHub token, as the secret file /run/secrets/GITHUB_TOKEN, and its expiry (not secret) beside it.
GITHUB_TOKEN = "GITHUB_TOKEN"
TOKEN_EXPIRY_VARIABLE = "GITHUB_TOKEN_EXPIRES_AT"
# A role's env may name another agent secret as its token (docs/agents.md); an identity's token replaces it.
TOKEN_SECRET_VARIABLE = "AGENT_GITHUB_TOKEN_SECRET"
# Past this many doublings the wait is at its maximum anyway; capping the exponent keeps the arithmetic
# finite however long a slot has been crashing.
_MAX_DOUBLINGS = 32


@dataclass(frozen=True)
class BackoffPolicy:
    """How long a slot waits after its n-th crash in a row: not at all after one (an agent killed by
    accident is replaced at once), then base, 2 * base, 4 * base, ... up to `max_s`. The cycle builds it from
    the settings (AGENT_CRASH_BACKOFF_S, AGENT_CRASH_BACKOFF_MAX_S), whose defaults these are."""

    base_s: float = DEFAULT_BACKOFF_S
    max_s: float = DEFAULT_BACKOFF_MAX_S

    def delay(self, crashes: int) -> timedelta:
        if crashes <= 1:
            return timedelta(0)
        doublings = min(crashes - 2, _MAX_DOUBLINGS)
        return timedelta(seconds=min(self.base_s * 2.0**doublings, self.max_s))


@dataclass(frozen=True)
class Spawn:
    """One agent to start in a slot; `vacate` is the finished agent that holds the slot's name now."""

    spec: RoleSpec
    slot: int
    name: str
    crash_streak: int = 0
    idle_streak: int = 0
    earlier_spawns: tuple[datetime, ...] = ()
    vacate: AgentRecord | None = None


@dataclass(frozen=True)
class Wait:
    """A crash-looping slot held back until `until`."""

    role: str
    slot: int
    until: datetime
    crashes: int


@dataclass(frozen=True)
class ReconcilePlan:
    spawns: tuple[Spawn, ...] = ()
    waits: tuple[Wait, ...] = ()
    deferred: tuple[Spawn, ...] = ()  # held back by the spawn budget
    budget: SpawnBudget | None = None
    discard: tuple[AgentRecord, ...] = ()  # finished agents nothing needs any more


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
    by_slot = _by_slot(inventory.agents)
    window_start = now - BUDGET_WINDOW if max_spawns_per_hour is not None else None

    candidates: list[tuple[int, int, Spawn]] = []  # (slot, roster position, spawn) for a fair budget cut
    waits: list[Wait] = []
    for position, spec in enumerate(roster):
        desired = spec.role.count
        missing = max(0, desired - alive[spec.key])
        free = [
            n for n in range(1, desired + 1)
            if not any(inventory.counts_as_running(a) for a in by_slot.get((spec.key, n), ()))
        ]
        for slot in free[:missing]:
            planned = _plan_slot(fleet_id, spec, slot, by_slot.get((spec.key, slot), []), inventory, now, backoff,
                                 window_start)
            if isinstance(planned, Wait):
                waits.append(planned)
            else:
                candidates.append((slot, position, planned))

    candidates.sort(key=lambda c: (c[0], c[1]))
    ordered = [spawn for _, _, spawn in candidates]
    budget: SpawnBudget | None = None
    deferred: list[Spawn] = []
    if max_spawns_per_hour is not None and window_start is not None:
        used = sum(1 for _, _, moment in spawn_times(inventory.agents) if moment > window_start)
        remaining = max(0, max_spawns_per_hour - used)
        ordered, deferred = ordered[:remaining], ordered[remaining:]
        budget = SpawnBudget(limit=max_spawns_per_hour, used=used, remaining=remaining - len(ordered))

    return ReconcilePlan(
        spawns=tuple(ordered),
        waits=tuple(waits),
        deferred=tuple(deferred),
        budget=budget,
        discard=tuple(plan_discards(roster, inventory, ordered, window_start)),
    )


def _by_slot(agents: Iterable[AgentRecord]) -> dict[tuple[str, int], list[AgentRecord]]:
    groups: dict[tuple[str, int], list[AgentRecord]] = {}
    for agent in agents:
        groups.setdefault((agent.role, agent.slot), []).append(agent)
    return groups


def _plan_slot(
    fleet_id: str,
    spec: RoleSpec,
    slot: int,
    agents: list[AgentRecord],
    inventory: Inventory,
    now: datetime,
    backoff: BackoffPolicy,
    window_start: datetime | None,
) -> Spawn | Wait:
    holder = next((a for a in agents if a.holds_slot and not inventory.counts_as_running(a)), None)
    ended = [a for a in agents if a.exit_code is not None]
    streak = idle = 0
    if ended:
        last = max(ended, key=last_exit_time)
        # The new agent carries the streaks its predecessor shows: the ones the inventory counts.
        idle = inventory.idle_streak_shown(last)
        if crashed(last):
            streak = min(last.crash_streak + 1, MAX_STREAK)
            until = last_exit_time(last) + backoff.delay(streak)
            if now < until:
                return Wait(spec.key, slot, until, streak)
    earlier: tuple[datetime, ...] = ()
    if window_start is not None:
        earlier = tuple(sorted(moment for _, _, moment in spawn_times(agents) if moment > window_start))
    return Spawn(spec, slot, slot_name(fleet_id, spec.key, slot), crash_streak=streak, idle_streak=idle,
                 earlier_spawns=earlier, vacate=holder)


def plan_discards(
    roster: Sequence[RoleSpec], inventory: Inventory, spawns: Iterable[Spawn], window_start: datetime | None
) -> Iterable[AgentRecord]:
    """The finished agents housekeeping removes (see the module's docstring for what is kept, and why)."""
    desired = {spec.key: spec.role.count for spec in roster}
    vacating = {spawn.vacate.id for spawn in spawns if spawn.vacate is not None}
    for (role, slot), agents in _by_slot(inventory.agents).items():
        ended = [a for a in agents if not inventory.counts_as_running(a)]
        keep: set[str] = set()
        if slot <= desired.get(role, 0):
            keep |= {a.id for a in ended if a.holds_slot and a.id not in vacating}
            aside = [a for a in ended if not a.holds_slot or a.id in vacating]
            if aside:
                keep.add(max(aside, key=lambda a: a.created_at).id)
        if window_start is not None:
            keep |= {a.id for a in ended if a.created_at > window_start}
        yield from (a for a in ended if a.id not in keep and a.id not in vacating)


class SpawnOutcome(StrEnum):
    SPAWNED = "spawned"
    TAKEN = "taken"  # another cycle filled the slot first: not a failure
    FAILED = "failed"


@dataclass(frozen=True)
class SpawnResult:
    spawn: Spawn
    outcome: SpawnOutcome
    agent_id: str | None = None
    error: str | None = None
    squatter: str | None = None  # TAKEN by something that is not this fleet's agent of the slot
    # FAILED before the engine was asked (GitHub minted no token): says nothing of the image or the engine.
    before_engine: bool = False


@dataclass(frozen=True)
class AgentContext:
    """What every agent is told besides its role, what it may receive, and where it runs."""

    fleet_id: str
    repository: str | None = None
    github_api_url: str | None = None
    github_server_url: str | None = None
    secrets: Mapping[str, Secret] = field(default_factory=dict)
    network: str | None = None
    placement: tuple[str, ...] = ()
    health_url: str | None = None  # production, for Sentinel roles (HEALTH_URL)
    health_expect: str | None = None  # its codes that count as up (HEALTH_EXPECT)
    backlog_labels: tuple[str, ...] = ()  # BACKLOG_LABELS, for Task-driven roles
    # The agents' GitHub identities by name (empty: the GITHUB_TOKEN agent secret, if any), and what mints an
    # App identity's token at each spawn.
    identities: Mapping[str, Identity] = field(default_factory=dict)
    minter: TokenMinter | None = None


def agent_env(spawn: Spawn, context: AgentContext) -> dict[str, str]:
    role = spawn.spec.role
    env = {
        **spawn.spec.env,
        "AGENT_ROLE": role.key,
        "AGENT_BRIEF": role.brief,
        "AGENT_MODE": role.mode.value,
        "AGENT_SLOT": str(spawn.slot),
        # Beside the slot, so that agents of a role started together choose their work apart (docs/agents.md).
        "AGENT_COUNT": str(role.count),
    }
    optional = {
        "GITHUB_REPOSITORY": context.repository,
        "GITHUB_API_URL": context.github_api_url,
        "GITHUB_SERVER_URL": context.github_server_url,
    }
    if role.mode is Mode.SENTINEL:
        optional |= {"HEALTH_URL": context.health_url, "HEALTH_EXPECT": context.health_expect}
    if role.mode is Mode.TASK_DRIVEN and context.backlog_labels:
        optional["BACKLOG_LABELS"] = ",".join(context.backlog_labels)
    env.update({name: value for name, value in optional.items() if value})
    return env


def agent_secrets(spec: RoleSpec, context: AgentContext) -> tuple[AgentSecret, ...]:
    """The secrets a role's agents receive: those it lists, or every one the stack holds."""
    names = spec.role.secrets if spec.role.secrets is not None else sorted(context.secrets)
    return tuple(AgentSecret(name, context.secrets[name]) for name in names if name in context.secrets)


@dataclass(frozen=True)
class GitHubCredential:
    """The token one agent acts on GitHub with, and when it expires (None: a token that does not)."""

    token: Secret
    expires_at: datetime | None = None


def github_credential(spec: RoleSpec, context: AgentContext) -> GitHubCredential | None:
    """The role's identity's token: a token identity's as it is, an App's freshly minted, narrowed to the
    repository and the mode's permissions (MintFailure when GitHub refuses); None without identities."""
    if not context.identities:
        return None
    name = role_identity(spec.role)
    identity = context.identities.get(name)
    if identity is None:  # the settings refuse such a roster; kept as a clear failure should one slip by
        raise MintFailure(f"role {spec.role.key!r} acts as the identity {name!r}, which AGENT_IDENTITIES_FILE "
                          "does not hold")
    if isinstance(identity, TokenIdentity):
        return GitHubCredential(identity.token)
    if context.minter is None:
        raise MintFailure(f"no way to mint a token for the identity {name!r} (an App) in this cycle")
    minted = context.minter.mint(identity, token_permissions(spec.role))
    return GitHubCredential(minted.token, minted.expires_at)


def agent_launch(spawn: Spawn, context: AgentContext) -> AgentLaunch:
    env = agent_env(spawn, context)
    secrets = agent_secrets(spawn.spec, context)
    credential = github_credential(spawn.spec, context)
    if credential is not None:  # the identity's token is the agent's GITHUB_TOKEN, whatever agentSecrets holds
        env.pop(TOKEN_SECRET_VARIABLE, None)  # so the agent reads that one, not the secret a role's env named
        minted = credential.expires_at is not None
        secrets = (*(s for s in secrets if s.name != GITHUB_TOKEN),
                   AgentSecret(GITHUB_TOKEN, credential.token, per_agent=minted))
        if credential.expires_at is not None:
            env[TOKEN_EXPIRY_VARIABLE] = credential.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return AgentLaunch(
        fleet_id=context.fleet_id,
        role=spawn.spec.key,
        slot=spawn.slot,
        name=spawn.name,
        image=spawn.spec.image,
        command=spawn.spec.command,
        env=env,
        crash_streak=spawn.crash_streak,
        idle_streak=spawn.idle_streak,
        earlier_spawns=spawn.earlier_spawns,
        resources=spawn.spec.role.resources or Resources(),
        network=context.network,
        placement=context.placement,
        secrets=secrets,
    )


def _spawn_one(runtime: AgentRuntime, spawn: Spawn, context: AgentContext) -> SpawnResult:
    if spawn.vacate is not None:
        with contextlib.suppress(RuntimeFailure):  # the spawn that follows settles who owns the slot
            runtime.vacate(spawn.vacate)
    try:
        launch = agent_launch(spawn, context)
    except MintFailure as failure:  # this spawn's failure, with GitHub's reason; the engine was never asked
        return SpawnResult(spawn, SpawnOutcome.FAILED, error=f"no GitHub token: {failure}", before_engine=True)
    try:
        agent_id = runtime.spawn(launch)
    except SlotTaken as taken:
        return SpawnResult(spawn, SpawnOutcome.TAKEN, squatter=taken.squatter)
    except Exception as exc:  # one spawn's failure, whatever it is, must not stop the others in its batch
        return SpawnResult(spawn, SpawnOutcome.FAILED, error=str(exc) or type(exc).__name__)
    return SpawnResult(spawn, SpawnOutcome.SPAWNED, agent_id=agent_id)


@dataclass(frozen=True)
class Execution:
    results: tuple[SpawnResult, ...]
    held_back: tuple[Spawn, ...] = ()  # not tried this cycle: a spawn of the same image failed
    discarded: int = 0


@dataclass
class SlowStart:
    """How many spawns of one image may be in flight: one at first, and one more for each that succeeds, so the
    number doubles with each round of answers (1, 2, 4, ...), like the ReplicaSet controller's slow start; at most
    `limit`; and none more once one has failed. Unlike batches, no spawn waits for the slowest of a batch."""

    limit: int
    window: int = 1
    failed: bool = False

    def may_start(self, in_flight: int) -> bool:
        return not self.failed and in_flight < min(self.window, max(1, self.limit))

    def answered(self, result: SpawnResult) -> None:
        if result.outcome is SpawnOutcome.FAILED and not result.before_engine:
            self.failed = True
        else:  # spawned, or the slot was taken: the image and the engine work
            self.window += 1


def slow_start_groups(spawns: Sequence[Spawn]) -> list[list[Spawn]]:
    """The spawns grouped by image, the failure domain of a spawn: a missing or broken image fails every
    spawn that uses it, and nothing else. Within a group, slots whose last spawn never started go last,
    so a role that cannot start does not stand first in line every cycle and hold the others back."""
    groups: dict[str, list[Spawn]] = {}
    for spawn in sorted(spawns, key=_failed_before):
        groups.setdefault(spawn.spec.image, []).append(spawn)
    return list(groups.values())


def _failed_before(spawn: Spawn) -> bool:
    holder = spawn.vacate
    return holder is not None and holder.started_at is None and holder.exit_code is None


def execute_plan(
    plan: ReconcilePlan,
    runtime: AgentRuntime,
    context: AgentContext,
    *,
    concurrency: int,
    on_result: Callable[[SpawnResult], None] = lambda result: None,
) -> Execution:
    """Spawn each image's agents with a slow start (`SlowStart`: 1, 2, 4, ... in flight, at most `concurrency`).
    A failure holds the rest of its image back until the next cycle: a bad image costs one or two failed
    creates, not one per agent."""
    results: list[SpawnResult] = []
    held_back: list[Spawn] = []
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="spawn") as pool:
        for group in slow_start_groups(plan.spawns):
            ramp = SlowStart(concurrency)
            pending = deque(group)
            in_flight: set[Future[SpawnResult]] = set()
            while pending or in_flight:
                while pending and ramp.may_start(len(in_flight)):
                    in_flight.add(pool.submit(_spawn_one, runtime, pending.popleft(), context))
                if not in_flight:
                    break
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    result = future.result()
                    ramp.answered(result)
                    on_result(result)
                    results.append(result)
            held_back += pending
    discarded = 0
    for record in plan.discard:
        try:
            runtime.discard(record)
            discarded += 1
        except RuntimeFailure:
            pass  # kept for now; the next cycle's housekeeping tries again
    return Execution(tuple(results), tuple(held_back), discarded)
