"""`__main__.py` under Pulumi's mocks, in preview and in update mode: what it declares, and with what inputs."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from coordinator.fleet import roster_to_dict
from coordinator.settings import VARIABLES
from deploy.container_spec import GITHUB_TOKEN_FILE, ROSTER_FILE
from deploy.stack_config import parse_stack_config, resolve_roster
from roster import ROSTER
from tests.pulumi_harness import (
    BASE_CONFIG,
    IMAGE_ID,
    TOKEN,
    Declared,
    ProgramFailed,
    ProgramRun,
    plain_strings,
    run_program,
    secret_paths,
)

ROLE = "agent-fleet:index:Role"
LABEL = "github:index/issueLabel:IssueLabel"
RULESET = "github:index/repositoryRuleset:RepositoryRuleset"
IMAGE = "docker:index/image:Image"
CONTAINER = "docker:index/container:Container"


@pytest.fixture(scope="module", params=[True, False], ids=["preview", "update"])
def run(request: pytest.FixtureRequest) -> ProgramRun:
    return run_program(preview=request.param)


def env_of(container: Declared) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in container.inputs["envs"])


def upload(container: Declared, path: str) -> dict[str, Any]:
    [found] = [u for u in container.inputs["uploads"] if u["file"] == path]
    return dict(found)


def test_each_role_is_its_own_resource_with_its_fields(run: ProgramRun) -> None:
    roles = {r.name: r.inputs for r in run.of_type(ROLE)}
    assert list(roles) == [role.key for role in ROSTER]
    for role in ROSTER:
        assert roles[role.key] == {
            "key": role.key, "title": role.title, "count": role.count, "department": role.department.value,
            "mode": role.mode.value, "brief": role.brief, "image": "agent-fleet/agent:latest",
        }


def test_each_role_has_its_label_with_the_brief_as_description(run: ProgramRun) -> None:
    labels = {r.inputs["name"]: r for r in run.of_type(LABEL)}
    for role in ROSTER:
        label = labels[f"role:{role.key}"]
        assert label.inputs["repository"] == "webapp"
        description = label.inputs["description"]
        assert 0 < len(description) <= 100
        assert role.brief.startswith(description.rstrip("…").rstrip("."))
        assert label.parent.endswith(f"{ROLE}::{role.key}")
    assert labels["do-not-merge"].inputs["repository"] == "webapp"
    assert len(labels) == len(ROSTER) + 1


def test_coordinator_image_is_built_locally_and_not_pushed(run: ProgramRun) -> None:
    image = run.one(IMAGE).inputs
    assert image["imageName"] == "agent-fleet/coordinator:prod"
    assert image["skipPush"] is True
    assert image["build"] == {
        "context": ".", "dockerfile": "coordinator/Dockerfile", "args": {"BASE_IMAGE": "python:3.12-slim"},
    }


def test_container_runs_the_fleet(run: ProgramRun) -> None:
    container = run.one(CONTAINER)
    inputs = container.inputs
    assert inputs["name"] == "agent-fleet-prod-coordinator"
    assert inputs["image"] == IMAGE_ID  # the built image's id: a rebuild replaces the container
    assert container.delete_before_replace  # its name is fixed
    assert inputs["volumes"] == [
        {"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock", "readOnly": False}
    ]
    assert inputs["restart"] == "unless-stopped"
    assert inputs["init"] is True  # reaps what a cycle killed at its time limit left behind
    assert "networkMode" not in inputs  # Docker's default network unless the spec asks otherwise
    assert inputs["logDriver"] == "json-file" and inputs["logOpts"] == {"max-size": "10m", "max-file": "5"}
    assert inputs["healthcheck"] == {
        "tests": ["CMD", "python", "-m", "coordinator", "healthcheck"],
        "interval": "60s", "timeout": "10s", "retries": 3, "startPeriod": "600s",
    }
    assert {label["label"]: label["value"] for label in inputs["labels"]} == {
        "agent-fleet.fleet": "agent-fleet-prod", "agent-fleet.component": "coordinator",
    }


def test_container_environment_is_the_runtime_contract(run: ProgramRun) -> None:
    env = env_of(run.one(CONTAINER))
    assert set(env) <= set(VARIABLES)
    assert env == {
        "FLEET_ID": "agent-fleet-prod",
        "FLEET_ROSTER_FILE": ROSTER_FILE,
        "COORDINATOR_SCHEDULE": "*/5 * * * *",
        "GITHUB_REPOSITORY": "acme/webapp",
        "GITHUB_TOKEN_FILE": GITHUB_TOKEN_FILE,
        "REQUIRED_CHECKS": "test,lint",
        "HEALTH_URL": "https://webapp.example.com/healthz",
        # The limits the program checked the roster against, so the coordinator enforces the same ones.
        "FLEET_MAX_AGENTS_PER_ROLE": "100",
        "FLEET_MAX_AGENTS": "500",
    }


def test_roster_file_holds_the_resolved_roster(run: ProgramRun) -> None:
    roster = upload(run.one(CONTAINER), ROSTER_FILE)
    expected = resolve_roster(ROSTER, parse_stack_config(BASE_CONFIG, ROSTER))
    assert json.loads(roster["content"]) == roster_to_dict(expected)


def test_token_is_a_secret_wherever_it_goes(run: ProgramRun) -> None:
    secrets = []
    for resource in run.resources:
        leaks = [path for path, text in plain_strings(resource.inputs) if TOKEN in text]
        assert not leaks, f"{resource.typ} {resource.name} has the token in plain text at {leaks}"
        secrets += [(resource.typ, path) for path, value in secret_paths(resource.inputs) if value == TOKEN]
    assert sorted(secrets) == [
        (CONTAINER, ".uploads[1].content"),
        ("pulumi:providers:github", ".token"),
    ]
    container = run.one(CONTAINER)
    assert upload(container, GITHUB_TOKEN_FILE)["content"]["value"] == TOKEN
    # Only the token is secret: the environment and the roster file stay readable in preview.
    assert not list(secret_paths(container.inputs["envs"]))
    assert isinstance(upload(container, ROSTER_FILE)["content"], str)


def test_default_branch_ruleset_requires_review_and_checks(run: ProgramRun) -> None:
    ruleset = run.one(RULESET).inputs
    assert ruleset["repository"] == "webapp" and ruleset["target"] == "branch"
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


def by_name(run: ProgramRun) -> dict[tuple[str, str], Any]:
    return {(r.typ, r.name): r.inputs for r in run.resources}


@pytest.mark.parametrize("preview", [True, False], ids=["preview", "update"])
def test_a_count_change_changes_only_that_role_and_the_roster_file(preview: bool) -> None:
    before = by_name(run_program(preview=preview))
    after = by_name(run_program(preview=preview, config={"counts": '{"code_reviewer": 6}'}))
    assert before.keys() == after.keys()
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {(ROLE, "code_reviewer"), (CONTAINER, "coordinator-container")}
    assert after[(ROLE, "code_reviewer")] == {**before[(ROLE, "code_reviewer")], "count": 6}
    old, new = (dict(inputs) for inputs in (before[(CONTAINER, "coordinator-container")],
                                            after[(CONTAINER, "coordinator-container")]))
    assert old.pop("uploads") != new.pop("uploads") and old == new  # the environment is untouched
    roster = json.loads(next(u["content"] for u in after[(CONTAINER, "coordinator-container")]["uploads"]
                             if u["file"] == ROSTER_FILE))
    assert next(r for r in roster["roles"] if r["key"] == "code_reviewer")["count"] == 6


def test_two_stacks_have_different_fleets() -> None:
    prod, staging = run_program(stack="prod"), run_program(stack="staging")
    assert env_of(prod.one(CONTAINER))["FLEET_ID"] == "agent-fleet-prod"
    assert env_of(staging.one(CONTAINER))["FLEET_ID"] == "agent-fleet-staging"
    assert staging.one(CONTAINER).inputs["name"] == "agent-fleet-staging-coordinator"
    assert staging.one(IMAGE).inputs["imageName"] == "agent-fleet/coordinator:staging"
    assert {"label": "agent-fleet.fleet", "value": "agent-fleet-staging"} in staging.one(CONTAINER).inputs["labels"]


def test_optional_settings_reach_providers_and_environment() -> None:
    run = run_program(config={
        "dockerHost": "ssh://deploy@fleet.example.com", "githubApiUrl": "https://ghe.example.com/api/v3",
        "baseImage": "python:3.12-bookworm", "images": '{"sentinel": "ghcr.io/acme/sentinel:2"}',
        "maxSpawnsPerHour": "40", "agentNetwork": "fleet-net",
    })
    assert run.one("pulumi:providers:docker").inputs["host"] == "ssh://deploy@fleet.example.com"
    for resource in (run.one(IMAGE), run.one(CONTAINER)):
        assert "$pulumi:providers:docker::docker::" in resource.provider
    assert run.one("pulumi:providers:github").inputs["baseUrl"] == "https://ghe.example.com/api/v3"
    assert run.one(IMAGE).inputs["build"]["args"] == {"BASE_IMAGE": "python:3.12-bookworm"}
    env = env_of(run.one(CONTAINER))
    assert env["GITHUB_API_URL"] == "https://ghe.example.com/api/v3"
    assert env["FLEET_MAX_SPAWNS_PER_HOUR"] == "40" and env["AGENT_NETWORK"] == "fleet-net"
    assert run.one(ROLE, "sentinel").inputs["image"] == "ghcr.io/acme/sentinel:2"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"counts": '{"janitor": 2}'}, "agent-fleet:counts.janitor is 2: there is no role 'janitor'"),
        ({"counts": '{"sentinel": -1}'}, "agent-fleet:counts.sentinel is -1: use a whole number"),
        ({"repository": "acme"}, "agent-fleet:repository is 'acme': it is not owner/name; use"),
        ({"schedule": "5 minutes"}, "agent-fleet:schedule is '5 minutes'"),
        ({"schedule": "0 0 30 2 *"}, "agent-fleet:schedule is '0 0 30 2 *': it never fires"),
        ({"counts": '{"sentinel": 1, "sentinel": 2}'}, "has the key 'sentinel' twice"),
    ],
)
def test_bad_config_is_refused_before_any_resource(config: dict[str, str], message: str) -> None:
    with pytest.raises(ProgramFailed) as failed:
        run_program(config=config)
    assert isinstance(failed.value.error, pulumi.RunError)
    assert message in str(failed.value)
    assert failed.value.declared == ()


def test_missing_token_is_refused() -> None:
    with pytest.raises(ProgramFailed, match="githubToken"):
        run_program(token=None)


def refused(config: dict[str, str | None], *, stack: str = "prod") -> str:
    """The program's error for this config; nothing may have been declared before it."""
    with pytest.raises(ProgramFailed) as failed:
        run_program(config=config, stack=stack)
    assert isinstance(failed.value.error, pulumi.RunError)
    assert failed.value.declared == ()
    return str(failed.value)


@pytest.mark.parametrize(
    ("key", "nearest"),
    [("healthURL", "healthUrl"), ("count", "counts"), ("maxAgent", "maxAgents"), ("githubtoken", "githubToken"),
     ("nothingLikeIt", None)],
)
def test_an_unknown_key_of_the_namespace_is_refused_naming_the_nearest_known_one(key: str, nearest: str | None) -> None:
    message = refused({key: "x"})
    assert f"agent-fleet:{key} is not a setting of this program" in message
    if nearest is not None:
        assert f"did you mean agent-fleet:{nearest}?" in message
    else:
        assert "did you mean" not in message


def test_the_secret_keys_are_known_keys() -> None:
    run_program(config={"agentSecrets": '{"code_reviewer": {"OPENAI_API_KEY": "x"}}'})


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
    assert env_of(run.one(CONTAINER))["FLEET_MAX_AGENTS_PER_ROLE"] == "150"


def test_a_million_agents_are_refused_at_once() -> None:
    assert "use a whole number of agents, 0 or more; it is more than 1000" in refused(
        {"counts": '{"code_reviewer": 1000000}'}
    )


@pytest.mark.parametrize(("stack", "says"), [("s" * 13, "more than 24"), ("prödüction", "ASCII")])
def test_the_fleet_id_the_program_derives_is_checked_like_fleet_id(stack: str, says: str) -> None:
    message = refused({}, stack=stack)
    assert message.startswith(f"fleet id 'agent-fleet-{stack}' (<project>-<stack>)") and says in message
