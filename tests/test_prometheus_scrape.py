"""A real scrape: `python -m coordinator schedule` running real cycles on the real engine, read by a real Prometheus.

The coordinator is a process of its own, started as the container starts it, with a roster of agents that
run `sleep infinity` on the base image, a merge step against the local GitHub (with a token) and the local
production (whose URL carries a secret). A `prometheus` server from Debian's package scrapes its
/metrics every second, and the test asks Prometheus' own HTTP API what it has stored. Another runs
monitoring/prometheus.yml's job as shipped, discovering by label on the real engine. The other tests here
check the command's wiring: metrics only when COORDINATOR_METRICS_PORT asks for them, served until the
scheduler stops, and cycles going on when the port cannot be bound.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import docker
import pytest
import yaml
from docker.types import ContainerSpec, EndpointSpec, Placement, RestartPolicy, TaskTemplate
from prometheus_client.parser import text_string_to_metric_families

from coordinator import labels
from coordinator.across_cycles import JUDGMENTS
from coordinator.fleet import Mode
from coordinator.report import parse_reports
from coordinator.settings import DEFAULT_METRICS_PORT
from tests.conftest import ROOT, prometheus_tool
from tests.fakes.github import FakeGitHub
from tests.fakes.production import production
from tests.fleet_harness import cycle_env, role_spec, running_by_role, write_roster
from tests.swarm_lab import SwarmLab, in_netns

EVERY_5_S = "* * * * * */5"
ONCE_A_YEAR = "0 0 1 1 *"
TOKEN = "fake-scrape-token-0123456789abcdefSECRET"
URL_SECRET = "url-secret-9f8e7d6c5b4a"
TITLE = "Title-sentinel: ship the billing page"
JOB = "agent-fleet-coordinator"  # the job name of monitoring/prometheus.yml, which the alerts watch

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, explain: Callable[[], str] = str) -> T:
    """Poll `probe` until it returns something; the bound only turns a hang into a failure that says why."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g} s waiting for {what}\n{explain()}")
        time.sleep(0.25)


def http_get(url: str, timeout: float = 5) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
            return body
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


@dataclass
class Coordinator:
    """`python -m coordinator schedule` as a process; its stdout (the container log) and stderr go to files."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    port: int | None

    def log(self) -> str:
        return self.stdout.read_bytes().decode(errors="replace")

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log().splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                event = json.loads(line)
                if event.get("event") == name:
                    found.append(event)
        return found

    def explain(self) -> str:
        return f"--- coordinator stdout (tail):\n{self.log()[-6000:]}\n--- stderr:\n{self.stderr.read_text()[-3000:]}"

    def scrape(self) -> str | None:
        body = http_get(f"http://127.0.0.1:{self.port}/metrics")
        return body.decode() if body is not None else None

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"the coordinator did not stop on SIGTERM\n{self.explain()}")


@pytest.fixture
def start_coordinator(tmp_path: Path) -> Iterator[Callable[..., Coordinator]]:
    started: list[Coordinator] = []

    def start(env: dict[str, str], port: int | None) -> Coordinator:
        name = f"coordinator-{len(started)}"
        stdout, stderr = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen([sys.executable, "-m", "coordinator", "schedule"], env=env, cwd=ROOT,
                                       stdout=out, stderr=err)
        coordinator = Coordinator(process, stdout, stderr, port)
        started.append(coordinator)
        return coordinator

    yield start
    for coordinator in started:  # SIGTERM first: the scheduler then ends its cycle's whole process group
        if coordinator.process.poll() is None:
            stop_process(coordinator.process)


@pytest.fixture
def prometheus_binary() -> str:
    return prometheus_tool("prometheus")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not ended within 30 s."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Prometheus:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def query(self, expr: str) -> list[dict[str, Any]] | None:
        """The instant vector Prometheus' HTTP API answers for `expr`, or None when it does not answer."""
        body = http_get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if body is None:
            return None
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The one value of `expr`, or None while it has none."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def series(self, match: str) -> list[dict[str, str]]:
        body = http_get(f"{self.url}/api/v1/series?" + urllib.parse.urlencode({"match[]": match}))
        assert body is not None
        series: list[dict[str, str]] = json.loads(body)["data"]
        return series


@pytest.fixture
def start_prometheus(prometheus_binary: str, tmp_path: Path) -> Iterator[Callable[[int, str], Prometheus]]:
    started: list[Prometheus] = []

    def start(target_port: int, fleet: str) -> Prometheus:
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{
                "job_name": JOB,
                "static_configs": [{"targets": [f"127.0.0.1:{target_port}"], "labels": {"fleet": fleet}}],
            }],
        }))
        port = free_port()
        log = tmp_path / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [prometheus_binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--query.lookback-delta=30s"],
                stdout=out, stderr=subprocess.STDOUT,
            )
        server = Prometheus(process, f"http://127.0.0.1:{port}", log)
        started.append(server)

        def ready() -> bool | None:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            return True if http_get(f"{server.url}/-/ready") is not None else None

        wait_for("prometheus to be ready", ready, 60, lambda: log.read_text()[-3000:])
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            stop_process(server.process)


# --- the whole chain -------------------------------------------------------------------------------


@pytest.mark.docker
def test_prometheus_scrapes_a_coordinator_running_real_cycles_and_answers_with_the_running_agents(
    docker_client: docker.DockerClient, base_image: str, fleet_id: str, tmp_path: Path,
    start_coordinator: Callable[..., Coordinator], start_prometheus: Callable[[int, str], Prometheus],
) -> None:
    specs = [
        role_spec("builder", 2, base_image),
        role_spec("reviewer", 1, base_image, mode=Mode.REVIEWER),
    ]
    desired = {spec.key: spec.role.count for spec in specs}
    metrics_port = free_port()
    with FakeGitHub(token=TOKEN) as github, production(200) as prod:
        pull = github.add_pull(TITLE)
        github.approve(pull.number)
        github.add_check_run(pull.number, "ci")
        health_url = f"{prod.url}?key={URL_SECRET}"
        env = cycle_env(
            fleet_id, write_roster(tmp_path / "roster.json", specs),
            COORDINATOR_SCHEDULE=EVERY_5_S,
            # Above the 5 s interval: a merge needs a time budget that one interval, cut for the health check, lacks.
            COORDINATOR_CYCLE_TIMEOUT_S="60",
            COORDINATOR_METRICS_PORT=str(metrics_port),
            COORDINATOR_HEARTBEAT_FILE=str(tmp_path / "state" / "heartbeat.json"),
            HEALTH_URL=health_url,
            GITHUB_REPOSITORY=github.repository,
            GITHUB_TOKEN=TOKEN,
            GITHUB_API_URL=github.api_url,
            GITHUB_GRAPHQL_URL=github.graphql_url,
        )
        coordinator = start_coordinator(env, metrics_port)
        prometheus = start_prometheus(metrics_port, fleet_id)

        def converged() -> tuple[float, float] | None:
            if coordinator.process.poll() is not None:
                pytest.fail(f"the coordinator exited with {coordinator.process.returncode}\n{coordinator.explain()}")
            running = prometheus.value("sum(agent_fleet_agents_running)")
            healthy = prometheus.value('agent_fleet_verdict{verdict="healthy"}')
            agents = sum(running_by_role(docker_client, fleet_id).values())
            if running is None or healthy is None or running != agents or agents != sum(desired.values()):
                return None
            return running, healthy

        def explain() -> str:
            return (f"Prometheus: sum(running)={prometheus.value('sum(agent_fleet_agents_running)')}, "
                    f"verdicts={prometheus.query('agent_fleet_verdict')}, up={prometheus.query('up')}; "
                    f"Docker: {dict(running_by_role(docker_client, fleet_id))}\n{coordinator.explain()}")

        running, healthy = wait_for("Prometheus to answer with the running agents and a healthy verdict",
                                    converged, 180, explain)

        # What Prometheus stored is what the engine runs, role by role.
        assert running == sum(desired.values()) == 3
        assert healthy == 1
        by_role = {r["metric"]["role"]: float(r["value"][1]) for r in prometheus.query("agent_fleet_agents_running")
                   or []}
        assert by_role == desired == dict(running_by_role(docker_client, fleet_id))
        assert prometheus.value(f'up{{job="{JOB}"}}') == 1
        assert prometheus.value("agent_fleet_health_up") == 1
        assert prometheus.value('agent_fleet_verdict{verdict="broken"}') == 0
        # The merge step ran with the token and merged the approved pull request.
        assert github.pull(pull.number).merged
        assert prometheus.value("agent_fleet_merged_pulls_total") == 1
        assert (prometheus.value("agent_fleet_github_rate_limit_remaining") or 0) > 0
        assert (prometheus.value("agent_fleet_cycle_duration_seconds_count") or 0) >= 1
        assert prometheus.value('agent_fleet_cycle_errors_total{step="cycle"}') == 0
        # AgentFleetNoCycle's own expression, on the scraped series: the interval joins the last cycle's time.
        assert prometheus.value("agent_fleet_schedule_interval_seconds") == 5
        no_cycle = yaml.safe_load((ROOT / "monitoring" / "alerts.yml").read_text())["groups"][0]["rules"]
        (expr,) = [rule["expr"] for rule in no_cycle if rule.get("alert") == "AgentFleetNoCycle"]
        assert prometheus.query(expr) == []
        assert prometheus.value(expr.replace("> 2 *", "> -1 *")) is not None  # the same join, made to hold

        # No token, URL secret or pull-request title in what the coordinator serves, nor in what Prometheus keeps.
        scraped = coordinator.scrape()
        assert scraped is not None
        stored = json.dumps(prometheus.series('{__name__=~"agent_fleet_.+"}'))
        for secret in (TOKEN, URL_SECRET, TITLE, "Title-sentinel", health_url, prod.url):
            assert secret not in scraped, f"{secret!r} is in the scrape"
            assert secret not in stored, f"{secret!r} is in Prometheus' series"
        # Every label value is a roster key or a word of the metrics' own vocabulary (histogram bounds aside).
        label_values = {value for family in text_string_to_metric_families(scraped) for sample in family.samples
                        for name, value in sample.labels.items() if name != "le"}
        vocabulary = {"spawned", "failed", "deferred", "waiting", "healthy", "degraded", "broken",
                      "inventory", "reconcile", "merge", "health", "report", "cycle", "timeout", "other", *JUDGMENTS}
        assert label_values <= set(desired) | vocabulary, sorted(label_values - set(desired) - vocabulary)

        # The status page and /reports.json on the same port, from the cycles this scheduler ran, with no secret.
        base = f"http://127.0.0.1:{metrics_port}"
        with urllib.request.urlopen(f"{base}/reports.json", timeout=10) as response:
            served = json.loads(response.read())["reports"]
        with urllib.request.urlopen(f"{base}/", timeout=10) as response:
            page = response.read().decode()
        # One timeline mark per report (a cycle may have reported between the two reads).
        assert f"Fleet {fleet_id}: " in page and len(served) <= page.count('class="cycle"') <= len(served) + 1
        assert all(report["fleet"] == fleet_id for report in served)
        for secret in (TOKEN, URL_SECRET, TITLE, "Title-sentinel", health_url):
            assert secret not in page, f"{secret!r} is on the status page"
            assert secret not in json.dumps(served), f"{secret!r} is in /reports.json"

    # The cycles' output still reaches the scheduler's stdout (the container log) whole: `coordinator status`
    # reads the same reports it read before the scheduler teed them.
    returncode = coordinator.stop()
    assert returncode == 0, coordinator.explain()
    reports = parse_reports(coordinator.log().splitlines())
    assert reports and reports[0]["verdict"] == "healthy" and reports[0]["spawned"] == 3, coordinator.explain()
    # One report per cycle (a cycle the stop cut short writes its report too, as SIGTERM lets it).
    finished, started = coordinator.events("schedule.cycle_finished"), coordinator.events("schedule.cycle_started")
    assert len(finished) <= len(reports) <= len(started), coordinator.explain()
    assert TOKEN not in coordinator.log()
    # Stopped with the scheduler: nothing answers on the metrics port any more.
    assert coordinator.scrape() is None


# --- the shipped scrape config, discovering by label ----------------------------------------------

METRICS_SERVER = """
import http.server, sys
BODY = sys.argv[1].encode()
class Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(BODY)
http.server.HTTPServer(("", int(sys.argv[2])), Metrics).serve_forever()
"""


def shipped_config(name: str, discovery_key: str, fleet: str, into: Path, **discovery: str) -> Path:
    """monitoring/<name>'s one job as shipped, in a config of the test's own: 1 s intervals, this fleet's label
    added to the discovery's filter (as the config's comment tells an operator with several fleets to do), and
    `discovery` settings such as the engine's address."""
    (job,) = yaml.safe_load((ROOT / "monitoring" / name).read_text())["scrape_configs"]
    assert job["job_name"] == JOB
    (sd_config,) = job[discovery_key]
    (label_filter,) = [f for f in sd_config["filters"] if f["name"] == "label"]
    label_filter["values"].append(f"{labels.FLEET}={fleet}")
    sd_config.update(refresh_interval="1s", **discovery)
    config = into / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "monitoring" / "alerts.yml")],
        "scrape_configs": [job],
    }))
    return config


@pytest.mark.docker
def test_the_shipped_scrape_config_finds_the_coordinator_container_by_its_labels_and_no_agent(
    docker_client: docker.DockerClient, base_image: str, fleet_id: str, tmp_path: Path,
    prometheus_binary: str,
) -> None:
    """monitoring/prometheus.yml's job, as shipped (its Docker discovery, filters and relabelling), in a real
    Prometheus against the real engine: a container carrying the coordinator's labels on the default bridge is
    scraped on the metrics port at its network address; an agent of the same fleet, serving on the same port,
    is not. Only the test's own settings change: the scrape interval, and this fleet's label added to the
    filter as the config's comment tells an operator with several fleets on one host to do."""
    config = shipped_config("prometheus.yml", "docker_sd_configs", fleet_id, tmp_path)

    def serve(component: str, body: str) -> Any:
        own = dict(label.split("=", 1) for label in labels.selector(fleet_id, component))
        return docker_client.containers.run(
            base_image, ["python3", "-c", METRICS_SERVER, body, str(DEFAULT_METRICS_PORT)],
            name=f"{fleet_id}-{component}", labels=own, detach=True, init=True)

    coordinator = serve(labels.COORDINATOR, 'agent_fleet_agents_running{role="builder"} 2\n')
    agent = serve(labels.AGENT, "agent_should_never_be_scraped 1\n")
    coordinator.reload()
    address = coordinator.attrs["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    assert address, coordinator.attrs["NetworkSettings"]

    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [prometheus_binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT)
    try:
        prometheus = Prometheus(process, f"http://127.0.0.1:{port}", log)

        def scraped() -> float | None:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            return prometheus.value('agent_fleet_agents_running{role="builder"}')

        def explain() -> str:
            targets = http_get(f"{prometheus.url}/api/v1/targets")
            return f"targets: {targets!r}\n{log.read_text()[-3000:]}"

        assert wait_for("Prometheus to scrape the coordinator it discovered", scraped, 90, explain) == 2
        (up,) = prometheus.query(f'up{{job="{JOB}"}}') or []
        assert up["metric"]["instance"] == f"{address}:{DEFAULT_METRICS_PORT}"
        assert up["metric"]["fleet"] == fleet_id
        assert up["metric"]["container"] == coordinator.name
        assert up["value"][1] == "1"
        assert prometheus.query("agent_should_never_be_scraped") == []
        active = json.loads(http_get(f"{prometheus.url}/api/v1/targets?state=active") or b"{}")["data"]
        assert [t["labels"]["container"] for t in active["activeTargets"]] == [coordinator.name], active
        assert agent.name not in json.dumps(active)
    finally:
        stop_process(process)


@pytest.mark.swarm
@pytest.mark.docker
def test_the_shipped_swarm_scrape_config_finds_the_coordinator_task_on_its_node_and_no_agent(
    swarm_lab: SwarmLab, swarm_fleet_id: str, base_image: str, prometheus_binary: str, tmp_path: Path,
) -> None:
    """monitoring/prometheus-swarm.yml's job, as shipped, in a real Prometheus on the lab swarm's manager: a
    service carrying the coordinator's labels, its metrics port published on its node (host mode, as the
    program declares it) and joined to an overlay network besides, is scraped once, at its node's address
    and that port; an agent service of the same fleet, publishing the same port on a worker, is not. Only
    the test's own settings change: the manager's socket, the intervals, and this fleet's label."""
    fleet = swarm_fleet_id
    config = shipped_config("prometheus-swarm.yml", "dockerswarm_sd_configs", fleet, tmp_path,
                            host=swarm_lab.manager_url)

    api = swarm_lab.api()
    image = swarm_lab.push(base_image)
    metrics_port = 20000 + int(uuid.uuid4().hex[:4], 16) % 20000  # any port: the discovery reads the published one
    network = api.create_network(f"{fleet}-net", driver="overlay", labels={labels.FLEET: fleet})
    services: list[str] = []

    def serve(component: str, body: str, placement: str) -> str:
        own = dict(label.split("=", 1) for label in labels.selector(fleet, component))
        task = TaskTemplate(
            ContainerSpec(image, ["python3", "-c", METRICS_SERVER, body, str(metrics_port)], labels=own),
            placement=Placement(constraints=[placement]), networks=[network["Id"]],
            restart_policy=RestartPolicy(condition="none"))
        service = api.create_service(task, name=f"{fleet}-{component}", labels=own,
                                     endpoint_spec=EndpointSpec(ports={metrics_port: (metrics_port, "tcp", "host")}))
        services.append(service["ID"])
        return str(service["ID"])

    netns = swarm_lab.hostnames[1]
    log = tmp_path / "prometheus.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        coordinator = serve(labels.COORDINATOR, 'agent_fleet_agents_running{role="builder"} 3\n', "node.role==manager")
        serve(labels.AGENT, "agent_should_never_be_scraped 1\n", "node.role==worker")
        for service_id in services:
            swarm_lab.wait_for_tasks(service_id, {"running"}, timeout=120)
        (task,) = api.tasks(filters={"service": coordinator, "desired-state": "running"})
        node = api.inspect_node(task["NodeID"])
        address = f'{node["Status"]["Addr"]}:{metrics_port}'

        port = 19000 + int(uuid.uuid4().hex[:3], 16) % 1000
        with log.open("wb") as out:  # in the manager's network namespace, where the nodes' addresses are
            process = subprocess.Popen(
                ["ip", "netns", "exec", netns, prometheus_binary, f"--config.file={config}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                stdout=out, stderr=subprocess.STDOUT)
        prometheus = Prometheus(process, f"http://127.0.0.1:{port}", log)

        def ask(path: str) -> Any:
            body = in_netns(netns, lambda: http_get(f"{prometheus.url}{path}"))
            return json.loads(body) if body is not None else None

        def scraped() -> list[dict[str, Any]] | None:
            if process is not None and process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            answer = ask("/api/v1/query?" + urllib.parse.urlencode({"query": "agent_fleet_agents_running"}))
            result: list[dict[str, Any]] = (answer or {}).get("data", {}).get("result", [])
            return result or None

        def explain() -> str:
            return f"targets: {ask('/api/v1/targets')!r}\n{log.read_text()[-3000:]}"

        (sample,) = wait_for("Prometheus to scrape the coordinator task it discovered", scraped, 120, explain)
        assert sample["value"][1] == "3"
        # Every target of a task comes in the same discovery round as the one scraped: the overlay network's
        # is dropped, the agent's never listed.
        active = ask("/api/v1/targets?state=active")["data"]["activeTargets"]
        assert [target["labels"] for target in active] == [{
            "instance": address, "job": JOB, "fleet": fleet, "service": f"{fleet}-{labels.COORDINATOR}",
            "node": node["Description"]["Hostname"],
        }], explain()
        assert active[0]["health"] == "up"
        never = ask("/api/v1/query?" + urllib.parse.urlencode({"query": "agent_should_never_be_scraped"}))
        assert never["data"]["result"] == []
    finally:
        if process is not None:
            stop_process(process)
        for service_id in services:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_service(service_id)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the network is in use until the tasks' containers are gone
            try:
                api.remove_network(network["Id"])
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:
                time.sleep(1)


# --- the command's wiring --------------------------------------------------------------------------


def quiet_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No roster, GitHub or production: a cycle takes a moment and needs nothing but itself."""
    return cycle_env("wiring", None, COORDINATOR_SCHEDULE=ONCE_A_YEAR,
                     COORDINATOR_HEARTBEAT_FILE=str(tmp_path / "state" / "heartbeat.json"), **extra)


def test_metrics_are_served_while_the_scheduler_runs_and_stop_with_it(
    tmp_path: Path, start_coordinator: Callable[..., Coordinator]
) -> None:
    port = free_port()
    coordinator = start_coordinator(quiet_env(tmp_path, COORDINATOR_METRICS_PORT=str(port)), port)
    wait_for("the first cycle to finish", lambda: coordinator.events("schedule.cycle_finished") or None, 120,
             coordinator.explain)

    (serving,) = coordinator.events("schedule.metrics_serving")
    assert (serving["port"], serving["path"]) == (port, "/metrics")
    def scraped_after_a_cycle() -> str | None:
        text = coordinator.scrape()
        return text if text is not None and "agent_fleet_last_cycle_timestamp_seconds " in text else None

    scraped = wait_for("the cycle in the metrics", scraped_after_a_cycle, 10, coordinator.explain)
    samples = {s.name: s.value for f in text_string_to_metric_families(scraped) for s in f.samples if not s.labels}
    assert samples["agent_fleet_cycle_duration_seconds_count"] == 1

    assert coordinator.stop() == 0
    assert coordinator.scrape() is None


@pytest.mark.parametrize("setting", [None, "0", ""])
def test_no_metrics_are_served_unless_a_port_is_set(
    tmp_path: Path, start_coordinator: Callable[..., Coordinator], setting: str | None
) -> None:
    extra = {} if setting is None else {"COORDINATOR_METRICS_PORT": setting}
    coordinator = start_coordinator(quiet_env(tmp_path, **extra), None)
    wait_for("the first cycle to finish", lambda: coordinator.events("schedule.cycle_finished") or None, 120,
             coordinator.explain)
    assert coordinator.events("schedule.metrics_serving") == []
    assert coordinator.events("schedule.metrics_unavailable") == []
    assert coordinator.stop() == 0


def test_a_port_that_cannot_be_bound_is_logged_and_the_cycles_go_on(
    tmp_path: Path, start_coordinator: Callable[..., Coordinator]
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        coordinator = start_coordinator(quiet_env(tmp_path, COORDINATOR_METRICS_PORT=str(port)), port)
        wait_for("the first cycle to finish", lambda: coordinator.events("schedule.cycle_finished") or None, 120,
                 coordinator.explain)
        (unavailable,) = coordinator.events("schedule.metrics_unavailable")
        assert unavailable["port"] == port and "in use" in unavailable["error"]
        assert coordinator.events("schedule.metrics_serving") == []
        assert coordinator.stop() == 0


def test_a_bad_port_is_refused_before_anything_runs(tmp_path: Path) -> None:
    for value, says in (("65536", "is more than 65535"), ("-1", "is less than 0"), ("http", "is not a whole number")):
        result = subprocess.run([sys.executable, "-m", "coordinator", "schedule"], cwd=ROOT, capture_output=True,
                                text=True, timeout=60, env=quiet_env(tmp_path, COORDINATOR_METRICS_PORT=value))
        assert result.returncode == 2, result.stderr
        assert f"COORDINATOR_METRICS_PORT={value!r} {says}" in result.stderr
        assert result.stdout == ""
