"""The swarm lab itself: three real nodes, a real registry between them, the fleet's service shape runs."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

import docker
import pytest
from docker.types import Placement, RestartPolicy, ServiceMode, TaskTemplate

from tests.swarm_lab import TEST_LABEL, SwarmLab

pytestmark = pytest.mark.swarm


@pytest.fixture(scope="module")
def lab_image(swarm_lab: SwarmLab, base_image: str) -> str:
    return swarm_lab.push(base_image, "agent-fleet/python-base:lab")


@pytest.fixture
def api(swarm_lab: SwarmLab) -> Iterator[docker.APIClient]:
    client = swarm_lab.api()
    yield client
    client.close()


@pytest.fixture
def test_label(swarm_lab: SwarmLab) -> Iterator[dict[str, str]]:
    labels = {TEST_LABEL: uuid.uuid4().hex[:8]}
    yield labels
    swarm_lab.remove_labelled(f"{TEST_LABEL}={labels[TEST_LABEL]}")


def run_once(api: docker.APIClient, image: str, command: list[str], node: str, labels: dict[str, str]) -> str:
    """The fleet's shape: one replicated service, one replica, never restarted, pinned by node label."""
    task = TaskTemplate(
        # A short grace period: `sleep` ignores SIGTERM, and stopping it must not cost the default 10 s.
        container_spec=docker.types.ContainerSpec(image, command=command, labels=labels, stop_grace_period=10**9),
        restart_policy=RestartPolicy(condition="none"),
        placement=Placement(constraints=[f"node.labels.lab.node=={node}"]),
    )
    service = api.create_service(
        task, name=f"lab-{uuid.uuid4().hex[:8]}", labels=labels, mode=ServiceMode("replicated", replicas=1),
    )
    return str(service["ID"])


def test_three_nodes_ready_one_manager_each_with_its_own_name_and_label(
    swarm_lab: SwarmLab, api: docker.APIClient
) -> None:
    nodes = api.nodes()
    assert sorted(n["Status"]["State"] for n in nodes) == ["ready"] * 3
    assert sorted(n["Spec"]["Role"] for n in nodes) == ["manager", "worker", "worker"]
    by_label = {n["Spec"]["Labels"]["lab.node"]: n for n in nodes}
    assert sorted(by_label) == ["n1", "n2", "n3"]
    for number, node_id in swarm_lab.node_ids.items():
        node = by_label[f"n{number}"]
        assert node["ID"] == node_id
        assert node["Description"]["Hostname"] == swarm_lab.hostnames[number]
    assert by_label["n1"]["Spec"]["Role"] == "manager"


def test_an_image_pushed_through_the_registry_runs_as_a_service_on_a_worker(
    swarm_lab: SwarmLab, api: docker.APIClient, lab_image: str, test_label: dict[str, str]
) -> None:
    assert lab_image == f"{swarm_lab.registry}/agent-fleet/python-base:lab"
    worker = swarm_lab.node_client(3)
    # The worker must pull it from the registry, even where an earlier session left it there.
    with contextlib.suppress(docker.errors.ImageNotFound):
        worker.images.remove(lab_image, force=True)
    marker = uuid.uuid4().hex
    service_id = run_once(api, lab_image, ["python", "-c", f"print('{marker}')"], "n3", test_label)

    [task] = swarm_lab.wait_for_tasks(service_id, {"complete", "failed", "rejected"})

    assert task["Status"]["State"] == "complete", task["Status"]
    assert task["NodeID"] == swarm_lab.node_ids[3]
    assert any(lab_image in tag for image in worker.images.list() for tag in image.tags)
    logs = b"".join(api.service_logs(service_id, stdout=True, stderr=True))
    assert marker.encode() in logs
    worker.close()


def test_a_run_once_service_on_a_labelled_worker_completes_and_a_failing_one_keeps_its_exit_code(
    swarm_lab: SwarmLab, api: docker.APIClient, lab_image: str, test_label: dict[str, str]
) -> None:
    ok = run_once(api, lab_image, ["sh", "-c", "exit 0"], "n2", test_label)
    bad = run_once(api, lab_image, ["sh", "-c", "exit 3"], "n2", test_label)

    [done] = swarm_lab.wait_for_tasks(ok, {"complete", "failed", "rejected"})
    [failed] = swarm_lab.wait_for_tasks(bad, {"complete", "failed", "rejected"})

    assert done["Status"]["State"] == "complete"
    assert done["Status"]["ContainerStatus"]["ExitCode"] == 0
    assert done["NodeID"] == swarm_lab.node_ids[2]
    assert failed["Status"]["State"] == "failed"
    assert failed["Status"]["ContainerStatus"]["ExitCode"] == 3
    # Restart condition none: the failed task is the service's only one, never replaced.
    assert [t["ID"] for t in api.tasks(filters={"service": bad})] == [failed["ID"]]


def test_a_lost_node_leaves_its_task_stale_and_unreplaced_until_it_returns(
    swarm_lab: SwarmLab, api: docker.APIClient, lab_image: str, test_label: dict[str, str]
) -> None:
    service_id = run_once(api, lab_image, ["sleep", "3600"], "n3", test_label)
    [task] = swarm_lab.wait_for_tasks(service_id, {"running"})

    with swarm_lab.node_down(3):
        deadline = time.monotonic() + 60
        while api.inspect_node(swarm_lab.node_ids[3])["Status"]["State"] != "down":
            assert time.monotonic() < deadline, "node 3 never read as down"
            time.sleep(1)
        [stale] = api.tasks(filters={"service": service_id})
        # The managers give up on it, but the last report stands: the agent may well still be working.
        assert stale["ID"] == task["ID"]
        assert (stale["DesiredState"], stale["Status"]["State"]) == ("shutdown", "running")
        assert stale["Status"]["Timestamp"] == task["Status"]["Timestamp"]

    [ended] = swarm_lab.wait_for_tasks(service_id, {"failed", "shutdown", "complete"})
    assert ended["ID"] == task["ID"]  # restart condition none: never a second task
    node = swarm_lab.node_client(3)
    containers = node.containers.list(all=True, filters={"label": f"com.docker.swarm.task.id={task['ID']}"})
    assert [c.status for c in containers] == ["exited"]
    node.close()
