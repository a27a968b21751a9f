"""The agent runtime on a Docker Swarm: an agent is a one-replica service named after its slot.

Each agent is a replicated service with `replicas=1` and restart condition `none` (Swarm never restarts
it; the coordinator decides), named `<fleet>-<role>-<slot>`. Swarm refuses a second service under a name
in use (409), which gives overlapping cycles the same safety that container names give on one engine.
Job mode is not used: removing a job service leaves its tasks behind on the engines this was measured
on, and a job cannot be declared with pulumi-docker.

The inventory is one `GET /tasks` filtered by the fleet's label (Swarm matches it against the service's
labels, so the fleet's labels go on the service and on its containers alike). A task still waiting for
capacity belongs to the fleet and counts as running. A task whose node is down reads as running with
its desired state flipped to shutdown: that agent is lost, and counts as running until it has been lost
for `AGENT_NODE_LOST_S`; then its slot is filled on another node, and when the node returns Swarm stops
the stale task itself.

A finished agent's service stays, with its logs, until its slot is filled again; then it is removed by
id, never by name, so a slow cycle cannot remove the newer service another cycle just made. A service
whose task is still active is never removed or updated.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import docker
import docker.errors
from docker.types import (
    ContainerSpec,
    DriverConfig,
    Placement,
    RestartPolicy,
    SecretReference,
    ServiceMode,
    TaskTemplate,
)
from docker.types import (
    Resources as SwarmResources,
)

from coordinator import labels
from coordinator.deadline import DeadlineExceeded, run_with_deadline
from coordinator.fleet import MAX_SECRET_NAME_CHARS
from coordinator.runtime import (
    EARLIEST_TIME,
    AgentLaunch,
    AgentRecord,
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
    parse_docker_time,
)
from coordinator.values import MAX_FLEET_ID_CHARS

LOG_DEADLINE_S = 30.0
# Swarm's own limits on the names of what it keeps (swarmkit's controlapi): a service's name is a DNS label of at
# most 63 characters; a secret's or a config's at most 64. Agents' services are named by `slot_name`, at most
# runtime.MAX_SLOT_NAME_CHARS.
SERVICE_NAME_MAX_CHARS = 63
SECRET_NAME_MAX_CHARS = 64
# An agent secret's Docker secret is <fleet>-<name>-<digest of the value>: the digest has what the longest fleet id
# and the longest secret name leave, 64 - (24 + 1 + 24 + 1) = 14 hex digits (56 bits, ample to tell one secret's
# values apart), so that every accepted pair fits.
SECRET_DIGEST_CHARS = SECRET_NAME_MAX_CHARS - (MAX_FLEET_ID_CHARS + 1 + MAX_SECRET_NAME_CHARS + 1)
# Secrets made before the digest was sized to fit carry 16 digits: still the fleet's, still pruned once unused.
_DIGEST = re.compile(rf"[0-9a-f]{{{SECRET_DIGEST_CHARS}}}|[0-9a-f]{{16}}")
# A task in one of these states is on its way to running, or running: its agent is alive.
ACTIVE_STATES = frozenset({"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting",
                           "running"})


def secret_prefix(fleet_id: str, secret_name: str) -> str:
    """What every Docker secret of one agent secret's values starts with (the digest follows)."""
    return f"{fleet_id}-{secret_name.lower().replace('_', '-')}-"


def docker_secret_name(fleet_id: str, secret_name: str, value: bytes) -> str:
    """The Docker secret that carries one value of an agent secret: the same name for the same value, always."""
    return secret_prefix(fleet_id, secret_name) + hashlib.sha256(value).hexdigest()[:SECRET_DIGEST_CHARS]


def _time(task: Mapping[str, Any], *path: str) -> datetime | None:
    """A time the task shows at `path` (None where it shows none); ValueError naming the field otherwise."""
    value: object = task
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError(f"{str(value)[:40]!r} is not a time")
        return parse_docker_time(value)
    except ValueError as exc:
        raise ValueError(f"task {'.'.join(path)} {exc}") from None


class SwarmRuntime:
    """`AgentRuntime` on a swarm, through a manager's API (DOCKER_HOST and friends point at a manager)."""

    def __init__(self, client: docker.APIClient | None = None, *, timeout_s: int = DOCKER_TIMEOUT_S,
                 api_version_memo: ApiVersionMemo | None = None) -> None:
        self._engine = Engine(client) if client is not None else Engine.connect(
            "the swarm manager", timeout_s=timeout_s, memo=api_version_memo)
        self._secret_ids: dict[str, str] = {}
        self._listed_secrets: list[dict[str, Any]] | None = None
        self._pruned_prefixes: set[str] = set()

    @property
    def api(self) -> docker.APIClient:
        return self._engine.api

    # ----------------------------------------------------------------------------------- inventory

    def list_agents(self, fleet_id: str) -> FleetListing:
        try:
            tasks = self._engine.first_call(lambda api: api.tasks(filters={"label": labels.selector(fleet_id)}))
        except docker.errors.DockerException as exc:
            raise RuntimeFailure(f"listing the fleet's swarm tasks failed: {exc}") from None
        # One agent per service: its newest task speaks for it (a service runs one task at a time).
        newest: dict[str, Mapping[str, Any]] = {}
        for task in tasks:
            service = str(task.get("ServiceID", ""))
            if service not in newest or str(task.get("CreatedAt", "")) > str(newest[service].get("CreatedAt", "")):
                newest[service] = task
        agents: list[AgentRecord] = []
        unreadable: list[Unreadable] = []
        for service, task in newest.items():
            record = self._record(fleet_id, service, task)
            if isinstance(record, Unreadable):
                unreadable.append(record)
            else:
                agents.append(record)
        return FleetListing(tuple(agents), tuple(unreadable))

    def _record(self, fleet_id: str, service: str, task: Mapping[str, Any]) -> AgentRecord | Unreadable:
        spec = (task.get("Spec") or {}).get("ContainerSpec") or {}
        try:
            read = labels.read_agent_labels(spec.get("Labels") or {})
            created = _time(task, "CreatedAt") or EARLIEST_TIME
            changed = _time(task, "Status", "Timestamp")
            updated = _time(task, "UpdatedAt")
        except ValueError as exc:  # LabelError among them
            return Unreadable(service, f"service {service[:12]}", str(exc))
        status = task.get("Status") or {}
        state = str(status.get("State", ""))
        desired = str(task.get("DesiredState", ""))
        exit_code = (status.get("ContainerStatus") or {}).get("ExitCode")
        phase, started, finished, lost_since = Phase.FINISHED, None, None, None
        if state in ACTIVE_STATES and desired == "running":
            phase = Phase.ALIVE
            started = changed if state == "running" else None
        elif state in ACTIVE_STATES and desired != "remove":
            # Reported active while Swarm wants it shut down: its node stopped answering (the report is
            # stale). Swarm flips the desired state when the node goes down; UpdatedAt records when.
            phase, lost_since = Phase.LOST, updated or changed
        elif state in ("complete", "failed", "shutdown"):
            # Tasks carry no start time; the task's creation stands in for it (placement and a local
            # image take seconds, well inside the crash window).
            started, finished = created, changed
        # rejected, orphaned: it never ran, or is gone with its node; nothing to read of its end. Desired state
        # "remove": its service was removed (its slot filled elsewhere) while its node was away; the task lingers
        # in the list, reported running, until the node returns and stops it.
        return AgentRecord(
            id=service,
            name=slot_name(fleet_id, read.role, read.slot),
            role=read.role,
            slot=read.slot,
            phase=phase,
            created_at=created,
            started_at=started,
            finished_at=finished,
            exit_code=int(exit_code) if isinstance(exit_code, int) and finished is not None else None,
            node=str(task.get("NodeID") or "") or None,
            lost_since=lost_since,
            crash_streak=read.crash_streak,
            idle_streak=read.idle_streak,
            earlier_spawns=read.earlier_spawns,
        )

    # ----------------------------------------------------------------------------------- spawning

    def _secret_references(self, launch: AgentLaunch) -> list[SecretReference]:
        """Each secret as a Docker secret, mounted at `/run/secrets/<NAME>`.

        A Docker secret cannot change, so each value gets its own, named after the fleet, the secret and a
        digest of the value (as kustomize's secret generator names its secrets): a new value is a new secret,
        reaching the agents spawned after it while the running ones keep theirs.
        """
        references: list[SecretReference] = []
        for secret in launch.secrets:
            value = secret.value.reveal().encode("utf-8")
            prefix = secret_prefix(launch.fleet_id, secret.name)
            name = docker_secret_name(launch.fleet_id, secret.name, value)
            secret_id = self._secret_ids.get(name)
            if secret_id is None:
                owner = launch.name if secret.per_agent else None
                secret_id = self._ensure_secret(launch.fleet_id, name, value, owner=owner)
                self._secret_ids[name] = secret_id
                self._prune_stale_secret(launch.fleet_id, prefix, name)
            references.append(SecretReference(secret_id, name, filename=secret.name, uid="0", gid="0", mode=0o444))
        return references

    def _prune_stale_secret(self, fleet_id: str, prefix: str, current: str) -> None:
        """Remove the fleet's older secrets of one name (a value since rotated), once per name and cycle.
        Swarm refuses to remove a secret a service still uses, so the running agents keep theirs."""
        if prefix in self._pruned_prefixes:
            return
        self._pruned_prefixes.add(prefix)
        if self._listed_secrets is None:
            try:
                self._listed_secrets = self.api.secrets(filters={"label": labels.selector(fleet_id)})
            except docker.errors.DockerException:
                self._listed_secrets = []  # the next cycle that spawns tries again
        for secret in self._listed_secrets or []:
            name = str((secret.get("Spec") or {}).get("Name", ""))
            # Exactly <prefix><digest>: GITHUB's secrets must not take GITHUB_TOKEN's along.
            if name.startswith(prefix) and _DIGEST.fullmatch(name[len(prefix):]) and name != current:
                with contextlib.suppress(docker.errors.DockerException):
                    self.api.remove_secret(secret["ID"])

    def _ensure_secret(self, fleet_id: str, name: str, value: bytes, *, owner: str | None = None) -> str:
        try:
            return str(self.api.inspect_secret(name)["ID"])
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            raise RuntimeFailure(f"reading the swarm secret {name} failed: {type(exc).__name__}") from None
        secret_labels = {labels.FLEET: fleet_id, labels.COMPONENT: labels.AGENT}
        if owner is not None:
            secret_labels[labels.OWNER] = owner
        try:
            return str(self.api.create_secret(name, value, labels=secret_labels)["ID"])
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # a racing cycle made the same secret
                return str(self.api.inspect_secret(name)["ID"])
            raise RuntimeFailure(f"creating the swarm secret {name} failed: HTTP {exc.status_code}") from None

    def spawn(self, launch: AgentLaunch) -> str:
        agent_labels = labels.agent_labels(launch)
        resources = launch.resources
        nano_cpus = round(resources.cpus * 1e9) if resources.cpus else None
        template = TaskTemplate(
            container_spec=ContainerSpec(
                image=launch.image,
                args=list(launch.command) if launch.command is not None else None,
                env=dict(launch.env),
                labels=agent_labels,
                init=True,
                secrets=self._secret_references(launch) or None,
            ),
            # Reservations make placement respect each node's capacity (beyond it a task waits, pending);
            # limits keep an agent to its share.
            resources=SwarmResources(cpu_limit=nano_cpus, mem_limit=resources.memory_bytes,
                                     cpu_reservation=nano_cpus, mem_reservation=resources.memory_bytes),
            restart_policy=RestartPolicy(condition="none"),
            placement=Placement(constraints=list(launch.placement)) if launch.placement else None,
            log_driver=DriverConfig("json-file", dict(AGENT_LOG_OPTIONS)),
            networks=[launch.network] if launch.network and launch.network != "bridge" else None,
        )
        try:
            created = self.api.create_service(
                template, name=launch.name, labels=agent_labels, mode=ServiceMode("replicated", replicas=1)
            )
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise SlotTaken(launch.name, self._squatter(launch)) from None
            raise RuntimeFailure(f"creating service {launch.name} failed: {exc.explanation or exc}") from None
        except docker.errors.DockerException as exc:
            raise RuntimeFailure(f"creating service {launch.name} failed: {exc}") from None
        return str(created["ID"])

    def _squatter(self, launch: AgentLaunch) -> str | None:
        """Who holds the name: None when it is this slot's own agent (a racing cycle made it)."""
        try:
            holder = self.api.inspect_service(launch.name)
        except docker.errors.DockerException:
            return None
        if labels.holds_its_own_slot((holder.get("Spec") or {}).get("Labels") or {}, launch):
            return None
        return f"service {str(holder.get('ID', ''))[:12]}"

    # ----------------------------------------------------------------------------------- housekeeping

    def vacate(self, agent: AgentRecord) -> None:
        # A service's name cannot change: the slot is freed by removing the finished (or lost) agent's service.
        self.discard(agent)

    def discard(self, agent: AgentRecord) -> None:
        if agent.phase is Phase.ALIVE:
            raise RuntimeFailure(f"refusing to remove {agent.name}: its task is active")
        try:
            self.api.remove_service(agent.id)
        except docker.errors.NotFound:
            pass  # another cycle removed it first; its own secrets may still be left
        except docker.errors.DockerException as exc:
            raise RuntimeFailure(f"removing service {agent.name} failed: {exc}") from None
        self._remove_owned_secrets(agent)

    def _remove_owned_secrets(self, agent: AgentRecord) -> None:
        """The secrets minted for this agent alone (its GitHub App token) go with its service. Swarm refuses to
        remove one a service still uses (a racing cycle's new agent of the slot): that one stays."""
        try:
            owned = self.api.secrets(filters={"label": f"{labels.OWNER}={agent.name}"})
        except docker.errors.DockerException:
            return  # left for the next cycle's prune of unused secrets
        for secret in owned:
            with contextlib.suppress(docker.errors.DockerException):
                self.api.remove_secret(secret["ID"])

    # ----------------------------------------------------------------------------------- the coordinator

    def coordinator_log(self, fleet_id: str, *, source: str | None = None, tail: int) -> CoordinatorLog:
        selector = labels.selector(fleet_id, labels.COORDINATOR)
        try:
            if source:
                service = self.api.inspect_service(source)
                refused = labels.not_a_coordinator("service", source, (service.get("Spec") or {}).get("Labels") or {})
                if refused is not None:
                    raise RuntimeFailure(refused)
            else:
                services = self.api.services(filters={"label": selector})
                if not services:
                    raise RuntimeFailure(
                        f"no coordinator service of fleet {fleet_id!r} on this swarm (looked for labels "
                        f"{' and '.join(selector)}); pass --fleet with the fleet id, or --source with its name"
                    )
                service = max(services, key=lambda s: str(s.get("CreatedAt", "")))
            # A service's log comes from the node its task ran on; a node that was cut off can leave the call
            # hanging, so it gets a wall-clock deadline.
            raw = run_with_deadline(lambda: self._service_log(str(service["ID"]), tail),
                                    time.monotonic() + LOG_DEADLINE_S, "reading the coordinator's service log")
        except docker.errors.NotFound:
            raise RuntimeFailure(f"no service named {source!r} on this swarm") from None
        except (docker.errors.DockerException, DeadlineExceeded) as exc:
            raise RuntimeFailure(f"cannot read the coordinator's log from the swarm: {exc}") from None
        name = str((service.get("Spec") or {}).get("Name") or service["ID"])
        lines = raw.decode("utf-8", errors="replace").splitlines()
        return CoordinatorLog(source=f"service {name}", lines=tuple(lines))

    def _service_log(self, service_id: str, tail: int) -> bytes:
        chunks = self.api.service_logs(service_id, stdout=True, stderr=False, tail=tail, follow=False)
        return b"".join(chunk if isinstance(chunk, bytes) else str(chunk).encode() for chunk in chunks)
