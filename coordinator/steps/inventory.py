"""Step 1, inventory: what the runtime holds of this fleet's agents, and what that says about them.

One listing (`AgentRuntime.list_agents`) sees the whole fleet. The rules that read it live here and
are pure: which agents count as running, which finished agents crashed (the crash-loop backoff is
derived from that) and which found nothing to do (the idle streak, behind the advice to lower a
role's count).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from coordinator.runtime import AgentRecord, AgentRuntime, Phase, Unreadable
from coordinator.settings import DEFAULT_NODE_LOST_S

# An agent that exits non-zero within this many seconds of starting crashed (crash-loop backoff).
CRASH_WINDOW_S = 60.0
# An agent that exits 0 within this many seconds of starting found nothing to do (scaling advice).
IDLE_EXIT_MAX_S = 120.0
# A running agent's idle streak (its predecessors') still counts for this long after it started:
# after that it has evidently found work, and the streak no longer speaks for the role.
IDLE_STREAK_WINDOW = timedelta(hours=1)


def crashed(agent: AgentRecord) -> bool:
    ran = agent.ran_s
    return agent.phase is Phase.FINISHED and bool(agent.exit_code) and ran is not None and ran < CRASH_WINDOW_S


def idle_exit(agent: AgentRecord) -> bool:
    ran = agent.ran_s
    return agent.phase is Phase.FINISHED and agent.exit_code == 0 and ran is not None and ran < IDLE_EXIT_MAX_S


def last_exit_time(agent: AgentRecord) -> datetime:
    return agent.finished_at if agent.finished_at is not None else agent.created_at


@dataclass(frozen=True)
class Inventory:
    """The fleet's agents at `taken_at`. An agent on a lost node still counts as running until its node
    has been lost for `node_lost_after`: a node that merely blinks must not get its agents doubled."""

    agents: tuple[AgentRecord, ...] = ()
    unreadable: tuple[Unreadable, ...] = ()
    taken_at: datetime | None = None
    node_lost_after: timedelta = timedelta(seconds=DEFAULT_NODE_LOST_S)  # AGENT_NODE_LOST_S's default

    def counts_as_running(self, agent: AgentRecord) -> bool:
        if agent.phase is Phase.ALIVE:
            return True
        if agent.phase is Phase.LOST:
            return not self.gone(agent)
        return False

    def gone(self, agent: AgentRecord) -> bool:
        """Lost for long enough that its slot is filled elsewhere."""
        if agent.phase is not Phase.LOST or self.taken_at is None:
            return False
        since = agent.lost_since if agent.lost_since is not None else agent.created_at
        return self.taken_at - since >= self.node_lost_after

    def unproven(self, agent: AgentRecord) -> bool:
        """Counts as running, but follows a crash of its slot and has not yet lived past the crash window."""
        if agent.crash_streak == 0 or not self.counts_as_running(agent):
            return False
        if agent.started_at is None or self.taken_at is None:
            return True
        return (self.taken_at - agent.started_at).total_seconds() < CRASH_WINDOW_S

    def alive_by_role(self) -> Counter[str]:
        return Counter(agent.role for agent in self.agents if self.counts_as_running(agent))

    def roles(self) -> set[str]:
        return {agent.role for agent in self.agents}

    def lost_nodes(self) -> list[str]:
        """Nodes whose agents are gone: the report names them."""
        return sorted({agent.node or "unknown node" for agent in self.agents if self.gone(agent)})

    def idle_streak_shown(self, agent: AgentRecord) -> int:
        """An agent's idle streak as it speaks for its slot now: its own idle exit counts on top of its
        predecessors'; a running agent carries theirs only while it has not evidently found work."""
        if idle_exit(agent):
            return agent.idle_streak + 1
        recent = self.taken_at is None or agent.created_at > self.taken_at - IDLE_STREAK_WINDOW
        if self.counts_as_running(agent) and recent:
            return agent.idle_streak
        return 0

    def idle_exits_by_role(self) -> Counter[str]:
        """Consecutive exits with nothing to do, per role: the sum over its slots of the streak that each
        slot's newest agent shows."""
        newest: dict[tuple[str, int], AgentRecord] = {}
        for agent in self.agents:
            key = (agent.role, agent.slot)
            if key not in newest or agent.created_at > newest[key].created_at:
                newest[key] = agent
        counts: Counter[str] = Counter()
        for (role, _), agent in newest.items():
            counts[role] += self.idle_streak_shown(agent)
        return counts


def take_inventory(
    runtime: AgentRuntime, fleet_id: str, *, now: datetime, node_lost_after: timedelta
) -> Inventory:
    listing = runtime.list_agents(fleet_id)
    return Inventory(listing.agents, listing.unreadable, taken_at=now, node_lost_after=node_lost_after)
