"""The `swarm_lab` fixture: a real three-node Docker Swarm on this machine, built by scripts/swarm-lab.

Register it once for the whole suite with `pytest_plugins = ["tests.swarm_lab"]` in tests/conftest.py;
tests that use it are marked `@pytest.mark.swarm`. The lab needs root (network namespaces, one dockerd
per node); where it cannot come up the fixture fails with the script's own words, it never skips.

The lab stays up for the whole session and is taken down at its end only if this session brought it up,
so a developer who keeps one running (`scripts/swarm-lab up`) pays its start once. Tests remove what they
create; as a safety net the session's end removes every service, secret and config that carries one of
the project's labels (`agent-fleet.fleet` or `agent-fleet.test`) and restarts any node a test left down.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import docker
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "swarm-lab"
# What a test puts on the swarm objects it makes that carry no fleet label, so the session can find them.
T = TypeVar("T")
TEST_LABEL = "agent-fleet.test"
_OWN_LABELS = ("agent-fleet.fleet", TEST_LABEL)
# Starting three engines and forming the swarm takes seconds; installing packages first may take minutes.
_UP_TIMEOUT = 600


class SwarmLabError(RuntimeError):
    """scripts/swarm-lab failed; the message ends with the tail of its stderr."""


def run_script(*args: str, timeout: float = 120) -> str:
    proc = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
        raise SwarmLabError(f"scripts/swarm-lab {' '.join(args)} exited {proc.returncode}:\n{tail}")
    return proc.stdout


def parse_env(text: str) -> dict[str, str]:
    """The NAME=value lines `scripts/swarm-lab env` prints (shell-quoted by printf %q)."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            words = shlex.split(value)
            env[name] = words[0] if words else ""
    return env


@dataclass(frozen=True)
class SwarmLab:
    """The running lab: where its engines and registry answer, and the handles a test needs."""

    manager_url: str
    node_urls: Mapping[int, str]  # node number (1 is the manager) -> unix:// URL of its own engine
    node_ids: Mapping[int, str]  # node number -> Swarm node ID
    hostnames: Mapping[int, str]
    registry: str  # host:port, as every node reaches it (not reachable from the host namespace)
    state_dir: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SwarmLab:
        numbers = [int(n) for n in env["SWARM_LAB_NODES"].split()]
        return cls(
            manager_url=env["SWARM_LAB_MANAGER"],
            node_urls={n: env[f"SWARM_LAB_NODE{n}_HOST"] for n in numbers},
            node_ids={n: env[f"SWARM_LAB_NODE{n}_ID"] for n in numbers},
            hostnames={n: env[f"SWARM_LAB_NODE{n}_HOSTNAME"] for n in numbers},
            registry=env["SWARM_LAB_REGISTRY"],
            state_dir=Path(env["SWARM_LAB_DIR"]),
        )

    def api(self, timeout: int = 60) -> docker.APIClient:
        """A low-level client of the manager (the only node that answers the services and tasks API)."""
        return docker.APIClient(base_url=self.manager_url, version="auto", timeout=timeout)

    def client(self, timeout: int = 60) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.manager_url, version="auto", timeout=timeout)

    def node_client(self, n: int, timeout: int = 60) -> docker.DockerClient:
        """Node n's own engine: its local containers and images, as on that machine."""
        return docker.DockerClient(base_url=self.node_urls[n], version="auto", timeout=timeout)

    def node_number(self, node_id: str) -> int:
        return next(n for n, nid in self.node_ids.items() if nid == node_id)

    def kill_node(self, n: int) -> None:
        """kill -9 node n's dockerd: the node is lost to the swarm, its containers keep running."""
        run_script("kill-node", str(n))

    def start_node(self, n: int) -> None:
        """Start node n's dockerd again with its state; it rejoins the swarm by itself."""
        run_script("start-node", str(n), timeout=180)

    def cut_node(self, n: int) -> None:
        """Take node n's link down: a partition; its engine and containers run on, unseen by the managers."""
        run_script("cut-node", str(n))

    def heal_node(self, n: int) -> None:
        """Bring node n's link back. Its logs stay unreachable (moby#35011) until its dockerd restarts,
        which the next `scripts/swarm-lab up` (the session's end, at the latest) does."""
        run_script("heal-node", str(n))

    @contextlib.contextmanager
    def node_down(self, n: int) -> Iterator[None]:
        """Node n lost for the block's duration, back (engine answering) after it, whatever happens."""
        self.kill_node(n)
        try:
            yield
        finally:
            self.start_node(n)

    def push(self, image: str, name: str | None = None) -> str:
        """A host image loaded into the manager and pushed to the lab registry; the reference nodes pull."""
        args = ["push", image] + ([name] if name else [])
        return run_script(*args, timeout=600).strip().splitlines()[-1]

    def remove_labelled(self, label: str) -> None:
        """Remove every service, secret and config carrying `label` (`key` or `key=value`), by ID."""
        api = self.api()
        try:
            filters = {"label": label}
            for service in api.services(filters=filters):
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_service(service["ID"])
            for secret in api.secrets(filters=filters):
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_secret(secret["ID"])
            for config in api.configs(filters=filters):
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_config(config["ID"])
        finally:
            api.close()

    def wait_for_tasks(self, service_id: str, states: set[str], timeout: float = 60) -> list[dict[str, Any]]:
        """The service's tasks once every one of them reports one of `states` (Status.State)."""
        api = self.api()
        try:
            deadline = time.monotonic() + timeout
            while True:
                tasks: list[dict[str, Any]] = api.tasks(filters={"service": service_id})
                if tasks and all(t["Status"]["State"] in states for t in tasks):
                    return tasks
                if time.monotonic() > deadline:
                    raise AssertionError(f"tasks of {service_id} not in {sorted(states)} after {timeout}s: {tasks}")
                time.sleep(0.5)
        finally:
            api.close()


_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(netns: str, call: Callable[[], T]) -> T:
    """`call()` run by a thread that joined the network namespace `netns` (`ip netns`'s /run/netns/<name>).

    A socket belongs to the namespace it was opened in, whichever thread uses it later: servers started this way
    listen inside `netns`, and the rest of the test process stays in its own.
    """
    outcome: list[Any] = []

    def run() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns into {netns}: {os.strerror(errno)}")
            finally:
                os.close(fd)
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name=f"netns-{netns}")
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _lab_is_up() -> bool:
    state_dir = Path(os.environ.get("SWARM_LAB_DIR", "/tmp/agent-fleet-swarm-lab"))
    return (state_dir / ".swarm-lab").exists()


def _restore_nodes(lab: SwarmLab) -> None:
    """Every node back: `up` heals cut links and starts any dockerd a test left dead."""
    run_script("up", timeout=_UP_TIMEOUT)


@pytest.fixture(scope="session")
def swarm_lab() -> Iterator[SwarmLab]:
    was_up = _lab_is_up()
    try:
        run_script("up", timeout=_UP_TIMEOUT)
        lab = SwarmLab.from_env(parse_env(run_script("env")))
    except (SwarmLabError, subprocess.TimeoutExpired, KeyError) as exc:
        failure = f"the swarm lab did not come up: {exc}"
    else:
        failure = ""
    if failure:
        if not was_up:  # leave no half-built lab behind
            with contextlib.suppress(SwarmLabError, subprocess.TimeoutExpired):
                run_script("down", timeout=180)
        pytest.fail(failure, pytrace=False)
    yield lab
    try:
        _restore_nodes(lab)
        for label in _OWN_LABELS:
            lab.remove_labelled(label)
    finally:
        if not was_up:
            run_script("down", timeout=180)


@pytest.fixture
def swarm_fleet_id(swarm_lab: SwarmLab) -> Iterator[str]:
    """A fleet id of this test's own; every swarm object carrying it is removed afterwards."""
    fleet = f"t{uuid.uuid4().hex[:8]}"
    yield fleet
    swarm_lab.remove_labelled(f"agent-fleet.fleet={fleet}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "swarm: needs the three-node Docker Swarm lab (scripts/swarm-lab; root)")
