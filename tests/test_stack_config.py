"""The stack config: parsing, refusals that name the key and value, roster resolution, Pulumi.yaml's schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from coordinator import cron, settings
from coordinator.fleet import DEFAULT_MAX_AGENTS, DEFAULT_MAX_AGENTS_PER_ROLE
from deploy.container_spec import (
    DOCKER_SOCKET,
    GITHUB_TOKEN_FILE,
    ROSTER_FILE,
    coordinator_container_spec,
)
from deploy.stack_config import (
    CONFIG_KEYS,
    DEFAULT_AGENT_IMAGE,
    DEFAULT_BASE_IMAGE,
    DEFAULT_HEALTHCHECK_INTERVAL_SECONDS,
    StackConfigError,
    check_known_keys,
    fleet_id,
    parse_stack_config,
    resolve_roster,
)
from roster import ROSTER

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {"repository": "acme/webapp"}


def parse(**raw: str) -> object:
    return parse_stack_config({**MINIMAL, **raw}, ROSTER)


def test_minimal_config_takes_the_defaults() -> None:
    config = parse_stack_config(MINIMAL, ROSTER)
    assert (config.owner, config.repository_name) == ("acme", "webapp")
    assert config.schedule == "*/5 * * * *" and config.agent_image == DEFAULT_AGENT_IMAGE
    assert config.health_url is None and config.docker_host is None and config.counts == {}


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
        ({"repository": ""}, "agent-fleet:repository", "None"),
        ({"schedule": "every 5 minutes"}, "agent-fleet:schedule", "'every 5 minutes'"),
        ({"schedule": "*/5 * * *"}, "agent-fleet:schedule", "'*/5 * * *'"),
        ({"schedule": "0 0 30 2 *"}, "agent-fleet:schedule", "'0 0 30 2 *'"),
        ({"schedule": "* * * * * * *"}, "agent-fleet:schedule", "'* * * * * * *'"),
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


def test_fleet_id_is_project_dash_stack() -> None:
    assert fleet_id("agent-fleet", "prod") == "agent-fleet-prod"
    assert fleet_id("agent-fleet", "prod") != fleet_id("agent-fleet", "staging")


@pytest.mark.parametrize(("stack", "says"), [("staging-europe", "more than 24"), ("prüf", "ASCII"), ("a b", "ASCII")])
def test_the_derived_fleet_id_is_checked_as_fleet_id_is(stack: str, says: str) -> None:
    with pytest.raises(StackConfigError) as refused:
        fleet_id("agent-fleet", stack)
    assert str(refused.value).startswith(f"fleet id {f'agent-fleet-{stack}'!r} (<project>-<stack>)")
    assert says in str(refused.value)


@pytest.mark.parametrize(("schedule", "start_period"), [("*/5 * * * *", 600), ("0 9 * * 1-5", 6 * 24 * 3600)])
def test_the_health_checks_start_period_is_two_of_the_schedules_longest_intervals(
    schedule: str, start_period: int
) -> None:
    config = parse(schedule=schedule)
    spec = coordinator_container_spec(fleet_id="f", image="i", roster=resolve_roster(ROSTER, config), config=config)
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
    config = parse(healthUrl="https://w.example.com/", requiredChecks='["test", "lint"]',
                   githubApiUrl="https://ghe.example.com/api/v3", maxSpawnsPerHour="30", agentNetwork="fleet")
    roster = resolve_roster(ROSTER, config)
    spec = coordinator_container_spec(fleet_id="agent-fleet-prod", image="img:1", roster=roster, config=config)
    assert set(spec.env) <= set(settings.VARIABLES)
    assert "GITHUB_TOKEN" not in spec.env
    assert spec.env["GITHUB_TOKEN_FILE"] == spec.secret_file == GITHUB_TOKEN_FILE
    assert spec.env["REQUIRED_CHECKS"] == "test,lint" and spec.env["FLEET_MAX_SPAWNS_PER_HOUR"] == "30"
    assert spec.env["FLEET_MAX_AGENTS_PER_ROLE"] == "100" and spec.env["FLEET_MAX_AGENTS"] == "500"
    assert spec.env["FLEET_ROSTER_FILE"] == ROSTER_FILE
    assert [file.path for file in spec.files] == [ROSTER_FILE]
    assert json.loads(spec.files[0].content)["roles"][0]["key"] == "product_designer"
    assert spec.healthcheck.start_period_seconds == 600
    kwargs = spec.docker_sdk_create_kwargs()
    assert kwargs["volumes"] == {DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "rw"}}
    assert kwargs["restart_policy"] == {"Name": "unless-stopped"}
    assert kwargs["log_config"] == {"type": "json-file", "config": {"max-size": "10m", "max-file": "5"}}
    assert kwargs["labels"] == {"agent-fleet.fleet": "agent-fleet-prod", "agent-fleet.component": "coordinator"}


def test_the_runtime_reads_back_what_the_spec_sets(tmp_path: Path) -> None:
    """The container's environment and roster file, as the runtime's own settings loader reads them."""
    config = parse(counts='{"code_reviewer": 6}', healthUrl="https://w.example.com/")
    roster = resolve_roster(ROSTER, config)
    spec = coordinator_container_spec(fleet_id="agent-fleet-prod", image="img:1", roster=roster, config=config)
    roster_file, token_file = tmp_path / "roster.json", tmp_path / "token"
    roster_file.write_text(spec.files[0].content)
    token_file.write_text("t0ken")
    env = {**spec.env, "FLEET_ROSTER_FILE": str(roster_file), "GITHUB_TOKEN_FILE": str(token_file)}
    loaded = settings.load_settings(env)
    assert loaded.fleet_id == "agent-fleet-prod" and loaded.roster == roster
    assert loaded.github is not None and loaded.github.token.reveal() == "t0ken"
    assert loaded.health is not None and loaded.skipped == {}
    assert (loaded.limits.per_role, loaded.limits.total) == (config.max_agents_per_role, config.max_agents)


# --- Pulumi.yaml and Pulumi.prod.yaml -------------------------------------------------------------

PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
PROD = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())


def test_project_file_names_runtime_backend_and_description() -> None:
    assert PROJECT["name"] == "agent-fleet" and PROJECT["description"]
    assert PROJECT["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    assert PROJECT["backend"]["url"].startswith("file://")


def test_project_schema_types_every_key_and_requires_only_repository_and_token() -> None:
    schema = PROJECT["config"]
    assert set(schema) == {*CONFIG_KEYS, "githubToken"}
    assert all(entry["type"] in {"string", "integer", "boolean", "array", "object"} for entry in schema.values())
    assert {key for key, entry in schema.items() if "default" not in entry} == {"repository", "githubToken"}
    assert schema["githubToken"]["secret"] is True
    assert schema["requiredChecks"]["items"] == {"type": "string"}


def test_string_defaults_are_empty_so_each_default_lives_once_in_the_program() -> None:
    schema = PROJECT["config"]
    for key in ("schedule", "agentImage", "baseImage", "healthUrl", "dockerHost", "githubApiUrl", "agentNetwork"):
        assert schema[key]["default"] == "", key
    # Integer defaults cannot be empty: they must be the program's own.
    assert schema["maxAgentsPerRole"]["default"] == DEFAULT_MAX_AGENTS_PER_ROLE
    assert schema["maxAgents"]["default"] == DEFAULT_MAX_AGENTS
    assert schema["healthcheckIntervalSeconds"]["default"] == DEFAULT_HEALTHCHECK_INTERVAL_SECONDS


def test_the_dockerfiles_base_image_is_the_programs_default() -> None:
    dockerfile = (ROOT / "coordinator" / "Dockerfile").read_text()
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


def test_prod_stack_is_valid_and_holds_no_token() -> None:
    values = {key.removeprefix("agent-fleet:"): value for key, value in PROD["config"].items()}
    assert "githubToken" not in values
    raw = {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}
    config = parse_stack_config(raw, ROSTER)
    assert config.repository == "acme/webapp" and config.required_checks == ("test", "lint")
