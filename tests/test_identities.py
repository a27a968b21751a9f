"""GitHub identities: which identity each role acts as, the roster whose reviews could never count, and App tokens
minted per spawn against the local GitHub's App endpoints (JWT checked against the App's public key, tokens
narrowed and expiring, refused where their permissions do not reach)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from coordinator.edges.github_app import AppTokenMinter
from coordinator.fleet import Department, Mode, Role, RoleSpec, roster_from_json, roster_to_json
from coordinator.identities import (
    FILE_APP_KEYS,
    AppIdentity,
    IdentityFault,
    MintFailure,
    SharedReviewer,
    check_identities,
    role_identity,
    shared_reviewer,
    token_permissions,
)
from coordinator.redact import Secret
from coordinator.settings import ConfigError, load_settings
from tests.fakes.github import FakeApp, FakeGitHub
from tests.keys import pem_markers

ROOT = Path(__file__).resolve().parents[1]
PEM_BEGIN, PEM_END = pem_markers()


def role(key: str, mode: Mode, count: int = 1, **changes: Any) -> Role:
    return Role(key, key.title(), count, Department.ENGINEERING, mode, f"The {key}.", **changes)


BUILDER, REVIEWER, THINKER = role("builder", Mode.TASK_DRIVEN), role("reviewer", Mode.REVIEWER), \
    role("thinker", Mode.THINKER)


# ------------------------------------------------------------------------------------------ the pure rules


@pytest.mark.parametrize(("mode", "identity"), [
    (Mode.REVIEWER, "reviewer"), (Mode.THINKER, "author"), (Mode.TASK_DRIVEN, "author"),
    (Mode.SELF_DIRECTED, "author"), (Mode.SENTINEL, "author"),
])
def test_a_role_acts_as_reviewer_or_author_unless_it_names_its_identity(mode: Mode, identity: str) -> None:
    assert role_identity(role("r", mode)) == identity
    assert role_identity(role("r", mode, identity="release-bot")) == "release-bot"


@pytest.mark.parametrize(("mode", "permissions"), [
    (Mode.REVIEWER, {"checks": "read", "contents": "read", "pull_requests": "write", "statuses": "read"}),
    (Mode.THINKER, {"contents": "read", "issues": "write"}),
    (Mode.TASK_DRIVEN, {"contents": "write", "issues": "write", "pull_requests": "write"}),
    (Mode.SELF_DIRECTED, {"contents": "write", "issues": "write", "pull_requests": "write"}),
    (Mode.SENTINEL, {"contents": "write", "issues": "write", "pull_requests": "write"}),
])
def test_each_modes_token_asks_for_its_permissions(mode: Mode, permissions: dict[str, str]) -> None:
    assert token_permissions(role("r", mode)) == permissions


def test_a_role_adds_permissions_and_never_lowers_its_modes() -> None:
    cicd = role("cicd", Mode.SELF_DIRECTED, github_permissions=(("contents", "read"), ("workflows", "write")))
    assert token_permissions(cicd) == {"contents": "write", "issues": "write", "pull_requests": "write",
                                       "workflows": "write"}


def test_the_roster_file_carries_identity_and_github_permissions() -> None:
    cicd = role("cicd", Mode.SELF_DIRECTED, identity="author", github_permissions=(("workflows", "write"),))
    text = roster_to_json([RoleSpec(cicd, image="ghcr.io/acme/agent:1")])
    assert '"identity": "author"' in text and '"githubPermissions": {\n        "workflows": "write"' in text
    assert roster_from_json(text)[0].role == cicd


@pytest.mark.parametrize(("changes", "says"), [
    ({"identity": "Reviewer!"}, "field 'identity'"),
    ({"github_permissions": (("administration", "write"),)}, "field 'githubPermissions'"),
    ({"github_permissions": (("workflows", "admin"),)}, "field 'githubPermissions'"),
])
def test_a_bad_identity_or_permission_is_refused_naming_the_field(changes: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        role("r", Mode.TASK_DRIVEN, **changes)


@pytest.mark.parametrize(("roles", "identities", "secrets", "expected"), [
    # No identities: everyone who receives the GITHUB_TOKEN agent secret is one account.
    ([BUILDER, REVIEWER], None, ["GITHUB_TOKEN"], SharedReviewer("reviewer", "builder", None)),
    ([BUILDER, REVIEWER], None, [], None),  # nobody holds a token
    ([BUILDER, role("reviewer", Mode.REVIEWER, secrets=())], None, ["GITHUB_TOKEN"], None),
    ([THINKER, REVIEWER], None, ["GITHUB_TOKEN"], None),  # a thinker opens no pull request
    ([BUILDER, role("reviewer", Mode.REVIEWER, count=0)], None, ["GITHUB_TOKEN"], None),  # people review
    ([role("builder", Mode.TASK_DRIVEN, count=0), REVIEWER], None, ["GITHUB_TOKEN"], None),
    # Identities: by default apart; naming the same one shares it.
    ([BUILDER, REVIEWER], ["author", "reviewer"], [], None),
    ([BUILDER, role("reviewer", Mode.REVIEWER, identity="author")], ["author"], [],
     SharedReviewer("reviewer", "builder", "author")),
    ([role("sentinel", Mode.SENTINEL, identity="reviewer"), REVIEWER], ["author", "reviewer"], [],
     SharedReviewer("reviewer", "sentinel", "reviewer")),
])
def test_a_reviewer_sharing_an_identity_with_a_role_that_opens_pull_requests_is_found(
    roles: list[Role], identities: list[str] | None, secrets: list[str], expected: SharedReviewer | None
) -> None:
    assert shared_reviewer([(r, r.count) for r in roles], identities, secrets) == expected


def test_the_refusal_names_the_roles_why_and_both_fixes() -> None:
    text = SharedReviewer("code_reviewer", "api_builder", None).describe(counts_setting="agent-fleet:counts")
    assert "'code_reviewer'" in text and "'api_builder'" in text and "the one GITHUB_TOKEN agent secret" in text
    assert "GitHub refuses an approval from a pull request's author" in text
    assert "`reviewer` entry in githubIdentities" in text and "agent-fleet:counts.code_reviewer 0" in text


@pytest.mark.parametrize(("value", "says"), [
    ([], "is not a JSON object"),
    ({"Author": {"token": "t"}}, "is not an identity's name"),
    ({"author": {"token": ""}}, "holds no usable token"),
    ({"author": {"token": " SECRET "}}, "holds a token shorter than 8 characters"),
    ({"author": {"token": "t", "app_id": 1}}, "has the keys app_id, token"),
    ({"author": {"app_id": "1", "installation_id": 2, "private_key": "k"}}, "has app_id '1'"),
    ({"author": {"app_id": 1, "installation_id": 2, "private_key": "SECRET-not-a-pem"}}, "has no PEM private key"),
])
def test_an_identity_of_the_wrong_shape_is_refused_without_its_secret(value: object, says: str) -> None:
    with pytest.raises(IdentityFault) as raised:
        check_identities(value, FILE_APP_KEYS)
    assert says in f"{raised.value.name} {raised.value.what}"
    assert "SECRET" not in raised.value.what


# ------------------------------------------------------------------------------------------ minting tokens


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake
        assert fake.server_errors == []


def identity(app: FakeApp, **changes: Any) -> AppIdentity:
    fields: dict[str, Any] = {**app.as_identity(), "private_key": Secret(app.private_key), **changes}
    return AppIdentity(**fields)


def as_token(github: FakeGitHub, token: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, github.api_url + path, headers={"Authorization": f"token {token}"}, timeout=10,
                            **kwargs)


def test_a_minted_token_is_narrowed_to_the_repository_and_the_permissions_asked(github: FakeGitHub) -> None:
    app = github.add_app("fleet-reviewer")
    minted = AppTokenMinter(github.api_url, github.repository).mint(identity(app), token_permissions(REVIEWER))
    [issued] = github.minted(app)
    assert minted.token.reveal() == issued.token and issued.token.startswith("ghs_")
    assert issued.repositories == ("webapp",)
    assert issued.permissions == {"checks": "read", "contents": "read", "pull_requests": "write", "statuses": "read"}
    assert 3500 < (minted.expires_at.timestamp() - time.time()) <= 3600
    pull = github.add_pull()
    # It reads the pull request as the App's bot; it may not merge (contents: read) nor open an issue (no issues).
    token = minted.token.reveal()
    assert as_token(github, token, "GET", "/user").status_code == 403  # an installation has no user
    assert as_token(github, token, "GET", f"/repos/acme/webapp/pulls/{pull.number}").status_code == 200
    refused = as_token(github, token, "PUT", f"/repos/acme/webapp/pulls/{pull.number}/merge",
                       json={"merge_method": "squash"})
    assert (refused.status_code, refused.json()["message"]) == (403, "Resource not accessible by integration")
    assert as_token(github, token, "POST", "/repos/acme/webapp/issues", json={"title": "x"}).status_code == 403
    assert as_token(github, token, "GET", f"/repos/acme/webapp/commits/{pull.head_sha}/check-runs").status_code == 200
    assert not github.pull(pull.number).merged


def test_a_minted_token_expires(github: FakeGitHub) -> None:
    github.token_lifetime_s = 0.5
    app = github.add_app()
    token = AppTokenMinter(github.api_url, github.repository).mint(identity(app), {"contents": "read"}).token.reveal()
    assert as_token(github, token, "GET", "/repos/acme/webapp").status_code == 200
    time.sleep(0.6)  # the token's own lifetime, shortened; no poll can make it expire sooner
    assert as_token(github, token, "GET", "/repos/acme/webapp").status_code == 401


def test_a_token_for_another_repository_does_not_reach_this_one(github: FakeGitHub) -> None:
    app = github.add_app(repositories=("webapp", "other"))
    minter = AppTokenMinter(github.api_url, "acme/other")
    token = minter.mint(identity(app), {"contents": "read"}).token.reveal()
    assert as_token(github, token, "GET", "/repos/acme/webapp").status_code == 404


@pytest.mark.parametrize(("arrange", "says"), [
    ("wrong key", "GitHub refused its JWT (401: A JSON web token could not be decoded): the private key is not "
                  "this App's"),
    ("removed", "no installation"),
    ("lacks permission", "cannot grant contents: write, issues: write, pull_requests: write on acme/webapp (422: "
                         "The permissions requested are not granted to this installation.)"),
    ("not installed here", "There is at least one repository that does not exist or is not accessible"),
    ("not a key", "its private key cannot sign a JWT"),
])
def test_each_refusal_to_mint_has_its_own_reason_and_never_the_key(github: FakeGitHub, arrange: str,
                                                                   says: str) -> None:
    app = github.add_app(permissions={"contents": "read", "pull_requests": "write"} if arrange == "lacks permission"
                         else None, repositories=("other",) if arrange == "not installed here" else None)
    chosen = identity(app)
    if arrange == "wrong key":
        chosen = identity(app, private_key=Secret(github.add_app("stranger").private_key))
    if arrange == "removed":
        app.installed = False
    if arrange == "not a key":
        chosen = identity(app, private_key=Secret(f"{PEM_BEGIN}\nSECRETgarbage\n{PEM_END}"))
    with pytest.raises(MintFailure) as raised:
        AppTokenMinter(github.api_url, github.repository).mint(chosen, token_permissions(BUILDER))
    assert says in str(raised.value)
    assert chosen.private_key.reveal() not in str(raised.value) and "SECRET" not in str(raised.value)
    assert github.minted() == []


def test_a_github_that_does_not_answer_a_mint_is_named_with_its_host_and_why(github: FakeGitHub) -> None:
    with socket.socket() as unused:  # a port on this machine that nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    app = github.add_app()
    with pytest.raises(MintFailure) as raised:
        AppTokenMinter(f"http://127.0.0.1:{port}", github.repository).mint(identity(app), {"contents": "read"})
    assert str(raised.value) == (f"App {app.app_id}: GitHub at 127.0.0.1:{port} unreachable while minting a token "
                                 "(refused); the next cycle tries again")


def test_a_jwt_valid_for_longer_than_ten_minutes_is_refused(github: FakeGitHub) -> None:
    import jwt as pyjwt

    app = github.add_app()
    now = int(time.time())
    long_lived = pyjwt.encode({"iat": now - 60, "exp": now + 3600, "iss": str(app.app_id)}, app.private_key,
                              algorithm="RS256")
    answer = requests.post(f"{github.api_url}/app/installations/{app.installation_id}/access_tokens",
                           headers={"Authorization": f"Bearer {long_lived}"}, json={}, timeout=10)
    assert answer.status_code == 401 and "too far in the future" in answer.json()["message"]


# ------------------------------------------------------------------------------------------ the coordinator's files


def roster(tmp_path: Path, *roles: Role) -> str:
    path = tmp_path / "roster.json"
    path.write_text(roster_to_json([RoleSpec(r, image="ghcr.io/acme/agent:1") for r in roles]))
    return str(path)


def identities_file(tmp_path: Path, value: object) -> str:
    path = tmp_path / "identities.json"
    path.write_text(json.dumps(value))
    return str(path)


def test_the_coordinator_reads_identities_and_refuses_a_role_whose_identity_it_lacks(tmp_path: Path) -> None:
    app = {"app_id": 7, "installation_id": 8, "private_key": f"{PEM_BEGIN}\nx\n{PEM_END}"}
    env = {"FLEET_ROSTER_FILE": roster(tmp_path, BUILDER, REVIEWER),
           "AGENT_IDENTITIES_FILE": identities_file(tmp_path, {"author": {"token": "tok-AUTHOR"}, "reviewer": app})}
    settings = load_settings(env)
    assert set(settings.agent_identities) == {"author", "reviewer"}
    assert settings.agent_identities["reviewer"] == AppIdentity(7, 8, Secret(app["private_key"]))
    assert "tok-AUTHOR" in settings.secrets() and app["private_key"] in settings.secrets()
    env["AGENT_IDENTITIES_FILE"] = identities_file(tmp_path, {"author": {"token": "tok-AUTHOR"}})
    with pytest.raises(ConfigError, match="role 'reviewer' acts on GitHub as the identity 'reviewer', but "
                                          "AGENT_IDENTITIES_FILE holds no such identity"):
        load_settings(env)


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator", *args],
                          env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.mark.parametrize("shared_by", ["agent secret", "identity"])
def test_the_coordinator_refuses_a_roster_whose_reviews_could_never_count_with_exit_2(
    tmp_path: Path, shared_by: str
) -> None:
    heartbeat = tmp_path / "heartbeat.json"
    env = {"FLEET_ROSTER_FILE": roster(tmp_path, BUILDER, REVIEWER), "COORDINATOR_HEARTBEAT_FILE": str(heartbeat)}
    if shared_by == "agent secret":
        secrets = tmp_path / "secrets.json"
        secrets.write_text(json.dumps({"GITHUB_TOKEN": "tok-SHARED-secret"}))
        env["AGENT_SECRETS_FILE"] = str(secrets)
    else:
        env["FLEET_ROSTER_FILE"] = roster(tmp_path, BUILDER, role("reviewer", Mode.REVIEWER, identity="author"))
        env["AGENT_IDENTITIES_FILE"] = identities_file(tmp_path, {"author": {"token": "tok-SHARED-secret"}})
    result = run_cli("cycle", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "role 'reviewer' (Reviewer)" in result.stderr and "role 'builder'" in result.stderr
    assert "GitHub refuses an approval from a pull request's author" in result.stderr
    assert "tok-SHARED-secret" not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert not heartbeat.exists()  # refused before anything ran


# ------------------------------------------------------------------------------------------ on the real engine


def test_a_cycle_gives_each_agent_a_freshly_minted_token_of_its_mode_and_never_the_key(
    tmp_path: Path, base_image: str, docker_client: Any, fleet_id: str
) -> None:
    from tests.fleet_harness import cycle_env, role_spec, run_cycle, write_roster

    with FakeGitHub() as github:
        author, reviewer = github.add_app("fleet-author"), github.add_app("fleet-reviewer")
        cicd = role_spec("cicd", 1, base_image, mode=Mode.SELF_DIRECTED)
        cicd = RoleSpec(Role(**{**cicd.role.__dict__, "github_permissions": (("workflows", "write"),)}), cicd.image,
                        cicd.command)
        roster_path = write_roster(tmp_path / "roster.json", [
            role_spec("builder", 1, base_image), role_spec("reviewer", 1, base_image, mode=Mode.REVIEWER),
            role_spec("thinker", 1, base_image, mode=Mode.THINKER), cicd])
        identities = {"author": author.as_identity(), "reviewer": reviewer.as_identity()}
        env = cycle_env(fleet_id, roster_path, GITHUB_REPOSITORY=github.repository, GITHUB_API_URL=github.api_url,
                        AGENT_IDENTITIES_FILE=identities_file(tmp_path, identities))
        run = run_cycle(env)
        assert run.returncode == 0, run.stdout + run.stderr
        assert sorted(e["role"] for e in run.events("agent.spawned")) == ["builder", "cicd", "reviewer", "thinker"]

        expected = {
            "builder": (author, {"contents": "write", "issues": "write", "pull_requests": "write"}),
            "cicd": (author, {"contents": "write", "issues": "write", "pull_requests": "write", "workflows": "write"}),
            "reviewer": (reviewer, {"checks": "read", "contents": "read", "pull_requests": "write",
                                    "statuses": "read"}),
            "thinker": (author, {"contents": "read", "issues": "write"}),
        }
        held: set[str] = set()
        for key, (app, permissions) in expected.items():
            container = docker_client.containers.get(f"{fleet_id}-{key}-1")
            token = container.exec_run(["cat", "/run/secrets/GITHUB_TOKEN"]).output.decode()
            minted = github.installation_tokens[token]  # one the local GitHub minted
            assert (minted.app_id, minted.repositories, minted.permissions) == (app.app_id, ("webapp",), permissions)
            environment = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
            assert environment["GITHUB_TOKEN_EXPIRES_AT"] == time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                           time.gmtime(minted.expires_at))
            # The key is nowhere in the agent: not in its files, environment, labels or inspect.
            inspected = json.dumps(docker_client.api.inspect_container(container.id))
            files = container.exec_run(["sh", "-c", "cat /run/secrets/*"]).output.decode()
            for secret in (author.private_key, reviewer.private_key):
                body = secret.splitlines()[1]
                assert body not in inspected and body not in files and token not in inspected
            held.add(token)
        assert len(held) == 4  # each agent its own, freshly minted token
        for app in (author, reviewer):
            assert app.private_key.splitlines()[1] not in run.stdout + run.stderr


def test_a_failed_mint_fails_that_spawn_alone_with_its_reason(
    tmp_path: Path, base_image: str, docker_client: Any, fleet_id: str
) -> None:
    from tests.fleet_harness import cycle_env, role_spec, run_cycle, write_roster

    with FakeGitHub() as github:
        author, reviewer = github.add_app("fleet-author"), github.add_app("fleet-reviewer")
        reviewer.installed = False  # uninstalled from the repository
        roster_path = write_roster(tmp_path / "roster.json", [
            role_spec("builder", 2, base_image), role_spec("reviewer", 1, base_image, mode=Mode.REVIEWER)])
        identities = {"author": author.as_identity(), "reviewer": reviewer.as_identity()}
        env = cycle_env(fleet_id, roster_path, GITHUB_REPOSITORY=github.repository, GITHUB_API_URL=github.api_url,
                        AGENT_IDENTITIES_FILE=identities_file(tmp_path, identities))
        run = run_cycle(env)
        assert sorted(e["slot"] for e in run.events("agent.spawned") if e["role"] == "builder") == [1, 2]
        [failed] = run.events("agent.spawn_failed")
        assert failed["role"] == "reviewer"
        assert f"no GitHub token: App {reviewer.app_id}: no installation {reviewer.installation_id}" in failed["error"]
        [report] = run.events("cycle.report")
        assert any("no installation" in e["message"] for e in report["errors"])


def test_the_coordinator_merges_as_its_app(tmp_path: Path) -> None:
    from tests.fleet_harness import cycle_env, run_cycle

    with FakeGitHub() as github:
        app = github.add_app("fleet-coordinator")
        pull = github.add_pull("Ready")
        github.approve(pull.number)
        github.add_check_run(pull.number, "ci")
        app_file = tmp_path / "app.json"
        app_file.write_text(json.dumps(app.as_identity()))
        env = cycle_env("tapp", None, GITHUB_REPOSITORY=github.repository, GITHUB_API_URL=github.api_url,
                        GITHUB_APP_FILE=str(app_file))
        run = run_cycle(env)
        assert run.returncode == 0, run.stdout + run.stderr
        assert github.pull(pull.number).merged and github.pull(pull.number).merged_by == app.login
        [minted] = github.minted(app)
        assert minted.permissions == {"contents": "write", "pull_requests": "write", "checks": "read",
                                      "statuses": "read", "issues": "read"}
        assert app.private_key.splitlines()[1] not in run.stdout + run.stderr
        # A coordinator App that cannot mint fails the merge step with GitHub's reason, not the cycle.
        app.installed = False
        run = run_cycle(env)
        [report] = run.events("cycle.report")
        assert report["steps"]["merge"]["status"] == "failed"
        assert "the coordinator's App minted no token" in json.dumps(report)
        assert report["steps"]["health"]["status"] == "skipped"


# ------------------------------------------------------------------------------------------ one account, two names


def test_two_token_identities_that_are_one_account_are_found_at_the_schedulers_start(tmp_path: Path) -> None:
    import signal

    from coordinator.status import parse_reports, render_status

    with FakeGitHub(extra_tokens={"tok-AUTHOR-one": "machine-bot", "tok-REVIEWER-two": "machine-bot",
                                  "tok-THINKER-three": "thinker-bot"}) as github:
        path = identities_file(tmp_path, {"author": {"token": "tok-AUTHOR-one"},
                                          "reviewer": {"token": "tok-REVIEWER-two"},
                                          "thinker": {"token": "tok-THINKER-three"}})
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "FLEET_ID": "tshared",
               "AGENT_IDENTITIES_FILE": path, "GITHUB_API_URL": github.api_url,
               "COORDINATOR_SCHEDULE": "0 0 1 1 *",  # the first cycle runs at start, the next in a year
               "COORDINATOR_HEARTBEAT_FILE": str(tmp_path / "state" / "heartbeat.json")}
        out = tmp_path / "scheduler.log"
        with out.open("wb") as sink:
            scheduler = subprocess.Popen([sys.executable, "-m", "coordinator", "schedule"], env=env, cwd=ROOT,
                                         stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while '"cycle.report"' not in out.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            scheduler.send_signal(signal.SIGTERM)
            scheduler.wait(timeout=30)
        assert github.calls("GET", "/user") == 3  # one per token identity
    lines = out.read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    [warning] = [e for e in events if e["event"] == "identities.shared_account"]
    said = ("the identities 'author' and 'reviewer' are one GitHub account ('machine-bot'): GitHub refuses that "
            "account's approvals of its own pull requests")
    assert warning["warning"].startswith(said)
    [report] = [e for e in events if e["event"] == "cycle.report"]
    assert report["verdict"] == "degraded" and report["verdict_reasons"][0].startswith(said)
    assert report["shared_accounts"] == [warning["warning"]]
    assert f"because: {said}" in render_status(parse_reports(lines))
    assert "tok-" not in out.read_text()


# ------------------------------------------------------------------------------------------ the stack's keys


@pytest.mark.parametrize(("raw", "says"), [
    ('{"author": {"token": "SECRET"}}', "agent-fleet:githubIdentities.author holds a token shorter than 8"),
    ('{"author": {"appId": 1, "installationId": 2, "privateKey": "SECRET-no-pem"}}',
     "agent-fleet:githubIdentities.author has no PEM private key in privateKey"),
    ('{"author": {"app_id": 1, "installation_id": 2, "private_key": "SECRET"}}',
     "agent-fleet:githubIdentities.author has the keys app_id, installation_id, private_key: use"),
    ('["SECRET"]', "agent-fleet:githubIdentities is not a JSON object of name -> identity"),
])
def test_the_stacks_identities_are_refused_by_key_and_name_never_by_value(raw: str, says: str) -> None:
    from deploy.stack_config import StackConfigError, parse_github_identities

    with pytest.raises(StackConfigError) as raised:
        parse_github_identities(raw)
    assert says in str(raised.value) and "SECRET" not in str(raised.value)
    assert "pulumi config set --secret --path 'githubIdentities.NAME.token'" in str(raised.value)


def test_the_stacks_identities_are_known_by_name_and_kind() -> None:
    from deploy.stack_config import parse_github_identities

    pem = f"{PEM_BEGIN}\nkey\n{PEM_END}"
    raw = json.dumps({"author": {"token": "ghp_0123456789"},
                      "reviewer": {"appId": 1, "installationId": 2, "privateKey": pem}})
    assert parse_github_identities(raw) == (("author", "token"), ("reviewer", "app"))
    assert parse_github_identities("{}") is None and parse_github_identities("") is None


def test_plan_never_shows_an_identitys_key_or_token(tmp_path: Path, fleet_id: str) -> None:
    key = f"{PEM_BEGIN}\nSECRETKEYBODY0123456789\n{PEM_END}"
    env = {"FLEET_ID": fleet_id, "FLEET_ROSTER_FILE": roster(tmp_path, BUILDER, REVIEWER),
           "GITHUB_REPOSITORY": "acme/webapp", "COORDINATOR_HEARTBEAT_FILE": str(tmp_path / "heartbeat.json"),
           "AGENT_IDENTITIES_FILE": identities_file(tmp_path, {
               "author": {"token": "ghp_SECRETAUTHOR0123"},
               "reviewer": {"app_id": 1, "installation_id": 2, "private_key": key}})}
    for args in (("plan",), ("plan", "--format", "json")):
        result = run_cli(*args, env={**env, "DOCKER_HOST": os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")})
        assert result.returncode == 0, result.stdout + result.stderr
        assert "2 would be spawned" in result.stdout or '"spawned": 2' in result.stdout  # the plan was made
        assert "SECRET" not in result.stdout + result.stderr
