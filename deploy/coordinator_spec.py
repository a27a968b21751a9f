"""The coordinator container's specification, as plain data.

Pure (no Pulumi import): `__main__.py` hands the specification to pulumi-docker (`deploy.components`), and
the end-to-end test hands the same specification to the Docker SDK (`docker_sdk_create_kwargs`), so what
is tested is what is deployed.

The GitHub token is never part of the specification. The container reads it from the file
`GITHUB_TOKEN_FILE`; whoever creates the container writes the secret there (Pulumi: an upload whose
content is the secret Output). Keeping it out of the environment keeps `envs` readable in `pulumi preview`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coordinator import cron, labels
from coordinator.fleet import RoleSpec, roster_to_json
from deploy.stack_config import StackConfig

ROSTER_FILE = "/etc/agent-fleet/roster.json"
GITHUB_TOKEN_FILE = "/run/secrets/agent-fleet/github-token"
DOCKER_SOCKET = "/var/run/docker.sock"
HEALTHCHECK_COMMAND = ("CMD", "python", "-m", "coordinator", "healthcheck")
RESTART_POLICY = "unless-stopped"
LOG_DRIVER = "json-file"
LOG_OPTIONS = {"max-size": "10m", "max-file": "5"}


@dataclass(frozen=True)
class ContainerFile:
    """A file written into the container before it starts."""

    path: str
    content: str
    permissions: str = "0444"


@dataclass(frozen=True)
class Mount:
    host_path: str
    container_path: str
    read_only: bool = False


@dataclass(frozen=True)
class HealthCheck:
    """Docker's health check. The command itself fails when no cycle finished within two schedule intervals."""

    test: tuple[str, ...]
    interval_seconds: int
    timeout_seconds: int
    retries: int
    start_period_seconds: int


@dataclass(frozen=True)
class CoordinatorContainerSpec:
    name: str
    image: str
    command: tuple[str, ...] | None  # None: the image's own entrypoint and command
    env: Mapping[str, str]  # non-secret settings only
    files: tuple[ContainerFile, ...]
    secret_file: str  # path the deployer writes the GitHub token to; its content is never in the spec
    mounts: tuple[Mount, ...]
    labels: Mapping[str, str]
    healthcheck: HealthCheck
    restart: str = RESTART_POLICY
    log_driver: str = LOG_DRIVER
    log_options: Mapping[str, str] = field(default_factory=lambda: dict(LOG_OPTIONS))
    # An init process reaps whatever a cycle killed at its time limit left behind; the scheduler is not PID 1.
    init: bool = True
    network_mode: str | None = None  # None: Docker's default (bridge)

    def docker_sdk_create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `docker.DockerClient.containers.create`; write `files` (and the token) after."""
        check = self.healthcheck
        seconds = 1_000_000_000
        return {
            "image": self.image,
            "name": self.name,
            "command": list(self.command) if self.command is not None else None,
            "environment": dict(self.env),
            "labels": dict(self.labels),
            "volumes": {
                mount.host_path: {"bind": mount.container_path, "mode": "ro" if mount.read_only else "rw"}
                for mount in self.mounts
            },
            "healthcheck": {
                "test": list(check.test),
                "interval": check.interval_seconds * seconds,
                "timeout": check.timeout_seconds * seconds,
                "retries": check.retries,
                "start_period": check.start_period_seconds * seconds,
            },
            "restart_policy": {"Name": self.restart},
            "log_config": {"type": self.log_driver, "config": dict(self.log_options)},
            "init": self.init,
            **({"network_mode": self.network_mode} if self.network_mode else {}),
        }


def coordinator_env(*, fleet_id: str, config: StackConfig) -> dict[str, str]:
    """The runtime's settings (coordinator/settings.py VARIABLES) that this stack fixes; no secret among them."""
    env = {
        "FLEET_ID": fleet_id,
        "FLEET_ROSTER_FILE": ROSTER_FILE,
        "COORDINATOR_SCHEDULE": config.schedule,
        "GITHUB_REPOSITORY": config.repository,
        "GITHUB_TOKEN_FILE": GITHUB_TOKEN_FILE,
        "REQUIRED_CHECKS": ",".join(config.required_checks),
        # Always passed, so the coordinator enforces exactly the limits the program checked the roster against.
        "FLEET_MAX_AGENTS_PER_ROLE": str(config.max_agents_per_role),
        "FLEET_MAX_AGENTS": str(config.max_agents),
    }
    optional = {
        "GITHUB_API_URL": config.github_api_url,
        "HEALTH_URL": config.health_url,
        "FLEET_MAX_SPAWNS_PER_HOUR": str(config.max_spawns_per_hour) if config.max_spawns_per_hour else None,
        "AGENT_NETWORK": config.agent_network,
    }
    env.update({name: value for name, value in optional.items() if value is not None})
    return env


def coordinator_container_spec(
    *,
    fleet_id: str,
    image: str,
    roster: Sequence[RoleSpec],
    config: StackConfig,
    command: Sequence[str] | None = None,
    network_mode: str | None = None,
) -> CoordinatorContainerSpec:
    """The coordinator container for one fleet: named after it, labelled with it, running its roster."""
    # The longest gap of the schedule, from a fixed date, so that every preview computes the same number.
    interval = int(cron.longest_interval(config.schedule))
    return CoordinatorContainerSpec(
        name=f"{fleet_id}-coordinator",
        image=image,
        command=tuple(command) if command is not None else None,
        env=coordinator_env(fleet_id=fleet_id, config=config),
        files=(ContainerFile(path=ROSTER_FILE, content=roster_to_json(roster)),),
        secret_file=GITHUB_TOKEN_FILE,
        mounts=(Mount(host_path=DOCKER_SOCKET, container_path=DOCKER_SOCKET),),
        labels={labels.FLEET: fleet_id, labels.COMPONENT: labels.COORDINATOR},
        network_mode=network_mode,
        healthcheck=HealthCheck(
            test=HEALTHCHECK_COMMAND,
            interval_seconds=config.healthcheck_interval_seconds,
            timeout_seconds=10,
            retries=3,
            # The first cycle runs at start and may take up to a whole interval (its time limit):
            # give it two before a failing check counts against the container.
            start_period_seconds=2 * interval,
        ),
    )
