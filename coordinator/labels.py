"""The labels that mark what belongs to a fleet, written and read back the same way by every engine.

The coordinator touches nothing without the fleet's label. An agent's labels are also its memory:
the crash and idle streaks and the spawn budget's evidence ride on them, so the cycle needs no
state of its own. Labels come back from the engine as text anyone could have written, so they are
read strictly (ASCII digits, bounded lengths, each number within the range this coordinator writes)
and a label that cannot be read makes its agent unreadable, which the inventory skips and reports;
it never fails the inventory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from coordinator.fleet import KEY_PATTERN, MAX_AGENTS_PER_ROLE_CEILING, MAX_KEY_CHARS
from coordinator.runtime import LATEST_TIME, MAX_STREAK, AgentLaunch

FLEET = "agent-fleet.fleet"
ROLE = "agent-fleet.role"
SLOT = "agent-fleet.slot"
COMPONENT = "agent-fleet.component"  # "agent" or "coordinator"
# On a swarm secret minted for one agent (its GitHub App token): the agent's service name, so the secret goes with it.
OWNER = "agent-fleet.owner"
# How many agents of this slot crashed in a row before this one was spawned: the crash-loop
# backoff is derived from it, without any state file.
CRASH_STREAK = "agent-fleet.crash-streak"
# Likewise, how many agents of this slot in a row exited with nothing to do: the evidence behind the
# advice to lower a role's count.
IDLE_STREAK = "agent-fleet.idle-streak"
# When earlier agents of this slot were spawned (epoch seconds, within the spawn budget's window):
# engines that remove an agent to fill its slot again would otherwise lose the budget's evidence.
EARLIER_SPAWNS = "agent-fleet.earlier-spawns"

AGENT = "agent"
COORDINATOR = "coordinator"

# Enough for any budget; older entries are the least relevant and are dropped first.
MAX_EARLIER_SPAWNS = 200

_SLOT = re.compile(r"[1-9][0-9]{0,5}")
_COUNT = re.compile(r"[0-9]{1,9}")
_EPOCH = re.compile(r"[0-9]{1,12}")
# 12 digits reach past datetime's year 9999; a spawn time is read only up to LATEST_TIME (see there).
_LATEST_EPOCH_S = int(LATEST_TIME.timestamp())


class LabelError(ValueError):
    """A label that cannot be read; the message names it and its value."""


@dataclass(frozen=True)
class AgentLabels:
    role: str
    slot: int
    crash_streak: int = 0
    idle_streak: int = 0
    earlier_spawns: tuple[datetime, ...] = ()


def selector(fleet_id: str, component: str = AGENT) -> list[str]:
    """The label filter that finds a fleet's agents (or its coordinator) and nothing else."""
    return [f"{FLEET}={fleet_id}", f"{COMPONENT}={component}"]


def not_a_coordinator(kind: str, name: str, found: Mapping[str, str]) -> str | None:
    """Why the object `status --source` named (a container or a service, with its labels) is refused as the
    coordinator, or None when it is one: an agent's log has no cycle reports, and "none yet" would mislead."""
    component = found.get(COMPONENT)
    if component == COORDINATOR:
        return None
    if component == AGENT and FLEET in found:
        what = f"it is an agent of fleet {found[FLEET]!r} ({COMPONENT}={AGENT})"
    else:
        what = f"it has no {COMPONENT}={COORDINATOR} label"
    return (f"{kind} {name!r} is not a coordinator: {what}; name the coordinator's {kind} (label "
            f"{COMPONENT}={COORDINATOR}), or leave --source out to find the fleet's own")


def agent_labels(launch: AgentLaunch) -> dict[str, str]:
    labels = {
        FLEET: launch.fleet_id,
        COMPONENT: AGENT,
        ROLE: launch.role,
        SLOT: str(launch.slot),
        CRASH_STREAK: str(min(launch.crash_streak, MAX_STREAK)),
        IDLE_STREAK: str(min(launch.idle_streak, MAX_STREAK)),
    }
    if launch.earlier_spawns:
        newest = sorted(launch.earlier_spawns)[-MAX_EARLIER_SPAWNS:]
        labels[EARLIER_SPAWNS] = ",".join(str(int(moment.timestamp())) for moment in newest)
    return labels


def read_agent_labels(labels: Mapping[str, str]) -> AgentLabels:
    """An agent's labels, read strictly; raises LabelError naming the first one that cannot be read."""
    role = _required(labels, ROLE, KEY_PATTERN)
    if len(role) > MAX_KEY_CHARS:
        raise LabelError(f"label {ROLE}={role[:40]!r} is malformed")
    slot = int(_required(labels, SLOT, _SLOT))
    if slot > MAX_AGENTS_PER_ROLE_CEILING:  # no role has more slots, so no agent of this fleet is in it
        raise LabelError(f"label {SLOT}={slot} is out of range: a slot is 1 to {MAX_AGENTS_PER_ROLE_CEILING}")
    return AgentLabels(
        role=role,
        slot=slot,
        crash_streak=_streak(labels, CRASH_STREAK),
        idle_streak=_streak(labels, IDLE_STREAK),
        earlier_spawns=_epochs(labels.get(EARLIER_SPAWNS, "")),
    )


def holds_its_own_slot(found: Mapping[str, str], launch: AgentLaunch) -> bool:
    """Whether the labels of whatever holds `launch.name` say it is this fleet's agent of that role and slot:
    then a racing cycle filled the slot. Anything else holding the name is a squatter."""
    try:
        read = read_agent_labels(found)
    except LabelError:
        return False
    return (found.get(FLEET) == launch.fleet_id and found.get(COMPONENT) == AGENT
            and (read.role, read.slot) == (launch.role, launch.slot))


def _required(labels: Mapping[str, str], name: str, pattern: re.Pattern[str]) -> str:
    value = labels.get(name)
    if value is None:
        raise LabelError(f"label {name} is missing")
    if not pattern.fullmatch(value):
        raise LabelError(f"label {name}={value[:40]!r} is malformed")
    return value


def _streak(labels: Mapping[str, str], name: str) -> int:
    value = labels.get(name)
    if value is None:  # agents spawned before streaks were kept
        return 0
    if not _COUNT.fullmatch(value):
        raise LabelError(f"label {name}={value[:40]!r} is malformed")
    return min(int(value), MAX_STREAK)


def _epochs(value: str) -> tuple[datetime, ...]:
    if not value:
        return ()
    parts = value.split(",")
    if len(parts) > MAX_EARLIER_SPAWNS or not all(_EPOCH.fullmatch(p) for p in parts):
        raise LabelError(f"label {EARLIER_SPAWNS}={value[:40]!r} is malformed")
    epochs = [int(p) for p in parts]
    if (latest := max(epochs)) >= _LATEST_EPOCH_S:
        raise LabelError(f"label {EARLIER_SPAWNS} holds {latest}, out of range: epoch seconds before "
                         f"{_LATEST_EPOCH_S} ({LATEST_TIME:%Y-%m-%d})")
    return tuple(datetime.fromtimestamp(epoch, UTC) for epoch in epochs)
