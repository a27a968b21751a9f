"""An in-memory `AgentRuntime`: the runtime port's fake, as Kubernetes keeps FakePodControl beside PodControlInterface.

It lives with the tests, not in `coordinator/runtimes/`, because the product has no use for it: `plan` and a
cycle read the real engine (a dry run that invented its fleet would tell an operator nothing), and a runtime
that never runs an agent would be one more `FLEET_RUNTIME` value to declare, document and refuse in production.

What makes it a stand-in and not a stub: `tests/test_runtime_contract.py` runs the same promises against it, the
Docker engine and the lab swarm. It keeps those promises the way the engines do:

- one table of names under one lock, so a second agent under a name in use is refused (`SlotTaken`) however
  many threads spawn at once, and the holder is named when it is not this fleet's agent of that slot;
- agents carry their memory in labels written and read by `coordinator.labels`, exactly as the adapters do, so
  a label that cannot be read makes its agent unreadable (skipped and reported);
- nothing alive is removed or renamed: `vacate` and `discard` act by id on agents that have ended;
- secrets are files of the agent (`secret_file`), never in its environment, labels or `inspect`.

Tests drive what an engine would do on its own: `exit` (an agent ends with a code), `lose` (its node stops
answering), `squat` (something not of the fleet takes a name), `plant` (any labelled agent, e.g. a malformed
one), `refuse_image` and `fail_listing` (engine errors), all at the time of a `FakeClock` the test advances;
`plan_together(n)` holds n listings until all n are taken, so n overlapping cycles plan from one inventory. `calls`
records each engine call, for the tests that count them.
`vacate` keeps an ended agent aside under `<name>.<id12>` as the Docker adapter does; `renames=False` removes it
as the swarm adapter does (the budget's evidence then rides on the new agent's labels).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from coordinator import labels
from coordinator.runtime import (
    SECRETS_DIR,
    AgentLaunch,
    AgentRecord,
    CoordinatorLog,
    FleetListing,
    Phase,
    RuntimeFailure,
    SlotTaken,
    Unreadable,
    slot_name,
)

EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class FakeClock:
    """The time every fake and every cycle under test reads: it moves only when the test moves it."""

    def __init__(self, start: datetime = EPOCH) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


class State(StrEnum):
    CREATED = "created"  # created and never started
    RUNNING = "running"
    EXITED = "exited"
    LOST = "lost"  # on a node that stopped answering


@dataclass
class FakeAgent:
    """One object in the fake engine: an agent of some fleet, or anything else holding a name."""

    id: str
    name: str
    labels: dict[str, str]
    state: State
    created_at: datetime
    image: str = ""
    command: tuple[str, ...] | None = None
    env: dict[str, str] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    node: str | None = None
    lost_since: datetime | None = None
    # The agent's files under SECRETS_DIR: not part of what `inspect` shows, as on the engines.
    files: dict[str, str] = field(default_factory=dict, repr=False)


class MemoryRuntime:
    """`AgentRuntime` in memory. Thread-safe: overlapping cycles in threads meet `SlotTaken` as on an engine."""

    def __init__(self, clock: FakeClock | None = None, *, renames: bool = True, node: str | None = None,
                 spawn_latency_s: float = 0.0) -> None:
        self.clock = clock or FakeClock()
        self.renames = renames
        self.node = node
        self.spawn_latency_s = spawn_latency_s  # real seconds each spawn takes, to let spawns overlap
        self.calls: list[str] = []  # each engine call, "list <fleet>", "spawn <name>", "vacate <id>", ...
        self.most_in_flight = 0
        self._in_flight = 0
        self._lock = threading.RLock()
        self._objects: dict[str, FakeAgent] = {}  # by id
        self._names: dict[str, str] = {}  # name -> id: the table that makes a name unique
        self._ids = itertools.count(1)
        self._refused_images: set[str] = set()
        self._listing_failures = 0
        self._listing_barrier: threading.Barrier | None = None

    # ----------------------------------------------------------------------------------- the port

    def list_agents(self, fleet_id: str) -> FleetListing:
        listing = self._list(fleet_id)
        barrier = self._listing_barrier
        if barrier is not None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=30)
        return listing

    def _list(self, fleet_id: str) -> FleetListing:
        with self._lock:
            self.calls.append(f"list {fleet_id}")
            if self._listing_failures:
                self._listing_failures -= 1
                raise RuntimeFailure("listing the fleet's agents failed: injected by the test")
            agents: list[AgentRecord] = []
            unreadable: list[Unreadable] = []
            for item in self._objects.values():
                if item.labels.get(labels.FLEET) != fleet_id or item.labels.get(labels.COMPONENT) != labels.AGENT:
                    continue
                try:
                    read = labels.read_agent_labels(item.labels)
                except labels.LabelError as exc:
                    unreadable.append(Unreadable(item.id, item.name, str(exc)))
                    continue
                agents.append(AgentRecord(
                    id=item.id, name=item.name, role=read.role, slot=read.slot, phase=_phase(item.state),
                    created_at=item.created_at, started_at=item.started_at, finished_at=item.finished_at,
                    exit_code=item.exit_code, node=item.node, lost_since=item.lost_since,
                    crash_streak=read.crash_streak, idle_streak=read.idle_streak,
                    earlier_spawns=read.earlier_spawns,
                    holds_slot=item.name == slot_name(fleet_id, read.role, read.slot),
                ))
            return FleetListing(tuple(agents), tuple(unreadable))

    def spawn(self, launch: AgentLaunch) -> str:
        with self._lock:
            self.calls.append(f"spawn {launch.name}")
            self._in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self._in_flight)
        try:
            if self.spawn_latency_s:
                time.sleep(self.spawn_latency_s)  # outside the lock, so that spawns overlap as on an engine
            with self._lock:
                if launch.image in self._refused_images:
                    raise RuntimeFailure(f"image {launch.image} is not on the engine and could not be pulled")
                held = self._names.get(launch.name)
                if held is not None:
                    holder = self._objects[held]
                    squatter = None if labels.holds_its_own_slot(holder.labels, launch) else f"object {held[:12]}"
                    raise SlotTaken(launch.name, squatter)
                now = self.clock()
                agent = FakeAgent(
                    id=self._new_id(), name=launch.name, labels=labels.agent_labels(launch), state=State.RUNNING,
                    created_at=now, started_at=now, image=launch.image, command=launch.command,
                    env=dict(launch.env), node=self.node,
                    files={f"{SECRETS_DIR}/{s.name}": s.value.reveal() for s in launch.secrets},
                )
                self._add(agent)
                return agent.id
        finally:
            with self._lock:
                self._in_flight -= 1

    def vacate(self, agent: AgentRecord) -> None:
        with self._lock:
            self.calls.append(f"vacate {agent.id}")
            found = self._objects.get(agent.id)
            if found is None or found.state is State.RUNNING:
                return  # gone already (a racing cycle), or alive: the engine refuses
            if self.renames and found.state is State.EXITED and found.name == agent.name:
                self._rename(found, f"{agent.name}.{agent.id[:12]}")
                return
            if not self.renames or found.state is not State.EXITED:
                self._remove(found)

    def discard(self, agent: AgentRecord) -> None:
        with self._lock:
            self.calls.append(f"discard {agent.id}")
            found = self._objects.get(agent.id)
            if found is not None and found.state is not State.RUNNING:
                self._remove(found)

    def coordinator_log(self, fleet_id: str, *, source: str | None = None, tail: int) -> CoordinatorLog:
        raise RuntimeFailure("the in-memory runtime runs no coordinator")

    # ----------------------------------------------------------------------------------- what the engine does

    def exit(self, name_or_id: str, code: int = 0, *, after_s: float | None = None) -> FakeAgent:
        """The agent ends with `code`, now (or `after_s` after it started, which must not be in the future)."""
        with self._lock:
            agent = self._find(name_or_id)
            if agent.state not in (State.RUNNING, State.LOST):
                raise AssertionError(f"{agent.name} is {agent.state}, not running")
            finished = self.clock() if after_s is None else (agent.started_at or agent.created_at) + timedelta(
                seconds=after_s)
            if finished > self.clock():
                raise AssertionError("an agent cannot have ended in the future")
            agent.state, agent.exit_code, agent.finished_at, agent.lost_since = State.EXITED, code, finished, None
            return agent

    def crash(self, name_or_id: str, code: int = 1) -> FakeAgent:
        return self.exit(name_or_id, code)

    def lose(self, name_or_id: str, node: str = "node-2") -> FakeAgent:
        """The agent's node stops answering, now."""
        with self._lock:
            agent = self._find(name_or_id)
            agent.state, agent.node, agent.lost_since = State.LOST, node, self.clock()
            return agent

    def squat(self, name: str, object_labels: Mapping[str, str] | None = None) -> str:
        """Something that is not this fleet's agent of that slot takes `name`; returns its id."""
        return self.plant(name, object_labels or {})

    def plant(self, name: str, object_labels: Mapping[str, str], *, state: State = State.RUNNING,
              exit_code: int | None = None, ran_s: float = 0.0) -> str:
        """Any object under `name` with `object_labels`, as a person or an older coordinator might have made it."""
        with self._lock:
            if name in self._names:
                raise AssertionError(f"{name} is taken")
            now = self.clock()
            started = now - timedelta(seconds=ran_s) if state is not State.CREATED else None
            agent = FakeAgent(id=self._new_id(), name=name, labels=dict(object_labels), state=state,
                              created_at=started or now, started_at=started,
                              finished_at=now if state is State.EXITED else None,
                              exit_code=exit_code if state is State.EXITED else None, node=self.node)
            self._add(agent)
            return agent.id

    def refuse_image(self, image: str) -> None:
        self._refused_images.add(image)

    def fail_listing(self, times: int = 1) -> None:
        self._listing_failures = times

    def plan_together(self, cycles: int) -> None:
        """The next `cycles` listings each wait for the others before they return: that many overlapping cycles
        plan from the same inventory, the race the slot names must settle. Later listings do not wait."""
        barrier = threading.Barrier(cycles, action=self._stop_waiting)
        self._listing_barrier = barrier

    def _stop_waiting(self) -> None:
        self._listing_barrier = None

    # ----------------------------------------------------------------------------------- what a test reads

    def get(self, name_or_id: str) -> FakeAgent:
        with self._lock:
            return replace(self._find(name_or_id))

    def objects(self, fleet_id: str | None = None) -> list[FakeAgent]:
        """Every object (of one fleet), copies, oldest first."""
        with self._lock:
            return [replace(o) for o in self._objects.values()
                    if fleet_id is None or o.labels.get(labels.FLEET) == fleet_id]

    def running_by_role(self, fleet_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.objects(fleet_id):
            if item.state is State.RUNNING and labels.ROLE in item.labels:
                counts[item.labels[labels.ROLE]] = counts.get(item.labels[labels.ROLE], 0) + 1
        return counts

    def secret_file(self, agent_id: str, name: str) -> str:
        with self._lock:
            return self._objects[agent_id].files[f"{SECRETS_DIR}/{name}"]

    def inspect(self, agent_id: str) -> str:
        """What `docker inspect` would show of it: everything but its files."""
        with self._lock:
            item = self._objects[agent_id]
            shown = {"id": item.id, "name": item.name, "labels": item.labels, "image": item.image,
                     "command": item.command, "env": item.env, "state": item.state.value}
            return json.dumps(shown)

    @contextmanager
    def counting(self) -> Iterator[list[str]]:
        """The engine calls made inside the block."""
        start = len(self.calls)
        seen: list[str] = []
        try:
            yield seen
        finally:
            seen.extend(self.calls[start:])

    # ----------------------------------------------------------------------------------- inside

    def _new_id(self) -> str:
        return f"{next(self._ids):012x}{'f' * 52}"

    def _find(self, name_or_id: str) -> FakeAgent:
        found = self._objects.get(name_or_id) or self._objects.get(self._names.get(name_or_id, ""))
        if found is None:
            raise KeyError(name_or_id)
        return found

    def _add(self, agent: FakeAgent) -> None:
        self._objects[agent.id] = agent
        self._names[agent.name] = agent.id

    def _rename(self, agent: FakeAgent, name: str) -> None:
        del self._names[agent.name]
        agent.name = name
        self._names[name] = agent.id

    def _remove(self, agent: FakeAgent) -> None:
        del self._objects[agent.id]
        self._names.pop(agent.name, None)


def _phase(state: State) -> Phase:
    return {State.RUNNING: Phase.ALIVE, State.LOST: Phase.LOST}.get(state, Phase.FINISHED)
