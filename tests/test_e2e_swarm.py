"""End to end on the lab swarm: the service `__main__.py` declares with `runtime: swarm` runs the fleet over three
nodes (scripts/swarm-lab), and an update with a changed roster converges without stopping an agent.

What the program declares (`coordinator_spec(...)`, the specification `deploy.components.CoordinatorService` hands
to pulumi-docker) is handed to the Docker SDK instead: the roster as a swarm config, the token and the agents'
secrets as Docker secrets, then `services.create` on the manager, and later `Service.update` with a new config, as
`pulumi up` replaces the config and updates the service. The coordinator image is built on the host, pushed to the
lab's registry and deleted from the manager, so the manager pulls it by the digest the program pins.

Where the test's servers are: the local GitHub and the production stand-in listen on 127.0.0.1 *inside node 1's
network namespace* (their sockets are opened by a thread that joined it), and the coordinator service joins the
`host` network, which on the lab is node 1's namespace, not the host's. So every request the coordinator makes
stays inside a namespace the lab made; the test process itself only reads the servers' state in memory. Two
things differ from a real deployment for that reason, and only those: that network, and the Docker socket bound
from node 1's engine (`/tmp/.../n1/docker.sock`) rather than /var/run/docker.sock. With the host's network the
metrics port is the node's own (nothing to publish), so the test scrapes it from node 1's namespace.
"""

from __future__ import annotations

import contextlib
import io
import json
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any, TypeVar

import docker
import pytest

from coordinator.fleet import Mode, Role
from deploy.coordinator_spec import CoordinatorSpec, Source, coordinator_spec
from deploy.stack_config import StackConfig, resolve_roster
from tests import e2e_harness as e2e
from tests.docker_sdk_spec import SwarmObject, service_kwargs
from tests.e2e_harness import role
from tests.fakes.github import FakeGitHub
from tests.fakes.production import ProductionServer
from tests.fleet_harness import ROOT
from tests.swarm_lab import SwarmLab, in_netns

pytestmark = [pytest.mark.swarm, pytest.mark.docker]

TOKEN = "fake-token-swarmE2E0123456789abcdefXYZ"
AGENT_SECRETS = {"AGENT_KEY": "agent-key-swarmE2E9876543210zyx"}
SECRETS = (TOKEN, *AGENT_SECRETS.values())
TIMEOUT = 120.0
MANAGER = 1
T = TypeVar("T")


# ------------------------------------------------------------------------------------------------ namespaces

def node_netns(lab: SwarmLab, n: int) -> str:
    """Node n's network namespace: scripts/swarm-lab names each node's namespace as the node's hostname."""
    return lab.hostnames[n]


@contextlib.contextmanager
def servers_on_node(lab: SwarmLab, n: int) -> Iterator[tuple[FakeGitHub, ProductionServer]]:
    """The local GitHub and production, listening on 127.0.0.1 of node n's network namespace."""
    netns = node_netns(lab, n)
    github = FakeGitHub(name="shop", required_checks=("ci",), token=TOKEN)
    in_netns(netns, github.start)
    try:
        prod = in_netns(netns, lambda: ProductionServer([200]).start())
        try:
            yield github, prod
        finally:
            prod.stop()
    finally:
        github.stop()


def scrape_in(netns: str, port: int) -> str:
    def get() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                return str(answer.read().decode())
        except OSError:
            return ""

    return in_netns(netns, get)


# ------------------------------------------------------------------------------------------------ images


def digest_on(client: docker.DockerClient, reference: str) -> str:
    """The `registry/name@sha256:...` a pushed image is pinned by (pulumi-docker's repoDigest)."""
    repository = reference.rsplit(":", 1)[0]
    digests = client.images.get(reference).attrs["RepoDigests"]
    return str(next(d for d in digests if d.startswith(repository + "@")))


@pytest.fixture(scope="module")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def coordinator_image(docker_client: docker.DockerClient, base_image: str, swarm_lab: SwarmLab,
                      run_id: str) -> Iterator[str]:
    """Built as the program builds it, pushed to the lab registry, then deleted from the manager: the pinned
    digest is what the manager must pull. A label of this run makes the image new to every node."""
    tag = f"agent-fleet/coordinator:e2e-swarm-{run_id}"
    try:
        docker_client.images.build(
            path=str(ROOT), dockerfile="coordinator/Dockerfile", buildargs={"BASE_IMAGE": base_image},
            tag=tag, labels={"agent-fleet.e2e-run": run_id}, rm=True, forcerm=True,
        )
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
        pytest.fail(f"the coordinator image does not build: {exc}\n{log[-4000:]}", pytrace=False)
    pushed = swarm_lab.push(tag, f"agent-fleet-coordinator:e2e-{run_id}")
    manager = swarm_lab.node_client(MANAGER)
    try:
        pinned = digest_on(manager, pushed)
        image_id = manager.images.get(pushed).id
        for name in (pushed, tag):
            manager.images.remove(name)
        with pytest.raises(docker.errors.ImageNotFound):
            manager.images.get(image_id)
    finally:
        manager.close()
    yield pinned
    with contextlib.suppress(docker.errors.DockerException):
        docker_client.images.remove(tag)


@pytest.fixture(scope="module")
def agent_image(docker_client: docker.DockerClient, base_image: str, swarm_lab: SwarmLab, run_id: str) -> str:
    """A stand-in agent (the base image, sleeping), pushed to the lab registry; every node pulls it by digest."""
    tag = "agent-fleet/agent:e2e-swarm"
    dockerfile = f'FROM {base_image}\nLABEL agent-fleet.e2e=swarm\nCMD ["sleep", "infinity"]\n'.encode()
    docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True, forcerm=True)
    pushed = swarm_lab.push(tag, "agent-fleet-agent:e2e-swarm")
    manager = swarm_lab.node_client(MANAGER)
    try:
        return digest_on(manager, pushed)
    finally:
        manager.close()


# ------------------------------------------------------------------------------------------------ deploying


contents = partial(e2e.contents, token=TOKEN, agent_secrets=AGENT_SECRETS)
wait_for = partial(e2e.wait_for, timeout=TIMEOUT)


def stack_config(lab: SwarmLab, roles: Sequence[Role], **settings: Any) -> StackConfig:
    """The stack's settings as Pulumi hands them over: `runtime: swarm` and the lab's registry."""
    return e2e.stack_config(roles, agent_secrets=AGENT_SECRETS, extra={"runtime": "swarm", "registry": lab.registry},
                            **settings)


def lab_spec(lab: SwarmLab, fleet_id: str, config: StackConfig) -> CoordinatorSpec:
    """The program's specification, on node 1's network and with node 1's engine socket (see the docstring)."""
    socket_path = lab.node_urls[MANAGER].removeprefix("unix://")
    return coordinator_spec(fleet_id=fleet_id, config=config, network="host", docker_socket=socket_path)


def swarm_objects(client: docker.DockerClient, spec: CoordinatorSpec, files: dict[Source, str],
                  sources: Sequence[Source]) -> dict[Source, SwarmObject]:
    """What pulumi-docker's Secret and ServiceConfig make of the files: objects named by auto-naming
    (`<name>-<random suffix>`), labelled like the coordinator."""
    made: dict[Source, SwarmObject] = {}
    for spec_file in spec.files:
        if spec_file.source not in sources:
            continue
        name = f"{spec.name}-{spec_file.source}-{uuid.uuid4().hex[:7]}"
        data = files[spec_file.source].encode()
        created = (client.secrets if spec_file.secret else client.configs).create(
            name=name, data=data, labels=dict(spec.labels))
        made[spec_file.source] = SwarmObject(created.id, name)
    return made


# ------------------------------------------------------------------------------------------------ observing


def agent_tasks(api: docker.APIClient, fleet_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api.tasks(filters={"label": [f"agent-fleet.fleet={fleet_id}",
                                                               "agent-fleet.component=agent"]})
    return found


def running_by_role(api: docker.APIClient, fleet_id: str) -> Counter[str]:
    return Counter(
        t["Spec"]["ContainerSpec"]["Labels"]["agent-fleet.role"] for t in agent_tasks(api, fleet_id)
        if t["Status"]["State"] == "running" and t["DesiredState"] == "running"
    )


def running_services(api: docker.APIClient, fleet_id: str) -> set[str]:
    return {t["ServiceID"] for t in agent_tasks(api, fleet_id)
            if t["Status"]["State"] == "running" and t["DesiredState"] == "running"}


class Coordinator:
    """The coordinator service and, through node 1's own engine, the container of its running task."""

    def __init__(self, lab: SwarmLab, api: docker.APIClient, service_id: str) -> None:
        self.lab, self.api, self.service_id = lab, api, service_id
        self._nodes: dict[int, docker.DockerClient] = {}

    def node(self, n: int) -> docker.DockerClient:
        """Node n's own engine (its containers and images), one client each."""
        if n not in self._nodes:
            self._nodes[n] = self.lab.node_client(n)
        return self._nodes[n]

    def close(self) -> None:
        for client in self._nodes.values():
            client.close()

    def running_task(self) -> dict[str, Any] | None:
        try:
            tasks = self.api.tasks(filters={"service": self.service_id, "desired-state": "running"})
        except docker.errors.NotFound:  # the service is gone
            return None
        running = [t for t in tasks if t["Status"]["State"] == "running"]
        return running[0] if running else None

    def container(self, task: dict[str, Any]) -> Any:
        node = self.node(self.lab.node_number(task["NodeID"]))
        return node.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])

    def log(self, container: Any) -> str:
        return str(container.logs(stdout=True, stderr=True).decode("utf-8", errors="replace"))

    def service_log(self) -> str:
        chunks = self.api.service_logs(self.service_id, stdout=True, stderr=True, follow=False)
        return b"".join(chunks).decode("utf-8", errors="replace")

    @staticmethod
    def reports(log: str) -> list[dict[str, Any]]:
        found = []
        for line in log.splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                if isinstance(data := json.loads(line), dict) and data.get("event") == "cycle.report":
                    found.append(data)
        return found

    def explain(self) -> str:
        task = self.running_task()
        if task is None:
            tasks = self.api.tasks(filters={"service": self.service_id})
            return f"no running task: {[t['Status'] for t in tasks]}"
        container = self.container(task)
        container.reload()
        health = container.attrs["State"].get("Health") or {}
        return f"health {health.get('Status')}\n" + "\n".join(self.log(container).splitlines()[-30:])


@contextlib.contextmanager
def explained(coordinator: Coordinator) -> Iterator[None]:
    try:
        yield
    except AssertionError as exc:
        try:
            tail = coordinator.explain()
        except docker.errors.DockerException as error:
            tail = f"(unavailable: {error})"
        raise AssertionError(f"{exc}\n--- coordinator service: {tail}") from None


def assert_no_secret_in(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret appears in {where}"


# ------------------------------------------------------------------------------------------------ the test


def test_declared_service_runs_the_fleet_over_the_swarm_and_an_update_converges_without_stopping_agents(
    swarm_lab: SwarmLab, swarm_fleet_id: str, coordinator_image: str, agent_image: str,
) -> None:
    lab, fleet_id = swarm_lab, swarm_fleet_id
    client, api = lab.client(), lab.api()
    metrics_port = 20000 + int(uuid.uuid4().hex[:4], 16) % 20000
    with servers_on_node(lab, MANAGER) as (github, prod):
        eligible = github.add_pull("Add login page")
        github.approve(eligible.number)
        github.add_check_run(eligible.number, "ci")
        pending = github.add_pull("Rework billing")
        github.approve(pending.number)
        github.add_check_run(pending.number, "ci", status="in_progress", conclusion=None)

        roles = [role("builder", 2), role("reviewer", 1, Mode.REVIEWER)]
        config = stack_config(lab, roles, github=github, health_url=prod.url, agent_image=agent_image,
                              metrics_port=metrics_port)
        spec = lab_spec(lab, fleet_id, config)
        files = contents(resolve_roster(roles, config))
        objects = swarm_objects(client, spec, files, list(Source))
        kwargs = service_kwargs(spec, coordinator_image, objects)
        assert_no_secret_in(json.dumps(kwargs), "the service's specification")
        service = client.services.create(**kwargs)
        coordinator = Coordinator(lab, api, service.id)
        try:
            with explained(coordinator):
                # The manager pulls the pinned image from the registry and runs the one task.
                task = wait_for("the coordinator's task runs", coordinator.running_task)
                assert task["NodeID"] == lab.node_ids[MANAGER], "the coordinator must run on the manager"
                assert coordinator.node(MANAGER).images.get(coordinator_image).id, "the manager pulled nothing"
                first = coordinator.container(task)

                report = wait_for("a cycle.report", lambda: next(iter(coordinator.reports(coordinator.log(first))),
                                                                  None))
                assert report["fleet"] == fleet_id and report["errors"] == [], report
                assert {k: (r["desired"], r["spawned"]) for k, r in report["roles"].items()} == {
                    "builder": (2, 2), "reviewer": (1, 1)}
                assert report["health"]["status"] == "up" and prod.requests
                assert report["merge"]["merged"] == [eligible.number]
                assert github.pull(eligible.number).merged and not github.pull(pending.number).merged

                # The roster's agents run as services, spread over the nodes, each with its secret as a file.
                wait_for("three agents running", lambda: running_by_role(api, fleet_id) == Counter(
                    {"builder": 2, "reviewer": 1}))
                nodes = {t["NodeID"] for t in agent_tasks(api, fleet_id) if t["Status"]["State"] == "running"}
                assert len(nodes) >= 2, f"the agents all run on one node: {nodes}"
                agent_task = next(t for t in agent_tasks(api, fleet_id) if t["Status"]["State"] == "running")
                agent = coordinator.container(agent_task)
                code, output = agent.exec_run(["cat", "/run/secrets/AGENT_KEY"])
                assert code == 0 and output.decode() == AGENT_SECRETS["AGENT_KEY"], output
                for agent_service in api.services(filters={"label": f"agent-fleet.fleet={fleet_id}"}):
                    assert_no_secret_in(json.dumps(api.inspect_service(agent_service["ID"])),
                                        f"docker service inspect {agent_service['Spec']['Name']}")

                # The health check turns healthy on the heartbeat; metrics on the stack's port.
                wait_for("the coordinator turns healthy", lambda: (first.reload() or True) and (
                    (first.attrs["State"].get("Health") or {}).get("Status") == "healthy"))
                metrics = wait_for("the metrics endpoint answers",
                                   lambda: scrape_in(node_netns(lab, MANAGER), metrics_port))
                assert "agent_fleet_" in metrics
                assert_no_secret_in(metrics, "the metrics")

                # `coordinator status` inside the service's container, on a terminal (`docker exec -it`): the cycles,
                # from the service's log.
                code, output = first.exec_run(["python", "-m", "coordinator", "status", "--last", "5"], tty=True)
                text = output.decode()
                assert code == 0, text
                assert f"fleet {fleet_id}: " in text and "time (UTC)" in text, text
                assert f"service {spec.name}" in text, text

                # The secrets reach the service only as Docker secrets: in no variable, no inspect, no log.
                inspected = api.inspect_service(service.id)
                container_spec = inspected["Spec"]["TaskTemplate"]["ContainerSpec"]
                assert {s["File"]["Name"] for s in container_spec["Secrets"]} == {
                    "/run/secrets/agent-fleet/github-token", "/run/secrets/agent-fleet/agent-secrets.json"}
                assert_no_secret_in(json.dumps(inspected), "docker service inspect")
                first.reload()
                assert_no_secret_in(json.dumps(first.attrs["Config"]["Env"]), "the container's environment")
                assert_no_secret_in(json.dumps(first.attrs), "docker inspect of the task's container")
                code, output = first.exec_run(["cat", "/run/secrets/agent-fleet/github-token"])
                assert code == 0 and output.decode() == TOKEN
                assert_no_secret_in(coordinator.service_log(), "docker service logs")

            # `pulumi up` with a changed roster: a new config (the old one is replaced), the service updated to
            # it, the old config deleted after.
            agents_before = running_services(api, fleet_id)
            roles = [*roles, role("tester", 1)]
            config = stack_config(lab, roles, github=github, health_url=prod.url, agent_image=agent_image,
                                  metrics_port=metrics_port, counts={"builder": 1, "reviewer": 2})
            spec = lab_spec(lab, fleet_id, config)
            files = contents(resolve_roster(roles, config))
            new_objects = {**objects, **swarm_objects(client, spec, files, [Source.ROSTER])}
            service.reload()
            service.update(**service_kwargs(spec, coordinator_image, new_objects))
            client.configs.get(objects[Source.ROSTER].id).remove()

            with explained(coordinator):
                second = wait_for("the updated task runs", lambda: (
                    (t := coordinator.running_task()) is not None and t["ID"] != task["ID"] and t))
                second_container = coordinator.container(second)
                report = wait_for("a cycle.report from the updated task", lambda: next(
                    iter(coordinator.reports(coordinator.log(second_container))), None))
                assert report["errors"] == [], report
                tallies = {k: (r["desired"], r["running"], r["spawned"]) for k, r in report["roles"].items()}
                # The running agents first, then the deficit only: builder is over its count and keeps both.
                assert tallies == {"builder": (1, 2, 0), "reviewer": (2, 1, 1), "tester": (1, 0, 1)}, tallies
                wait_for("the new counts run", lambda: running_by_role(api, fleet_id) == Counter(
                    {"builder": 2, "reviewer": 2, "tester": 1}))
                assert agents_before <= running_services(api, fleet_id), "the update stopped an agent"
                # CI finishes now, with the old task gone: the updated coordinator's next cycle merges it.
                assert not github.pull(pending.number).merged
                github.add_check_run(pending.number, "ci")
                merged = wait_for("the updated coordinator merges the pull request", lambda: [
                    r for r in coordinator.reports(coordinator.log(second_container)) if r["merge"]["merged"]])
                assert merged[0]["merge"]["merged"] == [pending.number] and merged[0]["errors"] == []
                assert_no_secret_in(coordinator.service_log(), "docker service logs")
                assert_no_secret_in(json.dumps(api.inspect_service(service.id)), "docker service inspect")
            assert not github.server_errors, github.server_errors[0]
        finally:
            # The coordinator first, so that it spawns nothing while the fixture removes the fleet's agents.
            with contextlib.suppress(docker.errors.DockerException):
                api.remove_service(service.id)
            wait_for("the coordinator's task is gone", lambda: not coordinator.running_task(), timeout=60)
            coordinator.close()
            client.close()
            api.close()
