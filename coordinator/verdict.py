"""The verdict and the scaling advice: plain functions of one cycle's report, nothing else.

Both follow the guide (coordinator-guide-v4.md): its Monitoring section gives the verdict
(`judge`), its "When to Scale" table the advice (`advise`). Every threshold is a named constant
here, and the README quotes them. The cycle is stateless, so "growing" and "frequent" cannot be
trends over time: they are read as "over the threshold in this cycle"; the trend is what
`coordinator status` shows, cycle after cycle. Advice never acts: people change the roster and
run `pulumi up`.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.fleet import Mode
from coordinator.report import Advice, CycleReport, HealthStatus, RoleTally, StepStatus, Verdict

# The guide: "PR review queue > 10 -> Increase Reviewer count". Also marks a growing queue.
REVIEW_QUEUE_LIMIT = 10
# "Many merge conflicts": more than this many open pull requests that conflict with their base.
CONFLICTS_LIMIT = 5
# "Agents near desired count": a role is well below when fewer than this share of its desired
# agents are there after the cycle (running before it plus spawned by it).
WELL_BELOW_DESIRED_RATIO = 0.75
# "Multiple spawn failures per cycle": more than this many failed spawns degrade the fleet.
SPAWN_FAILURES_LIMIT = 0
# "Agents frequently finding nothing": more than this many consecutive idle exits (exit 0 within
# inventory's IDLE_EXIT_MAX_S of starting), summed over the role's slots, as its agents' labels carry them.
IDLE_EXITS_LIMIT = 2
# The guide's "Feature backlog growing -> increase Builder counts": more open issues waiting for builders than
# this many per desired Task-driven agent.
BACKLOG_PER_BUILDER = 5
# An answer at or above this status code means production is broken, whatever HEALTH_EXPECT says.
SERVER_ERROR_CODE = 500

_SEVERITY = {Verdict.HEALTHY: 0, Verdict.DEGRADED: 1, Verdict.BROKEN: 2}


@dataclass(frozen=True)
class Finding:
    """One reason the fleet is not healthy, and how bad it is."""

    verdict: Verdict
    reason: str


def findings(report: CycleReport) -> list[Finding]:
    """Every reason, broken ones first; an empty list means healthy."""
    broken: list[str] = []
    degraded: list[str] = []

    health = report.health
    if health.code is not None and health.code >= SERVER_ERROR_CODE:
        broken.append(f"production answers {health.code}")
    elif health.status is HealthStatus.DOWN:
        broken.append(f"production is down ({health.error or 'no answer'})")

    failures = report.spawn_failures
    missing = sum(max(0, t.desired - t.present) for t in report.roles.values())
    reconcile = report.steps.get("reconcile")
    if failures > 0 and report.spawned == 0:
        # Slow start tries one spawn of an image before the rest: those behind a failure were not tried at all.
        held = sum(t.held_back for t in report.roles.values())
        behind = f", and {held} more waited behind {'it' if failures == 1 else 'them'}: slow start" if held else ""
        broken.append(f"every spawn failed ({failures} of {failures}{behind})")
    elif reconcile is not None and reconcile.status is StepStatus.FAILED and missing and report.spawned == 0:
        # The step failed before it could try (Docker unreachable): the guide's "all spawns failing".
        broken.append(f"no agent could be spawned ({missing} missing): {reconcile.detail or 'reconcile failed'}")
    elif failures > SPAWN_FAILURES_LIMIT:
        degraded.append(f"{failures} spawn failures")

    for key, tally in report.roles.items():
        present = tally.present
        if tally.desired > 0 and present < tally.desired * WELL_BELOW_DESIRED_RATIO:
            degraded.append(f"{key}: {present} of {tally.desired} agents")
        # A crash loop degrades its role on every cycle, whether the slot waits out its backoff or holds an agent
        # just respawned into it, until one of its agents lives past the crash window: otherwise the verdict
        # would alternate with the backoff and no sustained alert would ever fire.
        if looping := tally.crash_looping:
            slots = ", ".join(str(slot) for slot, _ in looping)
            most = max(crashes for _, crashes in looping)
            degraded.append(
                f"{key}: crash loop in slot{'s' if len(looping) > 1 else ''} {slots} "
                f"({'up to ' if len(looping) > 1 else ''}{most} crash{'es' if most > 1 else ''} in a row)"
            )

    # A slot held by something that is not the fleet's agent stays empty until a person removes the holder:
    # a silent, permanent shortfall unless the verdict says so.
    degraded += [f"slot {squatter}, which is not the fleet's: remove it" for squatter in report.squatters]
    degraded += [f"unreadable agent {item}" for item in report.unreadable]
    degraded += [f"node {node} lost: its agents' slots were filled elsewhere" for node in report.lost_nodes]
    degraded += report.shared_accounts  # reviews that can never count, until each identity is its own account

    if report.merge.review_queue > REVIEW_QUEUE_LIMIT:
        degraded.append(f"review queue {report.merge.review_queue} > {REVIEW_QUEUE_LIMIT}")
    if report.merge.conflicting > CONFLICTS_LIMIT:
        degraded.append(f"{report.merge.conflicting} conflicting pull requests > {CONFLICTS_LIMIT}")

    failed_steps = sorted(
        {e.step for e in report.errors} | {name for name, r in report.steps.items() if r.status is StepStatus.FAILED}
    )
    if failed_steps:
        degraded.append("errors in " + ", ".join(failed_steps))

    return [Finding(Verdict.BROKEN, r) for r in broken] + [Finding(Verdict.DEGRADED, r) for r in degraded]


def judge(report: CycleReport) -> Verdict:
    """broken, degraded or healthy: the worst of the findings."""
    return max((f.verdict for f in findings(report)), key=_SEVERITY.__getitem__, default=Verdict.HEALTHY)


def _roles_of(report: CycleReport, mode: Mode) -> list[tuple[str, RoleTally]]:
    return [(key, tally) for key, tally in report.roles.items() if tally.mode == mode.value]


def advise(report: CycleReport) -> list[Advice]:
    """The guide's "When to Scale" table as signals, each naming the role, the signal and its number."""
    advice: list[Advice] = []

    queue = report.merge.review_queue
    if queue > REVIEW_QUEUE_LIMIT:
        reviewers = _roles_of(report, Mode.REVIEWER)
        for key, _ in reviewers:
            advice.append(
                Advice(
                    role=key,
                    signal="review_queue",
                    value=queue,
                    threshold=REVIEW_QUEUE_LIMIT,
                    action=f"raise the count of {key}: {queue} pull requests await review",
                )
            )
        if not reviewers:
            advice.append(
                Advice(
                    role=Mode.REVIEWER.value,
                    signal="review_queue",
                    value=queue,
                    threshold=REVIEW_QUEUE_LIMIT,
                    action=f"add a role of mode {Mode.REVIEWER.value}: {queue} pull requests await review",
                )
            )

    conflicting = report.merge.conflicting
    if conflicting > CONFLICTS_LIMIT:
        for key, tally in _roles_of(report, Mode.TASK_DRIVEN):
            if tally.desired > 0:
                advice.append(
                    Advice(
                        role=key,
                        signal="conflicting_pulls",
                        value=conflicting,
                        threshold=CONFLICTS_LIMIT,
                        action=f"lower the count of {key}: parallel builders keep touching the same files",
                    )
                )

    backlog = report.merge.backlog
    builders = _roles_of(report, Mode.TASK_DRIVEN)
    capacity = sum(tally.desired for _, tally in builders)
    if backlog is not None and backlog > BACKLOG_PER_BUILDER * capacity:
        for key in [key for key, _ in builders] or [Mode.TASK_DRIVEN.value]:
            advice.append(
                Advice(
                    role=key,
                    signal="backlog_per_builder",
                    value=round(backlog / capacity, 1) if capacity else backlog,
                    threshold=BACKLOG_PER_BUILDER,
                    action=f"raise the count of {key}: {backlog} open issues wait for {capacity} builders"
                    if builders else f"add a role of mode {Mode.TASK_DRIVEN.value}: {backlog} open issues wait",
                )
            )

    for key, tally in report.roles.items():
        if tally.idle_exits > IDLE_EXITS_LIMIT and tally.desired > 0:
            advice.append(
                Advice(
                    role=key,
                    signal="idle_exits",
                    value=tally.idle_exits,
                    threshold=IDLE_EXITS_LIMIT,
                    action=f"lower the count of {key}: its agents exit with nothing to do",
                )
            )

    return advice
