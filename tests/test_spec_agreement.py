"""The two translations of one `CoordinatorSpec` agree: what `pulumi up` deploys and what the end-to-end tests run.

`deploy.components` turns the spec into pulumi-docker inputs (a `docker.Container` on one engine, a
`docker.Service` with its `docker.Secret`s and `docker.ServiceConfig` on a swarm); tests/docker_sdk_spec.py's
`create_kwargs` and `service_kwargs` turn it into Docker SDK keyword arguments, which tests/test_e2e.py and
tests/test_e2e_swarm.py hand to a real engine as "what the program declares". Here the program runs under the
mocks (tests/pulumi_harness.py, update mode), the SDK kwargs are built from the same stack settings the way the
end-to-end tests build them, and each side is normalised to one plain form, field by field.

Not compared, because only one side expresses it (each is noted where the field would be):
- one engine, the stop grace: docker-py's high-level `containers.create` takes no `stop_timeout`, so the container's
  `stopTimeout` (and `destroyGraceSeconds`, the provider's own wait when it removes the container) is compared with
  the spec's `stop_grace_seconds` instead;
- the files' contents: the SDK kwargs carry none (the end-to-end tests upload or create their own);
- a swarm's registry `auth` (pulumi-docker only) and the swarm objects' own labels (set outside the kwargs);
- the end-to-end tests' `network="host"` and lab `docker_socket`: lab adjustments the program has no setting for.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

import pytest

from deploy.coordinator_spec import CoordinatorSpec, Source, coordinator_spec
from deploy.stack_config import (
    CONFIG_KEYS,
    SecretsPresent,
    StackConfig,
    fleet_id,
    parse_agent_secret_names,
    parse_github_identities,
    parse_stack_config,
)
from roster import ROSTER
from tests.docker_sdk_spec import SwarmObject, create_kwargs, service_kwargs
from tests.keys import private_key_pem
from tests.pulumi_harness import (
    AUTONAME_SUFFIX,
    BASE_CONFIG,
    PROJECT,
    ProgramRun,
    image_ref,
    is_secret,
    project_defaults,
    run_program,
)

CONTAINER = "docker:index/container:Container"
SERVICE = "docker:index/service:Service"
SECRET = "docker:index/secret:Secret"
SERVICE_CONFIG = "docker:index/serviceConfig:ServiceConfig"
IMAGE = "docker:index/image:Image"
STACK = "prod"  # run_program's default stack
REGISTRY = "registry.example.com:5000/acme"
AGENT_SECRETS = {"ANTHROPIC_API_KEY": "sk-ant-AGENTKEY0123456789xyz", "GITHUB_TOKEN": "ghp_AGENTTOKEN0123456789abc"}
# Every optional setting that reaches the coordinator set to something other than its default.
IDENTITIES = {"author": {"token": "ghp_AUTHOR0123456789abcdef"}, "reviewer": {"token": "ghp_REVIEWER0123456789abc"},
              "coordinator": {"appId": 3, "installationId": 33, "privateKey": private_key_pem("coordinator")}}
EVERYTHING = {
    "agentSecrets": json.dumps(AGENT_SECRETS),
    "githubIdentities": json.dumps(IDENTITIES),
    "schedule": "0 * * * *",
    "healthcheckIntervalSeconds": "45",
    "metricsPort": "9100",
    "maxSpawnsPerHour": "12",
    "agentNetwork": "fleet-net",
    "githubApiUrl": "https://github.example.com/api/v3",
    "maxAgentsPerRole": "50",
    "maxAgents": "200",
}
SWARM = {"runtime": "swarm", "registry": REGISTRY}

# case id -> (runtime, the stack's settings besides BASE_CONFIG)
CASES: dict[str, tuple[str, dict[str, str]]] = {
    "docker-defaults": ("docker", {}),
    "docker-everything": ("docker", EVERYTHING),
    "docker-no-metrics": ("docker", {"metricsPort": "0"}),
    "swarm-defaults": ("swarm", SWARM),
    "swarm-everything": ("swarm", {**SWARM, **EVERYTHING, "registryUsername": "fleet-bot",
                                   "registryPassword": "registry-PASSWORD-0123456789abcdef"}),
    "swarm-no-metrics": ("swarm", {**SWARM, "metricsPort": "0"}),
}
DOCKER_CASES = [case for case, (runtime, _) in CASES.items() if runtime == "docker"]
SWARM_CASES = [case for case, (runtime, _) in CASES.items() if runtime == "swarm"]


# --- both sides, from the same settings -------------------------------------------------------------------------


@functools.cache
def program(case: str) -> ProgramRun:
    return run_program(preview=False, config=CASES[case][1])


def stack_config(settings: Mapping[str, str]) -> StackConfig:
    """The settings as `deploy.pulumi_config.load_stack_config` reads them under run_program: BASE_CONFIG and the
    case's settings, Pulumi.yaml's defaults for the rest, every value raw text; the secrets by name only."""
    merged = {**project_defaults(), **BASE_CONFIG, **settings}
    raw = {key: merged.get(key) for key in CONFIG_KEYS}
    present = SecretsPresent(
        agent_secrets=parse_agent_secret_names(merged.get("agentSecrets")),
        registry_password=bool(merged.get("registryPassword", "").strip()),
        identities=parse_github_identities(merged.get("githubIdentities")),
    )
    return parse_stack_config(raw, ROSTER, present)


@functools.cache
def spec(case: str) -> CoordinatorSpec:
    # As the end-to-end tests call it, minus their lab-only `network="host"` and `docker_socket` (see the docstring).
    return coordinator_spec(fleet_id=fleet_id(PROJECT, STACK), config=stack_config(CASES[case][1]))


def built_coordinator_image(run: ProgramRun) -> str:
    """The reference the mocks gave the coordinator's docker.Image: what the SDK kwargs are built with.

    Comparable: that the program hands the coordinator the image it built, pinned (local id, or repo@digest when
    pushed), and that the SDK kwargs pass the image they are given through unchanged. Not comparable: the digest
    itself, which the mocks invent from the image name; the end-to-end tests build and pass their own image.
    """
    image = run.one(IMAGE, "coordinator-image").inputs
    return image_ref(str(image["imageName"]), pushed=not image["skipPush"])


def swarm_objects(run: ProgramRun, spec: CoordinatorSpec) -> dict[Source, SwarmObject]:
    """The secret or config the program declared for each file, as the SDK kwargs refer to it: the id the mocks
    answer (`<resource name>-id`) and the name pulumi-docker's auto-naming gives (`<resource name>-<suffix>`)."""
    objects = {}
    for spec_file in spec.files:
        declared = run.one(SECRET if spec_file.secret else SERVICE_CONFIG, f"coordinator-{spec_file.source}")
        objects[spec_file.source] = SwarmObject(f"{declared.name}-id", f"{declared.name}-{AUTONAME_SUFFIX}")
    return objects


# --- normalising -----------------------------------------------------------------------------------------------


def reveal(value: Any) -> Any:
    """`value` with every secret wrapper replaced by its content (the comparison is of values, not marking)."""
    if is_secret(value):
        return reveal(value.get("value"))
    if isinstance(value, Mapping):
        return {key: reveal(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [reveal(item) for item in value]
    return value


NANOSECONDS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def duration_ns(text: str) -> int:
    """A Go duration string, as pulumi-docker takes it ("60s", "1m30s"), in nanoseconds, as the Engine API has it."""
    parts = _DURATION_PART.findall(text)
    assert parts and "".join(number + unit for number, unit in parts) == text, f"not a duration: {text!r}"
    return round(sum(float(number) * NANOSECONDS[unit] for number, unit in parts))


def label_map(labels: list[Mapping[str, Any]] | None) -> dict[str, str]:
    return {label["label"]: label["value"] for label in labels or []}


def healthcheck(test: list[str], interval: int, timeout: int, retries: float, start_period: int) -> dict[str, Any]:
    return {"test": tuple(test), "interval_ns": interval, "timeout_ns": timeout, "retries": int(retries),
            "start_period_ns": start_period}


def pulumi_healthcheck(check: Mapping[str, Any]) -> dict[str, Any]:
    return healthcheck(check["tests"], duration_ns(check["interval"]), duration_ns(check["timeout"]),
                       check["retries"], duration_ns(check["startPeriod"]))


def port(target: float, published: float, protocol: str, mode: str | None) -> tuple[int, int, str, str | None]:
    return int(target), int(published), protocol, mode


def file_ref(id_: str, name: str, path: str, uid: str, gid: str, mode: float) -> tuple[str, str, str, str, str, int]:
    return id_, name, path, uid, gid, int(mode)


CONTAINER_FIELDS = ("name", "image", "command", "env", "labels", "mounts", "healthcheck", "restart", "ports",
                    "log", "init", "network", "files", "stop_grace_s")


def container_from_pulumi(inputs: Mapping[str, Any]) -> dict[str, Any]:
    c = reveal(inputs)
    return {
        "name": c["name"],
        "image": c["image"],
        "command": tuple(c["command"]) if c.get("command") else None,  # absent: the image's own
        "env": dict(entry.split("=", 1) for entry in c["envs"]),
        "labels": label_map(c.get("labels")),
        "mounts": sorted((v["hostPath"], v["containerPath"], bool(v.get("readOnly", False)))
                         for v in c.get("volumes", [])),
        "healthcheck": pulumi_healthcheck(c["healthcheck"]),
        # pulumi-docker's maxRetryCount has no SDK counterpart here: neither side sets one.
        "restart": c["restart"],
        # pulumi-docker's port protocol defaults to tcp and its ip to 0.0.0.0 (all interfaces, as the SDK's
        # {"PORT/tcp": PORT} binds); a container port has no publish mode.
        "ports": sorted(port(p["internal"], p["external"], p.get("protocol", "tcp"), None)
                        for p in c.get("ports", [])),
        "log": (c["logDriver"], dict(c.get("logOpts", {}))),
        "init": c["init"],
        "network": c.get("networkMode"),
        # Path and permissions only; the contents are not in the SDK kwargs (see the docstring).
        "files": sorted((u["file"], int(u["permissions"], 8)) for u in c.get("uploads", [])),
        # destroyGraceSeconds, only on this side, must be the same grace: a mismatch shows as a differing value.
        "stop_grace_s": c["stopTimeout"] if c.get("destroyGraceSeconds") == c["stopTimeout"]
        else f"destroyGraceSeconds {c.get('destroyGraceSeconds')} != stopTimeout {c['stopTimeout']}",
    }


def container_from_sdk(kwargs: Mapping[str, Any], spec: CoordinatorSpec) -> dict[str, Any]:
    ports = []
    for container_port, published in (kwargs.get("ports") or {}).items():
        target, _, protocol = str(container_port).partition("/")
        ports.append(port(int(target), published, protocol or "tcp", None))
    check = kwargs["healthcheck"]
    return {
        "name": kwargs["name"],
        "image": kwargs["image"],
        "command": tuple(kwargs["command"]) if kwargs.get("command") else None,
        "env": dict(kwargs["environment"]),
        "labels": dict(kwargs["labels"]),
        "mounts": sorted((host, bind["bind"], bind["mode"] == "ro") for host, bind in kwargs["volumes"].items()),
        "healthcheck": healthcheck(check["test"], check["interval"], check["timeout"], check["retries"],
                                   check["start_period"]),
        "restart": kwargs["restart_policy"]["Name"],
        "ports": sorted(ports),
        "log": (kwargs["log_config"]["type"], dict(kwargs["log_config"]["config"])),
        "init": kwargs["init"],
        "network": kwargs.get("network_mode"),
        # Not a create kwarg: tests/test_e2e.py uploads each of spec.files at its path with its mode.
        "files": sorted((f.path, f.mode) for f in spec.files),
        # docker-py's high-level create takes no stop_timeout (only its low-level API does): the spec's own value.
        "stop_grace_s": spec.stop_grace_seconds,
    }


SERVICE_FIELDS = ("name", "image", "entrypoint", "args", "env", "service_labels", "container_labels", "mounts",
                  "healthcheck", "restart_policy", "placement", "replicas", "update", "ports", "secrets", "configs",
                  "log", "init", "stop_grace_ns", "networks")


def service_from_pulumi(inputs: Mapping[str, Any]) -> dict[str, Any]:
    s = reveal(inputs)
    task = s["taskSpec"]
    c = task["containerSpec"]
    restart = task["restartPolicy"]
    update = s.get("updateConfig", {})
    return {
        "name": s["name"],
        "image": c["image"],
        "entrypoint": tuple(c["commands"]) if c.get("commands") else None,
        "args": tuple(c["args"]) if c.get("args") else None,
        "env": dict(c.get("env", {})),
        "service_labels": label_map(s.get("labels")),
        "container_labels": label_map(c.get("labels")),
        "mounts": sorted((m["type"], m["source"], m["target"], bool(m.get("readOnly", False)))
                         for m in c.get("mounts", [])),
        "healthcheck": pulumi_healthcheck(c["healthcheck"]),
        # window is set on neither side.
        "restart_policy": (restart["condition"], duration_ns(restart["delay"]), int(restart["maxAttempts"])),
        "placement": sorted(task.get("placement", {}).get("constraints", [])),
        "replicas": int(s["mode"]["replicated"]["replicas"]),
        # delay, failureAction, monitor, maxFailureRatio: set on neither side.
        "update": (int(update["parallelism"]), update["order"]),
        "ports": sorted(port(p["targetPort"], p["publishedPort"], p.get("protocol", "tcp"), p.get("publishMode"))
                        for p in (s.get("endpointSpec") or {}).get("ports", [])),
        "secrets": sorted(file_ref(r["secretId"], r["secretName"], r["fileName"], r["fileUid"], r["fileGid"],
                                   r["fileMode"]) for r in c.get("secrets", [])),
        "configs": sorted(file_ref(r["configId"], r["configName"], r["fileName"], r["fileUid"], r["fileGid"],
                                   r["fileMode"]) for r in c.get("configs", [])),
        "log": (task["logDriver"]["name"], dict(task["logDriver"].get("options", {}))),
        "init": c["init"],
        "stop_grace_ns": duration_ns(c["stopGracePeriod"]),
        "networks": sorted(n["name"] for n in task.get("networksAdvanceds", [])),
        # auth: only on this side (see the docstring).
    }


def service_from_sdk(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    check = kwargs["healthcheck"]
    restart = kwargs["restart_policy"]
    return {
        "name": kwargs["name"],
        "image": kwargs["image"],
        "entrypoint": tuple(kwargs["command"]) if kwargs.get("command") else None,
        "args": tuple(kwargs["args"]) if kwargs.get("args") else None,
        "env": dict(kwargs["env"]),
        "service_labels": dict(kwargs["labels"]),
        "container_labels": dict(kwargs["container_labels"]),
        "mounts": sorted((m["Type"], m["Source"], m["Target"], m["ReadOnly"]) for m in kwargs["mounts"]),
        "healthcheck": healthcheck(check["Test"], check["Interval"], check["Timeout"], check["Retries"],
                                   check["StartPeriod"]),
        "restart_policy": (restart["Condition"], restart["Delay"], restart["MaxAttempts"]),
        "placement": sorted(kwargs["constraints"]),
        "replicas": kwargs["mode"]["Replicated"]["Replicas"],
        "update": (kwargs["update_config"]["Parallelism"], kwargs["update_config"]["Order"]),
        "ports": sorted(port(p["TargetPort"], p["PublishedPort"], p["Protocol"], p["PublishMode"])
                        for p in (kwargs.get("endpoint_spec") or {}).get("Ports", [])),
        "secrets": sorted(file_ref(r["SecretID"], r["SecretName"], r["File"]["Name"], r["File"]["UID"],
                                   r["File"]["GID"], r["File"]["Mode"]) for r in kwargs["secrets"]),
        "configs": sorted(file_ref(r["ConfigID"], r["ConfigName"], r["File"]["Name"], r["File"]["UID"],
                                   r["File"]["GID"], r["File"]["Mode"]) for r in kwargs["configs"]),
        "log": (kwargs["log_driver"], dict(kwargs["log_driver_options"])),
        "init": kwargs["init"],
        "stop_grace_ns": kwargs["stop_grace_period"],
        "networks": sorted(kwargs.get("networks", [])),
    }


@functools.cache
def container_sides(case: str) -> tuple[dict[str, Any], dict[str, Any]]:
    run, coordinator = program(case), spec(case)
    kwargs = create_kwargs(coordinator, built_coordinator_image(run))
    return container_from_pulumi(run.one(CONTAINER).inputs), container_from_sdk(kwargs, coordinator)


@functools.cache
def service_sides(case: str) -> tuple[dict[str, Any], dict[str, Any]]:
    run, coordinator = program(case), spec(case)
    kwargs = service_kwargs(coordinator, built_coordinator_image(run), swarm_objects(run, coordinator))
    return service_from_pulumi(run.one(SERVICE).inputs), service_from_sdk(kwargs)


# --- the agreement ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", CONTAINER_FIELDS)
@pytest.mark.parametrize("case", DOCKER_CASES)
def test_container_field_agrees_with_the_sdk_create_kwargs(case: str, field: str) -> None:
    declared, sdk = container_sides(case)
    assert declared[field] == sdk[field], f"{case}: {field} differs (pulumi-docker vs Docker SDK)"


@pytest.mark.parametrize("field", SERVICE_FIELDS)
@pytest.mark.parametrize("case", SWARM_CASES)
def test_service_field_agrees_with_the_sdk_service_kwargs(case: str, field: str) -> None:
    declared, sdk = service_sides(case)
    assert declared[field] == sdk[field], f"{case}: {field} differs (pulumi-docker vs Docker SDK)"


@pytest.mark.parametrize("case", list(CASES))
def test_every_field_is_compared_on_both_sides(case: str) -> None:
    declared, sdk = container_sides(case) if CASES[case][0] == "docker" else service_sides(case)
    fields = CONTAINER_FIELDS if CASES[case][0] == "docker" else SERVICE_FIELDS
    assert list(declared) == list(sdk) == list(fields)


def test_the_cases_exercise_what_they_claim() -> None:
    """Guards against vacuous agreement: each case really has what its name says, on the program's side."""
    assert container_sides("docker-everything")[0]["ports"] == [(9100, 9100, "tcp", None)]
    assert container_sides("docker-no-metrics")[0]["ports"] == []
    assert "/run/secrets/agent-fleet/agent-secrets.json" in dict(container_sides("docker-everything")[0]["files"])
    assert container_sides("docker-everything")[0]["healthcheck"]["interval_ns"] == 45 * 10**9
    everything = service_sides("swarm-everything")[0]
    # The coordinator's App, the agents' secrets and identities, the registry's credentials.
    assert len(everything["secrets"]) == 4 and len(everything["configs"]) == 1
    assert "/run/secrets/agent-fleet/github-app.json" in dict(container_sides("docker-everything")[0]["files"])
    assert everything["ports"] == [(9100, 9100, "tcp", "host")]
    assert everything["image"].startswith(f"{REGISTRY}/agent-fleet-coordinator@sha256:")
    assert service_sides("swarm-no-metrics")[0]["ports"] == []
    assert container_sides("docker-defaults")[0]["image"].startswith("sha256:")


def test_a_duration_string_is_read_in_nanoseconds() -> None:
    assert duration_ns("60s") == 60 * 10**9
    assert duration_ns("1m30s") == 90 * 10**9
    assert duration_ns("250ms") == 250 * 10**6
    with pytest.raises(AssertionError):
        duration_ns("60")
