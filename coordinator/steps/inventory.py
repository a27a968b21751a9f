"""Step 1, inventory: what the Docker host holds of this fleet's agents.

One list call finds every agent container by the fleet's label, in every state. Exited agents
are inspected too (one call each), because how they ended (exit code, how long they ran) is
what the crash-loop backoff and the idle-exit advice are derived from. In a steady state, with
every agent running, that is no extra call at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from coordinator.edges.docker import ContainerRecord, DockerError, DockerPort, ExitRecord

# An agent that exits non-zero within this many seconds of starting crashed (crash-loop backoff).
CRASH_WINDOW_S = 60.0
# An agent that exits 0 within this many seconds of starting found nothing to do (scaling advice).
IDLE_EXIT_MAX_S = 120.0
# A running agent's idle streak (its predecessors') still counts for this long after it started:
# after that it has evidently found work, and the streak no longer speaks for the role.
IDLE_STREAK_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Agent:
    """One agent container of the fleet; `exit` is set for exited ones whose inspect succeeded."""

    record: ContainerRecord
    exit: ExitRecord | None = None

    @property
    def crashed(self) -> bool:
        ran = self.exit.ran_s if self.exit else None
        return self.exit is not None and self.exit.exit_code != 0 and ran is not None and ran < CRASH_WINDOW_S

    @property
    def idle_exit(self) -> bool:
        ran = self.exit.ran_s if self.exit else None
        return self.exit is not None and self.exit.exit_code == 0 and ran is not None and ran < IDLE_EXIT_MAX_S


@dataclass(frozen=True)
class Inventory:
    agents: tuple[Agent, ...] = ()

    def alive_by_role(self) -> Counter[str]:
        return Counter(agent.record.role for agent in self.agents if agent.record.alive)

    def roles(self) -> set[str]:
        return {agent.record.role for agent in self.agents}

    def idle_exits_by_role(self, now: datetime) -> Counter[str]:
        """Consecutive exits with nothing to do, per role: the sum over its slots of the streak that
        each slot's newest agent shows (its own idle exit counts on top of its predecessors')."""
        newest: dict[tuple[str, int | None], Agent] = {}
        for agent in self.agents:
            key = (agent.record.role, agent.record.slot)
            if key not in newest or agent.record.created_at > newest[key].record.created_at:
                newest[key] = agent
        counts: Counter[str] = Counter()
        for (role, _), agent in newest.items():
            counts[role] += idle_streak_shown(agent, now)
        return counts


def idle_streak_shown(agent: Agent, now: datetime) -> int:
    if agent.idle_exit:
        return agent.record.idle_streak + 1
    if agent.record.alive and agent.record.created_at > now - IDLE_STREAK_WINDOW:
        return agent.record.idle_streak
    return 0


def needs_inspection(record: ContainerRecord) -> bool:
    return record.state in ("exited", "dead")


def take_inventory(docker: DockerPort, fleet_id: str) -> Inventory:
    """List the fleet (one call), then inspect its exited agents. A vanished container is skipped."""
    records = docker.list_fleet(fleet_id)
    return Inventory(tuple(_with_exits(docker, records)))


def _with_exits(docker: DockerPort, records: Iterable[ContainerRecord]) -> Iterable[Agent]:
    for record in records:
        if not needs_inspection(record):
            yield Agent(record)
            continue
        try:
            yield Agent(record, docker.inspect_exit(record.id))
        except DockerError:
            # Removed between the list and the inspect (another cycle pruned it): it no longer matters.
            continue
