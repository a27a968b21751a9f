"""The coordinator's specification, as plain data: one for both runtimes.

Pure (no Pulumi import): `__main__.py` hands the specification to pulumi-docker (`deploy.components`: a
container on one engine, a service on a swarm), and the end-to-end tests hand the same specification to the
Docker SDK (tests/docker_sdk_spec.py), so what is tested is what is deployed.

The specification says where each file the coordinator reads goes, never what is in it: the roster depends on
the agent image the program builds, and the GitHub token and the agents' secrets are secrets. Whoever deploys
supplies the contents by source (Pulumi: a container upload or a swarm config for the roster, an upload whose
content is the secret Output or a Docker secret for the secrets). Keeping secrets out of the environment keeps
the environment readable in `pulumi preview` and out of `docker inspect`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from coordinator import cron, labels
from deploy.stack_config import StackConfig

ROSTER_FILE = "/etc/agent-fleet/roster.json"
GITHUB_TOKEN_FILE = "/run/secrets/agent-fleet/github-token"
AGENT_SECRETS_FILE = "/run/secrets/agent-fleet/agent-secrets.json"
AGENT_IDENTITIES_FILE = "/run/secrets/agent-fleet/agent-identities.json"
GITHUB_APP_FILE = "/run/secrets/agent-fleet/github-app.json"
# The registry credentials as a Docker client config: the Docker SDK reads DOCKER_CONFIG/config.json and sends
# them with every pull and service create, so the nodes of a swarm can pull agent images from a private registry.
DOCKER_CONFIG_DIR = "/run/secrets/agent-fleet/docker"
DOCKER_SOCKET = "/var/run/docker.sock"
HEALTHCHECK_COMMAND = ("CMD", "python", "-m", "coordinator", "healthcheck")
RESTART_POLICY = "unless-stopped"  # one engine: restarted whenever it stops, unless stopped on purpose
LOG_DRIVER = "json-file"
LOG_OPTIONS = {"max-size": "10m", "max-file": "5"}
# On a swarm: only a manager answers the services API the coordinator drives.
MANAGER_CONSTRAINT = "node.role==manager"
SERVICE_RESTART_CONDITION = "on-failure"
SERVICE_RESTART_DELAY_SECONDS = 5
# One replica, its metrics port published on its node: the old task must stop before the new one binds it.
SERVICE_UPDATE_ORDER = "stop-first"
# How long a stopping coordinator gets before it is killed: the scheduler stops the running cycle (SIGTERM, then
# SIGKILL after its own 5 s grace) and the cycle writes its report on the way out. Docker's default is 10 s.
STOP_GRACE_SECONDS = 15


class Source(StrEnum):
    """What a file the coordinator reads holds; the deployer supplies the content of each."""

    ROSTER = "roster"
    GITHUB_TOKEN = "github-token"
    AGENT_SECRETS = "agent-secrets"
    AGENT_IDENTITIES = "agent-identities"
    GITHUB_APP = "github-app"
    REGISTRY_AUTH = "registry-auth"


@dataclass(frozen=True)
class SpecFile:
    """A file the coordinator reads: its source, where it goes, whether it is secret."""

    source: Source
    path: str
    secret: bool
    mode: int = 0o444  # readable by whatever user the image runs as; nothing else runs in the coordinator

    @property
    def permissions(self) -> str:
        return f"0{self.mode:o}"


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
class CoordinatorSpec:
    name: str  # the container's or the service's: one coordinator per fleet
    runtime: str
    command: tuple[str, ...] | None  # None: the image's own entrypoint and command
    env: Mapping[str, str]  # non-secret settings only
    files: tuple[SpecFile, ...]
    mounts: tuple[Mount, ...]
    labels: Mapping[str, str]  # on the container, and on a swarm on the service too
    healthcheck: HealthCheck
    metrics_port: int | None  # published on the host (one engine) or the task's node (swarm, host mode)
    restart: str = RESTART_POLICY
    log_driver: str = LOG_DRIVER
    log_options: Mapping[str, str] = field(default_factory=lambda: dict(LOG_OPTIONS))
    # An init process reaps whatever a cycle killed at its time limit left behind; the scheduler is not PID 1.
    init: bool = True
    stop_grace_seconds: int = STOP_GRACE_SECONDS
    # One engine: the container's network mode (None: bridge). A swarm: a network the task joins (None: the
    # node's default bridge).
    network: str | None = None
    placement: tuple[str, ...] = (MANAGER_CONSTRAINT,)
    service_restart_condition: str = SERVICE_RESTART_CONDITION
    service_restart_delay_seconds: int = SERVICE_RESTART_DELAY_SECONDS
    update_order: str = SERVICE_UPDATE_ORDER

    @property
    def published_port(self) -> int | None:
        """The metrics port to publish: none on the host's own network, where the container's port is the host's
        (Docker refuses or discards publishing there)."""
        return None if self.network == "host" else self.metrics_port

def coordinator_env(*, fleet_id: str, config: StackConfig) -> dict[str, str]:
    """The runtime's settings (coordinator/settings.py VARIABLES) that this stack fixes; no secret among them."""
    env = {
        "FLEET_ID": fleet_id,
        "FLEET_RUNTIME": config.runtime,
        "FLEET_ROSTER_FILE": ROSTER_FILE,
        "COORDINATOR_SCHEDULE": config.schedule,
        "GITHUB_REPOSITORY": config.repository,
        "REQUIRED_CHECKS": ",".join(config.required_checks),
        # The ruleset's strict policy (requireUpToDate): only then does the coordinator update behind branches.
        "MERGE_REQUIRE_UP_TO_DATE": "true" if config.require_up_to_date else "false",
        # Always passed, so the coordinator enforces exactly the limits the program checked the roster against.
        "FLEET_MAX_AGENTS_PER_ROLE": str(config.max_agents_per_role),
        "FLEET_MAX_AGENTS": str(config.max_agents),
        # Always passed, 0 included (no endpoint), so the coordinator serves exactly where the port is published.
        "COORDINATOR_METRICS_PORT": str(config.metrics_port),
    }
    optional = {
        "GITHUB_API_URL": config.github_api_url,
        "HEALTH_URL": config.health_url,
        "FLEET_MAX_SPAWNS_PER_HOUR": str(config.max_spawns_per_hour) if config.max_spawns_per_hour else None,
        "AGENT_NETWORK": config.agent_network,
        "AGENT_SECRETS_FILE": AGENT_SECRETS_FILE if config.agent_secret_names else None,
        "AGENT_IDENTITIES_FILE": AGENT_IDENTITIES_FILE if config.agent_identities else None,
        # The running coordinator merges as an App (a token minted each cycle) or with a token.
        "GITHUB_APP_FILE": GITHUB_APP_FILE if _merges_as_app(config) else None,
        "GITHUB_TOKEN_FILE": None if _merges_as_app(config) else GITHUB_TOKEN_FILE,
        "DOCKER_CONFIG": DOCKER_CONFIG_DIR if config.registry_credentials else None,
    }
    env.update({name: value for name, value in optional.items() if value is not None})
    return env


def _merges_as_app(config: StackConfig) -> bool:
    return config.coordinator_kind in ("app", "deploy-app")


def coordinator_files(config: StackConfig) -> tuple[SpecFile, ...]:
    files = [
        SpecFile(Source.ROSTER, ROSTER_FILE, secret=False),
        SpecFile(Source.GITHUB_APP, GITHUB_APP_FILE, secret=True) if _merges_as_app(config)
        else SpecFile(Source.GITHUB_TOKEN, GITHUB_TOKEN_FILE, secret=True),
    ]
    if config.agent_secret_names:
        files.append(SpecFile(Source.AGENT_SECRETS, AGENT_SECRETS_FILE, secret=True))
    if config.agent_identities:
        files.append(SpecFile(Source.AGENT_IDENTITIES, AGENT_IDENTITIES_FILE, secret=True))
    if config.registry_credentials:
        files.append(SpecFile(Source.REGISTRY_AUTH, f"{DOCKER_CONFIG_DIR}/config.json", secret=True))
    return tuple(files)


def coordinator_spec(
    *,
    fleet_id: str,
    config: StackConfig,
    command: tuple[str, ...] | None = None,
    network: str | None = None,
    docker_socket: str = DOCKER_SOCKET,
) -> CoordinatorSpec:
    """The coordinator of one fleet: named after it, labelled with it, on the stack's runtime.

    `network` and `docker_socket` (the engine's socket on the host) exist for the tests, which run the
    coordinator where their local servers and lab engines are.
    """
    # The longest gap of the schedule, from a fixed date, so that every preview computes the same number.
    interval = int(cron.longest_interval(config.schedule))
    return CoordinatorSpec(
        name=f"{fleet_id}-coordinator",
        runtime=config.runtime,
        command=command,
        env=coordinator_env(fleet_id=fleet_id, config=config),
        files=coordinator_files(config),
        mounts=(Mount(host_path=docker_socket, container_path=DOCKER_SOCKET),),
        labels={labels.FLEET: fleet_id, labels.COMPONENT: labels.COORDINATOR},
        metrics_port=config.metrics_port or None,
        network=network,
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
