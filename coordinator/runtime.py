"""The agent runtime as the core sees it: a port the core owns, in the core's own words.

The steps speak of agents, slots and phases. An adapter maps them onto an engine's objects:
`coordinator/runtimes/docker.py` (one Docker engine: an agent is a container) and
`coordinator/runtimes/swarm.py` (a Docker Swarm: an agent is a one-replica service). Nothing here
imports an SDK, and the steps import nothing else of the runtime.

What every adapter guarantees, because reconcile's concurrency argument rests on it:

- An agent is created under its slot's name, `<fleet>-<role>-<slot>`, and the engine refuses a second
  object under a name in use: `spawn` then raises `SlotTaken`. Overlapping cycles can therefore never
  put two agents into one slot.
- `list_agents` sees the whole fleet in one engine call in the steady state, by the fleet's label.
- Nothing alive is ever stopped: `vacate` and `discard` act only on agents that are not alive, by
  their id (never by name, which a racing cycle may already have given to a newer agent), and the
  engine itself refuses the rest (a non-forced container removal; a service whose task runs is
  left alone).
- A record the adapter cannot read (a malformed label, say) is skipped and reported, never fatal.

A Kubernetes adapter maps one to one: an agent is a bare Pod with `restartPolicy: Never` named after
its slot; creating a Pod whose name is in use answers 409 (`SlotTaken`); one label-selected LIST is
the inventory; a Pod's phase is the record's (Pending/Running: alive; Succeeded/Failed: finished,
with the container's exit code and times; a Pod on an unreachable node: lost); `vacate` and
`discard` are DELETEs with a `preconditions.uid`, so they never hit a newer Pod of the same name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from coordinator.fleet import MAX_AGENTS_PER_ROLE_CEILING, MAX_KEY_CHARS, Resources
from coordinator.redact import Secret
from coordinator.values import MAX_FLEET_ID_CHARS

# A crash or idle streak is carried capped: the backoff reaches its maximum long before, and a streak that
# grows by one per crash for weeks must not grow without bound.
MAX_STREAK = 100

# Every time a record carries lies in [EARLIEST_TIME, LATEST_TIME): wide enough for any moment an engine or this
# coordinator really wrote, and far inside datetime's own range (years 1 to 9999), so that the steps' arithmetic
# on it (an hour's window, a crash-loop wait of at most a week) can never overflow. An adapter reads a time
# outside it as unreadable, like any other malformed value.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(3000, 1, 1, tzinfo=UTC)

# Where an agent finds each of its secrets, as a file named after it, on every engine.
SECRETS_DIR = "/run/secrets"


@dataclass(frozen=True)
class AgentSecret:
    """One secret an agent receives, as the file `SECRETS_DIR/<name>`: never an environment variable, a label
    or an argument, so `docker inspect` never shows it."""

    name: str
    value: Secret
    # Minted for this one agent (an App's installation token): on a swarm its Docker secret goes with the service.
    per_agent: bool = False


class Phase(StrEnum):
    """Where an agent is in its life, as the core reasons about it."""

    ALIVE = "alive"  # running, starting, or waiting for capacity: it holds its slot and counts as running
    FINISHED = "finished"  # exited, or created and never started: its slot may be filled again
    LOST = "lost"  # on a node the engine cannot reach; counts as running until lost for long enough


@dataclass(frozen=True)
class AgentRecord:
    """One agent of the fleet, as one listing shows it."""

    id: str  # the engine's id: every action on an existing agent goes by it
    name: str
    role: str
    slot: int
    phase: Phase
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None  # set once finished, if it ever ran
    node: str | None = None  # where it runs, on engines with more than one node
    lost_since: datetime | None = None  # when its node became unreachable (phase LOST)
    # How many agents of this slot crashed / exited idle in a row before this one was spawned.
    crash_streak: int = 0
    idle_streak: int = 0
    # When earlier agents of this slot were spawned, within the spawn budget's window: the budget's
    # evidence, carried forward because some engines remove an agent when its slot is filled again.
    earlier_spawns: tuple[datetime, ...] = ()
    # False once the agent has been moved aside (renamed) so its slot could be filled again.
    holds_slot: bool = True

    @property
    def ran_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class Unreadable:
    """Something carrying the fleet's label that is not a well-formed agent: skipped, and reported by name."""

    id: str
    name: str
    reason: str


@dataclass(frozen=True)
class FleetListing:
    agents: tuple[AgentRecord, ...] = ()
    unreadable: tuple[Unreadable, ...] = ()


@dataclass(frozen=True)
class AgentLaunch:
    """Everything needed to start one agent in its slot."""

    fleet_id: str
    role: str
    slot: int
    name: str
    image: str
    command: tuple[str, ...] | None
    env: Mapping[str, str]
    crash_streak: int = 0
    idle_streak: int = 0
    earlier_spawns: tuple[datetime, ...] = ()
    resources: Resources = field(default_factory=Resources)
    network: str | None = None  # the engine's default when None
    placement: tuple[str, ...] = ()  # placement constraints, on engines that place agents on nodes
    secrets: tuple[AgentSecret, ...] = ()


@dataclass(frozen=True)
class CoordinatorLog:
    """The coordinator's own log, for `coordinator status`: where it was read, and its last lines."""

    source: str  # the container or service it came from
    lines: tuple[str, ...]


class RuntimeFailure(Exception):
    """An engine call failed; the message says which call and why, and never holds a secret."""


class SlotTaken(RuntimeFailure):
    """The slot's name is in use. Not a failure: another cycle filled the slot first.

    `squatter` names the holder when it is not an agent of this fleet's role and slot: then the slot
    cannot be filled until a person removes it, and the report says so.
    """

    def __init__(self, name: str, squatter: str | None = None) -> None:
        self.name = name
        self.squatter = squatter
        held = f" by {squatter}, which is not this fleet's agent" if squatter else ""
        super().__init__(f"{name} is taken{held}")


class AgentRuntime(Protocol):
    def list_agents(self, fleet_id: str) -> FleetListing:
        """Every agent of the fleet, in every phase; one engine call in the steady state."""
        ...

    def spawn(self, launch: AgentLaunch) -> str:
        """Create and start one agent under `launch.name`; returns its id. Raises SlotTaken or RuntimeFailure."""
        ...

    def vacate(self, agent: AgentRecord) -> None:
        """Give up the slot name a finished (or lost) agent holds, so the slot can be filled again.

        Each adapter decides how: kept aside under another name where the engine can rename, removed
        by id where it cannot. A racing cycle may have done it already: that is not an error.
        """
        ...

    def discard(self, agent: AgentRecord) -> None:
        """Remove a finished agent that nothing needs any more, by id; never one that is alive."""
        ...

    def coordinator_log(self, fleet_id: str, *, source: str | None = None, tail: int) -> CoordinatorLog:
        """The last `tail` lines of the coordinator's own log (its container or service)."""
        ...


# The longest name `slot_name` gives, at the longest fleet id and role key and the highest slot: 24 + 1 + 30 + 1 + 4
# = 60, inside a DNS label's 63 (what Swarm allows a service's name).
MAX_SLOT_NAME_CHARS = MAX_FLEET_ID_CHARS + 1 + MAX_KEY_CHARS + 1 + len(str(MAX_AGENTS_PER_ROLE_CEILING))


def slot_name(fleet_id: str, role: str, slot: int) -> str:
    """The one name an agent of `role` in `slot` is ever created under."""
    return f"{fleet_id}-{role}-{slot}"


def spawn_times(agents: Sequence[AgentRecord]) -> set[tuple[str, int, datetime]]:
    """Every spawn the records show, each once: their own creation, and the earlier spawns they carry.

    Whole seconds, because that is what a label carries: an agent kept aside and the successor that
    carries its creation time must count as one spawn.
    """
    seen: set[tuple[str, int, datetime]] = set()
    for agent in agents:
        for moment in (agent.created_at, *agent.earlier_spawns):
            seen.add((agent.role, agent.slot, moment.replace(microsecond=0)))
    return seen
