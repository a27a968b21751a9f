"""The stack config: parsing, refusals that name the key and value, roster resolution, Pulumi.yaml's schema."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from coordinator import cron, settings
from coordinator.fleet import (
    DEFAULT_MAX_AGENTS,
    DEFAULT_MAX_AGENTS_PER_ROLE,
    MAX_AGENT_SECRET_BYTES,
    Department,
    Mode,
    Role,
    roster_to_json,
)
from coordinator.redact import MIN_SECRET_CHARS
from coordinator.settings import DEFAULT_METRICS_PORT
from coordinator.steps.inventory import Inventory
from coordinator.steps.reconcile import plan_reconcile
from deploy.coordinator_spec import (
    AGENT_SECRETS_FILE,
    DOCKER_SOCKET,
    GITHUB_TOKEN_FILE,
    ROSTER_FILE,
    Source,
    coordinator_spec,
)
from deploy.stack_config import (
    CONFIG_KEYS,
    DEFAULT_BASE_IMAGE,
    DEFAULT_HEALTHCHECK_INTERVAL_SECONDS,
    DEFAULT_MAX_SPAWNS_PER_HOUR,
    SECRET_KEYS,
    MergeQueueLimits,
    SecretsPresent,
    StackConfig,
    StackConfigError,
    check_github_token,
    check_known_keys,
    deploy_summary,
    fleet_id,
    merge_policy_warnings,
    missing_reference_secrets,
    parse_agent_secret_names,
    parse_stack_config,
    reference_secret_warnings,
    resolve_roster,
)
from roster import ROSTER
from tests.docker_sdk_spec import SwarmObject, create_kwargs, service_kwargs

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {"repository": "acme/shop"}


BUILT = "sha256:0123456789abcdef"  # what the program's agent image build gives, in these tests


def parse(**raw: str) -> StackConfig:
    return parse_stack_config({**MINIMAL, **raw}, ROSTER)


def test_minimal_config_takes_the_defaults() -> None:
    config = parse_stack_config(MINIMAL, ROSTER)
    assert (config.owner, config.repository_name) == ("acme", "shop")
    assert config.schedule == "*/5 * * * *" and config.agent_image is None  # None: the program builds it
    assert config.health_url is None and config.docker_host is None and config.counts == {}
    assert config.runtime == "docker" and config.registry is None and config.metrics_port == DEFAULT_METRICS_PORT
    assert config.agent_secret_names == ()


def test_empty_strings_mean_unset_as_the_project_defaults_give_them() -> None:
    config = parse_stack_config({**MINIMAL, "healthUrl": "", "dockerHost": "", "counts": "{}"}, ROSTER)
    assert config.health_url is None and config.docker_host is None


@pytest.mark.parametrize(
    ("raw", "key", "value"),
    [
        ({"counts": '{"api_builder": -1}'}, "agent-fleet:counts.api_builder", "-1"),
        ({"counts": '{"api_builder": 2.5}'}, "agent-fleet:counts.api_builder", "2.5"),
        ({"counts": '{"api_builder": "three"}'}, "agent-fleet:counts.api_builder", "'three'"),
        ({"counts": '{"api_builder": true}'}, "agent-fleet:counts.api_builder", "True"),
        ({"counts": '{"janitor": 1}'}, "agent-fleet:counts.janitor", "1"),
        ({"counts": "[1, 2]"}, "agent-fleet:counts", "[1, 2]"),
        ({"counts": "api_builder=1"}, "agent-fleet:counts", "'api_builder=1'"),
        ({"images": '{"janitor": "x:1"}'}, "agent-fleet:images.janitor", "'x:1'"),
        ({"images": '{"ui_builder": ""}'}, "agent-fleet:images.ui_builder", "''"),
        ({"repository": "webapp"}, "agent-fleet:repository", "'webapp'"),
        ({"repository": "acme/web/app"}, "agent-fleet:repository", "'acme/web/app'"),
        ({"repository": ""}, "agent-fleet:repository", "not set"),
        ({"schedule": "every 5 minutes"}, "agent-fleet:schedule", "'every 5 minutes'"),
        ({"schedule": "*/5 * * *"}, "agent-fleet:schedule", "'*/5 * * *'"),
        ({"schedule": "0 0 30 2 *"}, "agent-fleet:schedule", "'0 0 30 2 *'"),
        ({"schedule": "* * * * * * *"}, "agent-fleet:schedule", "'* * * * * * *'"),
        ({"schedule": "*/20 * * * * *"}, "agent-fleet:schedule", "'*/20 * * * * *'"),
        ({"counts": '{"api_builder": 1000000}'}, "agent-fleet:counts.api_builder", "1000000"),
        ({"counts": '{"sentinel": 1, "sentinel": 2}'}, "agent-fleet:counts", '\'{"sentinel": 1, "sentinel": 2}\''),
        ({"counts": '{"api_builder": NaN}'}, "agent-fleet:counts", "'{\"api_builder\": NaN}'"),
        ({"images": '{"ui_builder": "bad image"}'}, "agent-fleet:images.ui_builder", "'bad image'"),
        ({"agentImage": "agent\nimage"}, "agent-fleet:agentImage", "'agent\\nimage'"),
        ({"maxAgentsPerRole": "1001"}, "agent-fleet:maxAgentsPerRole", "'1001'"),
        ({"maxAgents": "0"}, "agent-fleet:maxAgents", "'0'"),
        ({"healthcheckIntervalSeconds": "86400"}, "agent-fleet:healthcheckIntervalSeconds", "'86400'"),
        ({"agentNetwork": "my net"}, "agent-fleet:agentNetwork", "'my net'"),
        ({"repository": "acme\n/webapp"}, "agent-fleet:repository", "'acme\\n/webapp'"),
        ({"healthUrl": "webapp.example.com"}, "agent-fleet:healthUrl", "'webapp.example.com'"),
        ({"requiredChecks": '"test"'}, "agent-fleet:requiredChecks", "'test'"),
        ({"requiredChecks": '["a,b"]'}, "agent-fleet:requiredChecks", "['a,b']"),
        ({"maxSpawnsPerHour": "-3"}, "agent-fleet:maxSpawnsPerHour", "'-3'"),
        ({"healthcheckIntervalSeconds": "0"}, "agent-fleet:healthcheckIntervalSeconds", "'0'"),
        ({"dockerHost": "myhost:2375"}, "agent-fleet:dockerHost", "'myhost:2375'"),
        ({"runtime": "Swarm"}, "agent-fleet:runtime", "'Swarm'"),
        ({"registry": "acme"}, "agent-fleet:registry", "'acme'"),
        ({"registry": "GHCR.io/acme"}, "agent-fleet:registry", "'GHCR.io/acme'"),
        ({"registry": "ghcr.io/acme", "registryUsername": "bot name"}, "agent-fleet:registryUsername", "'bot name'"),
        ({"metricsPort": "-1"}, "agent-fleet:metricsPort", "'-1'"),
        ({"metricsPort": "65536"}, "agent-fleet:metricsPort", "'65536'"),
        ({"runtime": "swarm"}, "agent-fleet:registry", "None"),
        ({"mergeQueue": "yes"}, "agent-fleet:mergeQueue", "'yes'"),
        ({"requireUpToDate": "1"}, "agent-fleet:requireUpToDate", "'1'"),
        ({"mergeQueueLimits": "[5]"}, "agent-fleet:mergeQueueLimits", "[5]"),
        ({"mergeQueueLimits": '{"timeout": 5}'}, "agent-fleet:mergeQueueLimits.timeout", "5"),
        ({"mergeQueueLimits": '{"checkTimeoutMinutes": 0}'}, "agent-fleet:mergeQueueLimits.checkTimeoutMinutes", "0"),
        ({"mergeQueueLimits": '{"maxEntriesToBuild": 101}'}, "agent-fleet:mergeQueueLimits.maxEntriesToBuild", "101"),
        ({"mergeQueueLimits": '{"maxEntriesToMerge": "5"}'}, "agent-fleet:mergeQueueLimits.maxEntriesToMerge", "'5'"),
        ({"mergeQueueLimits": '{"minEntriesToMerge": 6}'}, "agent-fleet:mergeQueueLimits.minEntriesToMerge", "6"),
    ],
)
def test_bad_setting_is_refused_naming_key_and_value(raw: dict[str, str], key: str, value: str) -> None:
    with pytest.raises(StackConfigError) as refused:
        parse(**raw)
    assert str(refused.value).startswith(f"{key} is {value}: ")


def test_json_values_are_read_strictly() -> None:
    with pytest.raises(StackConfigError, match=r"^agent-fleet:counts is .*…': it has a number of more than 18 digits"):
        parse(counts='{"api_builder": ' + "9" * 5000 + "}")
    with pytest.raises(StackConfigError, match="it is nested too deeply"):
        parse(requiredChecks="[" * 10_000 + "]" * 10_000)


def test_unknown_role_error_lists_the_known_roles() -> None:
    with pytest.raises(StackConfigError, match="known roles: product_designer, system_architect"):
        parse(counts='{"janitor": 1}')


def test_counts_and_images_override_the_roster_for_this_stack_only() -> None:
    config = parse(counts='{"code_reviewer": 6, "sentinel": 0}', images='{"ui_builder": "ghcr.io/acme/ui:2"}',
                   agentImage="ghcr.io/acme/agent:1")
    specs = {spec.key: spec for spec in resolve_roster(ROSTER, config)}
    assert [spec.key for spec in resolve_roster(ROSTER, config)] == [role.key for role in ROSTER]
    assert specs["code_reviewer"].role.count == 6 and specs["sentinel"].role.count == 0
    assert specs["api_builder"].role.count == 3  # untouched roles keep the roster's count
    assert specs["ui_builder"].image == "ghcr.io/acme/ui:2"
    assert specs["api_builder"].image == "ghcr.io/acme/agent:1"
    assert next(r for r in ROSTER if r.key == "code_reviewer").count == 4  # the roster itself is unchanged


def test_without_agent_image_every_role_runs_the_built_image_unless_the_stack_names_its_own() -> None:
    config = parse(images='{"ui_builder": "ghcr.io/acme/ui:2"}')
    specs = {spec.key: spec for spec in resolve_roster(ROSTER, config, built_agent_image=BUILT)}
    assert specs["ui_builder"].image == "ghcr.io/acme/ui:2" and specs["api_builder"].image == BUILT
    with pytest.raises(ValueError, match="has no image"):
        resolve_roster(ROSTER, config)


def test_agent_secret_names_are_checked_and_no_value_is_ever_shown() -> None:
    assert parse_agent_secret_names('{"GITHUB_TOKEN": "t0ken-0123", "ANTHROPIC_API_KEY": "k3y-0123"}') == (
        "ANTHROPIC_API_KEY", "GITHUB_TOKEN")
    assert parse_agent_secret_names("") == parse_agent_secret_names(None) == parse_agent_secret_names("{}") == ()
    value = "s3cr3t-VALUE-0123456789"
    for raw, says in [
        (f'{{"lower": "{value}"}}', "agent-fleet:agentSecrets.lower is not a secret's name"),
        (f'{{"{"A" * 25}": "{value}"}}', "at most 24 characters"),
        ('{"EMPTY": ""}', "agent-fleet:agentSecrets.EMPTY holds no usable text"),
        ('{"NESTED": {"x": "' + value + '"}}', "agent-fleet:agentSecrets.NESTED holds no usable text"),
        ('{"NUL": "a\\u0000b"}', "agent-fleet:agentSecrets.NUL holds no usable text"),
        (f'["{value}"]', "agent-fleet:agentSecrets is not a JSON object of NAME: value;"),
        (f'{{"KEY": "{value}", "KEY": "{value}"}}', "has the key 'KEY' twice"),
        (value, "agent-fleet:agentSecrets is not a JSON object of NAME: value: it "),
        ('{"SHORT": "zq7x9w2"}', "agent-fleet:agentSecrets.SHORT is shorter than 8 characters, too short to be a "
         "secret (scrubbing it from the fleet's output would blank ordinary text); set its real key or token with "
         "`pulumi config set --secret --path 'agentSecrets.SHORT' VALUE`, or remove it"),
        ('{"SHORT": "  zq7x9w2\\n"}', "agent-fleet:agentSecrets.SHORT is shorter than 8 characters"),  # stripped
        ('{"LARGE": "' + "z" * (MAX_AGENT_SECRET_BYTES + 1) + '"}',
         f"agent-fleet:agentSecrets.LARGE is larger than {MAX_AGENT_SECRET_BYTES} bytes, the most an agent secret "
         "may hold; set its real key or token"),
    ]:
        with pytest.raises(StackConfigError) as refused:
            parse_agent_secret_names(raw)
        assert "zq7x9w2" not in str(refused.value) and "zzzzzzzz" not in str(refused.value)
        assert says in str(refused.value) and value not in str(refused.value), str(refused.value)


def test_agent_secrets_at_the_bounds_are_taken() -> None:
    raw = json.dumps({"SHORTEST": "z" * MIN_SECRET_CHARS, "LARGEST": "z" * MAX_AGENT_SECRET_BYTES})
    assert parse_agent_secret_names(raw) == ("LARGEST", "SHORTEST")


@pytest.mark.parametrize("token", ["1", "dev", " zq7x9w2 "])
def test_a_github_token_too_short_to_be_one_is_refused_never_shown(token: str) -> None:
    with pytest.raises(StackConfigError) as refused:
        check_github_token(token)
    assert str(refused.value) == (
        "agent-fleet:githubToken is shorter than 8 characters, too short to be a token (scrubbing it from the "
        "coordinator's output would blank ordinary text); set the whole token with "
        "`pulumi config set --secret githubToken`")
    check_github_token("ghp_" + "z" * 4)
    check_github_token(None)  # unset: Pulumi refuses a required key itself


def test_a_role_may_only_list_secrets_the_stack_holds() -> None:
    roles = [Role("builder", "Builder", 1, Department.ENGINEERING, Mode.TASK_DRIVEN, "Build.", secrets=("GH",))]
    with pytest.raises(StackConfigError) as refused:
        parse_stack_config(MINIMAL, roles, SecretsPresent(agent_secrets=("OTHER",)))
    assert str(refused.value).startswith(
        "roster.py: role 'builder' lists the secret 'GH', but agent-fleet:agentSecrets holds no such secret "
        "(it holds: OTHER); set it with `pulumi config set --secret --path 'agentSecrets.GH' VALUE`"
    )
    config = parse_stack_config(MINIMAL, roles, SecretsPresent(agent_secrets=("GH", "OTHER")))
    assert config.agent_secret_names == ("GH", "OTHER")


def test_the_reference_image_s_missing_secrets_are_named_per_secret() -> None:
    roles = [Role("builder", "Builder", 1, Department.ENGINEERING, Mode.TASK_DRIVEN, "Build."),
             Role("scoped", "Scoped", 1, Department.ENGINEERING, Mode.TASK_DRIVEN, "Build.", secrets=("GITHUB_TOKEN",)),
             Role("own", "Own", 1, Department.ENGINEERING, Mode.TASK_DRIVEN, "Build.")]
    present = SecretsPresent(agent_secrets=("ANTHROPIC_API_KEY", "GITHUB_TOKEN"))
    config = parse_stack_config({**MINIMAL, "images": '{"own": "ghcr.io/acme/own:1"}'}, roles, present)
    assert missing_reference_secrets(roles, config) == {"ANTHROPIC_API_KEY": ["scoped"]}
    bare = parse_stack_config(MINIMAL, roles[:1])
    assert missing_reference_secrets(roles[:1], bare) == {"GITHUB_TOKEN": ["builder"], "ANTHROPIC_API_KEY": ["builder"]}
    sentinel = [Role("sentinel", "Sentinel", 1, Department.GATES, Mode.SENTINEL, "Watch.", secrets=("GITHUB_TOKEN",))]
    assert missing_reference_secrets(sentinel, config) == {}  # it runs no model: no key needed
    [token, key] = reference_secret_warnings(ROSTER, parse())
    assert token.startswith("the reference agent image needs the agent secret GITHUB_TOKEN, which product_designer, "
                            "system_architect, uiux_designer and 22 more do not receive: their agents will exit 78")
    assert "agentSecrets.ANTHROPIC_API_KEY" in key


@pytest.mark.parametrize(
    ("raw", "present", "says"),
    [
        ({"runtime": "swarm"}, SecretsPresent(),
         "agent-fleet:registry is None: agent-fleet:runtime is 'swarm', and every node of a swarm pulls"),
        ({"registry": "ghcr.io/acme", "registryUsername": "bot"}, SecretsPresent(),
         "agent-fleet:registryUsername is 'bot': agent-fleet:registryPassword is not set"),
        ({"registry": "ghcr.io/acme"}, SecretsPresent(registry_password=True),
         "agent-fleet:registryPassword is set but agent-fleet:registryUsername is not"),
        ({"registryUsername": "bot"}, SecretsPresent(registry_password=True),
         "agent-fleet:registryUsername is 'bot': agent-fleet:registry is not set"),
    ],
)
def test_runtime_and_registry_settings_are_refused_together(
    raw: dict[str, str], present: SecretsPresent, says: str
) -> None:
    with pytest.raises(StackConfigError) as refused:
        parse_stack_config({**MINIMAL, **raw}, ROSTER, present)
    assert str(refused.value).startswith(says)


def test_a_swarm_with_a_registry_names_where_each_image_goes() -> None:
    config = parse_stack_config(
        {**MINIMAL, "runtime": "swarm", "registry": "registry.example.com:5000/acme", "registryUsername": "bot"},
        ROSTER, SecretsPresent(registry_password=True),
    )
    assert config.on_swarm and config.registry_server == "registry.example.com:5000"
    assert config.image_repository("agent") == "registry.example.com:5000/acme/agent-fleet-agent"
    assert parse().image_repository("coordinator") == "agent-fleet/coordinator"


def test_fleet_id_is_project_dash_stack() -> None:
    assert fleet_id("agent-fleet", "prod") == "agent-fleet-prod"
    assert fleet_id("agent-fleet", "prod") != fleet_id("agent-fleet", "staging")


@pytest.mark.parametrize(("stack", "says"), [("staging-europe", "more than 24"), ("prüf", "ASCII"), ("a b", "ASCII")])
def test_the_derived_fleet_id_is_checked_as_fleet_id_is(stack: str, says: str) -> None:
    with pytest.raises(StackConfigError) as refused:
        fleet_id("agent-fleet", stack)
    assert str(refused.value).startswith(f"fleet id {f'agent-fleet-{stack}'!r} (<project>-<stack>)")
    assert says in str(refused.value)


def test_on_a_swarm_the_derived_fleet_id_holds_no_dot() -> None:
    assert fleet_id("agent-fleet", "prod.eu") == "agent-fleet-prod.eu"  # one Docker engine takes it
    with pytest.raises(StackConfigError) as refused:
        fleet_id("agent-fleet", "prod.eu", "swarm")
    assert str(refused.value).startswith("fleet id 'agent-fleet-prod.eu' (<project>-<stack>) holds a '.', which a "
                                         "swarm refuses in service names")
    assert fleet_id("agent-fleet", "prod-eu", "swarm") == "agent-fleet-prod-eu"


@pytest.mark.parametrize(("schedule", "start_period"), [("*/5 * * * *", 600), ("0 9 * * 1-5", 6 * 24 * 3600)])
def test_the_health_checks_start_period_is_two_of_the_schedules_longest_intervals(
    schedule: str, start_period: int
) -> None:
    spec = coordinator_spec(fleet_id="f", config=parse(schedule=schedule))
    assert spec.healthcheck.start_period_seconds == start_period == 2 * cron.longest_interval(schedule)


def test_limits_are_refused_naming_the_role_the_count_the_limit_and_the_key() -> None:
    with pytest.raises(StackConfigError) as over_role:
        parse(counts='{"code_reviewer": 101}')
    assert str(over_role.value) == (
        "agent-fleet:counts.code_reviewer is 101: role 'code_reviewer' has a count of 101, more than the limit of "
        "100 agents per role (agent-fleet:maxAgentsPerRole); lower its count, or raise agent-fleet:maxAgentsPerRole "
        "(at most 1000)"
    )
    with pytest.raises(StackConfigError, match=r"^agent-fleet:maxAgentsPerRole is 3: role 'ui_builder' has a count "
                                               r"of 3 \(.*\)|^roster.py: role 'ui_builder' has a count of 3"):
        parse(maxAgentsPerRole="2")
    config = parse(counts='{"code_reviewer": 101}', maxAgentsPerRole="101", maxAgents="600")
    assert (config.max_agents_per_role, config.max_agents) == (101, 600)
    assert (parse().max_agents_per_role, parse().max_agents) == (DEFAULT_MAX_AGENTS_PER_ROLE, DEFAULT_MAX_AGENTS)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("healthUrl", "htps://x-access-token:{token}@webapp.example.com/healthz"),
        ("healthUrl", "webapp.example.com/healthz?key={token}"),
        ("healthUrl", "webapp.example.com/healthz#{token}"),
        ("githubApiUrl", "htps://x-access-token:{token}@ghe.example.com/api/v3"),
        ("githubApiUrl", "{token}@ghe.example.com/api/v3"),
        ("githubApiUrl", "ghe.example.com/api/v3?access_token={token}"),
        ("dockerHost", "htps://deploy:{token}@fleet.example.com"),
    ],
)
def test_a_refused_url_key_never_shows_a_token_in_it(key: str, value: str) -> None:
    token = "ghp_FAKEfakeFAKEfake0123456789"
    with pytest.raises(StackConfigError) as refused:
        parse(**{key: value.format(token=token)})
    assert str(refused.value).startswith(f"agent-fleet:{key} is '") and token not in str(refused.value)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["repository", "githubToken", "agentSecrets", *CONFIG_KEYS], None),
        (["repository", "healthURL"], "agent-fleet:healthURL is not a setting of this program; "
                                      "did you mean agent-fleet:healthUrl?"),
        (["schedules"], "did you mean agent-fleet:schedule?"),
        (["zzz"], "agent-fleet:zzz is not a setting of this program; set the right key"),
    ],
)
def test_unknown_keys_are_refused_naming_the_nearest(keys: list[str], message: str | None) -> None:
    if message is None:
        check_known_keys(keys)
    else:
        with pytest.raises(StackConfigError, match=re.escape(message)):
            check_known_keys(keys)


def test_container_spec_sets_the_runtime_settings_and_no_secret() -> None:
    config = parse(healthUrl="https://w.acme.test/", requiredChecks='["test", "lint"]',
                   githubApiUrl="https://ghe.example.com/api/v3", maxSpawnsPerHour="30", agentNetwork="fleet")
    spec = coordinator_spec(fleet_id="agent-fleet-prod", config=config)
    assert set(spec.env) <= set(settings.VARIABLES)
    assert "GITHUB_TOKEN" not in spec.env and "AGENT_SECRETS_FILE" not in spec.env  # no agent secret: no file
    assert spec.env["GITHUB_TOKEN_FILE"] == GITHUB_TOKEN_FILE
    assert spec.env["REQUIRED_CHECKS"] == "test,lint" and spec.env["FLEET_MAX_SPAWNS_PER_HOUR"] == "30"
    assert spec.env["FLEET_MAX_AGENTS_PER_ROLE"] == "100" and spec.env["FLEET_MAX_AGENTS"] == "500"
    assert spec.env["FLEET_ROSTER_FILE"] == ROSTER_FILE and spec.env["FLEET_RUNTIME"] == "docker"
    assert spec.env["COORDINATOR_METRICS_PORT"] == "9464"
    assert [(f.source, f.path, f.secret) for f in spec.files] == [
        (Source.ROSTER, ROSTER_FILE, False), (Source.GITHUB_TOKEN, GITHUB_TOKEN_FILE, True)]
    assert spec.healthcheck.start_period_seconds == 600
    kwargs = create_kwargs(spec, "img:1")
    assert kwargs["image"] == "img:1"
    assert kwargs["volumes"] == {DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "rw"}}
    assert kwargs["restart_policy"] == {"Name": "unless-stopped"}
    assert kwargs["log_config"] == {"type": "json-file", "config": {"max-size": "10m", "max-file": "5"}}
    assert kwargs["labels"] == {"agent-fleet.fleet": "agent-fleet-prod", "agent-fleet.component": "coordinator"}
    assert kwargs["ports"] == {"9464/tcp": 9464}
    assert "ports" not in create_kwargs(coordinator_spec(fleet_id="f", config=parse(metricsPort="0")), "i")


def test_service_spec_is_the_same_coordinator_on_a_manager_with_its_files_as_swarm_objects() -> None:
    config = parse_stack_config(
        {**MINIMAL, "runtime": "swarm", "registry": "ghcr.io/acme"}, ROSTER, SecretsPresent(agent_secrets=("KEY",)),
    )
    spec = coordinator_spec(fleet_id="agent-fleet-prod", config=config)
    assert spec.env["FLEET_RUNTIME"] == "swarm" and spec.env["AGENT_SECRETS_FILE"] == AGENT_SECRETS_FILE
    objects = {source: SwarmObject(f"{source}-id", f"{source}-name") for source in Source}
    kwargs = service_kwargs(spec, "ghcr.io/acme/agent-fleet-coordinator@sha256:ab", objects)
    assert kwargs["name"] == "agent-fleet-prod-coordinator" and kwargs["env"] == dict(spec.env)
    assert kwargs["labels"] == kwargs["container_labels"] == dict(spec.labels)
    assert kwargs["constraints"] == ["node.role==manager"] and kwargs["mode"] == {"Replicated": {"Replicas": 1}}
    assert kwargs["restart_policy"]["Condition"] == "on-failure"
    assert kwargs["mounts"] == [{"Type": "bind", "Source": DOCKER_SOCKET, "Target": DOCKER_SOCKET, "ReadOnly": False}]
    assert kwargs["endpoint_spec"] == {"Ports": [
        {"Protocol": "tcp", "TargetPort": 9464, "PublishedPort": 9464, "PublishMode": "host"}]}
    assert kwargs["configs"] == [{"File": {"Name": ROSTER_FILE, "UID": "0", "GID": "0", "Mode": 0o444},
                                  "ConfigID": "roster-id", "ConfigName": "roster-name"}]
    assert [(s["File"]["Name"], s["SecretID"]) for s in kwargs["secrets"]] == [
        (GITHUB_TOKEN_FILE, "github-token-id"), (AGENT_SECRETS_FILE, "agent-secrets-id")]
    assert kwargs["healthcheck"]["Test"] == list(spec.healthcheck.test)
    assert "command" not in kwargs and "args" not in kwargs and "networks" not in kwargs
    lab = coordinator_spec(fleet_id="f", config=config, network="host", docker_socket="/tmp/lab/n1/docker.sock")
    lab_kwargs = service_kwargs(lab, "i", objects)
    assert lab_kwargs["networks"] == ["host"] and lab_kwargs["mounts"][0]["Source"] == "/tmp/lab/n1/docker.sock"


def test_the_runtime_reads_back_what_the_spec_sets(tmp_path: Path) -> None:
    """The container's environment and files, as the runtime's own settings loader reads them."""
    present = SecretsPresent(agent_secrets=("GITHUB_TOKEN",), identities=(("author", "token"), ("reviewer", "token")))
    config = parse_stack_config({**MINIMAL, "counts": '{"code_reviewer": 6}', "healthUrl": "https://w.acme.test/"},
                                ROSTER, present)
    roster = resolve_roster(ROSTER, config, built_agent_image=BUILT)
    spec = coordinator_spec(fleet_id="agent-fleet-prod", config=config)
    contents = {Source.ROSTER: roster_to_json(roster), Source.GITHUB_TOKEN: "t0ken-0123456789",
                Source.AGENT_SECRETS: json.dumps({"GITHUB_TOKEN": "agent-t0ken"}),
                Source.AGENT_IDENTITIES: json.dumps({"author": {"token": "a-t0ken-0123"},
                                                     "reviewer": {"token": "r-t0ken-0123"}})}
    env = dict(spec.env)
    for spec_file in spec.files:
        local = tmp_path / spec_file.source
        local.write_text(contents[spec_file.source])
        variable = next(name for name, value in spec.env.items() if value == spec_file.path)
        env[variable] = str(local)
    loaded = settings.load_settings(env)
    assert loaded.fleet_id == "agent-fleet-prod" and loaded.roster == roster
    assert loaded.github is not None and loaded.github.token.reveal() == "t0ken-0123456789"
    assert {name: secret.reveal() for name, secret in loaded.agent_secrets.items()} == {"GITHUB_TOKEN": "agent-t0ken"}
    assert set(loaded.agent_identities) == {"author", "reviewer"}
    assert loaded.health is not None and loaded.skipped == {}
    assert (loaded.limits.per_role, loaded.limits.total) == (config.max_agents_per_role, config.max_agents)
    assert loaded.runtime.kind == "docker"


# --- Pulumi.yaml and Pulumi.prod.yaml -------------------------------------------------------------

PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
PROD = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())


def test_project_file_names_runtime_backend_and_description() -> None:
    assert PROJECT["name"] == "agent-fleet" and PROJECT["description"]
    assert PROJECT["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}}
    assert PROJECT["backend"]["url"].startswith("file://")


def test_project_schema_types_every_key_and_requires_only_repository() -> None:
    schema = PROJECT["config"]
    assert set(schema) == {*CONFIG_KEYS, *SECRET_KEYS}
    assert all(entry["type"] in {"string", "integer", "boolean", "array", "object"} for entry in schema.values())
    assert all(entry["description"].strip() for entry in schema.values())
    # The deploy's credential is githubToken or githubApp: the program refuses a stack with neither.
    assert {key for key, entry in schema.items() if "default" not in entry} == {"repository"}
    # The secrets cannot be `secret: true` without becoming required: their defaults hold nothing, and the program
    # refuses a value not set with --secret (tests/test_pulumi_program.py).
    assert schema["registryPassword"]["default"] == "" == schema["githubToken"]["default"]
    assert schema["agentSecrets"]["default"] == {} == schema["githubApp"]["default"] == schema["githubIdentities"][
        "default"]
    for key in SECRET_KEYS:
        assert "--secret" in schema[key]["description"], key
    assert schema["requiredChecks"]["items"] == {"type": "string"}


def test_string_defaults_are_empty_so_each_default_lives_once_in_the_program() -> None:
    schema = PROJECT["config"]
    for key in ("schedule", "agentImage", "baseImage", "healthUrl", "dockerHost", "githubApiUrl", "agentNetwork",
                "runtime", "registry", "registryUsername"):
        assert schema[key]["default"] == "", key
    # Integer defaults cannot be empty: they must be the program's own.
    assert schema["maxAgentsPerRole"]["default"] == DEFAULT_MAX_AGENTS_PER_ROLE
    assert schema["maxAgents"]["default"] == DEFAULT_MAX_AGENTS
    assert schema["healthcheckIntervalSeconds"]["default"] == DEFAULT_HEALTHCHECK_INTERVAL_SECONDS
    assert schema["metricsPort"]["default"] == DEFAULT_METRICS_PORT


@pytest.mark.parametrize("component", ["coordinator", "agent"])
def test_the_dockerfiles_base_image_is_the_programs_default(component: str) -> None:
    dockerfile = (ROOT / component / "Dockerfile").read_text()
    [default] = re.findall(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, flags=re.MULTILINE)
    assert default == DEFAULT_BASE_IMAGE


@pytest.mark.parametrize(
    ("literal", "home"),
    [('"do-not-merge"', "coordinator/fleet.py"), ('"*/5 * * * *"', "coordinator/cron.py"),
     ('"python:3.12-slim"', "deploy/stack_config.py"), ('f"role:{', "coordinator/fleet.py")],
)
def test_each_default_is_written_once(literal: str, home: str) -> None:
    sources = [*ROOT.glob("coordinator/**/*.py"), *ROOT.glob("deploy/*.py"), ROOT / "__main__.py", ROOT / "roster.py"]
    found = sorted(str(path.relative_to(ROOT)) for path in sources if literal in path.read_text(encoding="utf-8"))
    assert found == [home]


def test_project_defaults_parse_to_the_programs_defaults() -> None:
    defaults = {
        key: entry["default"] if isinstance(entry["default"], str) else json.dumps(entry["default"])
        for key, entry in PROJECT["config"].items() if "default" in entry
    }
    assert parse_stack_config({**defaults, **MINIMAL}, ROSTER) == parse_stack_config(MINIMAL, ROSTER)


def test_prod_stack_sets_nothing_that_deploys_and_its_examples_are_valid_settings() -> None:
    # As shipped, the stack sets nothing: the program's refusal of a missing repository is what the user meets.
    assert PROD["config"] == {}
    with pytest.raises(StackConfigError) as refused:
        parse_stack_config({}, ROSTER)
    assert str(refused.value) == (
        "agent-fleet:repository is not set: set the repository the fleet works on with "
        "`pulumi config set repository OWNER/NAME`"
    )
    # Every commented example, uncommented, is a setting the program takes (and none holds a secret's value).
    text = (ROOT / "Pulumi.prod.yaml").read_text()
    commented = [line.split("#", 1)[1][1:].split("  #")[0] for line in text.splitlines() if line.strip()[:1] == "#"]
    examples = "\n".join(line for line in commented if re.match(r"agent-fleet:|  +- |  +[a-z_]+: ", line))
    values = {key.removeprefix("agent-fleet:"): value for key, value in yaml.safe_load(examples).items()}
    assert {"healthUrl", "requiredChecks", "counts", "runtime", "registry"} <= set(values)
    assert not set(values) & set(SECRET_KEYS)
    raw = {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}
    config = parse_stack_config({**raw, **MINIMAL}, ROSTER, SecretsPresent(registry_password=True))
    assert config.required_checks == ("test", "lint") and config.counts == {"code_reviewer": 6}


def test_merge_queue_and_up_to_date_settings() -> None:
    config = parse()
    assert (config.merge_queue, config.require_up_to_date) == (False, False)
    assert config.merge_queue_limits == MergeQueueLimits(60, 5, 1, 5, 5)  # GitHub's own defaults
    queued = parse(mergeQueue="TRUE", requireUpToDate="true", mergeQueueLimits='{"maxEntriesToMerge": 2}',
                   requiredChecks='["test"]')
    assert (queued.merge_queue, queued.require_up_to_date) == (True, True)
    assert queued.merge_queue_limits == MergeQueueLimits(max_entries_to_merge=2)
    assert merge_policy_warnings(queued) == []


def test_a_queue_or_a_strict_policy_without_required_checks_is_warned_about() -> None:
    warnings = merge_policy_warnings(parse(mergeQueue="true", requireUpToDate="true", requiredChecks="[]"))
    assert len(warnings) == 2
    assert warnings[0].startswith("agent-fleet:mergeQueue is on but agent-fleet:requiredChecks is empty")
    assert "merge_group" in warnings[0]
    assert warnings[1].startswith("agent-fleet:requireUpToDate is on but agent-fleet:requiredChecks is empty")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"repository": "acme/webapp"},
         "agent-fleet:repository is 'acme/webapp': that is the documentation's example, not your repository; set the "
         "repository the fleet works on with `pulumi config set repository OWNER/NAME`"),
        ({"repository": "Owner/Name"}, "agent-fleet:repository is 'Owner/Name': that is the documentation's example"),
        ({**MINIMAL, "healthUrl": "https://webapp.example.com/healthz"},
         "agent-fleet:healthUrl is 'https://webapp.example.com/healthz': its host is a documentation example "
         "(example.com, .net, .org are reserved: nothing answers there); set your production's URL with "
         "`pulumi config set healthUrl https://HOST/PATH`, or skip the health check with `pulumi config rm healthUrl`"),
        ({**MINIMAL, "healthUrl": "http://EXAMPLE.org./up"}, "agent-fleet:healthUrl is 'http://EXAMPLE.org./up': its "
         "host is a documentation example"),
        ({**MINIMAL, "healthUrl": "https://shop.example/healthz"}, "its host is a documentation example"),
    ],
)
def test_the_documentations_example_values_are_refused_naming_the_fix(raw: dict[str, str], message: str) -> None:
    with pytest.raises(StackConfigError) as refused:
        parse_stack_config(raw, ROSTER)
    assert message in str(refused.value)


@pytest.mark.parametrize("url", ["https://example.company.com/healthz", "https://notexample.com/", "https://shop.test/"])
def test_hosts_that_only_resemble_the_examples_are_taken(url: str) -> None:
    assert parse_stack_config({**MINIMAL, "healthUrl": url}, ROSTER).health_url == url


# --- the first deploy: the starter cap and what `pulumi up` sets going -----------------------------------------


def test_the_starter_cap_lets_the_first_cycle_start_one_agent_of_each_role() -> None:
    config = parse()
    assert config.max_spawns_per_hour == DEFAULT_MAX_SPAWNS_PER_HOUR == len(ROSTER)
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    specs = resolve_roster(ROSTER, config, BUILT)
    plan = plan_reconcile("agent-fleet-prod", specs, Inventory(taken_at=now), now=now,
                          max_spawns_per_hour=config.max_spawns_per_hour)
    assert sorted(spawn.spec.key for spawn in plan.spawns) == sorted(role.key for role in ROSTER)
    assert {spawn.slot for spawn in plan.spawns} == {1}
    assert len(plan.deferred) == sum(role.count for role in ROSTER) - len(ROSTER) == 13
    assert parse(maxSpawnsPerHour="0").max_spawns_per_hour is None  # 0 lifts it


def test_the_deploy_summary_says_what_the_first_cycle_starts_and_what_the_ruleset_enforces() -> None:
    ruleset = "agent-fleet (agent-fleet-prod)"
    assert deploy_summary(ROSTER, parse(), ruleset) == (
        "this stack runs 38 agents in 25 roles of acme/shop, each agent a model session that costs money: at most 25 "
        "start in any hour (maxSpawnsPerHour), so the first cycle starts 25 and the rest wait, their roles short "
        "(the verdict says degraded) until the budget allows; `pulumi config set maxSpawnsPerHour 0` lifts the cap: "
        "all 38 at once, and then one session for every agent that exits. The ruleset 'agent-fleet (agent-fleet-prod)' "
        "takes effect on the default branch at once, for people too: changes only through pull requests, squash "
        "merges only, one approving review."
    )
    lifted = deploy_summary(ROSTER, parse(maxSpawnsPerHour="0", requiredChecks='["ci"]'), ruleset)
    assert "the first cycle starts all 38 at once" in lifted and "maxSpawnsPerHour is 0: no limit" in lifted
    assert lifted.endswith("one approving review, and the checks ci to pass.")
