"""End to end on one engine: the container `__main__.py` declares runs the cycles the runtime implements.

The coordinator image is built from `coordinator/Dockerfile` on the locally built base image; the container is
created from `coordinator_spec(...)`, the same specification the Pulumi program hands to pulumi-docker, through
the Docker SDK (host networking, so it reaches the local GitHub and production servers on 127.0.0.1). Its files
(the roster, the token, the agents' secrets) are uploaded before it starts, as pulumi-docker's `uploads` are.
Then the container is replaced with a changed roster, as `pulumi up` would, and the next cycle converges without
stopping any agent. tests/test_e2e_swarm.py does the same with the service on the lab swarm.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import tarfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import PurePosixPath
from typing import Any

import docker
import pytest

from coordinator.fleet import Mode
from deploy.coordinator_spec import CoordinatorSpec, Source, coordinator_spec
from deploy.stack_config import resolve_roster
from tests import e2e_harness as e2e
from tests.docker_sdk_spec import create_kwargs
from tests.e2e_harness import role
from tests.fakes.github import FakeGitHub
from tests.fakes.production import production
from tests.fleet_harness import ROOT, running_by_role, running_ids

pytestmark = pytest.mark.docker

COORDINATOR_IMAGE = "agent-fleet/coordinator:e2e"
AGENT_IMAGE = "agent-fleet/agent:e2e"
TOKEN = "fake-token-e2eSecret0123456789abcdefXYZ"
# One agent secret, as `agentSecrets` holds it: it must reach the agents as a file and nowhere else.
AGENT_SECRETS = {"AGENT_KEY": "agent-key-e2eSecret9876543210zyx"}
# (a cycle's time limit is one interval, of which the merge step leaves the health check its 10 s)
TIMEOUT = 90.0  # generous: a slow CI machine is slow, not broken


# ------------------------------------------------------------------------------------------------ images


@pytest.fixture(scope="module")
def coordinator_image(docker_client: docker.DockerClient, base_image: str) -> str:
    """The coordinator image, built as CI builds it: the repository root as context, the Dockerfile's ARG."""
    try:
        docker_client.images.build(
            path=str(ROOT), dockerfile="coordinator/Dockerfile", buildargs={"BASE_IMAGE": base_image},
            tag=COORDINATOR_IMAGE, rm=True, forcerm=True,
        )
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
        pytest.fail(f"the coordinator image does not build: {exc}\n{log[-4000:]}", pytrace=False)
    return COORDINATOR_IMAGE


@pytest.fixture(scope="module")
def agent_image(docker_client: docker.DockerClient, base_image: str) -> str:
    """A stand-in agent: the base image, sleeping until stopped."""
    dockerfile = f'FROM {base_image}\nCMD ["sleep", "infinity"]\n'.encode()
    docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=AGENT_IMAGE, rm=True, forcerm=True)
    return AGENT_IMAGE


# ------------------------------------------------------------------------------------------------ helpers

stack_config = partial(e2e.stack_config, agent_secrets=AGENT_SECRETS)
contents = partial(e2e.contents, token=TOKEN, agent_secrets=AGENT_SECRETS)
wait_for = partial(e2e.wait_for, timeout=TIMEOUT)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tar(files: Sequence[tuple[str, bytes, int]]) -> bytes:
    """An archive of absolute paths (parent directories included) for `put_archive(path="/")`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directories: set[str] = set()
        for path, _, _ in files:
            for parent in reversed(PurePosixPath(path).parents):
                name = str(parent).lstrip("/")
                if name and name not in directories:
                    directories.add(name)
                    info = tarfile.TarInfo(name)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
                    tar.addfile(info)
        for path, content, mode in files:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(content), mode, int(time.time())
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def deploy(client: docker.DockerClient, spec: CoordinatorSpec, image: str, files: dict[Source, str]) -> Any:
    """What pulumi-docker does with the spec: create, upload each file's content, then start."""
    container = client.containers.create(**create_kwargs(spec, image))
    archive = _tar([(f.path, files[f.source].encode(), f.mode) for f in spec.files])
    assert container.put_archive("/", archive), "uploading the roster and the secrets failed"
    container.start()
    return container


def scrape(port: int, path: str = "/metrics") -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""


def log_lines(container: Any) -> list[str]:
    return container.logs(stdout=True, stderr=True).decode("utf-8", errors="replace").splitlines()


def events(container: Any) -> list[dict[str, Any]]:
    parsed = []
    for line in log_lines(container):
        with contextlib.suppress(json.JSONDecodeError):
            if isinstance(data := json.loads(line), dict):
                parsed.append(data)
    return parsed


def reports(container: Any) -> list[dict[str, Any]]:
    return [e for e in events(container) if e.get("event") == "cycle.report"]


def log_tail(container: Any, lines: int = 40) -> str:
    try:
        container.reload()
        state = container.attrs["State"]
        health = state.get("Health") or {}
        checks = [c.get("Output", "").strip() for c in (health.get("Log") or [])[-2:]]
        head = f"state {state.get('Status')}, health {health.get('Status')}, last checks {checks}"
        return head + "\n" + "\n".join(log_lines(container)[-lines:])
    except docker.errors.DockerException as exc:
        return f"(log unavailable: {exc})"


@contextlib.contextmanager
def explained(container: Any) -> Iterator[None]:
    """An assertion failure carries the tail of the coordinator's log, the first thing one reads."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- coordinator {container.name}: {log_tail(container)}") from None


def health_status(container: Any) -> str | None:
    container.reload()
    return (container.attrs["State"].get("Health") or {}).get("Status")


def outcomes(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {pull["number"]: pull for pull in report["merge"]["pulls"]}


# ------------------------------------------------------------------------------------------------ the test


def test_declared_container_runs_cycles_and_a_replacement_converges_without_stopping_agents(
    docker_client: docker.DockerClient, coordinator_image: str, agent_image: str, fleet_id: str,
) -> None:
    client = docker_client
    with FakeGitHub(name="shop", required_checks=("ci",), token=TOKEN) as github, production(200) as prod:
        eligible = github.add_pull("Add login page")
        github.approve(eligible.number)
        github.add_check_run(eligible.number, "ci")
        pending = github.add_pull("Rework billing")
        github.approve(pending.number)
        github.add_check_run(pending.number, "ci", status="in_progress", conclusion=None)
        draft = github.add_pull("Sketch the search page", draft=True)
        github.approve(draft.number)
        github.add_check_run(draft.number, "ci")

        roles = [role("builder", 2), role("reviewer", 1, Mode.REVIEWER)]
        metrics_port = free_port()
        config = stack_config(roles, github=github, health_url=prod.url, agent_image=agent_image,
                              metrics_port=metrics_port)
        spec = coordinator_spec(fleet_id=fleet_id, config=config, network="host")
        declared = json.dumps(create_kwargs(spec, coordinator_image))
        assert TOKEN not in declared and AGENT_SECRETS["AGENT_KEY"] not in declared
        first = deploy(client, spec, coordinator_image, contents(resolve_roster(roles, config)))

        with explained(first):
            # The first cycle runs at once, not at the first tick, and ends with its report.
            report = wait_for("a cycle.report in `docker logs`", lambda: next(iter(reports(first)), None))
            started = [e for e in events(first) if e["event"] == "schedule.cycle_started"]
            assert started[0]["reason"] == "start" and started[0]["tick"] is None, started[0]
            assert report["fleet"] == fleet_id
            assert {name: step["status"] for name, step in report["steps"].items()} == {
                "inventory": "ok", "reconcile": "ok", "merge": "ok", "health": "ok", "report": "ok"}, report
            assert report["errors"] == []
            assert {k: (r["desired"], r["spawned"]) for k, r in report["roles"].items()} == {
                "builder": (2, 2), "reviewer": (1, 1)}
            assert report["health"]["status"] == "up" and report["health"]["code"] == 200
            assert prod.requests, "production was never checked"

            # Agents per the roster, found by their labels.
            assert running_by_role(client, fleet_id) == {"builder": 2, "reviewer": 1}
            agent = client.containers.list(filters={"label": [f"agent-fleet.fleet={fleet_id}",
                                                              "agent-fleet.role=reviewer"]})[0]
            assert agent_image in agent.image.tags  # (the same content may carry other tests' tags too)
            # The agent secret the program handed the coordinator reaches the agent as its file, and only so.
            code, output = agent.exec_run(["cat", "/run/secrets/AGENT_KEY"])
            assert code == 0 and output.decode() == AGENT_SECRETS["AGENT_KEY"], output
            assert AGENT_SECRETS["AGENT_KEY"] not in json.dumps(client.api.inspect_container(agent.id))

            # Only the eligible pull request is merged, squashed under GitHub's default title.
            assert report["merge"]["merged"] == [eligible.number]
            assert github.pull(eligible.number).merged
            assert github.pull(eligible.number).merge_method == "squash"
            assert github.pull(eligible.number).merged_title == f"Add login page (#{eligible.number})"
            pulls = outcomes(report)
            assert pulls[pending.number]["outcome"] == "skipped" and "pending" in pulls[pending.number]["reason"]
            assert pulls[draft.number]["outcome"] == "skipped" and "draft" in pulls[draft.number]["reason"]
            assert not github.pull(pending.number).merged and not github.pull(draft.number).merged

            # Docker's health check passes on the scheduler's heartbeat.
            assert wait_for("the container turns healthy", lambda: health_status(first) == "healthy")
            # The metrics on the port the stack chose (COORDINATOR_METRICS_PORT; host networking here, so the
            # container's port is the host's).
            metrics = wait_for("the metrics endpoint answers", lambda: scrape(metrics_port))
            assert "agent_fleet_" in metrics and TOKEN not in metrics

            # The status page on the same port, drawn from this coordinator's reports; at its start the scheduler
            # read the earlier ones back from its own log through the engine, as `status` does.
            page = wait_for("the status page answers", lambda: scrape(metrics_port, "/"))
            assert f"Fleet {fleet_id}: " in page and 'class="cycle"' in page and TOKEN not in page
            read_back = wait_for("the read-back's event", lambda: [
                e["event"] for e in events(first)
                if e["event"] in ("schedule.history_read", "schedule.history_unavailable")])
            assert read_back == ["schedule.history_read"], read_back

            # `coordinator status`, run where an operator would: inside the coordinator container, on a terminal
            # (`docker exec -it`); through a pipe it prints JSON.
            code, output = first.exec_run(["python", "-m", "coordinator", "status", "--last", "5"], tty=True)
            text = output.decode()
            assert code == 0, text
            assert f"coordinator container {spec.name}" in text and "time (UTC)" in text, text
            assert f"fleet {fleet_id}: " in text, text
            code, output = first.exec_run(["python", "-m", "coordinator", "status", "--last", "5", "--json"])
            assert code == 0, output.decode()
            status = json.loads(output)
            assert status["source"] == f"container {spec.name}"
            assert 1 <= len(status["reports"]) <= 5
            assert all(r["event"] == "cycle.report" and r["fleet"] == fleet_id for r in status["reports"])

            # A later cycle finds the fleet converged: nothing spawned, the pending pull request still open.
            later = wait_for("a second cycle.report", lambda: reports(first)[1:2])[0]
            assert later["spawned"] == 0 and later["errors"] == [], later
            assert {k: r["running"] for k, r in later["roles"].items()} == {"builder": 2, "reviewer": 1}
            assert not github.pull(pending.number).merged
            assert TOKEN not in "\n".join(log_lines(first))
            assert AGENT_SECRETS["AGENT_KEY"] not in "\n".join(log_lines(first))
            assert AGENT_SECRETS["AGENT_KEY"] not in json.dumps(client.api.inspect_container(first.id))

        # `pulumi up` with a changed roster: a new role and new counts replace the container (delete first).
        agents_before = running_ids(client, fleet_id)
        assert len(agents_before) == 3
        first.stop(timeout=20)
        first_log = "\n".join(log_lines(first))
        first.remove()
        assert TOKEN not in first_log
        github.add_check_run(pending.number, "ci")  # CI finished meanwhile: the new coordinator merges it

        roles = [*roles, role("tester", 1)]
        config = stack_config(roles, github=github, health_url=prod.url, agent_image=agent_image,
                              counts={"builder": 1, "reviewer": 2}, metrics_port=metrics_port)
        spec = coordinator_spec(fleet_id=fleet_id, config=config, network="host")
        second = deploy(client, spec, coordinator_image, contents(resolve_roster(roles, config)))

        with explained(second):
            report = wait_for("a cycle.report from the new container", lambda: next(iter(reports(second)), None))
            assert report["errors"] == [], report
            tallies = {k: (r["desired"], r["running"], r["spawned"]) for k, r in report["roles"].items()}
            # Inventory first (3 running), then the deficit only: builder is over its count and keeps both.
            assert tallies == {"builder": (1, 2, 0), "reviewer": (2, 1, 1), "tester": (1, 0, 1)}, tallies
            assert running_by_role(client, fleet_id) == {"builder": 2, "reviewer": 2, "tester": 1}
            assert agents_before <= running_ids(client, fleet_id), "an agent was stopped by the replacement"
            assert report["merge"]["merged"] == [pending.number]
            assert github.pull(pending.number).merged_title == f"Rework billing (#{pending.number})"
            assert not github.pull(draft.number).merged
            assert wait_for("the new container turns healthy", lambda: health_status(second) == "healthy")
            assert TOKEN not in "\n".join(log_lines(second))
        assert not github.server_errors, github.server_errors[0]
