"""`__main__.py` under Pulumi's mocks, in both runtimes, in preview and in update mode: what it declares, and with
what inputs.

The coordinator is a container on one engine (`runtime: docker`) and a service on a swarm (`runtime: swarm`);
`coordinator_of` reads either back into one shape, so that every promise both make is asserted once, for both.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
from dataclasses import dataclass, replace
from typing import Any

import pulumi
import pytest

from coordinator.fleet import MAX_AGENT_SECRET_BYTES, Department, Mode, Resources, Role, roster_to_dict
from coordinator.settings import VARIABLES
from deploy.coordinator_spec import (
    AGENT_IDENTITIES_FILE,
    AGENT_SECRETS_FILE,
    GITHUB_APP_FILE,
    GITHUB_TOKEN_FILE,
    ROSTER_FILE,
)
from deploy.stack_config import parse_stack_config, resolve_roster
from roster import ROSTER
from tests.keys import private_key_pem
from tests.pulumi_harness import (
    AUTONAME_SUFFIX,
    BASE_CONFIG,
    TOKEN,
    Declared,
    ProgramFailed,
    ProgramRun,
    image_ref,
    is_secret,
    plain_strings,
    run_program,
    secret_paths,
)

ROLE = "agent-fleet:index:Role"
LABEL = "github:index/issueLabel:IssueLabel"
RULESET = "github:index/repositoryRuleset:RepositoryRuleset"
IMAGE = "docker:index/image:Image"
CONTAINER = "docker:index/container:Container"
SERVICE = "docker:index/service:Service"
SECRET = "docker:index/secret:Secret"
SERVICE_CONFIG = "docker:index/serviceConfig:ServiceConfig"
REGISTRY = "registry.example.com:5000/acme"
REGISTRY_PASSWORD = "registry-PASSWORD-0123456789abcdef"
AGENT_SECRETS = {"ANTHROPIC_API_KEY": "sk-ant-AGENTKEY0123456789xyz", "GITHUB_TOKEN": "ghp_AGENTTOKEN0123456789abc"}
# The reviewers apart from the authors: GitHub refuses an approval from a pull request's author.
IDENTITIES = {"author": {"token": "ghp_AUTHORTOKEN0123456789abc"}, "reviewer": {"token": "ghp_REVIEWERTOKEN012345678"}}

SWARM = {"runtime": "swarm", "registry": REGISTRY}
CONFIGS = {"docker": {}, "swarm": SWARM}


def swarm(**more: str | None) -> dict[str, str | None]:
    return {**SWARM, **more}


def with_secrets(runtime: str) -> dict[str, str | None]:
    """Both kinds of secret a stack can hold besides the token: the agents' and (on a swarm) the registry's."""
    config: dict[str, str | None] = {**CONFIGS[runtime], "agentSecrets": json.dumps(AGENT_SECRETS),
                                     "githubIdentities": json.dumps(IDENTITIES)}
    if runtime == "swarm":
        config |= {"registryUsername": "fleet-bot", "registryPassword": REGISTRY_PASSWORD}
    return config


def unwrap(value: Any) -> Any:
    """A secret-marked value's content (the test's own view; the assertions on marking are elsewhere)."""
    return value["value"] if isinstance(value, dict) and "value" in value and len(value) == 2 else value


@dataclass(frozen=True)
class Coordinator:
    """The coordinator as declared, whichever runtime: the things both runtimes must agree on."""

    resource: Declared
    name: str
    image: str
    env: dict[str, str]
    labels: dict[str, str]
    mounts: list[tuple[str, str, bool]]
    healthcheck: dict[str, Any]
    init: bool
    log: tuple[str, dict[str, str]]
    published: list[int]
    files: dict[str, Any]  # path -> content (secret-wrapped where it is secret)


def coordinator_of(run: ProgramRun) -> Coordinator:
    containers, services = run.of_type(CONTAINER), run.of_type(SERVICE)
    assert len(containers) + len(services) == 1, "exactly one coordinator"
    if containers:
        c = containers[0]
        inputs = c.inputs
        return Coordinator(
            resource=c, name=inputs["name"], image=inputs["image"],
            env=dict(entry.split("=", 1) for entry in inputs["envs"]),
            labels={label["label"]: label["value"] for label in inputs["labels"]},
            mounts=[(v["hostPath"], v["containerPath"], v["readOnly"]) for v in inputs["volumes"]],
            healthcheck=inputs["healthcheck"], init=inputs["init"],
            log=(inputs["logDriver"], inputs["logOpts"]),
            published=[int(p["external"]) for p in inputs.get("ports", [])],
            files={u["file"]: u["content"] for u in inputs["uploads"]},
        )
    s = services[0]
    spec = s.inputs["taskSpec"]["containerSpec"]
    configs = {c.name: c.inputs for c in run.of_type(SERVICE_CONFIG)}
    secrets = {r.name: r.inputs for r in run.of_type(SECRET)}
    files: dict[str, Any] = {}
    for ref in spec.get("configs", []):
        config = configs[ref["configName"].removesuffix(f"-{AUTONAME_SUFFIX}")]
        files[ref["fileName"]] = config["dataRaw"]
    for ref in spec.get("secrets", []):
        data = secrets[ref["secretName"].removesuffix(f"-{AUTONAME_SUFFIX}")]["data"]
        # The data is base64 inside its secret wrapper; the content is read back, still wrapped.
        files[ref["fileName"]] = {**data, "value": base64.b64decode(data["value"]).decode()}
    return Coordinator(
        resource=s, name=s.inputs["name"], image=spec["image"], env=dict(spec["env"]),
        labels={label["label"]: label["value"] for label in spec["labels"]},
        mounts=[(m["source"], m["target"], m["readOnly"]) for m in spec["mounts"]],
        healthcheck=spec["healthcheck"], init=spec["init"],
        log=(s.inputs["taskSpec"]["logDriver"]["name"], s.inputs["taskSpec"]["logDriver"]["options"]),
        published=[int(p["publishedPort"]) for p in (s.inputs.get("endpointSpec") or {}).get("ports", [])],
        files=files,
    )


@functools.cache
def program(runtime: str, preview: bool, secrets: bool = False) -> ProgramRun:
    """The program run once per runtime, mode and secrets, shared by the tests that only read it."""
    return run_program(preview=preview, config=with_secrets(runtime) if secrets else CONFIGS[runtime])


@pytest.fixture(params=[("docker", True), ("docker", False), ("swarm", True), ("swarm", False)],
                ids=["docker-preview", "docker-update", "swarm-preview", "swarm-update"])
def mode(request: pytest.FixtureRequest) -> tuple[str, bool]:
    runtime, preview = request.param
    return runtime, preview


@pytest.fixture
def run(mode: tuple[str, bool]) -> ProgramRun:
    return program(*mode)


@pytest.fixture
def secret_run(mode: tuple[str, bool]) -> ProgramRun:
    return program(*mode, secrets=True)


PREVIEW_AND_UPDATE = pytest.mark.parametrize("preview", [True, False], ids=["preview", "update"])


def by_name(run: ProgramRun) -> dict[tuple[str, str], Any]:
    return {(r.typ, r.name): r.inputs for r in run.resources}


def changed_resources(before: ProgramRun, after: ProgramRun) -> set[tuple[str, str]]:
    """The resources whose inputs differ between two runs (registration order is not fixed)."""
    old, new = by_name(before), by_name(after)
    assert old.keys() == new.keys()
    return {key for key in old if old[key] != new[key]}


def roster_holder(runtime: str) -> tuple[str, str]:
    """The resource whose inputs hold the roster: the container's upload, or the swarm config."""
    return (SERVICE_CONFIG, "coordinator-roster") if runtime == "swarm" else (CONTAINER, "coordinator-container")


def built(run: ProgramRun, component: str) -> Declared:
    return run.one(IMAGE, f"{component}-image")


# --- roles --------------------------------------------------------------------------------------------


def test_each_role_is_its_own_resource_with_its_fields(run: ProgramRun) -> None:
    roles = {r.name: r.inputs for r in run.of_type(ROLE)}
    assert list(roles) == [role.key for role in ROSTER]
    agent_image = built(run, "agent").inputs
    for role in ROSTER:
        assert roles[role.key] == {
            "key": role.key, "title": role.title, "count": role.count, "department": role.department.value,
            "mode": role.mode.value, "brief": role.brief,
            # The reference image the program built, pinned by its digest.
            "image": image_ref(agent_image["imageName"], pushed=not agent_image["skipPush"]),
            # Names and permissions only: which identity, never its token.
            **({"identity": role.identity} if role.identity else {}),
            **({"githubPermissions": dict(role.github_permissions)} if role.github_permissions else {}),
        }


def test_each_role_has_its_label_with_the_brief_as_description(run: ProgramRun) -> None:
    labels = {r.inputs["name"]: r for r in run.of_type(LABEL)}
    for role in ROSTER:
        label = labels[f"role:{role.key}"]
        assert label.inputs["repository"] == "shop"
        description = label.inputs["description"]
        assert 0 < len(description) <= 100
        assert role.brief.startswith(description.rstrip("…").rstrip("."))
        assert label.parent.endswith(f"{ROLE}::{role.key}")
    assert labels["do-not-merge"].inputs["repository"] == "shop"
    assert len(labels) == len(ROSTER) + 1


RESOURCED = (
    Role("builder", "Builder", 2, Department.ENGINEERING, Mode.TASK_DRIVEN, "Build things.",
         resources=Resources(cpus=1.5, memory_bytes=2 * 2**30), secrets=("GITHUB_TOKEN", "ANTHROPIC_API_KEY")),
    Role("reviewer", "Reviewer", 1, Department.GATES, Mode.REVIEWER, "Review things.",
         resources=Resources(memory_bytes=512 * 2**20)),
)


@pytest.mark.parametrize("runtime", ["docker", "swarm"])
@PREVIEW_AND_UPDATE
def test_a_roles_resources_and_secrets_reach_its_resource_and_the_roster_file(runtime: str, preview: bool) -> None:
    run = run_program(preview=preview, config=with_secrets(runtime), roster=RESOURCED)
    roles = {r.name: r.inputs for r in run.of_type(ROLE)}
    assert roles["builder"]["resources"] == {"cpus": 1.5, "memory": "2g"}
    assert roles["builder"]["secrets"] == ["GITHUB_TOKEN", "ANTHROPIC_API_KEY"]
    assert roles["reviewer"]["resources"] == {"memory": "512m"} and "secrets" not in roles["reviewer"]
    roster = json.loads(coordinator_of(run).files[ROSTER_FILE])["roles"]
    assert roster[0]["resources"] == {"cpus": 1.5, "memory": "2g"}
    assert roster[0]["secrets"] == ["GITHUB_TOKEN", "ANTHROPIC_API_KEY"]
    assert roster[1]["resources"] == {"memory": "512m"} and "secrets" not in roster[1]


@pytest.mark.parametrize("runtime", ["docker", "swarm"])
@PREVIEW_AND_UPDATE
def test_a_resources_change_is_named_on_that_roles_resource(runtime: str, preview: bool) -> None:
    before = run_program(preview=preview, config=with_secrets(runtime), roster=RESOURCED)
    bigger = (RESOURCED[0], Role(**{**RESOURCED[1].__dict__, "resources": Resources(memory_bytes=2**30)}))
    after = run_program(preview=preview, config=with_secrets(runtime), roster=bigger)
    changed = changed_resources(before, after)
    assert changed == {(ROLE, "reviewer"), roster_holder(runtime)}
    assert after.one(ROLE, "reviewer").inputs["resources"] == {"memory": "1g"}


# --- images -------------------------------------------------------------------------------------------


@PREVIEW_AND_UPDATE
def test_docker_builds_both_images_on_the_engine_and_pushes_nothing(preview: bool) -> None:
    run = program("docker", preview)
    coordinator, agent = built(run, "coordinator").inputs, built(run, "agent").inputs
    assert coordinator["imageName"] == "agent-fleet/coordinator:prod" and coordinator["skipPush"] is True
    assert coordinator["build"] == {
        "context": ".", "dockerfile": "coordinator/Dockerfile", "args": {"BASE_IMAGE": "python:3.12-slim"},
    }
    # The reference agent image (agent/Dockerfile, its own directory as the context), as agentImage is unset.
    assert agent["imageName"] == "agent-fleet/agent:prod" and agent["skipPush"] is True
    assert agent["build"] == {"context": "agent", "dockerfile": "agent/Dockerfile",
                              "args": {"BASE_IMAGE": "python:3.12-slim"}}
    assert "registry" not in coordinator and "registry" not in agent
    assert coordinator_of(run).image == image_ref("agent-fleet/coordinator:prod", pushed=False)


@PREVIEW_AND_UPDATE
def test_swarm_pushes_both_images_to_the_registry_and_pins_them(preview: bool) -> None:
    run = program("swarm", preview)
    for component in ("coordinator", "agent"):
        image = built(run, component).inputs
        assert image["imageName"] == f"{REGISTRY}/agent-fleet-{component}:prod"
        assert image["skipPush"] is False
        assert image["build"]["dockerfile"] == f"{component}/Dockerfile"
    coordinator = coordinator_of(run)
    # The pushed manifest, as every node pulls it: a new push updates the service.
    assert coordinator.image == f"{REGISTRY}/agent-fleet-coordinator@" + coordinator.image.split("@")[1]
    assert coordinator.image == image_ref(f"{REGISTRY}/agent-fleet-coordinator:prod", pushed=True)
    roster = json.loads(coordinator.files[ROSTER_FILE])
    assert {role["image"] for role in roster["roles"]} == {image_ref(f"{REGISTRY}/agent-fleet-agent:prod", pushed=True)}


@PREVIEW_AND_UPDATE
def test_registry_credentials_are_secret_and_reach_the_pushes_and_the_service(preview: bool) -> None:
    run = run_program(preview=preview, config=with_secrets("swarm"))
    for component in ("coordinator", "agent"):
        registry = built(run, component).inputs["registry"]
        assert registry["server"] == "registry.example.com:5000" and registry["username"] == "fleet-bot"
        assert [value for _, value in secret_paths(registry)] == [REGISTRY_PASSWORD]
    auth = run.one(SERVICE).inputs["auth"]
    assert auth["serverAddress"] == "registry.example.com:5000" and auth["username"] == "fleet-bot"
    assert [value for _, value in secret_paths(auth)] == [REGISTRY_PASSWORD]


@PREVIEW_AND_UPDATE
def test_registry_credentials_reach_the_coordinator_as_a_secret_docker_config(preview: bool) -> None:
    # The coordinator's Docker SDK reads DOCKER_CONFIG/config.json and sends the credentials with each pull and
    # each agent service it creates, so every node can pull agent images from a private registry.
    coordinator = coordinator_of(run_program(preview=preview, config=with_secrets("swarm")))
    assert coordinator.env["DOCKER_CONFIG"] == "/run/secrets/agent-fleet/docker"
    content = coordinator.files["/run/secrets/agent-fleet/docker/config.json"]
    assert is_secret(content)
    auth = json.loads(unwrap(content))["auths"]["registry.example.com:5000"]["auth"]
    assert base64.b64decode(auth).decode() == f"fleet-bot:{REGISTRY_PASSWORD}"
    assert "DOCKER_CONFIG" not in coordinator_of(run_program(preview=preview, config=SWARM)).env


@pytest.mark.parametrize("runtime", ["docker", "swarm"])
def test_a_stack_image_replaces_the_build(runtime: str) -> None:
    run = run_program(config={**CONFIGS[runtime], "agentImage": "ghcr.io/acme/agent:7"})
    assert [i.name for i in run.of_type(IMAGE)] == ["coordinator-image"]  # no agent image built
    assert {r.inputs["image"] for r in run.of_type(ROLE)} == {"ghcr.io/acme/agent:7"}
    every_role = json.dumps({role.key: f"ghcr.io/acme/{role.key}:1" for role in ROSTER})
    run = run_program(config={**CONFIGS[runtime], "images": every_role})
    assert [i.name for i in run.of_type(IMAGE)] == ["coordinator-image"]
    assert run.one(ROLE, "sentinel").inputs["image"] == "ghcr.io/acme/sentinel:1"


# --- the coordinator -----------------------------------------------------------------------------------


def test_coordinator_runs_the_fleet(mode: tuple[str, bool], run: ProgramRun) -> None:
    coordinator = coordinator_of(run)
    assert coordinator.name == "agent-fleet-prod-coordinator"
    assert coordinator.resource.delete_before_replace  # its name is fixed: the old one goes first
    assert coordinator.mounts == [("/var/run/docker.sock", "/var/run/docker.sock", False)]
    assert coordinator.init is True  # reaps what a cycle killed at its time limit left behind
    assert coordinator.log == ("json-file", {"max-size": "10m", "max-file": "5"})
    assert coordinator.healthcheck == {
        "tests": ["CMD", "python", "-m", "coordinator", "healthcheck"],
        "interval": "60s", "timeout": "10s", "retries": 3, "startPeriod": "600s",
    }
    # What Prometheus' Docker service discovery selects on (monitoring/prometheus.yml), on the container.
    assert coordinator.labels == {"agent-fleet.fleet": "agent-fleet-prod", "agent-fleet.component": "coordinator"}
    assert coordinator.published == [9464]


@PREVIEW_AND_UPDATE
def test_on_one_engine_the_container_restarts_unless_stopped(preview: bool) -> None:
    run = program("docker", preview)
    inputs = run.one(CONTAINER).inputs
    assert inputs["restart"] == "unless-stopped"
    # Stopped on a replacement or destroy with time for the running cycle to write its report.
    assert inputs["destroyGraceSeconds"] == 15
    # Declared under agent-fleet:index:Coordinator before the swarm runtime came: aliased, so an upgraded stack
    # keeps its container (a new URN would create a second container under the same fixed name).
    component = run.one("agent-fleet:index:CoordinatorContainer")
    assert [alias["spec"]["type"] for alias in component.aliases] == ["agent-fleet:index:Coordinator"]
    assert all(alias["spec"].get("name") in (None, "coordinator") for alias in component.aliases)
    assert "networkMode" not in inputs  # Docker's default network unless the spec asks otherwise
    assert inputs["ports"] == [{"internal": 9464, "external": 9464}]  # on the host, for Prometheus to scrape


@PREVIEW_AND_UPDATE
def test_on_a_swarm_one_replica_runs_on_a_manager_restarted_on_failure(preview: bool) -> None:
    run = program("swarm", preview)
    service = run.one(SERVICE).inputs
    task = service["taskSpec"]
    assert service["mode"] == {"replicated": {"replicas": 1}}
    assert task["placement"]["constraints"] == ["node.role==manager"]  # only managers answer the services API
    assert task["restartPolicy"] == {"condition": "on-failure", "delay": "5s", "maxAttempts": 0}
    assert service["updateConfig"] == {"parallelism": 1, "order": "stop-first"}
    assert task["containerSpec"]["stopGracePeriod"] == "15s"  # time for the running cycle to write its report
    # The labels on the service too: the swarm's `status` and Prometheus' swarm discovery select on them.
    assert {label["label"]: label["value"] for label in service["labels"]} == coordinator_of(run).labels
    # Published on the node that runs the task (host mode): no routing mesh needed.
    assert service["endpointSpec"] == {"ports": [
        {"targetPort": 9464, "publishedPort": 9464, "publishMode": "host", "protocol": "tcp"}]}
    assert "networksAdvanceds" not in task and "auth" not in service
    # The roster as a swarm config, the token as a Docker secret, each named by auto-naming so a new value is a
    # new object the service moves to.
    assert [(c.name, "name" in c.inputs) for c in run.of_type(SERVICE_CONFIG)] == [("coordinator-roster", False)]
    assert [(s.name, "name" in s.inputs) for s in run.of_type(SECRET)] == [("coordinator-github-token", False)]
    for ref in [*task["containerSpec"]["configs"], *task["containerSpec"]["secrets"]]:
        assert (ref["fileUid"], ref["fileGid"], ref["fileMode"]) == ("0", "0", 0o444)
    for child in [*run.of_type(SERVICE_CONFIG), *run.of_type(SECRET), run.one(SERVICE)]:
        assert child.parent.endswith("agent-fleet:index:CoordinatorService::coordinator")


def test_container_environment_is_the_runtime_contract(mode: tuple[str, bool], run: ProgramRun) -> None:
    env = coordinator_of(run).env
    assert set(env) <= set(VARIABLES)
    assert env == {
        "FLEET_ID": "agent-fleet-prod",
        "FLEET_RUNTIME": mode[0],
        "FLEET_ROSTER_FILE": ROSTER_FILE,
        "COORDINATOR_SCHEDULE": "*/5 * * * *",
        "GITHUB_REPOSITORY": "acme/shop",
        "GITHUB_TOKEN_FILE": GITHUB_TOKEN_FILE,
        "REQUIRED_CHECKS": "test,lint",
        "MERGE_REQUIRE_UP_TO_DATE": "false",
        "HEALTH_URL": "https://shop.acme.test/healthz",
        # The limits the program checked the roster against, so the coordinator enforces the same ones.
        "FLEET_MAX_AGENTS_PER_ROLE": "100",
        "FLEET_MAX_AGENTS": "500",
        # The starter cap on spawns per hour, which the stack sets unless maxSpawnsPerHour is 0.
        "FLEET_MAX_SPAWNS_PER_HOUR": "25",
        "COORDINATOR_METRICS_PORT": "9464",
    }


def test_roster_file_holds_the_resolved_roster(mode: tuple[str, bool], run: ProgramRun) -> None:
    roster = coordinator_of(run).files[ROSTER_FILE]
    assert isinstance(roster, str)  # readable in preview: not a secret
    agent = built(run, "agent").inputs
    config = parse_stack_config({**BASE_CONFIG, **CONFIGS[mode[0]]}, ROSTER)
    expected = resolve_roster(ROSTER, config, image_ref(agent["imageName"], pushed=not agent["skipPush"]))
    assert json.loads(roster) == roster_to_dict(expected)


@pytest.mark.parametrize("runtime", ["docker", "swarm"])
def test_metrics_port_is_passed_and_published_and_0_turns_it_off(runtime: str) -> None:
    moved = coordinator_of(run_program(config={**CONFIGS[runtime], "metricsPort": "9100"}))
    assert moved.env["COORDINATOR_METRICS_PORT"] == "9100" and moved.published == [9100]
    off = run_program(config={**CONFIGS[runtime], "metricsPort": "0"})
    assert coordinator_of(off).env["COORDINATOR_METRICS_PORT"] == "0" and coordinator_of(off).published == []
    if runtime == "swarm":
        assert "endpointSpec" not in off.one(SERVICE).inputs
    else:
        assert "ports" not in off.one(CONTAINER).inputs


# --- secrets --------------------------------------------------------------------------------------------


def encodings(value: str) -> list[str]:
    """A secret as it could leak: itself, base64 (a swarm secret's data), JSON-escaped inside a document."""
    return [value, base64.b64encode(value.encode()).decode(), json.dumps(value)[1:-1]]


def readings(text: str) -> list[str]:
    """A string as it is, and decoded from base64 when it is base64 (a swarm secret's data holds a document)."""
    try:
        return [text, base64.b64decode(text, validate=True).decode()]
    except ValueError:
        return [text]


def holds(text: str, secret: str) -> bool:
    return any(form in reading for reading in readings(text) for form in encodings(secret))


def secret_values(runtime: str) -> list[str]:
    return [TOKEN, *AGENT_SECRETS.values(), *([REGISTRY_PASSWORD] if runtime == "swarm" else [])]


def test_every_secret_is_secret_wherever_it_goes_and_plain_nowhere(mode: tuple[str, bool],
                                                                   secret_run: ProgramRun) -> None:
    runtime = mode[0]
    for resource in secret_run.resources:
        for secret in secret_values(runtime):
            leaks = [path for path, text in plain_strings(resource.inputs) if holds(text, secret)]
            assert not leaks, f"{resource.typ} {resource.name} holds a secret in plain text at {leaks}"
    coordinator = coordinator_of(secret_run)
    # The token and the agents' secrets reach the coordinator as files, secret-marked; the environment only
    # says where they are.
    assert unwrap(coordinator.files[GITHUB_TOKEN_FILE]) == TOKEN
    assert json.loads(unwrap(coordinator.files[AGENT_SECRETS_FILE])) == AGENT_SECRETS
    for path in (GITHUB_TOKEN_FILE, AGENT_SECRETS_FILE):
        assert list(secret_paths(coordinator.files[path])), f"{path} is not secret-marked"
    assert coordinator.env["AGENT_SECRETS_FILE"] == AGENT_SECRETS_FILE
    assert not list(secret_paths(coordinator.env)) and isinstance(coordinator.files[ROSTER_FILE], str)


def test_where_each_secret_goes(mode: tuple[str, bool], secret_run: ProgramRun) -> None:
    runtime = mode[0]
    found: dict[str, list[tuple[str, str]]] = {}
    for resource in secret_run.resources:
        for path, value in secret_paths(resource.inputs):
            text = value if isinstance(value, str) else json.dumps(value)
            for secret in secret_values(runtime):
                if holds(text, secret):
                    found.setdefault(secret, []).append((resource.typ, path))
    if runtime == "docker":
        assert found[TOKEN] == [("pulumi:providers:github", ".token"), (CONTAINER, ".uploads[1].content")]
        for secret in AGENT_SECRETS.values():
            assert found[secret] == [(CONTAINER, ".uploads[2].content")]
    else:
        assert sorted(found[TOKEN]) == [(SECRET, ".data"), ("pulumi:providers:github", ".token")]
        for secret in AGENT_SECRETS.values():
            assert found[secret] == [(SECRET, ".data")]
        assert sorted(found[REGISTRY_PASSWORD]) == [
            (IMAGE, ".registry.password"), (IMAGE, ".registry.password"), (SERVICE, ".auth.password")]


@pytest.mark.parametrize("runtime", ["docker", "swarm"])
@PREVIEW_AND_UPDATE
def test_a_changed_agent_secret_is_a_change_without_its_value(runtime: str, preview: bool) -> None:
    before = run_program(preview=preview, config=with_secrets(runtime))
    rotated = {**AGENT_SECRETS, "ANTHROPIC_API_KEY": "sk-ant-ROTATED9876543210zyx"}
    after = run_program(preview=preview, config={**with_secrets(runtime), "agentSecrets": json.dumps(rotated)})
    holder = (SECRET, "coordinator-agent-secrets") if runtime == "swarm" else (CONTAINER, "coordinator-container")
    assert changed_resources(before, after) == {holder}
    old, new = by_name(before)[holder], by_name(after)[holder]
    # The difference lies inside secret-marked values alone: preview shows the change, never the value.
    assert list(plain_strings(old)) == list(plain_strings(new))
    assert [path for path, _ in secret_paths(old)] == [path for path, _ in secret_paths(new)]
    assert "sk-ant-ROTATED9876543210zyx" not in json.dumps(list(plain_strings(new)))


def test_agent_secrets_name_checks_and_refusals_never_show_a_value() -> None:
    value = "sk-VALUE-never-shown-0123456789"
    for bad, says in [
        ({"lower_case": value}, "agent-fleet:agentSecrets.lower_case is not a secret's name"),
        ({"A" * 25: value}, "at most 24 characters"),
        ({"EMPTY": ""}, "agent-fleet:agentSecrets.EMPTY holds no usable text"),
        ({"NUMBER": 12345678901}, "agent-fleet:agentSecrets.NUMBER holds no usable text"),
    ]:
        message = refused({"agentSecrets": json.dumps(bad)})
        assert says in message and value not in message and "12345678901" not in message
    message = refused({"agentSecrets": '{"KEY": "' + value + '", "KEY": "x"}'})
    assert "agent-fleet:agentSecrets is not a JSON object" in message and value not in message
    message = refused({"agentSecrets": value})
    assert "agent-fleet:agentSecrets is not a JSON object" in message and value not in message


@pytest.mark.parametrize("key", ["githubToken", "agentSecrets", "registryPassword"])
def test_a_secret_key_stored_in_plain_text_is_refused_without_its_value(key: str) -> None:
    config = {**with_secrets("swarm"), key: '{"GITHUB_TOKEN": "plain-VALUE-0123"}' if key == "agentSecrets"
              else "plain-VALUE-0123"}
    message = refused(config, plain_keys=(key,))
    assert f"agent-fleet:{key} is stored in plain text" in message and "--secret" in message
    assert "plain-VALUE-0123" not in message


def test_a_role_listing_a_secret_the_stack_does_not_hold_is_refused_naming_both() -> None:
    roster = (Role("builder", "Builder", 1, Department.ENGINEERING, Mode.TASK_DRIVEN, "Build.",
                   secrets=("OPENAI_API_KEY",)),)
    message = refused({"agentSecrets": json.dumps(AGENT_SECRETS)}, roster=roster)
    assert message.startswith(
        "roster.py: role 'builder' lists the secret 'OPENAI_API_KEY', but agent-fleet:agentSecrets holds no such "
        "secret (it holds: ANTHROPIC_API_KEY, GITHUB_TOKEN)"
    )
    assert all(value not in message for value in AGENT_SECRETS.values())
    assert "role 'builder' lists the secret 'OPENAI_API_KEY'" in refused({}, roster=roster)


# --- the registry ---------------------------------------------------------------------------------------


def test_a_swarm_without_a_registry_is_refused_naming_both_keys() -> None:
    message = refused({"runtime": "swarm"})
    assert message.startswith("agent-fleet:registry is None: agent-fleet:runtime is 'swarm'")
    assert "pulumi config set registry" in message


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"runtime": "kubernetes"}, "agent-fleet:runtime is 'kubernetes': it is not a runtime; use docker or swarm"),
        (swarm(registry="https://registry.example.com"), "agent-fleet:registry is 'https://registry.example.com': "
                                                         "it is not a registry"),
        (swarm(registryUsername="bot"), "agent-fleet:registryUsername is 'bot': agent-fleet:registryPassword is not"),
        (swarm(registryPassword="pw-VALUE-0123"),
         "agent-fleet:registryPassword is set but agent-fleet:registryUsername"),
        ({"registryUsername": "bot", "registryPassword": "pw-VALUE-0123"}, "agent-fleet:registry is not set"),
        ({"metricsPort": "70000"}, "agent-fleet:metricsPort is '70000'"),
    ],
)
def test_bad_runtime_and_registry_settings_are_refused(config: dict[str, str], says: str) -> None:
    message = refused(config)
    assert says in message and "pw-VALUE-0123" not in message


def test_one_engine_with_a_registry_pushes_there() -> None:
    run = run_program(config={"registry": "ghcr.io/acme"})
    assert built(run, "coordinator").inputs["imageName"] == "ghcr.io/acme/agent-fleet-coordinator:prod"
    assert built(run, "coordinator").inputs["skipPush"] is False
    assert run.one(CONTAINER).inputs["image"] == image_ref("ghcr.io/acme/agent-fleet-coordinator:prod", pushed=True)


# --- GitHub ---------------------------------------------------------------------------------------------


def test_default_branch_ruleset_requires_review_and_checks(run: ProgramRun) -> None:
    ruleset = run.one(RULESET).inputs
    assert ruleset["repository"] == "shop" and ruleset["target"] == "branch"
    assert ruleset["enforcement"] == "active" and ruleset["name"] == "agent-fleet (agent-fleet-prod)"
    assert ruleset["conditions"]["refName"]["includes"] == ["~DEFAULT_BRANCH"]
    pull_request = ruleset["rules"]["pullRequest"]
    assert pull_request["requiredApprovingReviewCount"] >= 1
    assert pull_request["dismissStaleReviewsOnPush"] is True
    assert pull_request["allowedMergeMethods"] == ["squash"]
    checks = ruleset["rules"]["requiredStatusChecks"]["requiredChecks"]
    assert [check["context"] for check in checks] == ["test", "lint"]


def test_github_resources_use_the_stacks_github_provider(run: ProgramRun) -> None:
    provider = run.one("pulumi:providers:github")
    assert provider.inputs["owner"] == "acme"
    for resource in [*run.of_type(LABEL), *run.of_type(RULESET)]:
        assert "$pulumi:providers:github::github::" in resource.provider
    # Without dockerHost, Docker resources use the default provider (DOCKER_HOST or the local socket).
    assert not run.of_type("pulumi:providers:docker")


def test_no_required_checks_means_no_status_check_rule() -> None:
    ruleset = run_program(config={"requiredChecks": None}).one(RULESET).inputs
    assert "requiredStatusChecks" not in ruleset["rules"]
    assert ruleset["rules"]["pullRequest"]["requiredApprovingReviewCount"] == 1


def test_by_default_no_merge_queue_and_no_up_to_date_policy(run: ProgramRun) -> None:
    rules = run.one(RULESET).inputs["rules"]
    assert "mergeQueue" not in rules
    assert rules["requiredStatusChecks"].get("strictRequiredStatusChecksPolicy") in (None, False)


@pytest.mark.parametrize("runtime", ["docker", "swarm"])
def test_the_merge_queue_rule_and_the_strict_policy_as_declared(runtime: str) -> None:
    run = run_program(config={**CONFIGS[runtime], "mergeQueue": "true", "requireUpToDate": "true"})
    rules = run.one(RULESET).inputs["rules"]
    # Squash, every entry's merged result tested, GitHub's own limits unless the stack overrides them.
    assert rules["mergeQueue"] == {
        "mergeMethod": "SQUASH", "groupingStrategy": "ALLGREEN", "checkResponseTimeoutMinutes": 60,
        "maxEntriesToBuild": 5, "minEntriesToMerge": 1, "maxEntriesToMerge": 5, "minEntriesToMergeWaitMinutes": 5,
    }
    assert rules["requiredStatusChecks"]["strictRequiredStatusChecksPolicy"] is True
    assert [check["context"] for check in rules["requiredStatusChecks"]["requiredChecks"]] == ["test", "lint"]
    # The coordinator is told, so that it brings behind branches up to date.
    assert coordinator_of(run).env["MERGE_REQUIRE_UP_TO_DATE"] == "true"


def test_each_merge_queue_limit_is_overridable() -> None:
    limits = '{"checkTimeoutMinutes": 30, "maxEntriesToBuild": 2, "maxEntriesToMerge": 3, "minEntriesToMerge": 2, ' \
        '"minEntriesToMergeWaitMinutes": 0}'
    rules = run_program(config={"mergeQueue": "true", "mergeQueueLimits": limits}).one(RULESET).inputs["rules"]
    assert rules["mergeQueue"] == {
        "mergeMethod": "SQUASH", "groupingStrategy": "ALLGREEN", "checkResponseTimeoutMinutes": 30,
        "maxEntriesToBuild": 2, "minEntriesToMerge": 2, "maxEntriesToMerge": 3, "minEntriesToMergeWaitMinutes": 0,
    }


def test_a_merge_queue_without_required_checks_is_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warned.append(message))
    run_program(config={"mergeQueue": "true"})
    assert not [w for w in warned if "mergeQueue" in w]
    run_program(config={"mergeQueue": "true", "requiredChecks": None})
    [warning] = [w for w in warned if "mergeQueue" in w]
    assert "agent-fleet:requiredChecks is empty" in warning and "merge_group" in warning


# --- changes and stacks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["docker", "swarm"])
@PREVIEW_AND_UPDATE
def test_a_count_change_changes_only_that_role_and_the_roster_file(runtime: str, preview: bool) -> None:
    before = by_name(run_program(preview=preview, config=CONFIGS[runtime]))
    after_run = run_program(preview=preview, config={**CONFIGS[runtime], "counts": '{"code_reviewer": 6}'})
    after = by_name(after_run)
    assert before.keys() == after.keys()
    changed = {key for key in before if before[key] != after[key]}
    # One engine: the container's upload. A swarm: the config's data, which the provider can only replace
    # (a new config, the service moved to it); the mocks keep its name, so the service itself reads unchanged.
    holder = roster_holder(runtime)
    assert changed == {(ROLE, "code_reviewer"), holder}
    assert after[(ROLE, "code_reviewer")] == {**before[(ROLE, "code_reviewer")], "count": 6}
    if runtime == "docker":
        old, new = dict(before[holder]), dict(after[holder])
        assert old.pop("uploads") != new.pop("uploads") and old == new  # the environment is untouched
    roster = json.loads(coordinator_of(after_run).files[ROSTER_FILE])
    assert next(r for r in roster["roles"] if r["key"] == "code_reviewer")["count"] == 6


def test_two_stacks_have_different_fleets() -> None:
    prod, staging = run_program(stack="prod"), run_program(stack="staging")
    assert coordinator_of(prod).env["FLEET_ID"] == "agent-fleet-prod"
    assert coordinator_of(staging).env["FLEET_ID"] == "agent-fleet-staging"
    assert coordinator_of(staging).name == "agent-fleet-staging-coordinator"
    assert built(staging, "coordinator").inputs["imageName"] == "agent-fleet/coordinator:staging"
    assert coordinator_of(staging).labels["agent-fleet.fleet"] == "agent-fleet-staging"
    swarm_staging = run_program(stack="staging", config=SWARM)
    assert coordinator_of(swarm_staging).labels["agent-fleet.fleet"] == "agent-fleet-staging"
    assert built(swarm_staging, "agent").inputs["imageName"] == f"{REGISTRY}/agent-fleet-agent:staging"


@pytest.mark.parametrize("runtime", ["docker", "swarm"])
def test_optional_settings_reach_providers_and_environment(runtime: str) -> None:
    run = run_program(config={
        **CONFIGS[runtime],
        "dockerHost": "ssh://deploy@fleet.example.com", "githubApiUrl": "https://ghe.example.com/api/v3",
        "baseImage": "python:3.12-bookworm", "images": '{"sentinel": "ghcr.io/acme/sentinel:2"}',
        "maxSpawnsPerHour": "40", "agentNetwork": "fleet-net",
    })
    assert run.one("pulumi:providers:docker").inputs["host"] == "ssh://deploy@fleet.example.com"
    for resource in (*run.of_type(IMAGE), coordinator_of(run).resource):
        assert "$pulumi:providers:docker::docker::" in resource.provider
    assert run.one("pulumi:providers:github").inputs["baseUrl"] == "https://ghe.example.com/api/v3"
    for image in run.of_type(IMAGE):
        assert image.inputs["build"]["args"] == {"BASE_IMAGE": "python:3.12-bookworm"}
    env = coordinator_of(run).env
    assert env["GITHUB_API_URL"] == "https://ghe.example.com/api/v3"
    assert env["FLEET_MAX_SPAWNS_PER_HOUR"] == "40" and env["AGENT_NETWORK"] == "fleet-net"
    assert run.one(ROLE, "sentinel").inputs["image"] == "ghcr.io/acme/sentinel:2"


# --- refusals -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"counts": '{"janitor": 2}'}, "agent-fleet:counts.janitor is 2: there is no role 'janitor'"),
        ({"counts": '{"sentinel": -1}'}, "agent-fleet:counts.sentinel is -1: use a whole number"),
        ({"repository": "acme"}, "agent-fleet:repository is 'acme': it is not owner/name; use"),
        ({"schedule": "5 minutes"}, "agent-fleet:schedule is '5 minutes'"),
        ({"schedule": "0 0 30 2 *"}, "agent-fleet:schedule is '0 0 30 2 *': it never fires"),
        ({"counts": '{"sentinel": 1, "sentinel": 2}'}, "has the key 'sentinel' twice"),
        # The documentation's examples (Pulumi.prod.yaml used to deploy them): never a user's repository or host.
        ({"repository": "acme/webapp"}, "agent-fleet:repository is 'acme/webapp': that is the documentation's "
         "example, not your repository; set the repository the fleet works on with `pulumi config set repository"),
        ({"healthUrl": "https://webapp.example.com/healthz"}, "agent-fleet:healthUrl is "
         "'https://webapp.example.com/healthz': its host is a documentation example"),
        ({"repository": None}, "agent-fleet:repository is not set: set the repository the fleet works on with "
         "`pulumi config set repository OWNER/NAME`"),
    ],
)
def test_bad_config_is_refused_before_any_resource(config: dict[str, str | None], message: str) -> None:
    with pytest.raises(ProgramFailed) as failed:
        run_program(config=config)
    assert isinstance(failed.value.error, pulumi.RunError)
    assert message in str(failed.value)
    assert failed.value.declared == ()


def test_missing_token_is_refused() -> None:
    with pytest.raises(ProgramFailed, match="githubToken is not set, nor agent-fleet:githubApp"):
        run_program(token=None)


@pytest.mark.parametrize("short", ["1", "dev", "zq7x9w2"])
def test_secrets_too_short_to_be_secrets_are_refused_at_preview_named_never_shown(short: str) -> None:
    # A short value would be scrubbed out of every line the fleet writes: "1" out of every number.
    message = refused({}, token=short)
    assert "agent-fleet:githubToken is shorter than 8 characters" in message and f"'{short}'" not in message
    message = refused({"agentSecrets": json.dumps({**AGENT_SECRETS, "EXTRA_KEY": short})})
    assert "agent-fleet:agentSecrets.EXTRA_KEY is shorter than 8 characters" in message
    assert f"'{short}'" not in message and "zq7x9w2" not in message
    assert "pulumi config set --secret --path 'agentSecrets.EXTRA_KEY' VALUE" in message


def test_an_agent_secret_larger_than_an_agent_takes_is_refused_at_preview() -> None:
    large = "sk-" + "z" * MAX_AGENT_SECRET_BYTES
    message = refused({"agentSecrets": json.dumps({**AGENT_SECRETS, "EXTRA_KEY": large})})
    assert f"agent-fleet:agentSecrets.EXTRA_KEY is larger than {MAX_AGENT_SECRET_BYTES} bytes" in message
    assert "zzzzzzzz" not in message


def refused(config: dict[str, str | None], *, stack: str = "prod", **kwargs: Any) -> str:
    """The program's error for this config; nothing may have been declared before it."""
    with pytest.raises(ProgramFailed) as failed:
        run_program(config=config, stack=stack, **kwargs)
    assert isinstance(failed.value.error, pulumi.RunError), failed.value.error
    assert failed.value.declared == ()
    return str(failed.value)


@pytest.mark.parametrize(
    ("key", "nearest"),
    [("healthURL", "healthUrl"), ("count", "counts"), ("maxAgent", "maxAgents"), ("githubtoken", "githubToken"),
     ("registryUser", "registryUsername"), ("agentSecret", "agentSecrets"), ("nothingLikeIt", None)],
)
def test_an_unknown_key_of_the_namespace_is_refused_naming_the_nearest_known_one(key: str, nearest: str | None) -> None:
    message = refused({key: "x"})
    assert f"agent-fleet:{key} is not a setting of this program" in message
    if nearest is not None:
        assert f"did you mean agent-fleet:{nearest}?" in message
    else:
        assert "did you mean" not in message


@pytest.mark.parametrize(
    "value",
    [
        f"htps://x-access-token:{TOKEN}@ghe.example.com/api/v3",
        f"ghe.example.com/api/v3?access_token={TOKEN}",
        f"htps://ghe.example.com/{TOKEN}/api/v3",  # recognisable only by its value: the token is scrubbed
    ],
)
@pytest.mark.parametrize("key", ["healthUrl", "githubApiUrl"])
def test_a_refused_url_never_shows_the_token(key: str, value: str) -> None:
    message = refused({key: value})
    assert f"agent-fleet:{key} is " in message and TOKEN not in message


def test_an_agent_secret_pasted_into_another_setting_is_scrubbed_from_the_error() -> None:
    secret = AGENT_SECRETS["ANTHROPIC_API_KEY"]
    message = refused({**with_secrets("docker"), "healthUrl": f"htps://example.com/{secret}"})
    assert "agent-fleet:healthUrl is " in message and secret not in message


def test_counts_over_the_limits_are_refused_before_any_resource_and_the_limits_reach_the_coordinator() -> None:
    assert refused({"counts": '{"code_reviewer": 150}'}).startswith(
        "agent-fleet:counts.code_reviewer is 150: role 'code_reviewer' has a count of 150, more than the limit of "
        "100 agents per role (agent-fleet:maxAgentsPerRole); lower its count, or raise agent-fleet:maxAgentsPerRole"
    )
    assert refused({"maxAgents": "30"}).startswith(
        "agent-fleet:maxAgents is 30: the roster asks for 38 agents in all, more than the fleet's limit of 30 "
        "(agent-fleet:maxAgents); lower some counts, or raise agent-fleet:maxAgents (at most 5000)"
    )
    run = run_program(config={"counts": '{"code_reviewer": 150}', "maxAgentsPerRole": "150"})
    assert coordinator_of(run).env["FLEET_MAX_AGENTS_PER_ROLE"] == "150"


def test_a_million_agents_are_refused_at_once() -> None:
    assert "use a whole number of agents, 0 or more; it is more than 1000" in refused(
        {"counts": '{"code_reviewer": 1000000}'}
    )


@pytest.mark.parametrize(("stack", "says"), [("s" * 13, "more than 24"), ("prödüction", "ASCII")])
def test_the_fleet_id_the_program_derives_is_checked_like_fleet_id(stack: str, says: str) -> None:
    message = refused({}, stack=stack)
    assert message.startswith(f"fleet id 'agent-fleet-{stack}' (<project>-<stack>)") and says in message



# --- GitHub identities -----------------------------------------------------------------------------------------

REVIEWER_APP = {"appId": 101, "installationId": 9101, "privateKey": private_key_pem("reviewer")}
COORDINATOR_APP = {"appId": 102, "installationId": 9102, "privateKey": private_key_pem("coordinator")}
APP_IDENTITIES = {"author": {"token": "ghp_AUTHORTOKEN0123456789abc"}, "reviewer": REVIEWER_APP,
                  "coordinator": COORDINATOR_APP}


def test_a_reviewer_acting_as_the_authors_account_is_refused_with_the_roles_and_both_fixes() -> None:
    shared = {"agentSecrets": json.dumps(AGENT_SECRETS)}  # one GITHUB_TOKEN for every agent
    message = refused(shared)
    assert "role 'code_reviewer' (Reviewer) would act on GitHub with the one GITHUB_TOKEN agent secret" in message
    assert "as role 'ui_builder', which opens pull requests" in message
    assert "GitHub refuses an approval from a pull request's author" in message
    assert "`reviewer` entry in githubIdentities" in message and "agent-fleet:counts.code_reviewer 0" in message
    assert AGENT_SECRETS["GITHUB_TOKEN"] not in message
    # Either fix is accepted: people review, or the reviewers get their own identity.
    run_program(config={**shared, "counts": json.dumps({"code_reviewer": 0})})
    run_program(config={**shared, "githubIdentities": json.dumps(IDENTITIES)})
    # Naming the authors' identity for the reviewers is the same mistake.
    own = [replace(r, identity="author") if r.key == "code_reviewer" else r for r in ROSTER]
    message = refused({**shared, "githubIdentities": json.dumps(IDENTITIES)}, roster=own)
    assert "would act on GitHub with the identity 'author'" in message
    # And an identity the stack does not hold.
    message = refused({"githubIdentities": json.dumps({"author": IDENTITIES["author"]})})
    assert "role 'code_reviewer' acts on GitHub as the identity 'reviewer', but agent-fleet:githubIdentities holds" \
        in message


@pytest.mark.parametrize("runtime", ["docker", "swarm"])
def test_identities_are_secret_everywhere_and_reach_the_coordinator_as_its_files(runtime: str) -> None:
    run = run_program(config={**CONFIGS[runtime], "githubIdentities": json.dumps(APP_IDENTITIES)})
    values = [APP_IDENTITIES["author"]["token"], REVIEWER_APP["privateKey"], COORDINATOR_APP["privateKey"]]
    for resource in run.resources:
        for secret in values:
            leaks = [path for path, text in plain_strings(resource.inputs) if holds(text, secret)]
            assert not leaks, f"{resource.typ} {resource.name} holds an identity in plain text at {leaks}"
    coordinator = coordinator_of(run)
    # The agents' identities, as the coordinator's file spells them; the coordinator's own App is apart.
    assert json.loads(unwrap(coordinator.files[AGENT_IDENTITIES_FILE])) == {
        "author": {"token": APP_IDENTITIES["author"]["token"]},
        "reviewer": {"app_id": 101, "installation_id": 9101, "private_key": REVIEWER_APP["privateKey"]},
    }
    assert json.loads(unwrap(coordinator.files[GITHUB_APP_FILE])) == {
        "app_id": 102, "installation_id": 9102, "private_key": COORDINATOR_APP["privateKey"]}
    for path in (AGENT_IDENTITIES_FILE, GITHUB_APP_FILE):
        assert list(secret_paths(coordinator.files[path])), f"{path} is not secret-marked"
    assert coordinator.env["AGENT_IDENTITIES_FILE"] == AGENT_IDENTITIES_FILE
    assert coordinator.env["GITHUB_APP_FILE"] == GITHUB_APP_FILE
    # The deploy's token stays the deploy's: the provider's, never the running coordinator's.
    assert GITHUB_TOKEN_FILE not in coordinator.files and "GITHUB_TOKEN_FILE" not in coordinator.env
    assert not list(secret_paths(coordinator.env))
    assert not any(holds(text, TOKEN) for _, text in secret_paths(coordinator.resource.inputs)
                   if isinstance(text, str))


def test_a_coordinator_token_identity_replaces_the_deploy_token_in_its_file() -> None:
    coordinator_token = "ghp_COORDINATORTOKEN0123456"
    identities = {**IDENTITIES, "coordinator": {"token": coordinator_token}}
    run = run_program(config={"githubIdentities": json.dumps(identities)})
    coordinator = coordinator_of(run)
    assert unwrap(coordinator.files[GITHUB_TOKEN_FILE]) == coordinator_token
    assert unwrap(run.one("pulumi:providers:github").inputs["token"]) == TOKEN


def test_the_deploy_as_an_app_is_the_providers_app_auth_and_the_preview_warns_about_the_coordinator(
    caplog: pytest.LogCaptureFixture,
) -> None:
    deploy_app = {"appId": 7, "installationId": 77, "privateKey": private_key_pem("deploy")}
    run = run_program(token=None, config={"githubApp": json.dumps(deploy_app),
                                          "githubIdentities": json.dumps(IDENTITIES)})
    provider = run.one("pulumi:providers:github").inputs
    assert "token" not in provider
    # A provider's object input reaches it as JSON text; with the key inside, the whole of it is secret.
    assert is_secret(provider["appAuth"])
    assert json.loads(unwrap(provider["appAuth"])) == {"id": "7", "installationId": "77",
                                                       "pemFile": deploy_app["privateKey"]}
    for resource in run.resources:
        assert not [p for p, text in plain_strings(resource.inputs) if holds(text, deploy_app["privateKey"])]
    assert "the running coordinator would merge with agent-fleet:githubApp, the deploy's credential" in caplog.text
    caplog.clear()
    run_program(config={"githubIdentities": json.dumps(APP_IDENTITIES)})
    assert "the running coordinator would merge with" not in caplog.text


def test_the_preview_says_what_the_first_deploy_sets_going(caplog: pytest.LogCaptureFixture) -> None:
    # Where the user decides (pulumi up's preview): the agents the first cycle starts under the starter cap, and
    # the ruleset that applies to people too.
    with caplog.at_level(logging.INFO):
        run_program()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("this stack runs ")]
    assert len(said) == 1
    assert said[0].startswith("this stack runs 38 agents in 25 roles of acme/shop, each agent a model session that "
                              "costs money: at most 25 start in any hour (maxSpawnsPerHour), so the first cycle "
                              "starts 25 and the rest wait")
    assert "The ruleset 'agent-fleet (agent-fleet-prod)' takes effect on the default branch at once, for people too" \
        in said[0]
