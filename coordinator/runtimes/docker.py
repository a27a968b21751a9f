"""The agent runtime on one Docker engine: an agent is a container named after its slot.

Only the SDK's low-level client is used, so each method is exactly the HTTP calls it names: the
inventory is one `GET /containers/json` (plus one inspect for an agent that finished since the last
cycle), a spawn is one create and one start. Every container it touches was found by the fleet's
label or is created with it, and removal is never forced: the engine itself refuses to remove a
running container, which is the guarantee that a cycle racing another never kills an agent.

A finished agent is kept aside when its slot is filled again: renamed to `<name>.<id12>`, so that
`docker logs` still shows how it ended, until housekeeping discards it.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.types import LogConfig

from coordinator import labels
from coordinator.files import replace_file
from coordinator.runtime import (
    SECRETS_DIR,
    AgentLaunch,
    AgentRecord,
    AgentSecret,
    CoordinatorLog,
    FleetListing,
    Phase,
    RuntimeFailure,
    SlotTaken,
    Unreadable,
    slot_name,
)
from coordinator.runtimes.engine import (
    AGENT_LOG_OPTIONS,
    DOCKER_TIMEOUT_S,
    ApiVersionMemo,
    Engine,
    epoch_time,
    parse_docker_time,
)

# Paused and restarting agents are still the fleet's: counting them as missing would spawn twins.
ALIVE_STATES = frozenset({"running", "paused", "restarting"})
_EXITED_STATUS = re.compile(r"Exited \((-?\d+)\)", re.ASCII)


class ImageMissing(RuntimeFailure):
    """The agent image is neither on the host nor pullable."""


@dataclass(frozen=True)
class ExitFacts:
    """How an exited container ended. It never changes once the container has exited."""

    exit_code: int
    started_at: datetime | None
    finished_at: datetime | None


class ExitMemo:
    """Exit facts already read, by container id, in a small file beside the heartbeat.

    An exited container's end never changes, so reading it once is enough: with the memo, a cycle in
    which no agent finished is one list call however many finished agents are kept. The memo is only
    a saving: lost or unreadable, it costs one inspect per kept agent, once. An entry is trusted only
    while the list's own status line still shows the same exit code (a person may `docker start` a kept
    container), and entries of containers that are gone are dropped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._facts: dict[str, ExitFacts] = {}
        self._dirty = False
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            raw = json.loads(path.read_text(encoding="utf-8"))
            self._facts = {cid: _facts_from_json(entry) for cid, entry in raw.items()}

    def get(self, container_id: str, exit_code: int | None) -> ExitFacts | None:
        facts = self._facts.get(container_id)
        return facts if facts is not None and (exit_code is None or facts.exit_code == exit_code) else None

    def put(self, container_id: str, facts: ExitFacts) -> None:
        self._facts[container_id] = facts
        self._dirty = True

    def keep_only(self, container_ids: set[str]) -> None:
        gone = set(self._facts) - container_ids
        for container_id in gone:
            del self._facts[container_id]
        self._dirty = self._dirty or bool(gone)

    def save(self) -> None:
        """Replace the file in one step; a racing cycle's write may win, which costs only inspects."""
        if not self._dirty:
            return
        body = {cid: _facts_to_json(facts) for cid, facts in self._facts.items()}
        with contextlib.suppress(OSError):
            replace_file(self.path, json.dumps(body))
        self._dirty = False


def _facts_to_json(facts: ExitFacts) -> dict[str, Any]:
    return {
        "exit_code": facts.exit_code,
        "started_at": facts.started_at.isoformat() if facts.started_at else None,
        "finished_at": facts.finished_at.isoformat() if facts.finished_at else None,
    }


def _facts_from_json(entry: Mapping[str, Any]) -> ExitFacts:
    def moment(value: object) -> datetime | None:
        return datetime.fromisoformat(value) if isinstance(value, str) else None

    code = entry["exit_code"]
    if not isinstance(code, int):
        raise TypeError("exit_code")
    return ExitFacts(code, moment(entry.get("started_at")), moment(entry.get("finished_at")))


def exit_facts(state: Mapping[str, Any]) -> ExitFacts:
    """An exited container's end, from its inspected `State`; ValueError naming the field that cannot be read."""
    code = state.get("ExitCode", 0)
    if not isinstance(code, int) or isinstance(code, bool) or not -(2**31) <= code < 2**31:
        raise ValueError(f"State.ExitCode {str(code)[:40]!r} is not an exit code")
    times: dict[str, datetime | None] = {}
    for field in ("StartedAt", "FinishedAt"):
        value = state.get(field)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"State.{field} {str(value)[:40]!r} is not a time")
        try:
            times[field] = parse_docker_time(value)
        except ValueError as exc:
            raise ValueError(f"State.{field} {exc}") from None
    return ExitFacts(exit_code=code, started_at=times["StartedAt"], finished_at=times["FinishedAt"])


def secrets_archive(secrets: tuple[AgentSecret, ...]) -> bytes:
    """A tar of `run/secrets/<NAME>` files, readable by whichever user the agent's image runs as."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for folder in ("run", SECRETS_DIR.lstrip("/")):
            entry = tarfile.TarInfo(folder)
            entry.type, entry.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(entry)
        for secret in secrets:
            data = secret.value.reveal().encode("utf-8")
            entry = tarfile.TarInfo(f"{SECRETS_DIR.lstrip('/')}/{secret.name}")
            entry.size, entry.mode = len(data), 0o444
            archive.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


class DockerRuntime:
    """`AgentRuntime` on one engine, over the Docker SDK's low-level client (DOCKER_HOST and friends)."""

    def __init__(
        self,
        client: docker.APIClient | None = None,
        *,
        timeout_s: int = DOCKER_TIMEOUT_S,
        exit_memo: ExitMemo | None = None,
        api_version_memo: ApiVersionMemo | None = None,
    ) -> None:
        self._engine = Engine(client) if client is not None else Engine.connect(
            "the Docker engine", timeout_s=timeout_s, memo=api_version_memo)
        self._memo = exit_memo
        self._pulled: set[str] = set()
        self._states: dict[str, str] = {}  # the last listing's container states, for `vacate`

    @property
    def api(self) -> docker.APIClient:
        return self._engine.api

    # ----------------------------------------------------------------------------------- inventory

    def list_agents(self, fleet_id: str) -> FleetListing:
        try:
            items = self._engine.first_call(
                lambda api: api.containers(all=True, filters={"label": labels.selector(fleet_id)}))
        except docker.errors.DockerException as exc:
            raise RuntimeFailure(f"listing the fleet's containers failed: {exc}") from None
        agents: list[AgentRecord] = []
        unreadable: list[Unreadable] = []
        for item in items:
            record = self._record(fleet_id, item)
            if isinstance(record, Unreadable):
                unreadable.append(record)
            elif record is not None:
                agents.append(record)
        if self._memo is not None:
            self._memo.keep_only({str(item["Id"]) for item in items})
            self._memo.save()
        return FleetListing(tuple(agents), tuple(unreadable))

    def _record(self, fleet_id: str, item: Mapping[str, Any]) -> AgentRecord | Unreadable | None:
        container_id = str(item["Id"])
        name = str((item.get("Names") or ["/"])[0]).lstrip("/")
        try:
            read = labels.read_agent_labels(item.get("Labels") or {})
        except labels.LabelError as exc:
            return Unreadable(container_id, name, str(exc))
        try:
            created_at = epoch_time(item.get("Created", 0))
        except ValueError as exc:
            return Unreadable(container_id, name, f"its creation time {exc}")
        state = str(item.get("State", ""))
        self._states[container_id] = state
        record = AgentRecord(
            id=container_id,
            name=name,
            role=read.role,
            slot=read.slot,
            phase=Phase.ALIVE if state in ALIVE_STATES else Phase.FINISHED,
            created_at=created_at,
            crash_streak=read.crash_streak,
            idle_streak=read.idle_streak,
            earlier_spawns=read.earlier_spawns,
            holds_slot=name == slot_name(fleet_id, read.role, read.slot),
        )
        if state not in ("exited", "dead"):
            return record
        try:
            facts = self._exit_facts(container_id, str(item.get("Status", "")))
        except ValueError as exc:
            return Unreadable(container_id, name, f"how it ended cannot be read: {exc}")
        if facts is None:  # removed between the list and the inspect (another cycle discarded it)
            return None
        return replace(record, exit_code=facts.exit_code, started_at=facts.started_at, finished_at=facts.finished_at)

    def _exit_facts(self, container_id: str, status: str) -> ExitFacts | None:
        shown = _EXITED_STATUS.match(status)
        if self._memo is not None and (facts := self._memo.get(container_id, int(shown[1]) if shown else None)):
            return facts
        try:
            state = self.api.inspect_container(container_id)["State"]
        except docker.errors.NotFound:
            return None
        except docker.errors.DockerException as exc:
            raise RuntimeFailure(f"inspecting container {container_id[:12]} failed: {exc}") from None
        facts = exit_facts(state)
        if self._memo is not None:
            self._memo.put(container_id, facts)
        return facts

    # ----------------------------------------------------------------------------------- spawning

    def _create(self, launch: AgentLaunch) -> str:
        resources = launch.resources
        host_config = self.api.create_host_config(
            network_mode=launch.network or "bridge",
            log_config=LogConfig(type=LogConfig.types.JSON, config=dict(AGENT_LOG_OPTIONS)),
            restart_policy={"Name": "no"},
            init=True,
            nano_cpus=round(resources.cpus * 1e9) if resources.cpus else None,
            mem_limit=resources.memory_bytes,
        )
        created = self.api.create_container(
            image=launch.image,
            command=list(launch.command) if launch.command is not None else None,
            name=launch.name,
            environment=dict(launch.env),
            labels=labels.agent_labels(launch),
            host_config=host_config,
        )
        return str(created["Id"])

    def spawn(self, launch: AgentLaunch) -> str:
        container_id = self._create_named(launch)
        if launch.secrets:
            self._copy_secrets(container_id, launch)
        try:
            self.api.start(container_id)
        except docker.errors.NotFound:
            # Another cycle saw it never started and cleared the slot: that cycle now fills it.
            raise SlotTaken(launch.name) from None
        except docker.errors.DockerException as exc:
            # Left as created: the next cycle removes it and tries again.
            raise RuntimeFailure(f"starting {launch.name} failed: {exc}") from None
        return container_id

    def _copy_secrets(self, container_id: str, launch: AgentLaunch) -> None:
        """The secrets as files, copied into the created container before it starts: no host path, no
        environment variable, nothing `docker inspect` shows."""
        try:
            self.api.put_archive(container_id, "/", secrets_archive(launch.secrets))
        except docker.errors.NotFound:
            raise SlotTaken(launch.name) from None
        except docker.errors.DockerException as exc:
            with contextlib.suppress(docker.errors.DockerException):
                self.api.remove_container(container_id, force=False)
            raise RuntimeFailure(f"copying the secrets into {launch.name} failed: {type(exc).__name__}") from None

    def _create_named(self, launch: AgentLaunch) -> str:
        try:
            try:
                container_id = self._create(launch)
            except docker.errors.ImageNotFound:
                self._pull(launch.image)
                container_id = self._create(launch)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise SlotTaken(launch.name, self._squatter(launch)) from None
            raise RuntimeFailure(f"creating {launch.name} failed: {exc.explanation or exc}") from None
        except docker.errors.DockerException as exc:
            raise RuntimeFailure(f"creating {launch.name} failed: {exc}") from None
        return container_id

    def _squatter(self, launch: AgentLaunch) -> str | None:
        """Who holds the name: None when it is this slot's own agent (a racing cycle spawned it)."""
        try:
            holder = self.api.inspect_container(launch.name)
        except docker.errors.DockerException:
            return None  # gone again, or the engine is busy: the next cycle looks once more
        if labels.holds_its_own_slot((holder.get("Config") or {}).get("Labels") or {}, launch):
            return None
        return f"container {str(holder.get('Id', ''))[:12]}"

    def _pull(self, image: str) -> None:
        if image in self._pulled:
            raise ImageMissing(f"image {image} is not on the Docker host and could not be pulled")
        self._pulled.add(image)
        try:
            self.api.pull(image)
        except docker.errors.DockerException as exc:
            raise ImageMissing(f"image {image} is not on the Docker host and pulling it failed: {exc}") from None

    # ----------------------------------------------------------------------------------- housekeeping

    def vacate(self, agent: AgentRecord) -> None:
        if self._states.get(agent.id, "exited") == "exited" and agent.started_at is not None:
            # Kept aside for `docker logs`. Gone or already moved by another cycle: the create that follows
            # settles who owns the slot.
            with contextlib.suppress(docker.errors.DockerException):
                self.api.rename(agent.id, f"{agent.name}.{agent.id[:12]}")
            return
        # Created and never started, or dead: nothing there worth keeping. A refusal most likely means the
        # cycle that created it has started it meanwhile: that agent now holds the slot.
        self.discard(agent)

    def discard(self, agent: AgentRecord) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            try:
                self.api.remove_container(agent.id, force=False)
            except docker.errors.APIError as exc:
                if exc.status_code == 409:  # running after all, or being removed by another cycle
                    return
                raise RuntimeFailure(f"removing {agent.name} failed: {exc.explanation or exc}") from None

    # ----------------------------------------------------------------------------------- the coordinator

    def coordinator_log(self, fleet_id: str, *, source: str | None = None, tail: int) -> CoordinatorLog:
        try:
            if source:
                found = self.api.inspect_container(source)
                refused = labels.not_a_coordinator("container", source, (found.get("Config") or {}).get("Labels") or {})
                if refused is not None:
                    raise RuntimeFailure(refused)
            else:
                candidates = self.api.containers(all=True, filters={"label": labels.selector(fleet_id,
                                                                                             labels.COORDINATOR)})
                if not candidates:
                    raise RuntimeFailure(
                        f"no coordinator container of fleet {fleet_id!r} on this Docker host (looked for labels "
                        f"{' and '.join(labels.selector(fleet_id, labels.COORDINATOR))}); pass --fleet with the "
                        "fleet id, or --source with the container's name"
                    )
                found = max(candidates, key=lambda c: int(c.get("Created", 0)))
            raw = self.api.logs(found["Id"], stdout=True, stderr=False, tail=tail)
        except docker.errors.NotFound:
            raise RuntimeFailure(f"no container named {source!r} on this Docker host") from None
        except docker.errors.DockerException as exc:
            raise RuntimeFailure(f"cannot read the coordinator's log from Docker: {exc}") from None
        name = str(found.get("Name") or (found.get("Names") or ["/?"])[0]).lstrip("/")
        lines = raw.decode("utf-8", errors="replace").splitlines()
        return CoordinatorLog(source=f"container {name}", lines=tuple(lines))
