"""Whatever the labels (and the engine's times) hold, reading the fleet never raises: a record that cannot be read
is skipped and named, and every other record is read and reconciled as usual.

Labels come back from the engine as text anyone with access to it could have written. These properties feed
arbitrary strings to every label the coordinator reads, through each adapter's own inventory (`list_agents` over
the engine's answers in the shape the SDK's low-level client returns them), and on through the planner.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import docker
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from coordinator import labels
from coordinator.fleet import Department, Mode, Role, RoleSpec
from coordinator.runtime import AgentLaunch, AgentRecord, Unreadable
from coordinator.runtimes.docker import DockerRuntime
from coordinator.runtimes.swarm import SwarmRuntime
from coordinator.steps.inventory import take_inventory
from coordinator.steps.reconcile import BackoffPolicy, plan_reconcile

FLEET = "f"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
ROSTER = [RoleSpec(Role("api", "Api", 3, Department.ENGINEERING, Mode.TASK_DRIVEN, "Api brief."), image="agent:1")]
# The longest wait the settings allow, so that the planner's arithmetic on a record's times is tried at its widest.
WIDEST_BACKOFF = BackoffPolicy(base_s=24 * 3600.0, max_s=7 * 24 * 3600.0)
READ_LABELS = (labels.ROLE, labels.SLOT, labels.CRASH_STREAK, labels.IDLE_STREAK, labels.EARLIER_SPAWNS)
GOOD_LABELS = {labels.FLEET: FLEET, labels.COMPONENT: labels.AGENT, labels.ROLE: "api", labels.SLOT: "1"}

# Arbitrary text, and text that looks like what a label holds: digits of every length around the limits
# (12 digits pass the epoch pattern yet reach past the year 9999), lists of them, and the values at the edges.
epochs = st.integers(min_value=0, max_value=10**13)
label_values = st.one_of(
    st.text(max_size=80),
    st.from_regex(r"[0-9]{1,14}", fullmatch=True),
    epochs.map(str),
    st.lists(epochs, min_size=1, max_size=4).map(lambda xs: ",".join(map(str, xs))),
    st.sampled_from(["api", "1", "0", "1000", "1001", "100", "101", "32503679999", "32503680000", "253402300799",
                     "253402300800", "999999999999", ",", "1,", ""]),
)
# A well-formed agent's labels with one of them (or any few) replaced by an arbitrary value or missing: most
# records then fail on one label at a time, and get past the role and the slot to the labels read after them.
readable_labels = st.fixed_dictionaries({
    labels.FLEET: st.just(FLEET),
    labels.COMPONENT: st.just(labels.AGENT),
    labels.ROLE: st.sampled_from(["api", "builder"]),
    labels.SLOT: st.integers(min_value=1, max_value=1000).map(str),
    labels.CRASH_STREAK: st.integers(min_value=0, max_value=100).map(str),
    labels.IDLE_STREAK: st.integers(min_value=0, max_value=100).map(str),
    labels.EARLIER_SPAWNS: st.lists(st.integers(min_value=int(NOW.timestamp()) - 7200, max_value=int(NOW.timestamp())),
                                    max_size=3).map(lambda xs: ",".join(map(str, xs))),
})
changed_labels = st.fixed_dictionaries({}, optional={name: st.one_of(st.none(), label_values) for name in READ_LABELS})


def _merged(found: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    merged = {**found, **changes}
    return {name: value for name, value in merged.items() if value is not None}


one_label_changed = st.tuples(st.sampled_from(READ_LABELS), st.one_of(st.none(), label_values)).map(
    lambda change: {change[0]: change[1]})
label_sets = st.builds(_merged, readable_labels, st.one_of(one_label_changed, changed_labels))
# Engine times: Docker's RFC 3339 with nanoseconds, across datetime's whole range and beyond its edges.
recent = st.datetimes(min_value=datetime(2026, 12, 2, 10, 0), max_value=datetime(2026, 12, 2, 12, 0))
docker_times = st.one_of(
    st.none(),
    recent.map(lambda d: f"{d.isoformat(timespec='microseconds')}Z"),
    st.text(max_size=40),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
        lambda d: f"{d.isoformat(timespec='microseconds')}123Z"),
    st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "2999-12-31T23:59:59Z",
                     "3000-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "2026-12-02T11:59:00+05:00", "2026-12-02"]),
)
exit_codes = st.one_of(st.integers(min_value=-(2**40), max_value=2**40), st.text(max_size=5), st.none())


class ListedEngine:
    """The engine's answers to the inventory's calls, as the SDK's low-level client returns them."""

    def __init__(self, containers: list[dict[str, Any]] | None = None, states: dict[str, Any] | None = None,
                 tasks: list[dict[str, Any]] | None = None) -> None:
        self._containers, self._states, self._tasks = containers or [], states or {}, tasks or []

    def containers(self, all: bool, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return self._containers

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        return {"State": self._states[container_id]}

    def tasks(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return self._tasks


def assert_read_and_planned(listing_ids: set[str], agents: tuple[AgentRecord, ...],
                            unreadable: tuple[Unreadable, ...], good_id: str) -> None:
    """Each record is read or named unreadable, once; the good one is read; the planner takes the rest."""
    assert sorted([a.id for a in agents] + [u.id for u in unreadable]) == sorted(listing_ids)
    assert good_id in {a.id for a in agents}
    for item in unreadable:
        assert item.reason and len(item.reason) < 400  # named, and bounded however long the label


def plan(runtime: DockerRuntime | SwarmRuntime) -> tuple[tuple[AgentRecord, ...], tuple[Unreadable, ...]]:
    inventory = take_inventory(runtime, FLEET, now=NOW, node_lost_after=timedelta(minutes=5))
    plan_reconcile(FLEET, ROSTER, inventory, now=NOW, backoff=WIDEST_BACKOFF, max_spawns_per_hour=5)
    plan_reconcile(FLEET, ROSTER, inventory, now=NOW, backoff=WIDEST_BACKOFF)
    return inventory.agents, inventory.unreadable


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    odd=st.lists(
        st.tuples(label_sets, st.sampled_from(["running", "exited", "dead", "created", "paused"]),
                  st.one_of(recent.map(lambda d: int(d.replace(tzinfo=UTC).timestamp())),
                            st.integers(min_value=-(2**63), max_value=2**63), st.text(max_size=12)),
                  exit_codes, docker_times, docker_times),
        min_size=1, max_size=4,
    ),
)
@example(odd=[({**GOOD_LABELS, labels.EARLIER_SPAWNS: "999999999999"}, "exited", 1764676800, 1,
                "2026-12-02T11:00:00Z", "2026-12-02T11:00:05Z")])
def test_the_docker_inventory_never_raises_whatever_the_labels_hold(odd: list[tuple[Any, ...]]) -> None:
    good = {"Id": "g" * 64, "Names": [f"/{FLEET}-api-1"], "Labels": GOOD_LABELS, "State": "running",
            "Status": "Up 1 minute", "Created": int(NOW.timestamp()) - 60}
    containers, states = [good], {}
    for n, (found, state, created, code, started, finished) in enumerate(odd):
        container_id = f"{n}".ljust(64, "c")
        containers.append({"Id": container_id, "Names": [f"/{FLEET}-odd-{n}"], "Labels": found, "State": state,
                           "Status": "Exited (1) 1 second ago", "Created": created})
        states[container_id] = {"ExitCode": code, "StartedAt": started, "FinishedAt": finished}
    runtime = DockerRuntime(cast(docker.APIClient, ListedEngine(containers, states)))
    agents, unreadable = plan(runtime)
    assert_read_and_planned({c["Id"] for c in containers}, agents, unreadable, good["Id"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    odd=st.lists(
        st.tuples(label_sets, st.sampled_from(["running", "pending", "complete", "failed", "shutdown", "rejected"]),
                  st.sampled_from(["running", "shutdown", "remove"]), exit_codes, docker_times, docker_times,
                  docker_times),
        min_size=1, max_size=4,
    ),
)
@example(odd=[({**GOOD_LABELS, labels.EARLIER_SPAWNS: "999999999999"}, "complete", "shutdown", 0,
                "2026-12-02T11:00:00Z", "2026-12-02T11:00:05Z", None)])
def test_the_swarm_inventory_never_raises_whatever_the_labels_hold(odd: list[tuple[Any, ...]]) -> None:
    good = {"ID": "t-good", "ServiceID": "s-good", "Spec": {"ContainerSpec": {"Labels": GOOD_LABELS}},
            "Status": {"State": "running", "Timestamp": "2026-12-02T11:59:00.5Z"}, "DesiredState": "running",
            "CreatedAt": "2026-12-02T11:58:00.123456789Z", "NodeID": "n1"}
    tasks = [good]
    for n, (found, state, desired, code, created, changed, updated) in enumerate(odd):
        tasks.append({"ID": f"t{n}", "ServiceID": f"s{n}", "Spec": {"ContainerSpec": {"Labels": found}},
                      "Status": {"State": state, "Timestamp": changed, "ContainerStatus": {"ExitCode": code}},
                      "DesiredState": desired, "CreatedAt": created, "UpdatedAt": updated, "NodeID": "n2"})
    runtime = SwarmRuntime(cast(docker.APIClient, ListedEngine(tasks=tasks)))
    agents, unreadable = plan(runtime)
    assert_read_and_planned({t["ServiceID"] for t in tasks}, agents, unreadable, good["ServiceID"])


@settings(max_examples=300, deadline=None)
@given(found=label_sets)
def test_whoever_holds_a_slot_name_is_judged_without_raising(found: dict[str, str]) -> None:
    launch = AgentLaunch(fleet_id=FLEET, role="api", slot=1, name=f"{FLEET}-api-1", image="agent:1", command=None,
                         env={})
    assert labels.holds_its_own_slot(found, launch) in (True, False)


@pytest.mark.parametrize(
    ("found", "reason"),
    [
        ({labels.EARLIER_SPAWNS: "999999999999"}, "label agent-fleet.earlier-spawns holds 999999999999, out of range"),
        ({labels.EARLIER_SPAWNS: "1764676800,253402300800"}, "holds 253402300800, out of range"),
        ({labels.EARLIER_SPAWNS: "32503680000"}, "holds 32503680000, out of range: epoch seconds before 32503680000"),
        ({labels.SLOT: "1001"}, "label agent-fleet.slot=1001 is out of range: a slot is 1 to 1000"),
        ({labels.SLOT: "999999"}, "label agent-fleet.slot=999999 is out of range"),
    ],
)
def test_a_number_out_of_range_is_named_with_its_label_and_the_range(found: dict[str, str], reason: str) -> None:
    with pytest.raises(labels.LabelError) as raised:
        labels.read_agent_labels({**GOOD_LABELS, **found})
    assert reason in str(raised.value)


def test_the_edges_of_the_ranges_are_read() -> None:
    read = labels.read_agent_labels({**GOOD_LABELS, labels.SLOT: "1000", labels.EARLIER_SPAWNS: "0,32503679999",
                                     labels.CRASH_STREAK: "999999999", labels.IDLE_STREAK: "0"})
    assert read.slot == 1000 and read.crash_streak == 100
    assert read.earlier_spawns == (datetime(1970, 1, 1, tzinfo=UTC), datetime(2999, 12, 31, 23, 59, 59, tzinfo=UTC))
