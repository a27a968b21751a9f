"""The runtime's settings: every bad value is refused naming the variable; absent groups skip their step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coordinator.fleet import RosterError, roster_from_json
from coordinator.settings import ConfigError, Secret, derive_graphql_url, load_settings

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
    settings = load_settings({"GITHUB_REPOSITORY": "acme/webapp", "GITHUB_TOKEN": "t", "GITHUB_API_URL": api})
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
    assert settings.skipped["merge"] == "GITHUB_TOKEN (or GITHUB_TOKEN_FILE) is not set"


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
    env = {"GITHUB_REPOSITORY": "acme/webapp", "GITHUB_TOKEN": "t", variable: value}
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
