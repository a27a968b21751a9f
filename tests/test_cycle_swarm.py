"""The cycle on a real three-node swarm (scripts/swarm-lab), with cycles run as real processes: what only a swarm shows.

Placement over nodes, a finished agent's service replaced by id, capacity and reservations, a lost node, Docker
secrets and their rotation, the calls a steady cycle makes. The cycle's decisions run on the in-memory runtime
(`tests/test_cycle_behaviour.py`); the swarm adapter's promises they rely on (slot names refused when in use,
threads racing into one slot, nothing alive removed, removal by id) are proven here by
`tests/test_runtime_contract.py`.
"""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.types import ContainerSpec, TaskTemplate

from coordinator.fleet import MAX_AGENTS_PER_ROLE_CEILING, MAX_KEY_CHARS, MAX_SECRET_NAME_CHARS, Resources, RoleSpec
from coordinator.redact import Secret
from coordinator.runtime import MAX_SLOT_NAME_CHARS, AgentLaunch, AgentSecret, slot_name
from coordinator.runtimes.swarm import SwarmRuntime
from coordinator.values import MAX_FLEET_ID_CHARS
from tests.fakes.docker_proxy import counting_proxy
from tests.fleet_harness import (
    SLEEP_FOREVER,
    cycle_env,
    role_spec,
    run_cycle,
    write_roster,
)
from tests.swarm_lab import SwarmLab

pytestmark = pytest.mark.swarm

ACTIVE = {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"}


@pytest.fixture(scope="module")
def lab_image(swarm_lab: SwarmLab, base_image: str) -> str:
    return swarm_lab.push(base_image, "agent-fleet/python-base:lab")


@pytest.fixture
def api(swarm_lab: SwarmLab) -> Iterator[docker.APIClient]:
    client = swarm_lab.api()
    yield client
    client.close()


def swarm_env(swarm_lab: SwarmLab, fleet_id: str, roster: Path, **extra: str) -> dict[str, str]:
    return cycle_env(fleet_id, roster, FLEET_RUNTIME="swarm", DOCKER_HOST=swarm_lab.manager_url, **extra)


def tasks(api: docker.APIClient, fleet_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api.tasks(filters={"label": [f"agent-fleet.fleet={fleet_id}"]})
    return found


def running_by_role(api: docker.APIClient, fleet_id: str) -> Counter[str]:
    return Counter(
        t["Spec"]["ContainerSpec"]["Labels"]["agent-fleet.role"] for t in tasks(api, fleet_id)
        if t["Status"]["State"] == "running" and t["DesiredState"] == "running"
    )


def services(api: docker.APIClient, fleet_id: str) -> dict[str, str]:
    """Service name -> id, for the fleet's agents."""
    return {s["Spec"]["Name"]: s["ID"] for s in api.services(filters={"label": f"agent-fleet.fleet={fleet_id}"})}


def wait_until(predicate: Callable[[], bool], timeout: float = 90.0, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def fleet(tmp_path: Path, lab_image: str, swarm_lab: SwarmLab, swarm_fleet_id: str):  # type: ignore[no-untyped-def]
    specs = [role_spec("builder", 4, lab_image), role_spec("reviewer", 2, lab_image)]
    roster = write_roster(tmp_path / "roster.json", specs)
    return specs, roster, swarm_env(swarm_lab, swarm_fleet_id, roster)


def converge(api: docker.APIClient, fleet_id: str, expected: dict[str, int]) -> None:
    wait_until(lambda: running_by_role(api, fleet_id) == Counter(expected))


def test_cold_start_spreads_over_nodes_and_a_second_cycle_changes_nothing(fleet, api, swarm_fleet_id) -> None:  # type: ignore[no-untyped-def]
    _, _, env = fleet
    first = run_cycle(env)
    assert first.returncode == 0, first.stderr
    assert len(first.events("agent.spawned")) == 6
    converge(api, swarm_fleet_id, {"builder": 4, "reviewer": 2})
    assert len({t["NodeID"] for t in tasks(api, swarm_fleet_id)}) >= 2
    names = services(api, swarm_fleet_id)
    assert sorted(names) == sorted(f"{swarm_fleet_id}-{role}-{n}" for role, count in (("builder", 4), ("reviewer", 2))
                                   for n in range(1, count + 1))
    service = api.inspect_service(names[f"{swarm_fleet_id}-builder-1"])
    assert service["Spec"]["Labels"]["agent-fleet.slot"] == "1"  # on the service and on its container, both
    assert service["Spec"]["TaskTemplate"]["ContainerSpec"]["Labels"]["agent-fleet.role"] == "builder"
    assert service["Spec"]["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
    assert service["Spec"]["Mode"] == {"Replicated": {"Replicas": 1}}

    second = run_cycle(env)
    assert second.returncode == 0, second.stderr
    assert second.events("agent.spawned") == []
    assert second.report["roles"]["builder"]["running"] == 4
    assert services(api, swarm_fleet_id) == names


def test_a_finished_agent_is_replaced_under_its_slot_name(tmp_path, lab_image, swarm_lab, api,
                                                          swarm_fleet_id) -> None:  # type: ignore[no-untyped-def]
    command = ("sh", "-c", "echo the-agent-finished-its-work")
    roster = write_roster(tmp_path / "roster.json", [role_spec("once", 1, lab_image, command=command)])
    env = swarm_env(swarm_lab, swarm_fleet_id, roster)
    assert run_cycle(env).returncode == 0
    first_id = services(api, swarm_fleet_id)[f"{swarm_fleet_id}-once-1"]
    wait_until(lambda: any(t["Status"]["State"] == "complete" for t in tasks(api, swarm_fleet_id)))
    # Until its slot is reused, the finished agent's service stays, and its logs with it.
    logs = b"".join(api.service_logs(first_id, stdout=True, stderr=True, follow=False))
    assert b"the-agent-finished-its-work" in logs
    with counting_proxy(swarm_lab.manager_url.removeprefix("unix://")) as proxy:
        run = run_cycle({**env, "DOCKER_HOST": proxy.docker_host})
    assert run.returncode == 0, run.stderr
    assert [e["slot"] for e in run.events("agent.spawned")] == [1]
    second_id = services(api, swarm_fleet_id)[f"{swarm_fleet_id}-once-1"]
    assert second_id != first_id  # a new service under the slot's name...
    removals = [r.split("?")[0] for r in proxy.requests if r.startswith("DELETE ")]
    assert [r.rsplit("/", 1)[1] for r in removals] == [first_id]  # ...after the finished one was removed by ID


def test_reservations_steer_placement_and_a_task_pending_for_capacity_counts_as_running(
    tmp_path, lab_image, swarm_lab, api, swarm_fleet_id  # type: ignore[no-untyped-def]
) -> None:
    # Each lab node offers 2 CPUs: agents reserving 1.5 fit one to a node, so the fourth waits for capacity.
    role = dataclasses.replace(role_spec("heavy", 4, lab_image).role, resources=Resources(cpus=1.5,
                                                                                       memory_bytes=64 * 2**20))
    roster = write_roster(tmp_path / "roster.json", [RoleSpec(role, image=lab_image, command=SLEEP_FOREVER)])
    env = swarm_env(swarm_lab, swarm_fleet_id, roster)
    first = run_cycle(env)
    assert first.returncode == 0, first.stderr
    assert len(first.events("agent.spawned")) == 4

    def placed() -> bool:
        states = Counter(t["Status"]["State"] for t in tasks(api, swarm_fleet_id) if t["DesiredState"] == "running")
        return states == Counter({"running": 3, "pending": 1})

    wait_until(placed)
    running = [t for t in tasks(api, swarm_fleet_id) if t["Status"]["State"] == "running"]
    assert len({t["NodeID"] for t in running}) == 3  # one to a node: the reservations were honoured
    (waiting,) = [t for t in tasks(api, swarm_fleet_id) if t["Status"]["State"] == "pending"]
    assert "insufficient resources" in waiting["Status"].get("Err", ""), waiting["Status"]
    resources = waiting["Spec"]["Resources"]
    assert resources["Reservations"] == {"NanoCPUs": 1_500_000_000, "MemoryBytes": 64 * 2**20}
    assert resources["Limits"] == {"NanoCPUs": 1_500_000_000, "MemoryBytes": 64 * 2**20}

    # The pending agent is the fleet's: counted as running, never spawned again, never removed.
    second = run_cycle(env)
    assert second.returncode == 0, second.stderr
    assert second.events("agent.spawned") == []
    assert second.report["roles"]["heavy"]["running"] == 4
    assert len(services(api, swarm_fleet_id)) == 4
    assert waiting["ServiceID"] in services(api, swarm_fleet_id).values()


def test_a_lost_worker_s_slots_are_refilled_elsewhere_and_none_doubles_when_it_returns(
    tmp_path, lab_image, swarm_lab, api, swarm_fleet_id  # type: ignore[no-untyped-def]
) -> None:
    roster = write_roster(tmp_path / "roster.json", [role_spec("builder", 6, lab_image)])
    env = swarm_env(swarm_lab, swarm_fleet_id, roster, AGENT_NODE_LOST_S="20")
    assert run_cycle(env).returncode == 0
    converge(api, swarm_fleet_id, {"builder": 6})
    victim = next(n for n in (2, 3) if any(t["NodeID"] == swarm_lab.node_ids[n] for t in tasks(api, swarm_fleet_id)))
    victim_id = swarm_lab.node_ids[victim]
    lost = {t["ServiceID"] for t in tasks(api, swarm_fleet_id) if t["NodeID"] == victim_id}

    with swarm_lab.node_down(victim):
        wait_until(lambda: any(n["ID"] == victim_id and n["Status"]["State"] == "down" for n in api.nodes()))
        early = run_cycle(env)  # lost, but not for long enough: still counted as running
        assert early.events("agent.spawned") == []
        time.sleep(21)
        run = run_cycle(env)
        assert run.returncode == 0, run.stderr
        assert len(run.events("agent.spawned")) == len(lost)
        assert run.report["lost_nodes"] == [victim_id]
        assert run.report["verdict"] == "degraded"
        wait_until(lambda: sum(t["Status"]["State"] == "running" and t["NodeID"] != victim_id
                               for t in tasks(api, swarm_fleet_id)) == 6)
    # The node is back: Swarm stops its stale tasks; no role ever runs more than desired.
    wait_until(lambda: any(n["ID"] == victim_id and n["Status"]["State"] == "ready" for n in api.nodes()), 120)
    node = swarm_lab.node_client(victim)
    try:
        fleet_label = {"label": f"agent-fleet.fleet={swarm_fleet_id}"}
        wait_until(lambda: not node.containers.list(filters=fleet_label), 120)
    finally:
        node.close()
    assert running_by_role(api, swarm_fleet_id) == Counter({"builder": 6})
    assert run_cycle(env).events("agent.spawned") == []


def test_agents_receive_their_secrets_as_docker_secrets(tmp_path, lab_image, swarm_lab, api,
                                                        swarm_fleet_id) -> None:  # type: ignore[no-untyped-def]
    import json

    token = "fake-swarm-agent-token-" + "k4" * 12
    secrets = tmp_path / "agent-secrets.json"
    secrets.write_text(json.dumps({"GITHUB_TOKEN": token}))
    roster = write_roster(tmp_path / "roster.json", [role_spec("builder", 1, lab_image)])
    run = run_cycle(swarm_env(swarm_lab, swarm_fleet_id, roster, AGENT_SECRETS_FILE=str(secrets)))
    assert run.returncode == 0, run.stderr
    converge(api, swarm_fleet_id, {"builder": 1})
    (task,) = [t for t in tasks(api, swarm_fleet_id) if t["Status"]["State"] == "running"]
    node = swarm_lab.node_client(swarm_lab.node_number(task["NodeID"]))
    try:
        container = node.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
        assert container.exec_run(["cat", "/run/secrets/GITHUB_TOKEN"]).output.decode() == token
        assert token not in json.dumps(node.api.inspect_container(container.id))
    finally:
        node.close()
    (service_id,) = services(api, swarm_fleet_id).values()
    inspected = json.dumps(api.inspect_service(service_id))
    assert token not in inspected and "GITHUB_TOKEN" in inspected  # referenced by name, never by value
    (secret,) = api.secrets(filters={"label": f"agent-fleet.fleet={swarm_fleet_id}"})
    assert secret["Spec"]["Name"].startswith(f"{swarm_fleet_id}-github-token-")
    assert token not in run.stdout + run.stderr


def test_an_agent_at_the_longest_accepted_names_runs_in_the_highest_slot_with_its_secret(
    tmp_path, lab_image, swarm_lab, api, swarm_fleet_id  # type: ignore[no-untyped-def]
) -> None:
    # The longest fleet id, role key and secret name the program and the coordinator accept; once, the secret's
    # Docker secret was named with 66 characters and Swarm refused every spawn.
    fleet_id = f"{swarm_fleet_id}-{'m' * MAX_FLEET_ID_CHARS}"[:MAX_FLEET_ID_CHARS]
    role = ("longest_role_" * 3)[:MAX_KEY_CHARS]
    secret_name = ("AGENT_SECRET_" * 2)[:MAX_SECRET_NAME_CHARS]
    value = "fake-longest-names-" + "q7" * 12
    secrets = tmp_path / "agent-secrets.json"
    secrets.write_text(json.dumps({secret_name: value}))
    roster = write_roster(tmp_path / "roster.json", [role_spec(role, 1, lab_image)])
    try:
        run = run_cycle(swarm_env(swarm_lab, fleet_id, roster, AGENT_SECRETS_FILE=str(secrets)))
        assert run.returncode == 0, run.stderr
        assert [e["slot"] for e in run.events("agent.spawned")] == [1]
        # A cycle fills the lowest slots first: the highest slot is spawned through the runtime itself.
        highest = MAX_AGENTS_PER_ROLE_CEILING
        SwarmRuntime(api).spawn(AgentLaunch(
            fleet_id=fleet_id, role=role, slot=highest, name=slot_name(fleet_id, role, highest), image=lab_image,
            command=SLEEP_FOREVER, env={}, secrets=(AgentSecret(secret_name, Secret(value)),)))
        assert len(slot_name(fleet_id, role, highest)) == MAX_SLOT_NAME_CHARS
        wait_until(lambda: running_by_role(api, fleet_id) == Counter({role: 2}))
        for task in tasks(api, fleet_id):
            node = swarm_lab.node_client(swarm_lab.node_number(task["NodeID"]))
            try:
                container = node.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
                assert container.exec_run(["cat", f"/run/secrets/{secret_name}"]).output.decode() == value
            finally:
                node.close()
        (secret,) = api.secrets(filters={"label": f"agent-fleet.fleet={fleet_id}"})
        assert len(secret["Spec"]["Name"]) == 64  # the swarm's own limit, reached exactly
        listing = SwarmRuntime(api).list_agents(fleet_id)
        assert sorted((a.role, a.slot) for a in listing.agents) == [(role, 1), (role, highest)]
        assert set(services(api, fleet_id)) == {slot_name(fleet_id, role, 1), slot_name(fleet_id, role, highest)}
    finally:
        swarm_lab.remove_labelled(f"agent-fleet.fleet={fleet_id}")


def test_a_service_with_a_label_out_of_range_is_named_and_every_other_slot_is_reconciled(
    tmp_path, lab_image, swarm_lab, api, swarm_fleet_id  # type: ignore[no-untyped-def]
) -> None:
    roster = write_roster(tmp_path / "roster.json", [role_spec("builder", 1, lab_image, command=("sleep", "1"))])
    env = swarm_env(swarm_lab, swarm_fleet_id, roster)
    assert run_cycle(env).events("agent.spawned")
    # 12 digits pass the label's pattern but lie past the year 9999: once, this failed the whole inventory, and the
    # finished agent below was never replaced (its slot's name stayed taken).
    odd_labels = {"agent-fleet.fleet": swarm_fleet_id, "agent-fleet.component": "agent", "agent-fleet.role": "builder",
                  "agent-fleet.slot": "2", "agent-fleet.earlier-spawns": "999999999999"}
    odd = api.create_service(TaskTemplate(ContainerSpec(lab_image, ["sleep", "infinity"], labels=odd_labels)),
                             name=f"{swarm_fleet_id}-odd", labels=odd_labels)["ID"]
    finished = services(api, swarm_fleet_id)[f"{swarm_fleet_id}-builder-1"]
    swarm_lab.wait_for_tasks(finished, {"complete"})
    swarm_lab.wait_for_tasks(odd, {"running"})

    run = run_cycle(env)
    assert run.returncode == 0, run.stderr
    assert run.report["steps"]["inventory"]["status"] == "ok"
    assert [e["slot"] for e in run.events("agent.spawned")] == [1]  # the finished agent is replaced
    assert services(api, swarm_fleet_id)[f"{swarm_fleet_id}-builder-1"] != finished
    (unreadable,) = run.report["unreadable"]
    assert unreadable == (f"service {odd[:12]}: label agent-fleet.earlier-spawns holds 999999999999, out of range: "
                          "epoch seconds before 32503680000 (3000-01-01)")
    assert run.report["verdict"] == "degraded"
    assert any(odd[:12] in reason for reason in run.report["verdict_reasons"])
    assert services(api, swarm_fleet_id)[f"{swarm_fleet_id}-odd"] == odd  # skipped means untouched


def test_a_rotated_secret_reaches_new_agents_and_the_old_one_goes_once_unused(tmp_path, lab_image, swarm_lab, api,
                                                                             swarm_fleet_id) -> None:  # type: ignore[no-untyped-def]
    import json

    secrets = tmp_path / "agent-secrets.json"
    secrets.write_text(json.dumps({"GITHUB_TOKEN": "fake-first-" + "a1" * 12, "GITHUB": "other" + "b2" * 12}))
    roster = write_roster(tmp_path / "roster.json", [role_spec("once", 1, lab_image, command=("true",))])
    env = swarm_env(swarm_lab, swarm_fleet_id, roster, AGENT_SECRETS_FILE=str(secrets))
    # A value's secret as named before the digest was sized to fit Swarm's 64 characters (16 hex digits): unused,
    # it goes like any rotated-out value.
    legacy = f"{swarm_fleet_id}-github-token-{'0f' * 8}"
    api.create_secret(legacy, b"fake-legacy-value", labels={"agent-fleet.fleet": swarm_fleet_id,
                                                             "agent-fleet.component": "agent"})
    assert run_cycle(env).returncode == 0
    first = {s["Spec"]["Name"] for s in api.secrets(filters={"label": f"agent-fleet.fleet={swarm_fleet_id}"})}
    assert legacy not in first
    wait_until(lambda: any(t["Status"]["State"] == "complete" for t in tasks(api, swarm_fleet_id)))
    secrets.write_text(json.dumps({"GITHUB_TOKEN": "fake-second-" + "c3" * 12, "GITHUB": "other" + "b2" * 12}))
    assert run_cycle(env).events("agent.spawned")
    now = {s["Spec"]["Name"] for s in api.secrets(filters={"label": f"agent-fleet.fleet={swarm_fleet_id}"})}
    # The old token's secret went (its service was removed to fill the slot); GITHUB's is untouched.
    assert len(first) == 2 and len(now) == 2 and len(first & now) == 1
    assert any(name.startswith(f"{swarm_fleet_id}-github-") and "token" not in name for name in first & now)


def test_an_agent_service_holds_its_minted_token_as_a_docker_secret_removed_with_the_service(
    tmp_path, lab_image, swarm_lab, api, swarm_fleet_id
) -> None:  # type: ignore[no-untyped-def]
    import json

    from tests.fakes.github import FakeGitHub

    with FakeGitHub() as github:
        app = github.add_app("fleet-author")
        identities = tmp_path / "identities.json"
        identities.write_text(json.dumps({"author": app.as_identity()}))
        # The agent works until the test says it is done, then exits 0: its slot is then filled again.
        until_done = ("sh", "-c", "while [ ! -e /tmp/done ]; do sleep 0.2; done")
        roster = write_roster(tmp_path / "roster.json", [role_spec("builder", 1, lab_image, command=until_done)])
        env = swarm_env(swarm_lab, swarm_fleet_id, roster, AGENT_IDENTITIES_FILE=str(identities),
                        GITHUB_REPOSITORY=github.repository, GITHUB_API_URL=github.api_url)
        run = run_cycle(env)
        assert run.returncode == 0, run.stdout + run.stderr
        converge(api, swarm_fleet_id, {"builder": 1})
        [first] = github.minted(app)
        owned = {"label": f"agent-fleet.owner={swarm_fleet_id}-builder-1"}
        [secret] = api.secrets(filters=owned)
        (service_id,) = services(api, swarm_fleet_id).values()
        refs = api.inspect_service(service_id)["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
        assert [(r["SecretID"], r["File"]["Name"]) for r in refs] == [(secret["ID"], "GITHUB_TOKEN")]
        (task,) = [t for t in tasks(api, swarm_fleet_id) if t["Status"]["State"] == "running"]
        node = swarm_lab.node_client(swarm_lab.node_number(task["NodeID"]))
        try:
            container = node.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
            assert container.exec_run(["cat", "/run/secrets/GITHUB_TOKEN"]).output.decode() == first.token
            inspected = json.dumps(node.api.inspect_container(container.id)) + json.dumps(
                api.inspect_service(service_id))
            assert first.token not in inspected and app.private_key.splitlines()[1] not in inspected
            container.exec_run(["touch", "/tmp/done"])
        finally:
            node.close()
        wait_until(lambda: any(t["Status"]["State"] == "complete" for t in tasks(api, swarm_fleet_id)))
        # The next cycle removes the finished service to fill its slot, and the minted token's secret with it.
        again = run_cycle(env)
        assert [e["slot"] for e in again.events("agent.spawned")] == [1]
        second = [t for t in github.minted(app) if t.token != first.token]
        assert len(second) == 1
        names = [s["Spec"]["Name"] for s in api.secrets(filters=owned)]
        assert secret["Spec"]["Name"] not in names and len(names) == 1
        assert app.private_key.splitlines()[1] not in run.stdout + run.stderr + again.stdout + again.stderr


def test_a_steady_cycle_on_a_swarm_is_one_tasks_call(fleet, api, swarm_lab, swarm_fleet_id) -> None:  # type: ignore[no-untyped-def]
    _, _, env = fleet
    assert run_cycle(env).returncode == 0
    converge(api, swarm_fleet_id, {"builder": 4, "reviewer": 2})
    version = api.version()["ApiVersion"]
    with counting_proxy(swarm_lab.manager_url.removeprefix("unix://")) as proxy:
        # As deployed, no DOCKER_API_VERSION: the first cycle at this address asks, and remembers.
        env = {**env, "DOCKER_HOST": proxy.docker_host}
        assert run_cycle(env).returncode == 0
        assert [r.split("?")[0] for r in proxy.requests] == ["GET /version", f"GET /v{version}/tasks"]
        proxy.reset()
        steady = run_cycle(env)
    assert steady.returncode == 0 and steady.events("agent.spawned") == []
    (request,) = proxy.requests
    path, _, query = request.partition("?")
    assert path == f"GET /v{version}/tasks"
    filters = json.loads(urllib.parse.parse_qs(query.split(" ")[0])["filters"][0])
    assert filters == {"label": [f"agent-fleet.fleet={swarm_fleet_id}", "agent-fleet.component=agent"]}


def test_placement_constraints_place_every_agent(tmp_path, lab_image, swarm_lab, api, swarm_fleet_id) -> None:  # type: ignore[no-untyped-def]
    roster = write_roster(tmp_path / "roster.json", [role_spec("pinned", 3, lab_image)])
    env = swarm_env(swarm_lab, swarm_fleet_id, roster,
                    AGENT_PLACEMENT="node.labels.lab.node==n2, node.role==worker")
    assert run_cycle(env).returncode == 0
    converge(api, swarm_fleet_id, {"pinned": 3})
    assert {t["NodeID"] for t in tasks(api, swarm_fleet_id)} == {swarm_lab.node_ids[2]}
    (service_id, *_) = services(api, swarm_fleet_id).values()
    placement = api.inspect_service(service_id)["Spec"]["TaskTemplate"]["Placement"]
    assert placement["Constraints"] == ["node.labels.lab.node==n2", "node.role==worker"]


def test_registry_credentials_in_docker_config_go_with_every_agent_service(fleet, tmp_path, swarm_lab,
                                                                          swarm_fleet_id) -> None:  # type: ignore[no-untyped-def]
    # What the program gives a coordinator on a swarm with a private registry: DOCKER_CONFIG/config.json. The
    # SDK sends it as X-Registry-Auth with each service create, so the nodes pull with it (the lab's registry
    # asks for none, and ignores it).
    import base64
    import json

    _, _, env = fleet
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    auth = base64.b64encode(b"fleet-bot:registry-password").decode()
    (config_dir / "config.json").write_text(json.dumps({"auths": {swarm_lab.registry: {"auth": auth}}}))
    with counting_proxy(swarm_lab.manager_url.removeprefix("unix://")) as proxy:
        run = run_cycle({**env, "DOCKER_HOST": proxy.docker_host, "DOCKER_CONFIG": str(config_dir)})
        sent = bytes(proxy.sent)
    assert run.returncode == 0, run.stderr
    creates = sent.split(b"POST /v")[1:]
    creates = [c for c in creates if c.split(b" ", 1)[0].endswith(b"/services/create")]
    assert len(creates) == 6 and all(b"X-Registry-Auth:" in c.split(b"\r\n\r\n", 1)[0] for c in creates)
    assert b"registry-password" not in run.stdout.encode() + run.stderr.encode()
