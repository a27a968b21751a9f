"""One reconciliation cycle: the five steps, each isolated from the others' failures.

This is the one place that runs the steps. Each goes through `StepRunner.run`, which records how it
ended; an exception in one is reported (step and message, secrets scrubbed) and the next step still
runs. The guide's error table holds: a failed inventory counts nothing as running, so reconcile plans
every slot (and the slot names make that safe); a failed pull request list skips the merge step only;
a failed health check is reported, not raised.

The report is written whatever happens. Each step runs against the cycle's wall-clock deadline
(`coordinator.deadline`): a step still running at the deadline is cut off and reported as failed, and
the cycle goes on to its report. The deadline falls before the scheduler's time limit; should the
scheduler stop the cycle anyway (SIGTERM), `CycleStopped` ends the step in progress, the steps not yet
run are reported as skipped, and the report is still written.

The cycle reaches the outside world only through the adapters it is handed (`CycleAdapters`): the
agent runtime (`coordinator.runtime.AgentRuntime`), GitHub (`coordinator.github_port.GitHubPort`),
production (a `ProductionProbe`) and the clock. Tests hand in their own, pointed at local servers.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Protocol, TypeVar

from coordinator import verdict
from coordinator.deadline import DeadlineExceeded, run_with_deadline, seconds_left
from coordinator.edges.production import check_health
from coordinator.fleet import Mode, RoleSpec, role_label
from coordinator.github_port import GitHubError, GitHubPort
from coordinator.identities import (
    COORDINATOR_PERMISSIONS,
    SHARED_ACCOUNTS_FILE,
    AppIdentity,
    MintFailure,
    TokenMinter,
)
from coordinator.report import (
    CYCLE_STEPS,
    CycleReport,
    EventLog,
    HealthReport,
    MergeReport,
    RoleTally,
    SlotWait,
    StepError,
    StepResult,
    StepStatus,
    UnprovenAgent,
    to_dict,
)
from coordinator.runtime import AgentRuntime
from coordinator.settings import GitHubSettings, HealthSettings, Settings
from coordinator.steps.inventory import Inventory, take_inventory
from coordinator.steps.merge import run_merge
from coordinator.steps.reconcile import (
    AgentContext,
    BackoffPolicy,
    ReconcilePlan,
    SpawnOutcome,
    SpawnResult,
    execute_plan,
    plan_reconcile,
)

T = TypeVar("T")

# A step that keeps its own deadline (merge, health) ends by it and reports how far it got; the cycle cuts a
# step off only this much later, as the net under steps that do not.
STEP_GRACE_S = 2.0


class CycleStopped(BaseException):
    """The cycle was asked to stop (SIGTERM): the step in progress ends, the report is written at once.

    A BaseException, so that no step's own error handling can swallow it."""


def stop_on_sigterm() -> None:
    """Turn SIGTERM (the scheduler's time limit) into CycleStopped in the main thread; call from it."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise CycleStopped("stopped by the scheduler at the cycle's time limit")

    signal.signal(signal.SIGTERM, handler)


class Clock(Protocol):
    def __call__(self) -> datetime: ...


class ProductionProbe(Protocol):
    def __call__(self, settings: HealthSettings, *, deadline: float | None = None) -> HealthReport: ...


@dataclass(frozen=True)
class CycleAdapters:
    """The doing side of a cycle. Factories, so that an unreachable engine or GitHub fails its own step,
    not the cycle."""

    runtime: Callable[[], AgentRuntime]
    github: Callable[[GitHubSettings], GitHubPort]
    production: ProductionProbe
    clock: Clock
    # Mints the App identities' tokens at each spawn; None: no App identity, or a test that needs none.
    minter: Callable[[], TokenMinter] | None = None


def default_adapters(settings: Settings) -> CycleAdapters:
    made: list[AgentRuntime] = []

    def runtime() -> AgentRuntime:
        # One client per cycle, made on first use: construction may already talk to the engine.
        if not made:
            from coordinator.runtimes import open_runtime

            made.append(open_runtime(settings.runtime))
        return made[0]

    def github(github_settings: GitHubSettings) -> GitHubPort:
        # Imported on use: PyGithub is most of the import time of a cycle that skips the merge step.
        from coordinator.edges.github import GitHubClient

        return GitHubClient(github_settings)

    def minter() -> TokenMinter:
        from coordinator.edges.github_app import AppTokenMinter

        return AppTokenMinter(settings.github_api_url, settings.repository or "")

    return CycleAdapters(runtime=runtime, github=github, production=check_health, clock=lambda: datetime.now(UTC),
                         minter=minter)


class StepRunner:
    """Runs one step at a time into the report: a step's exception is its failure, never the cycle's."""

    def __init__(self, report: CycleReport, log: EventLog, deadline: float | None = None) -> None:
        self.report = report
        self.log = log
        self.deadline = deadline
        self.current: str | None = None

    def skip(self, name: str, reason: str) -> None:
        self.report.steps[name] = StepResult(StepStatus.SKIPPED, reason)
        self.log.emit("step.skipped", step=name, reason=reason)

    def run(self, name: str, fn: Callable[[], T]) -> T | None:
        started = time.monotonic()
        self.current = name  # left set when CycleStopped passes through: `stopped` then knows the step it cut
        error: str | None = None
        try:
            value = fn() if self.deadline is None else run_with_deadline(fn, self.deadline, f"the {name} step")
        except DeadlineExceeded as exc:
            error = f"cut off at the cycle's deadline: {exc}"
        except Exception as exc:
            error = self.log.scrub(str(exc) or type(exc).__name__)
        self.current = None
        if error is not None:
            self.fail(name, error, time.monotonic() - started)
            return None
        if name not in self.report.steps:  # a step may have recorded a partial failure itself
            self.report.steps[name] = StepResult(StepStatus.OK, "", round(time.monotonic() - started, 3))
        return value

    def stopped(self, reason: str) -> None:
        """The cycle was stopped: the step in progress failed, the ones not run are skipped."""
        if self.current is not None:
            self.fail(self.current, reason)
        for name in CYCLE_STEPS[:-1]:
            if name not in self.report.steps:
                self.skip(name, reason)

    def fail(self, name: str, message: str, duration_s: float = 0.0) -> None:
        self.report.errors.append(StepError(name, message))
        self.report.steps[name] = StepResult(StepStatus.FAILED, message, round(duration_s, 3))
        self.log.emit("step.failed", step=name, error=message)


def read_shared_accounts(heartbeat_file: Path) -> list[str]:
    """What the scheduler found at its start (`coordinator.cli`): token identities that are one account."""
    try:
        found = json.loads((heartbeat_file.parent / SHARED_ACCOUNTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(item) for item in found] if isinstance(found, list) else []


def run_cycle(
    settings: Settings,
    *,
    log: EventLog,
    adapters: CycleAdapters | None = None,
    dry_run: bool = False,
    deadline: float | None = None,
) -> CycleReport:
    """Run the five steps once and return the report (also written to `log` as its last line)."""
    adapters = adapters or default_adapters(settings)
    started_mono = time.monotonic()
    now = adapters.clock()
    report = CycleReport(fleet=settings.fleet_id, started_at=now, dry_run=dry_run,
                         shared_accounts=read_shared_accounts(settings.heartbeat_file))
    steps = StepRunner(report, log, None if deadline is None else deadline + STEP_GRACE_S)
    log.emit("cycle.started", dry_run=dry_run)
    try:
        _run_steps(settings, adapters, report, steps, log, now=now, dry_run=dry_run, deadline=deadline)
    except CycleStopped as stop:
        steps.stopped(str(stop))
    if "merge" in report.steps:
        report.merge.status = report.steps["merge"].status

    # 5. Report: judged from the data, then written as the cycle's last line; never cut off.
    report.duration_s = round(time.monotonic() - started_mono, 3)
    steps.deadline = None
    steps.run("report", lambda: _judge(report))
    log.write(to_dict(report))
    return report


def _run_steps(
    settings: Settings,
    adapters: CycleAdapters,
    report: CycleReport,
    steps: StepRunner,
    log: EventLog,
    *,
    now: datetime,
    dry_run: bool,
    deadline: float | None,
) -> None:
    # 1. Inventory. On failure the guide says: assume 0 running, spawn all (the slot names keep that safe).
    lost_after = timedelta(seconds=settings.runtime.node_lost_s)
    inventory = steps.run(
        "inventory", lambda: take_inventory(adapters.runtime(), settings.fleet_id, now=now, node_lost_after=lost_after)
    )
    if inventory is None:
        inventory = Inventory(taken_at=now, node_lost_after=lost_after)
    _tally(report, settings, inventory, log)

    # 2. Reconcile.
    if settings.roster is None:
        steps.skip("reconcile", settings.skipped.get("reconcile", "no roster"))
    else:
        steps.run("reconcile", lambda: _reconcile(settings, inventory, adapters, report, log, dry_run))

    # 3. Merge. It stops merging early enough to leave the health check its budget, or half the time left.
    github_settings = settings.github
    if github_settings is None:
        steps.skip("merge", settings.skipped.get("merge", "GitHub is not configured"))
    else:
        merge_deadline = deadline
        if deadline is not None and settings.health is not None:
            merge_deadline = deadline - min(settings.health.timeout_s, seconds_left(deadline) / 2)
        def merge_step(github_settings: GitHubSettings) -> MergeReport:
            if github_settings.app is not None:  # the coordinator's own App: a token for this cycle's merges
                if adapters.minter is None:
                    raise GitHubError("no way to mint the coordinator App's token in this cycle")
                try:
                    minted = adapters.minter().mint(github_settings.app, COORDINATOR_PERMISSIONS)
                except MintFailure as failure:
                    raise GitHubError(f"the coordinator's App minted no token: {failure}") from None
                github_settings = replace(github_settings, token=minted.token)
            return run_merge(adapters.github(github_settings), github_settings, log=log, deadline=merge_deadline,
                             dry_run=dry_run, backlog_labels=backlog_labels(settings))

        merged = steps.run("merge", lambda: merge_step(github_settings))
        report.merge = merged if merged is not None else MergeReport()

    # 4. Health.
    health_settings = settings.health
    if health_settings is None:
        steps.skip("health", settings.skipped.get("health", "HEALTH_URL is not set"))
    else:
        health = steps.run("health", lambda: adapters.production(health_settings, deadline=deadline))
        if health is not None:
            report.health = health
            log.emit("health.checked", **asdict(health))


def backlog_labels(settings: Settings) -> tuple[str, ...]:
    """The labels of issues that wait for builders: each Task-driven role's own label, and BACKLOG_LABELS."""
    own = tuple(role_label(spec.key) for spec in settings.roster or () if spec.role.mode is Mode.TASK_DRIVEN)
    extra = settings.github.backlog_labels if settings.github is not None else ()
    return tuple(dict.fromkeys(own + extra))


def _judge(report: CycleReport) -> None:
    report.verdict = verdict.judge(report)
    report.verdict_reasons = [finding.reason for finding in verdict.findings(report)]
    report.advice = verdict.advise(report)


def role_tallies(roster: Sequence[RoleSpec], inventory: Inventory) -> dict[str, RoleTally]:
    """Each role's tally as the inventory leaves it, before reconcile adds its spawns (`count_spawn`)."""
    alive = inventory.alive_by_role()
    idle = inventory.idle_exits_by_role()
    tallies = {
        spec.key: RoleTally(desired=spec.role.count, running=alive[spec.key], mode=spec.role.mode.value,
                            idle_exits=idle[spec.key])
        for spec in roster
    }
    # Roles removed from the roster whose agents still run: shown until they have exited.
    for role in sorted(inventory.roles() - set(tallies)):
        if alive[role]:
            tallies[role] = RoleTally(desired=0, running=alive[role], idle_exits=idle[role])
    for agent in sorted(inventory.agents, key=lambda a: a.slot):
        if agent.role in tallies and inventory.unproven(agent):
            tallies[agent.role].unproven.append(UnprovenAgent(agent.slot, agent.crash_streak))
    return tallies


def count_spawn(tally: RoleTally, result: SpawnResult) -> None:
    """A spawn's outcome into its role's tally. An agent spawned, by this cycle or a racing one, into a slot whose
    agents crashed is unproven: the role does not count on it until it lives past the crash window."""
    spawn = result.spawn
    if result.outcome is SpawnOutcome.SPAWNED:
        tally.spawned += 1
    elif result.outcome is SpawnOutcome.TAKEN and not result.squatter:
        tally.filled_by_other_cycle += 1
    elif result.outcome is SpawnOutcome.FAILED:
        tally.failed += 1
    if spawn.crash_streak and result.outcome is not SpawnOutcome.FAILED and not result.squatter:
        tally.unproven.append(UnprovenAgent(spawn.slot, spawn.crash_streak))


def _tally(report: CycleReport, settings: Settings, inventory: Inventory, log: EventLog) -> None:
    report.roles.update(role_tallies(settings.roster or (), inventory))
    for item in inventory.unreadable:
        report.unreadable.append(f"{item.name or item.id[:12]}: {item.reason}")
        log.emit("agent.unreadable", id=item.id[:12], name=item.name, reason=item.reason)
    report.lost_nodes = inventory.lost_nodes()
    for node in report.lost_nodes:
        log.emit("node.lost", node=node, lost_for_s=settings.runtime.node_lost_s)


def _reconcile(
    settings: Settings,
    inventory: Inventory,
    adapters: CycleAdapters,
    report: CycleReport,
    log: EventLog,
    dry_run: bool,
) -> ReconcilePlan:
    assert settings.roster is not None
    plan = plan_reconcile(
        settings.fleet_id,
        settings.roster,
        inventory,
        now=adapters.clock(),
        backoff=BackoffPolicy(settings.spawn.backoff_base_s, settings.spawn.backoff_max_s),
        max_spawns_per_hour=settings.spawn.max_spawns_per_hour,
    )
    report.budget = plan.budget
    for wait in plan.waits:
        report.roles[wait.role].waiting.append(SlotWait(wait.slot, wait.until, wait.crashes))
        log.emit("slot.backoff", role=wait.role, slot=wait.slot, until=wait.until, crashes=wait.crashes)
    for spawn in plan.deferred:
        report.roles[spawn.spec.key].deferred += 1
    if plan.deferred:
        log.emit("spawn.budget_exhausted", deferred=len(plan.deferred), budget=plan.budget)
    if dry_run:
        for spawn in plan.spawns:
            count_spawn(report.roles[spawn.spec.key], SpawnResult(spawn, SpawnOutcome.SPAWNED))
            log.emit("agent.would_spawn", role=spawn.spec.key, slot=spawn.slot, name=spawn.name)
        return plan

    def record(result: SpawnResult) -> None:
        count_spawn(report.roles[result.spawn.spec.key], result)
        fields = {"role": result.spawn.spec.key, "slot": result.spawn.slot, "name": result.spawn.name}
        if result.outcome is SpawnOutcome.SPAWNED:
            log.emit("agent.spawned", **fields, id=(result.agent_id or "")[:12])
        elif result.outcome is SpawnOutcome.TAKEN:
            log.emit("agent.slot_taken", **fields, squatter=result.squatter)
            if result.squatter:
                report.squatters.append(f"{result.spawn.name}: held by {result.squatter}")
        else:
            log.emit("agent.spawn_failed", **fields, error=log.scrub(result.error or ""))

    context = AgentContext(
        fleet_id=settings.fleet_id,
        repository=settings.repository,
        github_api_url=settings.github_api_url,
        github_server_url=settings.github_server_url,
        secrets=settings.agent_secrets,
        network=settings.spawn.network,
        placement=settings.runtime.placement,
        health_url=settings.health.url if settings.health is not None else None,
        health_expect=",".join(f"{low}-{high}" if low != high else str(low) for low, high in settings.health.expect)
        if settings.health is not None else None,
        backlog_labels=settings.github.backlog_labels if settings.github is not None else (),
        identities=settings.agent_identities,
        minter=adapters.minter() if adapters.minter is not None and settings.repository and any(
            isinstance(identity, AppIdentity) for identity in settings.agent_identities.values()) else None,
    )
    execution = execute_plan(plan, adapters.runtime(), context, concurrency=settings.spawn.concurrency,
                             on_result=record)
    for spawn in execution.held_back:
        report.roles[spawn.spec.key].held_back += 1
    if execution.held_back:
        log.emit("spawn.held_back", held_back=len(execution.held_back),
                 reason="a spawn failed in an earlier batch; the rest wait for the next cycle")
    if execution.discarded:
        log.emit("agents.discarded", count=execution.discarded)
    failures = [r for r in execution.results if r.outcome is SpawnOutcome.FAILED]
    if failures:
        for failure in failures:
            report.errors.append(StepError("reconcile", log.scrub(f"{failure.spawn.name}: {failure.error}")))
        held = f"; {len(execution.held_back)} held back" if execution.held_back else ""
        report.steps["reconcile"] = StepResult(
            StepStatus.FAILED, f"{len(failures)} of {len(execution.results)} spawns failed{held}"
        )
    return plan
