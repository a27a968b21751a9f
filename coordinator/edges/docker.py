"""The Docker edge: the few engine calls the cycle makes, behind a small Protocol.

Only the low-level API is used, so each method is exactly the HTTP calls it names: listing
the fleet is one `GET /containers/json`, a spawn is one create and one start. Every container
it touches was found by the fleet's label or is created with it; it never force-removes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import docker
import docker.errors
from docker.types import LogConfig

from coordinator import labels

# Agents' own logs rotate too, so that a chatty agent cannot fill the Docker host's disk.
AGENT_LOG_OPTIONS = {"max-size": "10m", "max-file": "3"}
DOCKER_TIMEOUT_S = 30


class DockerError(Exception):
    """An engine call failed; the message says which call and why."""


class NameTaken(DockerError):
    """The container name is in use: another cycle took the slot first."""


class ImageMissing(DockerError):
    """The agent image is neither on the host nor pullable."""


@dataclass(frozen=True)
class ContainerRecord:
    """What one list call shows of a fleet container."""

    id: str
    name: str
    role: str
    slot: int | None
    state: str  # created, running, paused, restarting, removing, exited, dead
    created_at: datetime
    crash_streak: int = 0
    idle_streak: int = 0

    @property
    def alive(self) -> bool:
        # Paused and restarting agents are still the fleet's: counting them as missing would spawn twins.
        return self.state in ("running", "paused", "restarting")


@dataclass(frozen=True)
class ExitRecord:
    """How an exited agent ended (one inspect call)."""

    exit_code: int
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def ran_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class AgentLaunch:
    """Everything needed to create and start one agent container."""

    name: str
    image: str
    command: tuple[str, ...] | None
    env: Mapping[str, str]
    labels: Mapping[str, str]
    network: str = "bridge"


class DockerPort(Protocol):
    def list_fleet(self, fleet_id: str) -> list[ContainerRecord]: ...

    def inspect_exit(self, container_id: str) -> ExitRecord: ...

    def launch(self, launch: AgentLaunch) -> str: ...

    def rename(self, container_id: str, new_name: str) -> None: ...

    def remove(self, container_id: str) -> None: ...


_DOCKER_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$")


def parse_docker_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds; '0001-01-01T00:00:00Z' means never."""
    if not value or value.startswith("0001-"):
        return None
    match = _DOCKER_TIME.match(value)
    if not match:
        return datetime.fromisoformat(value).astimezone(UTC)
    whole, fraction = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    return datetime.fromisoformat(whole).replace(tzinfo=UTC, microsecond=micros)


def record_from_list_item(item: Mapping[str, Any]) -> ContainerRecord:
    item_labels: Mapping[str, str] = item.get("Labels") or {}
    names = item.get("Names") or ["/"]
    slot_text = item_labels.get(labels.SLOT, "")
    return ContainerRecord(
        id=str(item["Id"]),
        name=str(names[0]).lstrip("/"),
        role=item_labels.get(labels.ROLE, ""),
        slot=int(slot_text) if slot_text.isdigit() else None,
        state=str(item.get("State", "")),
        created_at=datetime.fromtimestamp(int(item.get("Created", 0)), UTC),
        crash_streak=_count_label(item_labels, labels.CRASH_STREAK),
        idle_streak=_count_label(item_labels, labels.IDLE_STREAK),
    )


def _count_label(item_labels: Mapping[str, str], name: str) -> int:
    text = item_labels.get(name, "0")
    return int(text) if text.isdigit() else 0


class DockerEngine:
    """`DockerPort` over the Docker SDK's low-level client (DOCKER_HOST and friends from the environment)."""

    def __init__(self, client: docker.APIClient | None = None, *, timeout_s: int = DOCKER_TIMEOUT_S) -> None:
        # DOCKER_API_VERSION (the Docker CLI's own variable) pins the API version and saves the
        # version probe that "auto" makes: with it a steady-state cycle is exactly one Docker call.
        version = os.environ.get("DOCKER_API_VERSION", "").strip() or "auto"
        self.api: docker.APIClient = client if client is not None else docker.APIClient(
            **docker.utils.kwargs_from_env(), timeout=timeout_s, version=version
        )
        self._pulled: set[str] = set()

    @classmethod
    def from_env(cls, *, timeout_s: int = DOCKER_TIMEOUT_S) -> DockerEngine:
        try:
            return cls(timeout_s=timeout_s)
        except docker.errors.DockerException as exc:
            raise DockerError(f"cannot reach the Docker engine: {exc}") from None

    def close(self) -> None:
        self.api.close()

    def list_fleet(self, fleet_id: str) -> list[ContainerRecord]:
        try:
            items = self.api.containers(
                all=True, filters={"label": [f"{labels.FLEET}={fleet_id}", f"{labels.COMPONENT}={labels.AGENT}"]}
            )
        except docker.errors.DockerException as exc:
            raise DockerError(f"listing the fleet's containers failed: {exc}") from None
        return [record_from_list_item(item) for item in items]

    def inspect_exit(self, container_id: str) -> ExitRecord:
        try:
            state = self.api.inspect_container(container_id)["State"]
        except docker.errors.DockerException as exc:
            raise DockerError(f"inspecting container {container_id[:12]} failed: {exc}") from None
        return ExitRecord(
            exit_code=int(state.get("ExitCode", 0)),
            started_at=parse_docker_time(state.get("StartedAt")),
            finished_at=parse_docker_time(state.get("FinishedAt")),
        )

    def _create(self, launch: AgentLaunch) -> str:
        host_config = self.api.create_host_config(
            network_mode=launch.network,
            log_config=LogConfig(type=LogConfig.types.JSON, config=dict(AGENT_LOG_OPTIONS)),
            restart_policy={"Name": "no"},
            init=True,
        )
        created = self.api.create_container(
            image=launch.image,
            command=list(launch.command) if launch.command is not None else None,
            name=launch.name,
            environment=dict(launch.env),
            labels=dict(launch.labels),
            host_config=host_config,
        )
        return str(created["Id"])

    def launch(self, launch: AgentLaunch) -> str:
        try:
            try:
                container_id = self._create(launch)
            except docker.errors.ImageNotFound:
                self._pull(launch.image)
                container_id = self._create(launch)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise NameTaken(f"container name {launch.name} is taken") from None
            raise DockerError(f"creating {launch.name} failed: {exc.explanation or exc}") from None
        except docker.errors.DockerException as exc:
            raise DockerError(f"creating {launch.name} failed: {exc}") from None
        try:
            self.api.start(container_id)
        except docker.errors.NotFound:
            # Another cycle saw it never started and cleared the slot: that cycle now fills it.
            raise NameTaken(f"{launch.name} was cleared by another cycle before it started") from None
        except docker.errors.DockerException as exc:
            # Left as created: the next cycle removes it and tries again.
            raise DockerError(f"starting {launch.name} failed: {exc}") from None
        return container_id

    def _pull(self, image: str) -> None:
        if image in self._pulled:
            raise ImageMissing(f"image {image} is not on the Docker host and could not be pulled")
        self._pulled.add(image)
        try:
            self.api.pull(image)
        except docker.errors.DockerException as exc:
            raise ImageMissing(f"image {image} is not on the Docker host and pulling it failed: {exc}") from None

    def rename(self, container_id: str, new_name: str) -> None:
        try:
            self.api.rename(container_id, new_name)
        except docker.errors.NotFound:
            raise DockerError(f"container {container_id[:12]} is gone") from None
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise NameTaken(f"container name {new_name} is taken") from None
            raise DockerError(f"renaming {container_id[:12]} failed: {exc.explanation or exc}") from None

    def remove(self, container_id: str) -> None:
        # Never forced: the engine refuses to remove a running container, which is the guarantee
        # that a cycle racing another can never kill an agent.
        try:
            self.api.remove_container(container_id, force=False)
        except docker.errors.NotFound:
            return
        except docker.errors.DockerException as exc:
            raise DockerError(f"removing {container_id[:12]} failed: {exc}") from None
