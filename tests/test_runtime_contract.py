"""The runtime port's promises (`coordinator/runtime.py`), run against every runtime: the in-memory fake
(`tests/fakes/runtime.py`), the Docker engine and the lab swarm.

Each promise is asserted once, here, and holds for all three: that is what lets the cycle's behaviour tests
run on the fake (`tests/test_cycle_behaviour.py`) and the engines' own files keep only what engines alone
show. A driver per runtime does what the engine would do by itself (an agent ends, a person squats a name).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, Protocol

import docker
import pytest
from docker.types import ContainerSpec, RestartPolicy, ServiceMode, TaskTemplate

from coordinator import labels
from coordinator.redact import Secret
from coordinator.runtime import (
    AgentLaunch,
    AgentRecord,
    AgentRuntime,
    AgentSecret,
    FleetListing,
    Phase,
    RuntimeFailure,
    SlotTaken,
    slot_name,
)
from coordinator.runtimes.docker import DockerRuntime
from coordinator.runtimes.swarm import SwarmRuntime
from tests.fakes.runtime import MemoryRuntime, State
from tests.swarm_lab import SwarmLab

SLEEP = ("sleep", "infinity")


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 90.0, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout}s")
        time.sleep(interval)


class Driver(Protocol):
    """One runtime under the contract, and the hands that do to it what its engine would do by itself."""

    runtime: AgentRuntime
    fleet_id: str
    image: str

    def finish(self, agent_id: str, code: int) -> AgentRecord:
        """Wait until (or make it so that) the agent spawned with `ending(code)` has ended; its record."""
        ...

    def ending(self, code: int) -> tuple[str, ...]:
        """The command of an agent that ends by itself with `code`."""
        ...

    def squat(self, name: str) -> str:
        """Make something that is not the fleet's agent hold `name`; how SlotTaken names it."""
        ...

    def plant(self, name: str, object_labels: dict[str, str]) -> str:
        """A running object under `name` with `object_labels`; its id."""
        ...

    @contextmanager
    def engine_calls(self) -> Iterator[list[str]]:
        """The calls the runtime makes to its engine inside the block."""
        yield []

    def alive(self, agent_id: str) -> bool:
        """Whether the object is still there and running, as the engine itself says."""
        ...

    def secret(self, agent_id: str, name: str) -> str:
        """The content of the agent's file SECRETS_DIR/name, read from inside the agent."""
        ...

    def inspect(self, agent_id: str) -> str:
        """Everything the engine shows of the agent to anyone who inspects it."""
        ...


class MemoryDriver:
    def __init__(self, fleet_id: str, *, renames: bool = True) -> None:
        # A spawn takes long enough for racing threads to overlap.
        self.fake = MemoryRuntime(renames=renames, spawn_latency_s=0.002)
        self.runtime: AgentRuntime = self.fake
        self.fleet_id, self.image = fleet_id, "agent:1"

    def finish(self, agent_id: str, code: int) -> AgentRecord:
        self.fake.clock.advance(2)
        self.fake.exit(agent_id, code)
        return record(self, agent_id)

    def ending(self, code: int) -> tuple[str, ...]:
        return ("sh", "-c", f"exit {code}")

    def squat(self, name: str) -> str:
        return f"object {self.fake.squat(name, {labels.FLEET: self.fleet_id})[:12]}"

    def plant(self, name: str, object_labels: dict[str, str]) -> str:
        return self.fake.plant(name, object_labels)

    @contextmanager
    def engine_calls(self) -> Iterator[list[str]]:
        with self.fake.counting() as seen:
            yield seen

    def alive(self, agent_id: str) -> bool:
        try:
            return self.fake.get(agent_id).state is State.RUNNING
        except KeyError:
            return False

    def secret(self, agent_id: str, name: str) -> str:
        return self.fake.secret_file(agent_id, name)

    def inspect(self, agent_id: str) -> str:
        return self.fake.inspect(agent_id)


def _hooked_calls(api: docker.APIClient) -> tuple[list[str], Callable[..., None]]:
    calls: list[str] = []

    def hook(response: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(f"{response.request.method} {response.request.path_url}")

    api.hooks["response"].append(hook)
    return calls, hook


class DockerDriver:
    def __init__(self, client: docker.DockerClient, image: str, fleet_id: str) -> None:
        self.client = client
        self.docker = DockerRuntime()
        self.runtime: AgentRuntime = self.docker
        self.fleet_id, self.image = fleet_id, image

    def finish(self, agent_id: str, code: int) -> AgentRecord:
        wait_for(lambda: self.client.api.inspect_container(agent_id)["State"]["Status"] == "exited", "exited")
        return record(self, agent_id)

    def ending(self, code: int) -> tuple[str, ...]:
        return ("sh", "-c", f"sleep 1; exit {code}")

    def squat(self, name: str) -> str:
        squatter = self.client.containers.create(self.image, list(SLEEP), name=name,
                                                 labels={labels.FLEET: self.fleet_id})
        return f"container {squatter.id[:12]}"

    def plant(self, name: str, object_labels: dict[str, str]) -> str:
        return str(self.client.containers.run(self.image, list(SLEEP), name=name, labels=object_labels,
                                              detach=True).id)

    @contextmanager
    def engine_calls(self) -> Iterator[list[str]]:
        calls, hook = _hooked_calls(self.docker.api)
        try:
            yield calls
        finally:
            self.docker.api.hooks["response"].remove(hook)

    def alive(self, agent_id: str) -> bool:
        try:
            return bool(self.client.api.inspect_container(agent_id)["State"]["Running"])
        except docker.errors.NotFound:
            return False

    def secret(self, agent_id: str, name: str) -> str:
        return bytes(self.client.containers.get(agent_id).exec_run(["cat", f"/run/secrets/{name}"]).output).decode()

    def inspect(self, agent_id: str) -> str:
        return json.dumps(self.client.api.inspect_container(agent_id))


class SwarmDriver:
    def __init__(self, lab: SwarmLab, image: str, fleet_id: str) -> None:
        self.lab = lab
        self.api = lab.api()
        self.swarm = SwarmRuntime(lab.api())
        self.runtime: AgentRuntime = self.swarm
        self.fleet_id, self.image = fleet_id, image

    def finish(self, agent_id: str, code: int) -> AgentRecord:
        wait_for(lambda: record(self, agent_id).phase is Phase.FINISHED, "task ended")
        return record(self, agent_id)

    def ending(self, code: int) -> tuple[str, ...]:
        return ("sh", "-c", f"sleep 1; exit {code}")

    def _service(self, name: str, service_labels: dict[str, str]) -> str:
        template = TaskTemplate(container_spec=ContainerSpec(self.image, list(SLEEP), labels=service_labels),
                                restart_policy=RestartPolicy(condition="none"))
        return str(self.api.create_service(template, name=name, labels=service_labels,
                                           mode=ServiceMode("replicated", replicas=1))["ID"])

    def squat(self, name: str) -> str:
        return f"service {self._service(name, {labels.FLEET: self.fleet_id})[:12]}"

    def plant(self, name: str, object_labels: dict[str, str]) -> str:
        service = self._service(name, object_labels)
        self.lab.wait_for_tasks(service, {"running"})
        return service

    @contextmanager
    def engine_calls(self) -> Iterator[list[str]]:
        calls, hook = _hooked_calls(self.swarm.api)
        try:
            yield calls
        finally:
            self.swarm.api.hooks["response"].remove(hook)

    def _running_task(self, service_id: str) -> dict[str, Any] | None:
        tasks: list[dict[str, Any]] = self.api.tasks(filters={"service": service_id})
        running = [t for t in tasks if t["Status"]["State"] == "running" and t["DesiredState"] == "running"]
        return running[0] if running else None

    def alive(self, agent_id: str) -> bool:
        try:
            self.api.inspect_service(agent_id)
        except docker.errors.NotFound:
            return False
        return any(t["DesiredState"] == "running" for t in self.api.tasks(filters={"service": agent_id}))

    def secret(self, agent_id: str, name: str) -> str:
        wait_for(lambda: self._running_task(agent_id) is not None, "task running")
        task = self._running_task(agent_id)
        assert task is not None
        node = self.lab.node_client(self.lab.node_number(task["NodeID"]))
        try:
            container = node.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
            return bytes(container.exec_run(["cat", f"/run/secrets/{name}"]).output).decode()
        finally:
            node.close()

    def inspect(self, agent_id: str) -> str:
        shown = [self.api.inspect_service(agent_id), *self.api.tasks(filters={"service": agent_id})]
        task = self._running_task(agent_id)
        if task is not None:
            node = self.lab.node_client(self.lab.node_number(task["NodeID"]))
            try:
                shown.append(node.api.inspect_container(task["Status"]["ContainerStatus"]["ContainerID"]))
            finally:
                node.close()
        return json.dumps(shown)


@pytest.fixture(params=[
    "memory",
    "memory-removing",  # vacate removes, as on a swarm
    pytest.param("docker", marks=pytest.mark.docker),
    pytest.param("swarm", marks=pytest.mark.swarm),
])
def driver(request: pytest.FixtureRequest) -> Driver:
    if request.param.startswith("memory"):
        return MemoryDriver("tmem", renames=request.param == "memory")
    if request.param == "docker":
        return DockerDriver(request.getfixturevalue("docker_client"), request.getfixturevalue("base_image"),
                            request.getfixturevalue("fleet_id"))
    lab: SwarmLab = request.getfixturevalue("swarm_lab")
    image = lab_image(lab, request.getfixturevalue("base_image"))
    return SwarmDriver(lab, image, request.getfixturevalue("swarm_fleet_id"))


_pushed: dict[str, str] = {}


def lab_image(lab: SwarmLab, base_image: str) -> str:
    if base_image not in _pushed:
        _pushed[base_image] = lab.push(base_image, "agent-fleet/python-base:lab")
    return _pushed[base_image]


def launch(d: Driver, slot: int = 1, *, role: str = "api", command: tuple[str, ...] = SLEEP,
           secrets: tuple[AgentSecret, ...] = (), fleet_id: str | None = None) -> AgentLaunch:
    fleet = fleet_id or d.fleet_id
    return AgentLaunch(fleet_id=fleet, role=role, slot=slot, name=slot_name(fleet, role, slot), image=d.image,
                       command=command, env={"AGENT_ROLE": role}, secrets=secrets)


def listing_with(d: Driver, *agent_ids: str, fleet_id: str | None = None) -> FleetListing:
    """The fleet's listing once it shows `agent_ids`: a swarm lists a service by its task, which follows the
    create by a moment (a cycle in that moment meets the name in use, which is safe)."""
    seen: list[FleetListing] = []

    def shown() -> bool:
        seen.insert(0, d.runtime.list_agents(fleet_id or d.fleet_id))
        return set(agent_ids) <= {a.id for a in seen[0].agents}

    wait_for(shown, f"{[i[:12] for i in agent_ids]} listed", timeout=60)
    return seen[0]


def record(d: Driver, agent_id: str) -> AgentRecord:
    (found,) = [a for a in listing_with(d, agent_id).agents if a.id == agent_id]
    return found


def agent_labels_for(fleet_id: str, role: str, slot: str) -> dict[str, str]:
    return {labels.FLEET: fleet_id, labels.COMPONENT: labels.AGENT, labels.ROLE: role, labels.SLOT: slot}


# ------------------------------------------------------------------------------------------ slot names


def test_an_agent_is_created_under_its_slot_name_and_listed_alive(driver: Driver) -> None:
    agent_id = driver.runtime.spawn(launch(driver, 2, role="builder"))
    found = record(driver, agent_id)
    assert (found.name, found.role, found.slot) == (f"{driver.fleet_id}-builder-2", "builder", 2)
    assert found.phase is Phase.ALIVE and found.holds_slot and found.exit_code is None


def test_a_second_agent_under_a_name_in_use_is_refused_as_taken_not_failed(driver: Driver) -> None:
    first = driver.runtime.spawn(launch(driver))
    with pytest.raises(SlotTaken) as taken:
        driver.runtime.spawn(launch(driver))
    assert taken.value.squatter is None  # this slot's own agent: a racing cycle, no squatter
    assert [a.id for a in listing_with(driver, first).agents] == [first]


def test_spawns_racing_in_threads_into_one_slot_make_exactly_one_agent(driver: Driver) -> None:
    outcomes: list[str] = []
    start = threading.Barrier(6)

    def spawn() -> None:
        start.wait()
        try:
            outcomes.append(driver.runtime.spawn(launch(driver)))
        except SlotTaken as taken:
            outcomes.append(f"taken by {taken.squatter}")

    threads = [threading.Thread(target=spawn) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes).count("taken by None") == 5
    (made,) = [o for o in outcomes if not o.startswith("taken")]
    assert [a.id for a in listing_with(driver, made).agents] == [made]


def test_something_else_under_a_slot_name_is_named_as_a_squatter(driver: Driver) -> None:
    name = slot_name(driver.fleet_id, "api", 1)
    shown = driver.squat(name)
    with pytest.raises(SlotTaken) as taken:
        driver.runtime.spawn(launch(driver))
    assert taken.value.squatter == shown
    assert driver.runtime.list_agents(driver.fleet_id).agents == ()  # not the fleet's: not listed either


# ------------------------------------------------------------------------------------------ the listing


def test_the_fleet_is_listed_in_one_engine_call_and_no_other_fleets_agents(driver: Driver) -> None:
    mine = driver.runtime.spawn(launch(driver, 1))
    theirs = driver.runtime.spawn(launch(driver, 1, fleet_id=f"{driver.fleet_id}x"))
    try:
        listing_with(driver, theirs, fleet_id=f"{driver.fleet_id}x")
        listing_with(driver, mine)
        with driver.engine_calls() as calls:
            listing = driver.runtime.list_agents(driver.fleet_id)
        assert [a.id for a in listing.agents] == [mine]
        assert len(calls) == 1, calls
    finally:
        for other in driver.runtime.list_agents(f"{driver.fleet_id}x").agents:
            with suppress(RuntimeFailure):
                cleanup(driver, other)


def cleanup(d: Driver, agent: AgentRecord) -> None:
    if isinstance(d, DockerDriver):
        d.client.api.remove_container(agent.id, force=True)
    elif isinstance(d, SwarmDriver):
        d.api.remove_service(agent.id)


def test_a_finished_agent_is_listed_with_its_exit_code_and_times(driver: Driver) -> None:
    agent_id = driver.runtime.spawn(launch(driver, command=driver.ending(3)))
    ended = driver.finish(agent_id, 3)
    assert ended.phase is Phase.FINISHED and ended.exit_code == 3
    assert ended.started_at is not None and ended.finished_at is not None and ended.ran_s is not None
    assert ended.ran_s >= 0 and ended.created_at <= ended.finished_at


@pytest.mark.parametrize("bad", [{labels.SLOT: "²"}, {labels.ROLE: "Api"}, {labels.CRASH_STREAK: "-1"},
                                 {labels.EARLIER_SPAWNS: "999999999999"}],
                         ids=["slot", "role", "streak", "spawn-time-out-of-range"])
def test_an_agent_whose_labels_cannot_be_read_is_skipped_and_reported(driver: Driver, bad: dict[str, str]) -> None:
    good = driver.runtime.spawn(launch(driver, 1))
    odd = driver.plant(f"{driver.fleet_id}-odd", {**agent_labels_for(driver.fleet_id, "api", "3"), **bad})
    listing = listing_with(driver, good)
    assert [a.id for a in listing.agents] == [good]
    (unreadable,) = listing.unreadable
    assert unreadable.id == odd and unreadable.name
    assert next(iter(bad)) in unreadable.reason
    assert driver.alive(odd)  # skipped means untouched


def test_the_streaks_and_spawn_times_an_agent_was_launched_with_come_back_in_the_listing(driver: Driver) -> None:
    from datetime import UTC, datetime

    earlier = (datetime(2026, 1, 5, 8, 30, tzinfo=UTC), datetime(2026, 1, 5, 8, 45, tzinfo=UTC))
    base = launch(driver)
    agent_id = driver.runtime.spawn(AgentLaunch(**{**base.__dict__, "crash_streak": 4, "idle_streak": 2,
                                                   "earlier_spawns": earlier}))
    found = record(driver, agent_id)
    assert (found.crash_streak, found.idle_streak, found.earlier_spawns) == (4, 2, earlier)


# ------------------------------------------------------------------------------------------ nothing alive is stopped


def test_vacate_and_discard_leave_a_running_agent_running(driver: Driver) -> None:
    agent_id = driver.runtime.spawn(launch(driver))
    alive = record(driver, agent_id)
    for act in (driver.runtime.vacate, driver.runtime.discard):
        with suppress(RuntimeFailure):  # an engine may refuse out loud, or quietly
            act(alive)
    assert driver.alive(agent_id)
    again = record(driver, agent_id)
    assert again.phase is Phase.ALIVE and again.holds_slot


def test_vacate_frees_a_finished_agents_slot_and_a_second_vacate_is_no_error(driver: Driver) -> None:
    first = driver.runtime.spawn(launch(driver, command=driver.ending(0)))
    ended = driver.finish(first, 0)
    driver.runtime.vacate(ended)
    driver.runtime.vacate(ended)  # a racing cycle did it too
    second = driver.runtime.spawn(launch(driver))
    now = {a.id: a for a in listing_with(driver, second).agents}
    assert now[second].holds_slot and now[second].phase is Phase.ALIVE

    def set_aside() -> bool:  # kept aside under another name, or removed (a swarm lists a removed task a while)
        listed = {a.id: a for a in driver.runtime.list_agents(driver.fleet_id).agents}
        return first not in listed or not listed[first].holds_slot

    wait_for(set_aside, "the vacated agent no longer holds the slot")


def test_a_stale_record_never_reaches_the_newer_agent_under_the_same_name(driver: Driver) -> None:
    first = driver.runtime.spawn(launch(driver, command=driver.ending(0)))
    ended = driver.finish(first, 0)
    driver.runtime.vacate(ended)
    second = driver.runtime.spawn(launch(driver))
    # A slow cycle still holds the first agent's record: by id, its actions miss the newer agent.
    for act in (driver.runtime.vacate, driver.runtime.discard):
        with suppress(RuntimeFailure):
            act(ended)
    assert driver.alive(second)
    assert record(driver, second).holds_slot


def test_discard_removes_a_finished_agent_by_id(driver: Driver) -> None:
    agent_id = driver.runtime.spawn(launch(driver, command=driver.ending(1)))
    driver.runtime.discard(driver.finish(agent_id, 1))
    wait_for(lambda: agent_id not in {a.id for a in driver.runtime.list_agents(driver.fleet_id).agents}, "removed")


# ------------------------------------------------------------------------------------------ secrets


def test_secrets_are_files_of_the_agent_and_shown_by_no_inspect(driver: Driver) -> None:
    token = "fake-contract-token-" + "q5" * 12
    agent_id = driver.runtime.spawn(launch(driver, secrets=(AgentSecret("GITHUB_TOKEN", Secret(token)),)))
    assert driver.secret(agent_id, "GITHUB_TOKEN") == token
    assert token not in driver.inspect(agent_id)
