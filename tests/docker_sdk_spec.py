"""The coordinator's specification (deploy/coordinator_spec.py) as Docker SDK keyword arguments, for the tests.

The product deploys the specification through pulumi-docker (deploy/components.py); the end-to-end tests create
the same specification with the Docker SDK, and tests/test_spec_agreement.py checks that both say the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deploy.coordinator_spec import CoordinatorSpec, HealthCheck, Source

NANOSECONDS = 1_000_000_000


@dataclass(frozen=True)
class SwarmObject:
    """A swarm secret or config as a service refers to it."""

    id: str
    name: str


def healthcheck_api(check: HealthCheck) -> dict[str, Any]:
    """As the Engine API spells it (nanoseconds), for containers and services alike."""
    return {
        "test": list(check.test),
        "interval": check.interval_seconds * NANOSECONDS,
        "timeout": check.timeout_seconds * NANOSECONDS,
        "retries": check.retries,
        "start_period": check.start_period_seconds * NANOSECONDS,
    }


def create_kwargs(spec: CoordinatorSpec, image: str) -> dict[str, Any]:
    """Keyword arguments for `docker.DockerClient.containers.create`; upload the files' contents after."""
    return {
        "image": image,
        "name": spec.name,
        "command": list(spec.command) if spec.command is not None else None,
        "environment": dict(spec.env),
        "labels": dict(spec.labels),
        "volumes": {
            mount.host_path: {"bind": mount.container_path, "mode": "ro" if mount.read_only else "rw"}
            for mount in spec.mounts
        },
        "healthcheck": healthcheck_api(spec.healthcheck),
        "restart_policy": {"Name": spec.restart},
        "log_config": {"type": spec.log_driver, "config": dict(spec.log_options)},
        "init": spec.init,
        **({"ports": {f"{spec.published_port}/tcp": spec.published_port}} if spec.published_port else {}),
        **({"network_mode": spec.network} if spec.network else {}),
    }


def service_kwargs(spec: CoordinatorSpec, image: str, objects: Mapping[Source, SwarmObject]) -> dict[str, Any]:
    """Keyword arguments for `docker.DockerClient.services.create` (and `Service.update`), as plain data.

    `objects` names the swarm config (the roster) and secrets (the token, the agents' secrets) created for
    each file; none of their contents is in here.
    """
    secrets, configs = [], []
    for spec_file in spec.files:
        target = {"File": {"Name": spec_file.path, "UID": "0", "GID": "0", "Mode": spec_file.mode}}
        swarm_object = objects[spec_file.source]
        if spec_file.secret:
            secrets.append({**target, "SecretID": swarm_object.id, "SecretName": swarm_object.name})
        else:
            configs.append({**target, "ConfigID": swarm_object.id, "ConfigName": swarm_object.name})
    check = healthcheck_api(spec.healthcheck)
    return {
        "image": image,
        "name": spec.name,
        # A container's command replaces the image's CMD; a service's `args` do (its `command` is the entrypoint).
        **({"args": list(spec.command)} if spec.command is not None else {}),
        "env": dict(spec.env),
        "labels": dict(spec.labels),
        "container_labels": dict(spec.labels),
        "mounts": [
            {"Type": "bind", "Source": mount.host_path, "Target": mount.container_path,
             "ReadOnly": mount.read_only}
            for mount in spec.mounts
        ],
        "healthcheck": {"Test": check["test"], "Interval": check["interval"], "Timeout": check["timeout"],
                        "Retries": check["retries"], "StartPeriod": check["start_period"]},
        "restart_policy": {"Condition": spec.service_restart_condition,
                           "Delay": spec.service_restart_delay_seconds * NANOSECONDS, "MaxAttempts": 0},
        "constraints": list(spec.placement),
        "mode": {"Replicated": {"Replicas": 1}},
        "update_config": {"Parallelism": 1, "Order": spec.update_order},
        "endpoint_spec": {"Ports": [
            {"Protocol": "tcp", "TargetPort": spec.published_port, "PublishedPort": spec.published_port,
             "PublishMode": "host"}
        ]} if spec.published_port else None,
        "secrets": secrets,
        "configs": configs,
        "log_driver": spec.log_driver,
        "log_driver_options": dict(spec.log_options),
        "init": spec.init,
        "stop_grace_period": spec.stop_grace_seconds * NANOSECONDS,
        **({"networks": [spec.network]} if spec.network else {}),
    }
