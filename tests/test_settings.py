"""The runtime's settings: every bad value is refused naming the variable; absent groups skip their step."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

import coordinator.settings as settings_module
from coordinator.fleet import (
    BLOCKING_LABEL,
    MAX_AGENT_SECRET_BYTES,
    MAX_BRIEF_BYTES,
    MAX_ROSTER_BYTES,
    FleetLimits,
    RosterError,
    agent_secrets,
    roster_from_json,
)
from coordinator.redact import MIN_SECRET_CHARS
from coordinator.settings import (
    DECLARED,
    URL_VARIABLES,
    VARIABLES,
    ConfigError,
    GitHubSettings,
    Secret,
    derive_graphql_url,
    env_value,
    load_settings,
)
from coordinator.steps.inventory import Inventory, take_inventory
from coordinator.steps.merge_rules import MergePolicy
from coordinator.steps.reconcile import BackoffPolicy, execute_plan
from coordinator.values import Count, Names, Seconds, Text, Url

ROLE = {"key": "api_builder", "title": "API Builder", "count": 2, "department": "Engineering",
        "mode": "Task-driven", "brief": "Builds the API.", "image": "agent:1"}


def roster_file(tmp_path: Path, *roles: dict[str, object]) -> str:
    path = tmp_path / "roster.json"
    path.write_text(json.dumps({"roles": list(roles)}))
    return str(path)


@pytest.mark.parametrize(("api", "graphql"), [
    ("https://api.github.com", "https://api.github.com/graphql"),
    ("https://ghe.example.com/api/v3", "https://ghe.example.com/api/graphql"),
    ("https://ghe.example.com/api/v3/", "https://ghe.example.com/api/graphql"),
    ("http://127.0.0.1:8080/api/v3", "http://127.0.0.1:8080/api/graphql"),
])
def test_the_graphql_url_is_derived_as_github_and_github_enterprise_lay_it_out(api: str, graphql: str) -> None:
    assert derive_graphql_url(api) == graphql
    settings = load_settings({"GITHUB_REPOSITORY": "acme/webapp", "GITHUB_TOKEN": "t0ken-0123456789",
                              "GITHUB_API_URL": api})
    assert settings.github is not None and settings.github.graphql_url == graphql


def test_defaults_skip_every_step_whose_settings_are_absent() -> None:
    settings = load_settings({})
    assert settings.fleet_id == "agent-fleet" and settings.schedule == "*/5 * * * *"
    assert settings.roster is None and settings.github is None and settings.health is None
    assert settings.skipped == {
        "reconcile": "FLEET_ROSTER_FILE is not set",
        "merge": "GITHUB_REPOSITORY is not set",
        "health": "HEALTH_URL is not set",
    }


def test_a_repository_without_a_token_skips_the_merge_but_still_reaches_the_agents() -> None:
    settings = load_settings({"GITHUB_REPOSITORY": "acme/webapp"})
    assert settings.github is None and settings.repository == "acme/webapp"
    assert settings.skipped["merge"] == "GITHUB_TOKEN (or GITHUB_TOKEN_FILE, or GITHUB_APP_FILE) is not set"


def test_the_token_comes_from_its_file_and_never_shows_itself(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    settings = load_settings({"GITHUB_REPOSITORY": "acme/webapp", "GITHUB_TOKEN_FILE": str(token_file)})
    assert settings.github is not None
    assert settings.github.token.reveal() == "s3cret-token"
    assert "s3cret" not in repr(settings) and "s3cret" not in f"{settings.github.token}"
    assert settings.secrets() == ("s3cret-token",)


def test_the_roster_file_is_read_and_checked(tmp_path: Path) -> None:
    settings = load_settings({"FLEET_ROSTER_FILE": roster_file(tmp_path, ROLE, {**ROLE, "key": "ui", "count": 0,
                                                                                "command": ["run"]})})
    assert settings.roster is not None
    roles = [(s.key, s.role.count, s.command) for s in settings.roster]
    assert roles == [("api_builder", 2, None), ("ui", 0, ("run",))]


@pytest.mark.parametrize(("variable", "value", "named"), [
    ("FLEET_ID", "bad id!", "FLEET_ID"),
    ("COORDINATOR_SCHEDULE", "every five minutes", "COORDINATOR_SCHEDULE"),
    ("COORDINATOR_CYCLE_TIMEOUT_S", "-3", "COORDINATOR_CYCLE_TIMEOUT_S"),
    ("SPAWN_CONCURRENCY", "0", "SPAWN_CONCURRENCY"),
    ("FLEET_MAX_SPAWNS_PER_HOUR", "lots", "FLEET_MAX_SPAWNS_PER_HOUR"),
    ("AGENT_CRASH_BACKOFF_S", "soon", "AGENT_CRASH_BACKOFF_S"),
    ("HEALTH_URL", "prod.example.com", "HEALTH_URL"),
    ("HEALTH_EXPECT", "ok", "HEALTH_EXPECT"),
    ("HEALTH_TIMEOUT_S", "0", "HEALTH_TIMEOUT_S"),
    ("FLEET_ROSTER_FILE", "/nonexistent/roster.json", "FLEET_ROSTER_FILE"),
])
def test_a_bad_value_is_refused_naming_the_variable_and_the_value(variable: str, value: str, named: str) -> None:
    env = {"HEALTH_URL": "https://prod.example.com/healthz", variable: value}
    with pytest.raises(ConfigError) as refused:
        load_settings(env)
    assert str(refused.value).startswith(f"{named}={value!r}")


@pytest.mark.parametrize(("variable", "value"), [
    ("GITHUB_REPOSITORY", "webapp"),
    ("GITHUB_API_URL", "api.github.com"),
    ("MERGE_MAX_PER_CYCLE", "all"),
])
def test_bad_github_settings_are_refused_naming_the_variable(variable: str, value: str) -> None:
    env = {"GITHUB_REPOSITORY": "acme/webapp", "GITHUB_TOKEN": "t0ken-0123456789", variable: value}
    with pytest.raises(ConfigError, match=f"^{variable}="):
        load_settings(env)


def test_a_bad_roster_names_the_file_the_role_and_the_field(tmp_path: Path) -> None:
    path = roster_file(tmp_path, {**ROLE, "count": -1})
    with pytest.raises(ConfigError) as refused:
        load_settings({"FLEET_ROSTER_FILE": path})
    assert str(refused.value) == (
        f"FLEET_ROSTER_FILE={path!r}: role 'api_builder': field 'count' is -1: use a whole number of agents, 0 or more"
    )


@pytest.mark.parametrize(("change", "field"), [
    ({"mode": "Busy"}, "mode"),
    ({"department": "Sales"}, "department"),
    ({"image": ""}, "image"),
    ({"brief": " "}, "brief"),
    ({"key": "Bad-Key"}, "key"),
    ({"env": {"AGENT_ROLE": "x"}}, "env"),
    ({"command": "run"}, "command"),
    ({"colour": "red"}, "colour"),
])
def test_each_roster_field_is_checked(change: dict[str, object], field: str) -> None:
    with pytest.raises(RosterError, match=rf"field '{field}'"):
        roster_from_json(json.dumps({"roles": [{**ROLE, **change}]}))


def test_a_missing_roster_field_and_a_duplicate_key_are_refused() -> None:
    missing = {k: v for k, v in ROLE.items() if k != "image"}
    with pytest.raises(RosterError, match="role 'api_builder': field 'image' is None: this field is required"):
        roster_from_json(json.dumps({"roles": [missing]}))
    with pytest.raises(RosterError, match="keys must be unique"):
        roster_from_json(json.dumps({"roles": [ROLE, ROLE]}))
    with pytest.raises(RosterError, match="not valid JSON"):
        roster_from_json("{")


def test_secret_equality_does_not_need_the_value_shown() -> None:
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert str(Secret("a")) == "Secret('***')"


# --- one accessor: a blank value is an unset one ------------------------------------------------

FULL = {"GITHUB_REPOSITORY": "acme/webapp", "GITHUB_TOKEN": "t0ken-0123456789", "HEALTH_URL": "https://prod.example.com/h"}
READ_BY_SETTINGS = sorted(set(VARIABLES) - {"DOCKER_HOST", "DOCKER_API_VERSION"})  # those two: the Docker SDK's


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
@pytest.mark.parametrize("name", READ_BY_SETTINGS)
def test_a_blank_variable_means_unset_so_its_default_applies(name: str, blank: str) -> None:
    # Docker Compose's ${VAR} gives "" for an unset VAR: that must never mean "nothing".
    unset = {key: value for key, value in FULL.items() if key != name}
    assert load_settings({**unset, name: blank}) == load_settings(unset)


@pytest.mark.parametrize("blank", ["", "  "])
def test_an_empty_merge_blocking_labels_keeps_do_not_merge(blank: str) -> None:
    settings = load_settings({**FULL, "MERGE_BLOCKING_LABELS": blank})
    assert settings.github is not None and settings.github.blocking_labels == ("do-not-merge",) == (BLOCKING_LABEL,)


@pytest.mark.parametrize("value", [",", ",, ,"])
def test_blocking_labels_that_name_no_label_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^MERGE_BLOCKING_LABELS={value!r} names no label; leave it unset"):
        load_settings({**FULL, "MERGE_BLOCKING_LABELS": value})


def test_blocking_labels_can_never_be_empty_however_the_settings_are_built() -> None:
    with pytest.raises(ValueError, match="blocking_labels is empty"):
        GitHubSettings("acme/webapp", Secret("t"), "https://api.github.com", "https://api.github.com/graphql",
                       blocking_labels=())


def test_only_documented_variables_can_be_read() -> None:
    assert env_value({"FLEET_ID": " x "}, "FLEET_ID") == "x"
    with pytest.raises(KeyError, match="VARIABLES"):
        env_value({}, "FLEET_SECRET_SAUCE")


def test_a_set_variable_is_checked_even_when_its_step_is_skipped() -> None:
    with pytest.raises(ConfigError, match=r"^HEALTH_TIMEOUT_S='inf' is not a finite number of seconds"):
        load_settings({"HEALTH_TIMEOUT_S": "inf"})
    with pytest.raises(ConfigError, match=r"^GITHUB_API_URL="):
        load_settings({"GITHUB_API_URL": "api.github.com"})


# --- values Docker or the kernel would refuse later are refused now -------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("FLEET_ID", "flëet", "may hold only ASCII letters"),  # str.isalnum() accepted it
        ("FLEET_ID", "f" * 25, "more than 24"),
        ("HEALTH_TIMEOUT_S", "inf", "is not a finite number of seconds"),
        ("HEALTH_TIMEOUT_S", "nan", "is not a finite number of seconds"),
        ("HEALTH_TIMEOUT_S", "301", "is more than 300 seconds"),
        ("COORDINATOR_CYCLE_TIMEOUT_S", "inf", "is not a finite number of seconds"),
        ("COORDINATOR_CYCLE_TIMEOUT_S", "86401", "is more than 86400 seconds"),
        ("AGENT_CRASH_BACKOFF_S", "1e9", "is not a number of seconds"),
        ("AGENT_CRASH_BACKOFF_MAX_S", "604801", "is more than 604800 seconds"),
        ("SPAWN_CONCURRENCY", "101", "is more than 100"),
        ("MERGE_MAX_PER_CYCLE", "9" * 30, "has more than 18 digits"),
        ("HEALTH_EXPECT", "\u0662\u0660\u0660", "is not a list of status codes"),
        ("AGENT_NETWORK", "my net", "is not a Docker network"),
        ("COORDINATOR_SCHEDULE", "0 0 30 2 *", "never fires"),
        ("COORDINATOR_SCHEDULE", "0 0 31 4 *", "never fires"),
        ("COORDINATOR_SCHEDULE", "* * * * * * *", "it has 7 fields"),
        ("GITHUB_REPOSITORY", "acme/webapp/x", "is not owner/name"),
        ("FLEET_RUNTIME", "kubernetes", "is not a runtime; use docker or swarm"),
        ("MERGE_REQUIRE_UP_TO_DATE", "yes", "is neither true nor false; use true or false"),
        ("MERGE_UPDATES_PER_CYCLE", "0", "is less than 1"),
        ("MERGE_UPDATES_PER_CYCLE", "101", "is more than 100"),
    ],
)
def test_values_that_would_fail_later_are_refused_up_front(variable: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({variable: value})
    assert str(refused.value).startswith(f"{variable}={value[:199]!r}"[:40]) and says in str(refused.value)


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"key": "api_builder\n"}, "key", "lower case ASCII letters"),  # ^...$ with match() let it through
        ({"key": "a" * 31}, "key", "at most 30 characters"),
        ({"title": "API\nBuilder"}, "title", "one line"),
        ({"title": "T" * 201}, "title", "at most 200 characters"),
        ({"brief": "Builds\x00 the API."}, "brief", "NUL"),
        ({"brief": "\ud800 builds"}, "brief", "not valid Unicode"),
        ({"brief": "x" * (2 * 1024 * 1024)}, "brief", "bytes"),  # too large for exec as AGENT_BRIEF
        ({"brief": "é" * (MAX_BRIEF_BYTES // 2 + 1)}, "brief", f"keep it to {MAX_BRIEF_BYTES}"),
        ({"image": "agent 1"}, "image", "image reference"),
        ({"command": ["run", "a\x00b"]}, "command", "NUL"),
        ({"command": [""]}, "command", "non-empty list"),
        ({"env": {"AGENT_MODEL": "large\x00"}}, "env.AGENT_MODEL", "NUL"),
        ({"env": {"AGENT_MODEL\n": "large"}}, "env", "environment names"),
        ({"count": 1001}, "count", "at most 1000"),
    ],
)
def test_each_string_that_reaches_docker_is_checked(change: dict[str, object], field: str, says: str) -> None:
    with pytest.raises(RosterError) as refused:
        roster_from_json(json.dumps({"roles": [{**ROLE, **change}]}))
    assert f"field {field!r}" in str(refused.value) and says in str(refused.value)


def test_a_fleet_id_with_a_dot_is_refused_on_a_swarm_only() -> None:
    # Swarm refuses a '.' in a service's name (seen on the lab swarm: "name must be valid as a DNS name component"),
    # and a fleet id starts every agent's service name and the coordinator's.
    assert load_settings({"FLEET_ID": "fleet.eu", "FLEET_RUNTIME": "docker"}).fleet_id == "fleet.eu"
    with pytest.raises(ConfigError) as refused:
        load_settings({"FLEET_ID": "fleet.eu", "FLEET_RUNTIME": "swarm"})
    assert str(refused.value).startswith("FLEET_ID='fleet.eu' holds a '.', which a swarm refuses in service names")
    assert "use '-' or '_' in its place on a swarm" in str(refused.value)
    assert load_settings({"FLEET_ID": "fleet-eu_1", "FLEET_RUNTIME": "swarm"}).fleet_id == "fleet-eu_1"


# --- the roster file: refused with exit 2, never a traceback ---------------------------------------


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"roles": [{"key": "caf\xe9"}]}', "the roster is not UTF-8: byte 23 is 0xe9"),
        (b"[" * 100_000 + b"]" * 100_000, "the roster is nested too deeply"),
        (json.dumps({"roles": [{**ROLE, "count": 0}]}).replace('"count": 0', '"count": ' + "9" * 5000).encode(),
         "the roster has a number of more than 18 digits"),
        (b'{"roles": [], "roles": []}', "the roster has the key 'roles' twice in one object"),
        (json.dumps({"roles": [{**ROLE, "count": 0}]}).replace('"count": 0', '"count": NaN').encode(),
         "the roster has NaN"),
        (b" " * (MAX_ROSTER_BYTES + 1), f"is larger than {MAX_ROSTER_BYTES} bytes"),
        (b"\xef\xbb\xbf{}", "the roster is not valid JSON"),  # a byte order mark
    ],
)
def test_a_roster_file_that_is_not_a_roster_is_refused_naming_the_file(
    tmp_path: Path, content: bytes, says: str
) -> None:
    path = tmp_path / "roster.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as refused:
        load_settings({"FLEET_ROSTER_FILE": str(path)})
    assert str(refused.value).startswith(f"FLEET_ROSTER_FILE={str(path)!r}") and says in str(refused.value)


def test_a_token_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"^GITHUB_TOKEN_FILE=.* is not UTF-8 text \(byte 0\)"):
        load_settings({"GITHUB_REPOSITORY": "acme/webapp", "GITHUB_TOKEN_FILE": str(token_file)})


# --- limits on counts -----------------------------------------------------------------------------------


def test_a_role_over_the_per_role_limit_is_refused_naming_role_count_limit_and_setting(tmp_path: Path) -> None:
    path = roster_file(tmp_path, {**ROLE, "count": 150})
    with pytest.raises(ConfigError) as refused:
        load_settings({"FLEET_ROSTER_FILE": path})
    assert str(refused.value) == (
        f"FLEET_ROSTER_FILE={path!r}: role 'api_builder' has a count of 150, more than the limit of 100 agents per "
        "role (FLEET_MAX_AGENTS_PER_ROLE); lower its count, or raise FLEET_MAX_AGENTS_PER_ROLE (at most 1000)"
    )
    settings = load_settings({"FLEET_ROSTER_FILE": path, "FLEET_MAX_AGENTS_PER_ROLE": "150"})
    assert settings.limits == FleetLimits(per_role=150, total=500)


def test_a_roster_over_the_fleet_limit_is_refused(tmp_path: Path) -> None:
    path = roster_file(tmp_path, {**ROLE, "count": 60}, {**ROLE, "key": "ui", "count": 50})
    with pytest.raises(ConfigError, match=r"asks for 110 agents in all, more than the fleet's limit of 100 "
                                          r"\(FLEET_MAX_AGENTS\); lower some counts, or raise FLEET_MAX_AGENTS"):
        load_settings({"FLEET_ROSTER_FILE": path, "FLEET_MAX_AGENTS": "100"})
    assert load_settings({"FLEET_ROSTER_FILE": path, "FLEET_MAX_AGENTS": "110"}).roster is not None


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("FLEET_MAX_AGENTS_PER_ROLE", "1001", "is more than 1000; use at most 1000 (the ceiling for any fleet)"),
        ("FLEET_MAX_AGENTS", "5001", "is more than 5000"),
        ("FLEET_MAX_AGENTS", "0", "is less than 1"),
    ],
)
def test_a_typo_in_a_limit_itself_is_refused(variable: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({variable: value})
    assert str(refused.value).startswith(f"{variable}={value!r} {says}")


# --- the command line: exit 2, and no credential in what it prints -----------------------------------

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "fake-token-FAKEfakeFAKEfake0123456789abcdef"


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m coordinator` as a real process, with nothing but these settings."""
    return subprocess.run(
        [sys.executable, "-m", "coordinator", *args],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env},
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("placement", "value"),
    [
        ("userinfo", f"htps://x-access-token:{TOKEN}@ghe.example.com/api/v3"),
        ("userinfo, no scheme", f"x-access-token:{TOKEN}@ghe.example.com/api/v3"),
        ("userinfo, one slash", f"https:/x-access-token:{TOKEN}@ghe.example.com/api/v3"),
        ("query", f"htps://ghe.example.com/api/v3?access_token={TOKEN}"),
        ("query, no scheme", f"ghe.example.com/api/v3?{TOKEN}"),
        ("fragment", f"ghe.example.com/api/v3#{TOKEN}"),
        ("path", f"htps://ghe.example.com/{TOKEN}/api/v3"),  # recognisable only by its value
    ],
)
@pytest.mark.parametrize("variable", ["GITHUB_API_URL", "GITHUB_GRAPHQL_URL", "GITHUB_SERVER_URL", "HEALTH_URL"])
def test_a_refused_url_setting_never_prints_the_token(variable: str, placement: str, value: str) -> None:
    result = run_cli("cycle", env={"GITHUB_REPOSITORY": "acme/webapp", "GITHUB_TOKEN": TOKEN, variable: value})
    assert result.returncode == 2, result.stderr
    assert f"{variable}=" in result.stderr and "bad configuration" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_the_token_from_its_file_is_scrubbed_too(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    result = run_cli("cycle", env={"GITHUB_REPOSITORY": "acme/webapp", "GITHUB_TOKEN_FILE": str(token_file),
                                   "HEALTH_URL": f"htps://prod.example.com/{TOKEN}"})
    assert result.returncode == 2 and "HEALTH_URL=" in result.stderr and TOKEN not in result.stderr


@pytest.mark.parametrize(("schedule", "says"), [
    ("0 0 30 2 *", "never fires"),
    ("0 0 31 4 *", "never fires"),
    ("0 0 1 1 * * *", "fields"),
])
def test_a_schedule_that_can_never_work_stops_the_scheduler_with_exit_2_not_a_restart_loop(
    tmp_path: Path, schedule: str, says: str
) -> None:
    result = run_cli("schedule", env={"COORDINATOR_SCHEDULE": schedule,
                                      "COORDINATOR_HEARTBEAT_FILE": str(tmp_path / "heartbeat.json")})
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"COORDINATOR_SCHEDULE={schedule!r}" in result.stderr and says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "heartbeat.json").exists()  # refused before anything ran


def test_merge_blocking_labels_naming_no_label_stops_the_cycle_with_exit_2() -> None:
    result = run_cli("cycle", env={**FULL, "MERGE_BLOCKING_LABELS": ","})
    assert result.returncode == 2
    assert "MERGE_BLOCKING_LABELS=',' names no label" in result.stderr


@pytest.mark.parametrize("command", ["cycle", "plan"])
def test_a_huge_count_is_refused_before_anything_is_planned(tmp_path: Path, command: str) -> None:
    path = roster_file(tmp_path, {**ROLE, "count": 1_000_000})
    started = time.monotonic()
    result = run_cli(command, env={"FLEET_ROSTER_FILE": path})
    assert result.returncode == 2 and "field 'count' is 1000000: use at most 1000" in result.stderr
    assert time.monotonic() - started < 15


def test_a_roster_with_a_5000_digit_number_exits_2_not_with_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "roster.json"
    path.write_text('{"roles": [{"count": ' + "9" * 5000 + "}]}")
    result = run_cli("plan", env={"FLEET_ROSTER_FILE": str(path)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "FLEET_ROSTER_FILE=" in result.stderr and "more than 18 digits" in result.stderr


# ------------------------------------------------------------------------------------------ agents' secrets


def secrets_file(tmp_path: Path, content: object) -> str:
    path = tmp_path / "agent-secrets.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_agent_secrets_are_read_as_secrets_and_scrubbed_from_output(tmp_path: Path) -> None:
    value = "sk-agent-" + "Z9" * 12
    settings = load_settings({"AGENT_SECRETS_FILE": secrets_file(tmp_path, {"ANTHROPIC_API_KEY": value})})
    assert settings.agent_secrets == {"ANTHROPIC_API_KEY": Secret(value)}
    assert value not in repr(settings)
    assert value in settings.secrets()  # what every log line is scrubbed of


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "AGENT_SECRETS_FILE="),
        (["GITHUB_TOKEN"], "is not a JSON object"),
        ({"github_token": "x"}, "names a secret 'github_token'"),
        ({"GITHUB_TOKEN": ""}, "holds no usable text for GITHUB_TOKEN"),
        ({"GITHUB_TOKEN": 42}, "holds no usable text for GITHUB_TOKEN"),
        ('{"A": "1", "A": "2"}', "AGENT_SECRETS_FILE="),
    ],
)
def test_a_bad_agent_secrets_file_is_refused_without_quoting_a_value(tmp_path: Path, content: object,
                                                                     says: str) -> None:
    with pytest.raises(ConfigError, match=says) as refused:
        load_settings({"AGENT_SECRETS_FILE": secrets_file(tmp_path, content)})
    assert '"2"' not in str(refused.value)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("1", f"holds a value for EXTRA_KEY shorter than {MIN_SECRET_CHARS} characters"),
        ("dev", f"holds a value for EXTRA_KEY shorter than {MIN_SECRET_CHARS} characters"),
        ("  zq7x9w2\n", f"holds a value for EXTRA_KEY shorter than {MIN_SECRET_CHARS} characters"),  # stripped
        ("k" * (MAX_AGENT_SECRET_BYTES + 1), f"holds a value for EXTRA_KEY larger than {MAX_AGENT_SECRET_BYTES} bytes"),
        ("é" * (MAX_AGENT_SECRET_BYTES // 2 + 1), f"larger than {MAX_AGENT_SECRET_BYTES} bytes"),  # UTF-8 bytes
        ("sk-\ud800-lone-surrogate", "holds no usable text for EXTRA_KEY"),  # JSON allows it; no file can hold it
    ],
)
def test_an_agent_secret_out_of_bounds_stops_the_coordinator_with_exit_2_naming_it_never_its_value(
    tmp_path: Path, value: str, says: str,
) -> None:
    path = secrets_file(tmp_path, json.dumps({"GITHUB_TOKEN": "agent-t0ken-0123", "EXTRA_KEY": value}))
    with pytest.raises(ConfigError, match=says):
        load_settings({"AGENT_SECRETS_FILE": path})
    result = run_cli("cycle", env={"AGENT_SECRETS_FILE": path})
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr and "; give " in result.stderr  # the fix
    assert "Traceback" not in result.stderr and result.stdout == ""
    start = value.strip()[:8]
    assert repr(start) not in result.stderr and (len(start) < 4 or start not in result.stderr)


def test_agent_secrets_at_the_bounds_are_taken() -> None:
    assert agent_secrets({"SHORTEST": "k" * MIN_SECRET_CHARS, "LARGEST": "é" * (MAX_AGENT_SECRET_BYTES // 2)}) == {
        "SHORTEST": "k" * MIN_SECRET_CHARS, "LARGEST": "é" * (MAX_AGENT_SECRET_BYTES // 2)}


@pytest.mark.parametrize("token", ["1", "dev", "1234567"])
def test_a_github_token_too_short_to_be_one_stops_the_coordinator_with_exit_2_never_shown(
    tmp_path: Path, token: str,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    for env in ({"GITHUB_TOKEN": token}, {"GITHUB_TOKEN_FILE": str(token_file)}):
        result = run_cli("cycle", env={"GITHUB_REPOSITORY": "acme/webapp", **env})
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"holds a token shorter than {MIN_SECRET_CHARS} characters" in result.stderr, result.stderr
        assert "the whole token" in result.stderr and f"'{token}'" not in result.stderr
        # Not scrubbed either (a short value is no secret): the message stays readable.
        assert "***" not in result.stderr and next(iter(env)) in result.stderr


def test_a_role_that_lists_an_unknown_secret_is_refused_naming_both(tmp_path: Path) -> None:
    roster = roster_file(tmp_path, {**ROLE, "secrets": ["GITHUB_TOKEN", "OPENAI_API_KEY"]})
    token, key = "agent-token-" + "Q7" * 10, "model-key-" + "W3" * 10
    env = {"FLEET_ROSTER_FILE": roster, "AGENT_SECRETS_FILE": secrets_file(tmp_path, {"GITHUB_TOKEN": token})}
    with pytest.raises(ConfigError, match="role 'api_builder' lists the secret 'OPENAI_API_KEY'"):
        load_settings(env)
    with pytest.raises(ConfigError, match="AGENT_SECRETS_FILE is not set"):
        load_settings({"FLEET_ROSTER_FILE": roster})
    assert load_settings({**env, "AGENT_SECRETS_FILE": secrets_file(
        tmp_path, {"GITHUB_TOKEN": token, "OPENAI_API_KEY": key})}).roster is not None


@pytest.mark.parametrize(
    ("api", "server"),
    [("https://api.github.com", "https://github.com"), ("https://ghe.example.com/api/v3", "https://ghe.example.com"),
     ("http://127.0.0.1:8080/api/v3/", "http://127.0.0.1:8080")],
)
def test_agents_are_told_where_github_is_even_without_the_merge_step(api: str, server: str) -> None:
    settings = load_settings({"GITHUB_API_URL": api})
    assert (settings.github_api_url, settings.github_server_url) == (api.rstrip("/"), server)
    assert load_settings({"GITHUB_SERVER_URL": "https://git.example.com/"}).github_server_url == \
        "https://git.example.com"


def test_backlog_labels_are_read_for_the_builders_advice() -> None:
    env = {"GITHUB_REPOSITORY": "acme/webapp", "GITHUB_TOKEN": "t0ken-0123456789", "BACKLOG_LABELS": "feature, bug"}
    settings = load_settings(env)
    assert settings.github is not None and settings.github.backlog_labels == ("feature", "bug")


def test_the_runtime_settings_default_to_one_engine_a_five_minute_lost_node_and_no_placement() -> None:
    runtime = load_settings({}).runtime
    assert (runtime.kind, runtime.node_lost_s, runtime.placement) == ("docker", 300.0, ())


def test_agent_placement_is_a_comma_separated_list_of_constraints() -> None:
    runtime = load_settings({"FLEET_RUNTIME": "swarm", "AGENT_NODE_LOST_S": "20",
                             "AGENT_PLACEMENT": " node.role==worker ,node.labels.zone!=eu "}).runtime
    assert runtime.kind == "swarm" and runtime.node_lost_s == 20.0
    assert runtime.placement == ("node.role==worker", "node.labels.zone!=eu")


def test_the_up_to_date_settings_reach_the_merge_step() -> None:
    env = {"GITHUB_REPOSITORY": "acme/webapp", "GITHUB_TOKEN": "t0ken-0123456789"}
    github = load_settings(env).github
    assert github is not None and (github.require_up_to_date, github.updates_per_cycle) == (False, 1)
    github = load_settings({**env, "MERGE_REQUIRE_UP_TO_DATE": "True", "MERGE_UPDATES_PER_CYCLE": "3"}).github
    assert github is not None and (github.require_up_to_date, github.updates_per_cycle) == (True, 3)


def test_each_fleet_keeps_its_own_state_files_unless_told_where() -> None:
    # Two fleets run on one machine (a try-out beside a test) must not read each other's heartbeat or memos.
    one, other = load_settings({"FLEET_ID": "fleet-one"}), load_settings({"FLEET_ID": "fleet-two"})
    assert one.heartbeat_file == Path("/tmp/agent-fleet/fleet-one/heartbeat.json")
    assert one.runtime.exit_memo_file == Path("/tmp/agent-fleet/fleet-one/exits.json")
    assert one.runtime.api_version_file == Path("/tmp/agent-fleet/fleet-one/engine.json")
    assert other.heartbeat_file.parent == Path("/tmp/agent-fleet/fleet-two")
    assert load_settings({}).heartbeat_file == Path("/tmp/agent-fleet/agent-fleet/heartbeat.json")
    told = load_settings({"FLEET_ID": "fleet-one", "COORDINATOR_HEARTBEAT_FILE": "/run/fleet/hb.json"})
    assert told.heartbeat_file == Path("/run/fleet/hb.json")
    assert told.runtime.exit_memo_file == Path("/run/fleet/exits.json")


def test_the_core_policies_default_to_what_the_settings_read_when_nothing_is_set() -> None:
    # One default per variable: the help text says it, the reader applies it, and the core's records that have
    # a default of their own (for tests and benchmarks) take the same declaration; the spawn step has none.
    settings = load_settings({})
    spawn = settings.spawn
    assert (spawn.concurrency, spawn.backoff_base_s, spawn.backoff_max_s) == (8, 60.0, 3600.0)
    assert BackoffPolicy() == BackoffPolicy(settings.spawn.backoff_base_s, settings.spawn.backoff_max_s)
    assert Inventory().node_lost_after == timedelta(seconds=settings.runtime.node_lost_s)
    assert inspect.signature(execute_plan).parameters["concurrency"].default is inspect.Parameter.empty
    assert inspect.signature(take_inventory).parameters["node_lost_after"].default is inspect.Parameter.empty
    health = load_settings({"HEALTH_URL": "https://example.com/healthz"}).health
    assert health is not None and health.expect == ((200, 399),) and "Default 200-399" in VARIABLES["HEALTH_EXPECT"]
    assert (spawn.network, settings.github_server_url) == ("bridge", "https://github.com")
    for name, default in (("SPAWN_CONCURRENCY", "8"), ("AGENT_NETWORK", "bridge"), ("AGENT_CRASH_BACKOFF_S", "60"),
                          ("AGENT_CRASH_BACKOFF_MAX_S", "3600"), ("AGENT_NODE_LOST_S", "300")):
        assert f"Default {default}" in VARIABLES[name]


# Every numeric variable's declaration, so that a new one is covered by the tests below as soon as it is declared.
DECLARED_NUMBERS = [value for value in vars(settings_module).values() if isinstance(value, Count | Seconds)]


def test_every_numeric_declaration_is_a_documented_variable() -> None:
    assert len(DECLARED_NUMBERS) >= 12
    for variable in DECLARED_NUMBERS:
        assert VARIABLES[variable.name] == variable.doc
        assert f"{variable.maximum:g}" in variable.doc  # the limit, as the reader applies it


@pytest.mark.parametrize("variable", DECLARED_NUMBERS, ids=lambda variable: variable.name)
def test_a_numeric_variable_is_read_as_declared_default_and_limits(variable: Count | Seconds[float | None]) -> None:
    load_settings({variable.name: f"{variable.maximum:g}"})  # the maximum itself is accepted
    with pytest.raises(ConfigError, match=f"^{variable.name}='{variable.maximum + 1:g}' is "):
        load_settings({variable.name: f"{variable.maximum + 1:g}"})
    if variable.default is not None:
        assert f"Default {variable.default:g}" in variable.doc or (isinstance(variable, Count) and variable.off)


DECLARED_LISTS = [value for value in vars(settings_module).values() if isinstance(value, Names)]


@pytest.mark.parametrize("variable", DECLARED_LISTS, ids=lambda variable: variable.name)
def test_a_list_variable_is_documented_and_read_as_declared(variable: Names) -> None:
    assert VARIABLES[variable.name] == variable.doc
    with pytest.raises(ConfigError, match=f"^{variable.name}=', ,' names no {variable.what}; .*{variable.example}"):
        load_settings({variable.name: ", ,"})


def test_the_merge_policy_and_the_settings_block_the_declared_labels_by_default() -> None:
    github = GitHubSettings("acme/webapp", Secret("t0ken-0123456789"), "https://x", "https://x/graphql")
    assert github.blocking_labels == MergePolicy("main").blocking_labels == (BLOCKING_LABEL,)


DECLARED_URLS = [value for value in vars(settings_module).values() if isinstance(value, Url)]


@pytest.mark.parametrize("variable", DECLARED_URLS, ids=lambda variable: variable.name)
def test_a_url_variable_is_documented_quoted_as_a_url_and_read_as_declared(variable: Url) -> None:
    assert VARIABLES[variable.name] == variable.doc and variable.name in URL_VARIABLES
    with pytest.raises(ConfigError, match=re.escape(f"{variable.name}='ftp://h/x?***' does not")
                       + f".*like {re.escape(variable.example)}$") as refused:
        load_settings({variable.name: "ftp://h/x?token=hunter2-secret"})
    assert "hunter2" not in str(refused.value)  # quoted as a URL: no query string


def test_every_variable_is_declared_once_and_the_help_text_is_its_declarations() -> None:
    names = [variable.name for variable in DECLARED]
    assert len(names) == len(set(names))
    assert {variable.name: variable.doc for variable in DECLARED} == VARIABLES
    # Every record of the module is listed, so none is declared and then forgotten by the reference.
    records = [value for value in vars(settings_module).values() if isinstance(value, Count | Seconds | Names | Url)]
    assert all(record in DECLARED for record in records)


@pytest.mark.parametrize(("variable", "bad"), [
    (settings_module.FLEET_ID, "no spaces"),
    (settings_module.SCHEDULE, "every minute"),
    (settings_module.REPOSITORY, "webapp"),
    (settings_module.REQUIRE_UP_TO_DATE, "perhaps"),
    (settings_module.HEALTH_EXPECT, "ok"),
    (settings_module.NETWORK, "no spaces"),
    (settings_module.RUNTIME, "kubernetes"),
], ids=lambda value: getattr(value, "name", ""))
def test_a_text_variable_is_read_with_its_declared_parser(variable: Text[object, object], bad: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable.name}="):
        load_settings({variable.name: bad})
