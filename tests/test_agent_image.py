"""The reference agent (agent/Dockerfile, agent/entrypoint.py) honours the agent contract (docs/agents.md).

No model is reachable from a test, so the coding-agent CLI is a scripted stand-in: a role `command` that edits
a file (or changes nothing), or a `claude` stub that shadows the real one to show what the default CMD runs.
Everything else is real: `git` clones from and pushes to a local git server (`git http-backend`, refusing a wrong
token), the pull request is opened on the local GitHub over HTTP, the image is built from agent/Dockerfile in
full (Claude Code included: about a minute and a half here, so it is never cut short) and its containers run on
the real Docker engine with host networking, their secrets copied in as files before they start.

The first tests run the entrypoint on this machine, without Docker, for its logic; the `docker` ones run the
image; the last one runs the whole loop through real coordinator cycles.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from coordinator.fleet import MAX_AGENT_SECRET_BYTES, Department, Mode, Role, RoleSpec
from coordinator.redact import MIN_SECRET_CHARS
from tests.fakes.git_server import FakeGitServer
from tests.fakes.github import FakeGitHub
from tests.fakes.production import production
from tests.fleet_harness import ROOT, cycle_env, fleet_containers, role_spec, run_cycle, write_roster

# Tags of this session's own: a run of these tests beside another (another checkout's) never uses its image.
AGENT_IMAGE = f"agent-fleet/agent:test-{os.getpid()}"
STAND_IN_IMAGE = f"agent-fleet/agent-stand-in:test-{os.getpid()}"
ENTRYPOINT = ROOT / "agent" / "entrypoint.py"
AGENT_TOKEN = "agent-token-0aB1cD2eF3gH4iJ5kL6mN7"  # the agent's own token; the git server knows only this one
COORDINATOR_TOKEN = "coordinator-token-9zY8xW7vU6tS5rQ4"  # the coordinator's: never handed to an agent
MODEL_KEY = "model-key-sk-fake-5566778899aabbccdd"
AGENT_LOGIN = "fleet-agent[bot]"
BRIEF = "Append a line to README.md. Exit when there is nothing left to append."
TIMEOUT = 120.0

# The scripted stand-ins for the model's CLI, as a role's `command`.
EDITS = ("sh", "-c", "printf 'A line from the stand-in\\n' >> README.md && "
         "echo '{\"type\": \"result\", \"is_error\": false, \"result\": \"Appended a line to README.md.\"}'")
CHANGES_NOTHING = ("sh", "-c", "echo 'Nothing is left to append.'")
# A `claude` that shadows the real one: records its argv and environment, adds a file, answers as Claude Code does.
CLAUDE_STUB = """#!/bin/sh
printf '%s\\0' "$@" > /home/agent/stand-in-argv
env > /home/agent/stand-in-env
printf 'Notes from the stand-in\\n' > NOTES.md
echo '{"type":"result","subtype":"success","is_error":false,"result":"Added NOTES.md.","total_cost_usd":0}'
"""


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def servers() -> Iterator[tuple[FakeGitServer, FakeGitHub]]:
    """The local git server (the agent's token) and the local GitHub (the coordinator's, and the agent's)."""
    with FakeGitServer(token=AGENT_TOKEN) as git, FakeGitHub(
        token=COORDINATOR_TOKEN, required_checks=("ci",), resolve_branch=git.head,
        extra_tokens={AGENT_TOKEN: AGENT_LOGIN},
    ) as github:
        yield git, github
        assert github.server_errors == []


def agent_env(git: FakeGitServer, github: FakeGitHub, **extra: str) -> dict[str, str]:
    """What the coordinator hands an agent (docs/agents.md), pointed at the local servers."""
    return {
        "AGENT_ROLE": "builder", "AGENT_BRIEF": BRIEF, "AGENT_MODE": "Self-directed", "AGENT_SLOT": "2",
        "GITHUB_REPOSITORY": github.repository, "GITHUB_API_URL": github.api_url, "GITHUB_SERVER_URL": git.url,
        **extra,
    }


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def the_exit(stdout: str) -> dict[str, Any]:
    found = events(stdout)
    assert found and found[-1]["event"] == "agent.exit", stdout
    return found[-1]


# ------------------------------------------------------------------------------------------------ the local servers


def _request(url: str, method: str = "GET", body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/vnd.github+json", "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _ls_remote(git: FakeGitServer, header: str | None) -> subprocess.CompletedProcess[str]:
    config = ["-c", f"http.extraHeader=Authorization: {header}"] if header else []
    return subprocess.run(["git", *config, "ls-remote", git.clone_url], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})


def test_the_git_server_checks_the_token_as_github_does() -> None:
    with FakeGitServer(token=AGENT_TOKEN) as git:
        basic = base64.b64encode(f"x-access-token:{AGENT_TOKEN}".encode()).decode()
        wrong = base64.b64encode(b"x-access-token:not-the-token").decode()
        assert _ls_remote(git, None).returncode != 0
        assert _ls_remote(git, f"Basic {wrong}").returncode != 0
        assert _ls_remote(git, "Bearer not-the-token").returncode != 0
        for header in (f"Basic {basic}", f"Bearer {AGENT_TOKEN}"):
            listed = _ls_remote(git, header)
            assert listed.returncode == 0, listed.stderr
            assert f"{git.head('main')}\trefs/heads/main" in listed.stdout
        assert [r.status for r in git.requests if r.method == "GET"] == [401, 401, 401, 200, 200]
        assert all(r.authorized for r in git.requests if r.method == "POST")
        assert git.file_at("main", "README.md") == "# webapp"
        assert git.head("no-such-branch") is None


def test_the_local_github_opens_and_labels_pull_requests_as_github_does(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    main = git.head("main")
    assert main is not None
    git.git("update-ref", "refs/heads/feature/x", main)
    pulls = f"{github.api_url}/repos/{github.repository}/pulls"
    request = {"title": "Add x", "head": "acme:feature/x", "base": "main", "body": "Why x."}

    status, created = _request(pulls, "POST", request, token=AGENT_TOKEN)
    assert status == 201, created
    assert (created["number"], created["head"]["ref"], created["head"]["sha"]) == (1, "feature/x", main)
    assert (created["user"]["login"], created["state"], created["labels"]) == (AGENT_LOGIN, "open", [])
    status, labels = _request(f"{github.api_url}/repos/{github.repository}/issues/1/labels", "POST",
                              {"labels": ["role:builder"]}, token=AGENT_TOKEN)
    assert status == 200 and [label["name"] for label in labels] == ["role:builder"]
    assert github.pull(1).labels == ["role:builder"] and github.pull(1).author == AGENT_LOGIN

    refused = [
        ({**request, "head": "no-such-branch"}, "head"),  # GitHub: the head must exist
        ({**request, "base": "no-such-base"}, "base"),
        ({**request, "head": "someone-else:feature/x"}, "head"),
    ]
    for body, field in refused:
        status, answer = _request(pulls, "POST", body, token=AGENT_TOKEN)
        assert (status, answer["errors"][0]["field"]) == (422, field), answer
    status, answer = _request(pulls, "POST", request, token=AGENT_TOKEN)
    assert status == 422 and "already exists" in answer["errors"][0]["message"]
    status, answer = _request(pulls, "POST", {"title": "t", "body": "no head, no base"}, token=AGENT_TOKEN)
    assert status == 422 and "weren't supplied" in answer["message"]
    assert _request(pulls, "POST", request, token="not-a-token")[0] == 401
    assert _request(pulls, "GET", token=COORDINATOR_TOKEN)[0] == 200  # the fake's own token is unchanged


# ------------------------------------------------------------------------------------------------ the entrypoint, here


def run_entrypoint(env: Mapping[str, str], secrets: Mapping[str, str | bytes], command: Sequence[str] = (),
                   ) -> subprocess.CompletedProcess[str]:
    """The entrypoint as a process here; each secret a file: text with a newline after it, bytes as they are."""
    with tempfile.TemporaryDirectory() as secrets_dir, tempfile.TemporaryDirectory() as home:
        for name, value in secrets.items():
            path = Path(secrets_dir, name)
            path.write_bytes(value) if isinstance(value, bytes) else path.write_text(value + "\n", encoding="utf-8")
        return subprocess.run(
            [sys.executable, str(ENTRYPOINT), *command], capture_output=True, text=True, timeout=TIMEOUT,
            env={"PATH": os.environ["PATH"], "HOME": home, "AGENT_SECRETS_DIR": secrets_dir,
                 "AGENT_WORK_DIR": str(Path(home, "work")), **env},
        )


def test_entrypoint_opens_a_labelled_pull_request_for_what_the_cli_changed(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    done = run_entrypoint(agent_env(git, github), {"GITHUB_TOKEN": AGENT_TOKEN}, EDITS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert the_exit(done.stdout) == {"event": "agent.exit", "code": 0, "outcome": "opened"}
    pushed = next(e for e in events(done.stdout) if e["event"] == "agent.pushed")
    [pull] = github.pulls
    assert pull.labels == ["role:builder"] and pull.author == AGENT_LOGIN and pull.base == "main"
    assert pull.head_ref == pushed["branch"] and pull.head_ref.startswith("agent/builder-2-")
    assert pull.head_sha == pushed["head"] == git.head(pull.head_ref)
    assert git.file_at(pull.head_sha, "README.md") == "# webapp\nA line from the stand-in"
    assert git.log(pull.head_sha, format="%an <%ae>")[0] == "agent-fleet <agent@users.noreply>"
    assert "Appended a line to README.md." in pull.body and BRIEF in pull.body and "role:builder" in pull.body
    assert pull.title == "builder: changes from agent 2"


def test_entrypoint_titles_the_pull_request_with_the_clis_first_commit(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    commits = ("sh", "-c", "echo a > a.txt && git add a.txt && git commit -qm 'Add a' && echo b > b.txt")
    done = run_entrypoint(agent_env(git, github, GIT_AUTHOR_NAME="Builder Bot", GIT_AUTHOR_EMAIL="bot@example.com"),
                          {"GITHUB_TOKEN": AGENT_TOKEN}, commits)
    assert done.returncode == 0, done.stdout + done.stderr
    [pull] = github.pulls
    assert pull.title == "Add a"
    assert git.log(pull.head_sha, format="%an <%ae> %s")[:2] == [
        "Builder Bot <bot@example.com> builder: remaining changes from agent 2", "Builder Bot <bot@example.com> Add a"]


def test_entrypoint_exits_0_and_opens_nothing_when_the_cli_changed_nothing(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    done = run_entrypoint(agent_env(git, github), {"GITHUB_TOKEN": AGENT_TOKEN}, CHANGES_NOTHING)
    assert done.returncode == 0, done.stdout + done.stderr
    assert the_exit(done.stdout)["outcome"] == "idle"
    assert github.pulls == [] and list(git.branches()) == ["main"]
    assert not any("receive-pack" in r.target for r in git.requests)


@pytest.mark.parametrize(
    ("secrets", "command", "named"),
    [
        ({}, EDITS, "missing secret GITHUB_TOKEN ("),
        ({"GITHUB_TOKEN": ""}, EDITS, "missing secret GITHUB_TOKEN ("),
        ({"ANTHROPIC_API_KEY": MODEL_KEY}, (), "missing secret GITHUB_TOKEN ("),
        ({"GITHUB_TOKEN": AGENT_TOKEN}, (), "missing secret ANTHROPIC_API_KEY ("),  # the default CLI needs it
        ({}, (), "missing secrets GITHUB_TOKEN, ANTHROPIC_API_KEY ("),
    ],
)
def test_entrypoint_without_a_secret_it_needs_exits_78_at_once_naming_it(
    servers: tuple[FakeGitServer, FakeGitHub], secrets: dict[str, str], command: tuple[str, ...], named: str,
) -> None:
    git, github = servers
    started = time.monotonic()
    done = run_entrypoint(agent_env(git, github), secrets, command)
    assert done.returncode == 78, done.stdout + done.stderr
    assert time.monotonic() - started < 10
    assert events(done.stdout) == [the_exit(done.stdout)]  # one line, and nothing done
    assert the_exit(done.stdout)["reason"].startswith(named)
    assert git.requests == [] and github.requests == []


def test_entrypoint_refused_by_the_git_server_exits_78_naming_the_token(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    done = run_entrypoint(agent_env(git, github), {"GITHUB_TOKEN": COORDINATOR_TOKEN}, EDITS)
    assert done.returncode == 78, done.stdout + done.stderr
    assert "refused the GITHUB_TOKEN secret" in the_exit(done.stdout)["reason"]
    assert COORDINATOR_TOKEN not in done.stdout + done.stderr
    assert github.pulls == []


def test_entrypoint_fails_when_the_cli_fails_and_pushes_nothing(servers: tuple[FakeGitServer, FakeGitHub]) -> None:
    git, github = servers
    done = run_entrypoint(agent_env(git, github), {"GITHUB_TOKEN": AGENT_TOKEN},
                          ("sh", "-c", "echo half >> README.md; exit 3"))
    assert done.returncode == 1
    assert the_exit(done.stdout)["reason"] == "the CLI exited 3"
    assert github.pulls == [] and list(git.branches()) == ["main"]
    missing = run_entrypoint(agent_env(git, github), {"GITHUB_TOKEN": AGENT_TOKEN}, ("no-such-cli",))
    assert missing.returncode == 78 and "'no-such-cli' is not in the image" in the_exit(missing.stdout)["reason"]


def test_entrypoint_scrubs_secrets_from_what_the_cli_prints(servers: tuple[FakeGitServer, FakeGitHub]) -> None:
    git, github = servers
    leaky = ("sh", "-c", 'cat "$AGENT_SECRETS_DIR/GITHUB_TOKEN"; echo "key=$ANTHROPIC_API_KEY" >&2; '
             'echo "token in env: ${GITHUB_TOKEN:-none}" >&2; echo x > x.txt')
    done = run_entrypoint(agent_env(git, github), {"GITHUB_TOKEN": AGENT_TOKEN, "ANTHROPIC_API_KEY": MODEL_KEY},
                          leaky)
    assert done.returncode == 0, done.stdout + done.stderr
    assert AGENT_TOKEN not in done.stdout + done.stderr and MODEL_KEY not in done.stdout + done.stderr
    assert "***" in done.stderr and "key=***" in done.stderr  # the model's key reached the CLI, scrubbed
    assert "token in env: none" in done.stderr  # the GitHub token never reaches the CLI's environment
    [pull] = github.pulls  # the CLI's output is quoted in the pull request: scrubbed too
    assert AGENT_TOKEN not in pull.body and "***" in pull.body


def test_the_agent_and_the_coordinator_agree_on_an_agent_secrets_bounds() -> None:
    # The image does not import the coordinator: each side declares the bounds, and they must be the same.
    from tests.test_agent_modes import agent as entrypoint  # loaded once, registered as its dataclasses need

    assert entrypoint.MIN_SECRET_CHARS == MIN_SECRET_CHARS == 8
    assert entrypoint.MAX_SECRET_BYTES == MAX_AGENT_SECRET_BYTES


BIG = "big-" + "k" * (MAX_AGENT_SECRET_BYTES - 4)  # the largest secret an agent takes


@pytest.mark.parametrize(
    ("secrets", "named"),
    [
        # Larger than an agent secret may be: refused, never left out of the CLI's environment.
        ({"GITHUB_TOKEN": AGENT_TOKEN, "EXTRA_KEY": (BIG + "k").encode()},
         f"secret EXTRA_KEY is larger than {MAX_AGENT_SECRET_BYTES} bytes"),
        ({"GITHUB_TOKEN": AGENT_TOKEN, "EXTRA_KEY": "1234567"}, "secret EXTRA_KEY is shorter than 8 characters"),
        ({"GITHUB_TOKEN": "dev"}, "secret GITHUB_TOKEN is shorter than 8 characters"),
        ({"GITHUB_TOKEN": AGENT_TOKEN, "EXTRA_KEY": b"sk-\xff\xfe-not-text"}, "secret EXTRA_KEY is not UTF-8 text"),
        ({"GITHUB_TOKEN": AGENT_TOKEN, "extra-key": "sk-extra-0123456789"},
         "secret extra-key is not named as an environment variable"),
    ],
)
def test_entrypoint_refuses_a_secret_it_cannot_take_exits_78_naming_it_never_its_value(
    servers: tuple[FakeGitServer, FakeGitHub], secrets: dict[str, str | bytes], named: str,
) -> None:
    git, github = servers
    done = run_entrypoint(agent_env(git, github), secrets, EDITS)
    assert done.returncode == 78, done.stdout + done.stderr
    assert events(done.stdout) == [the_exit(done.stdout)]  # one line, and nothing done
    assert the_exit(done.stdout)["reason"].startswith(named)
    for value in secrets.values():
        shown = value.decode("utf-8", errors="ignore") if isinstance(value, bytes) else value
        assert shown[:7] not in done.stdout + done.stderr
    assert git.requests == [] and github.requests == []


def test_entrypoint_takes_secrets_at_the_bounds_whole_and_scrubs_them(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    short, lines = "12345678", "-----BEGIN KEY-----\nline-one-0123456789\nline-two-9876543210\n-----END KEY-----"
    # The CLI prints each secret it received; a short one equal to a number and a word of the events' own text.
    leaky = ("sh", "-c", 'printf "%s\\n" "$BIG_KEY" "short=$SHORT_KEY" "role $WORD_KEY" '
             '"$(printf "%s" "$PEM_KEY" | tail -n 2)"; '
             'echo \'{"type": "result", "is_error": false, "result": "slot 12345678 done"}\'; echo x > x.txt')
    secrets: dict[str, str | bytes] = {"GITHUB_TOKEN": AGENT_TOKEN, "BIG_KEY": BIG.encode(), "SHORT_KEY": short,
                                       "WORD_KEY": "agent.cli", "PEM_KEY": lines}
    done = run_entrypoint(agent_env(git, github, AGENT_SLOT="12345678"), secrets, leaky)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    found = events(done.stdout)  # every line still JSON, keys and numbers whole
    assert [e["event"] for e in found][:2] == ["agent.start", "agent.cloned"] and found[0]["slot"] == 12345678
    assert found[-1] == {"event": "agent.exit", "code": 0, "outcome": "opened"}
    # Whatever the agent was given reached the CLI whole and is scrubbed from all it wrote.
    relayed = done.stderr.splitlines()
    assert relayed[:5] == ["***", "short=***", "role ***", "***", "***"], relayed[:5]  # the key line by line
    for value in (BIG, short, "line-one-0123456789", "line-two-9876543210"):
        assert value not in done.stderr
    [pull] = github.pulls
    assert "slot *** done" in pull.body and short not in pull.body


# ------------------------------------------------------------------------------------------------ the image


def _tar(files: Mapping[str, tuple[bytes, int]]) -> bytes:
    """An archive of the files (path -> content, mode) and their parent directories, for put_archive("/")."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        seen: set[str] = set()
        for path, (content, mode) in files.items():
            parts = path.strip("/").split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in seen:
                    seen.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
                    tar.addfile(info)
            info = tarfile.TarInfo(path.strip("/"))
            info.size, info.mode, info.mtime = len(content), mode, int(time.time())
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _build_log(exc: docker.errors.BuildError) -> str:
    return "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)[-4000:]


@pytest.fixture(scope="module")
def agent_image(docker_client: docker.DockerClient, base_image: str) -> Iterator[str]:
    """agent/Dockerfile, built in full (Claude Code included) on the base image, as the program builds it."""
    try:
        docker_client.images.build(path=str(ROOT / "agent"), buildargs={"BASE_IMAGE": base_image}, tag=AGENT_IMAGE,
                                   rm=True, forcerm=True)
    except docker.errors.BuildError as exc:
        pytest.fail(f"agent/Dockerfile does not build: {exc}\n{_build_log(exc)}", pytrace=False)
    yield AGENT_IMAGE
    with contextlib.suppress(docker.errors.DockerException):  # the tag only: the layers stay cached
        docker_client.images.remove(AGENT_IMAGE, noprune=True)


@pytest.fixture(scope="module")
def stand_in_image(docker_client: docker.DockerClient, agent_image: str) -> Iterator[str]:
    """The agent image with a scripted `claude` ahead of the real one on PATH: the default CMD, model-free."""
    dockerfile = (f"FROM {agent_image}\nCOPY claude /opt/stand-in/claude\n"
                  "ENV PATH=/opt/stand-in:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n")
    context = _tar({"Dockerfile": (dockerfile.encode(), 0o644), "claude": (CLAUDE_STUB.encode(), 0o755)})
    docker_client.images.build(fileobj=io.BytesIO(context), custom_context=True, tag=STAND_IN_IMAGE, rm=True,
                               forcerm=True)
    yield STAND_IN_IMAGE
    with contextlib.suppress(docker.errors.DockerException):
        docker_client.images.remove(STAND_IN_IMAGE, noprune=True)


@dataclass
class AgentRun:
    code: int
    stdout: str
    stderr: str
    inspect: dict[str, Any]
    container: Any
    seconds: float

    def file(self, path: str) -> bytes:
        """A file from the finished container (get_archive works on a stopped one)."""
        stream, _ = self.container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile(tar.getmembers()[0])
            assert member is not None
            return member.read()

    def tree(self, path: str) -> dict[str, bytes]:
        stream, _ = self.container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            return {m.name: f.read() for m in tar.getmembers() if m.isfile() and (f := tar.extractfile(m))}


@pytest.fixture
def run_agent(docker_client: docker.DockerClient) -> Iterator[Any]:
    """Runs an agent container as the coordinator does (its env, its command, secrets as files put before it
    starts; no socket), with host networking to reach the local servers; removes it afterwards."""
    made: list[Any] = []

    def run(image: str, env: Mapping[str, str], secrets: Mapping[str, str], command: Sequence[str] | None = None,
            ) -> AgentRun:
        container = docker_client.containers.create(image, command=list(command) if command else None,
                                                    environment=dict(env), network_mode="host", init=True,
                                                    labels={"agent-fleet.test": "agent-image"})
        made.append(container)
        if secrets:
            files = {f"/run/secrets/{name}": (value.encode(), 0o444) for name, value in secrets.items()}
            assert container.put_archive("/", _tar(files))
        started = time.monotonic()
        container.start()
        code = container.wait(timeout=TIMEOUT)["StatusCode"]
        seconds = time.monotonic() - started
        out = container.logs(stdout=True, stderr=False).decode("utf-8", errors="replace")
        err = container.logs(stdout=False, stderr=True).decode("utf-8", errors="replace")
        return AgentRun(code, out, err, docker_client.api.inspect_container(container.id), container, seconds)

    yield run
    for container in made:
        with contextlib.suppress(docker.errors.DockerException):
            container.remove(force=True)


@pytest.mark.docker
def test_image_agent_clones_with_its_own_token_pushes_and_opens_a_labelled_pull_request(
    servers: tuple[FakeGitServer, FakeGitHub], agent_image: str, run_agent: Any,
) -> None:
    git, github = servers
    secrets = {"GITHUB_TOKEN": AGENT_TOKEN, "ANTHROPIC_API_KEY": MODEL_KEY}
    done = run_agent(agent_image, agent_env(git, github), secrets, EDITS)
    assert done.code == 0, done.stdout + done.stderr

    # (a) cloned with its own token (the git server knows no other), committed, pushed, opened, labelled
    assert the_exit(done.stdout)["outcome"] == "opened"
    [pull] = github.pulls
    assert pull.labels == ["role:builder"] and pull.author == AGENT_LOGIN
    assert pull.head_sha == git.head(pull.head_ref) and pull.head_ref.startswith("agent/builder-2-")
    assert git.file_at(pull.head_sha, "README.md") == "# webapp\nA line from the stand-in"

    # (d) the token is in no log, no inspect field, and no logged request line: only in Authorization headers
    assert AGENT_TOKEN not in done.stdout + done.stderr and MODEL_KEY not in done.stdout + done.stderr
    config = done.inspect["Config"]
    for field in ("Env", "Cmd", "Entrypoint", "Labels"):
        shown = json.dumps(config.get(field))
        assert AGENT_TOKEN not in shown and MODEL_KEY not in shown, field
    assert AGENT_TOKEN not in json.dumps(done.inspect)
    assert git.requests and all(r.authorized for r in git.requests)
    assert all(AGENT_TOKEN not in r.line for r in git.requests)
    basic = base64.b64encode(f"x-access-token:{AGENT_TOKEN}".encode()).decode()
    assert {r.authorization for r in git.requests} == {f"Basic {basic}"}
    checkout = done.tree("/home/agent/work")
    git_config = next(content for name, content in checkout.items() if name.endswith("/.git/config"))
    assert AGENT_TOKEN.encode() not in git_config and basic.encode() not in git_config
    assert not any(AGENT_TOKEN.encode() in content for content in checkout.values())


@pytest.mark.docker
def test_image_agent_with_nothing_changed_exits_0_and_opens_nothing(
    servers: tuple[FakeGitServer, FakeGitHub], agent_image: str, run_agent: Any,
) -> None:
    git, github = servers
    done = run_agent(agent_image, agent_env(git, github), {"GITHUB_TOKEN": AGENT_TOKEN}, CHANGES_NOTHING)
    assert done.code == 0, done.stdout + done.stderr
    assert the_exit(done.stdout)["outcome"] == "idle"
    assert github.pulls == [] and list(git.branches()) == ["main"]


@pytest.mark.docker
@pytest.mark.parametrize(
    ("secrets", "command", "named"),
    [
        ({"ANTHROPIC_API_KEY": MODEL_KEY}, EDITS, "missing secret GITHUB_TOKEN ("),
        ({"GITHUB_TOKEN": AGENT_TOKEN}, None, "missing secret ANTHROPIC_API_KEY ("),
        ({}, None, "missing secrets GITHUB_TOKEN, ANTHROPIC_API_KEY ("),
        # one it cannot take whole is refused the same way, never left out of the CLI's environment
        ({"GITHUB_TOKEN": AGENT_TOKEN, "EXTRA_KEY": BIG + "k"}, EDITS,
         f"secret EXTRA_KEY is larger than {MAX_AGENT_SECRET_BYTES} bytes"),
    ],
)
def test_image_agent_without_a_secret_exits_non_zero_at_once_naming_it(
    servers: tuple[FakeGitServer, FakeGitHub], agent_image: str, run_agent: Any,
    secrets: dict[str, str], command: tuple[str, ...] | None, named: str,
) -> None:
    git, github = servers
    done = run_agent(agent_image, agent_env(git, github), secrets, command)
    assert done.code == 78, done.stdout + done.stderr
    assert done.seconds < 10  # far inside the coordinator's crash window: the slot backs off
    assert events(done.stdout) == [the_exit(done.stdout)] and done.stderr == ""
    assert the_exit(done.stdout)["reason"].startswith(named)
    assert git.requests == [] and github.requests == []


@pytest.mark.docker
def test_image_default_cmd_runs_claude(
    docker_client: docker.DockerClient, servers: tuple[FakeGitServer, FakeGitHub], agent_image: str,
    stand_in_image: str, run_agent: Any,
) -> None:
    # (e) the image: its own entrypoint, no CMD of its own (so the default CLI runs), not root, real Claude Code
    config = docker_client.api.inspect_image(agent_image)["Config"]
    assert config["Entrypoint"] == ["python3", "/opt/agent/entrypoint.py"]
    assert not config["Cmd"] and config["User"] == "agent"
    version = docker_client.containers.run(agent_image, entrypoint=["claude", "--version"], remove=True)
    assert b"(Claude Code)" in version

    # ... and what the default CMD runs, with a scripted `claude` ahead of the real one on PATH
    git, github = servers
    secrets = {"GITHUB_TOKEN": AGENT_TOKEN, "ANTHROPIC_API_KEY": MODEL_KEY}
    done = run_agent(stand_in_image, agent_env(git, github), secrets)
    assert done.code == 0, done.stdout + done.stderr
    argv = done.file("/home/agent/stand-in-argv").decode().split("\0")[:-1]
    assert argv[0] == "-p" and argv[1].startswith(BRIEF) and "role:builder" in argv[1]
    assert argv[2:] == ["--output-format", "json", "--permission-mode", "acceptEdits"]
    cli_env = dict(line.split("=", 1) for line in done.file("/home/agent/stand-in-env").decode().splitlines()
                   if "=" in line)
    assert cli_env["ANTHROPIC_API_KEY"] == MODEL_KEY  # the model's key, for the CLI alone
    assert "GITHUB_TOKEN" not in cli_env and AGENT_TOKEN not in json.dumps(cli_env)
    assert cli_env["AGENT_ROLE"] == "builder" and cli_env["AGENT_BRIEF"] == BRIEF
    [pull] = github.pulls
    assert pull.labels == ["role:builder"] and "Added NOTES.md." in pull.body
    assert git.file_at(pull.head_sha, "NOTES.md") == "Notes from the stand-in"
    assert MODEL_KEY not in done.stdout + done.stderr


# ------------------------------------------------------------------------------------------------ the whole loop


def _wait_for(what: str, probe: Any, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout:.0f}s: {what}")
        time.sleep(0.5)
    return value


@pytest.mark.docker
def test_a_real_cycle_spawns_the_agent_which_opens_a_pull_request_that_the_next_cycle_merges(
    docker_client: docker.DockerClient, servers: tuple[FakeGitServer, FakeGitHub], agent_image: str,
    fleet_id: str, tmp_path: Path,
) -> None:
    git, github = servers
    roster = write_roster(tmp_path / "roster.json",
                          [role_spec("builder", 1, agent_image, command=EDITS, mode=Mode.SELF_DIRECTED)])
    secrets_file = tmp_path / "agent-secrets.json"
    secrets_file.write_text(json.dumps({"GITHUB_TOKEN": AGENT_TOKEN}), encoding="utf-8")
    env = cycle_env(
        fleet_id, roster, GITHUB_REPOSITORY=github.repository, GITHUB_TOKEN=COORDINATOR_TOKEN,
        GITHUB_API_URL=github.api_url, GITHUB_SERVER_URL=git.url, AGENT_SECRETS_FILE=str(secrets_file),
        AGENT_NETWORK="host", REQUIRED_CHECKS="ci",
    )

    # 1. a real cycle spawns the agent
    first = run_cycle(env)
    assert first.returncode == 0, first.stdout + first.stderr
    [agent] = _wait_for("the agent to finish", lambda: [
        c for c in fleet_containers(docker_client, fleet_id) if c.status == "exited"])
    state = docker_client.api.inspect_container(agent.id)
    logs = docker_client.api.logs(agent.id).decode("utf-8", errors="replace")
    assert state["State"]["ExitCode"] == 0, logs
    assert COORDINATOR_TOKEN not in json.dumps(state) + logs and AGENT_TOKEN not in json.dumps(state) + logs

    # 2. the agent opened a pull request, with its own token
    [pull] = _wait_for("the agent's pull request", lambda: github.pulls)
    assert pull.labels == ["role:builder"] and pull.author == AGENT_LOGIN
    assert pull.head_sha == git.head(pull.head_ref)

    # 3. approved and green, the next cycle merges it
    github.approve(pull.number)
    github.add_check_run(pull.number, "ci")
    second = run_cycle(env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert pull.number in second.report["merge"]["merged"], second.report["merge"]
    assert github.pull(pull.number).merged


REVIEWER_TOKEN = "reviewer-token-1qW2eR3tY4uI5oP6aS7"  # a second identity: the reviewer's own
REVIEWER_LOGIN = "fleet-reviewer[bot]"
# The scripted model of each role, as its `command` (docs/agents.md: the outbox).
THINKER_SAYS = ("sh", "-c", 'grep -q "Hello" README.md || printf "Greet the reader\\nThe README should say Hello.\\n'
                'Labels: role:builder\\n" > "$AGENT_OUTBOX/issues/greeting.md"')
BUILDER_DOES = ("sh", "-c", 'printf "Hello (#%s)\\n" "$AGENT_ISSUE_NUMBER" >> README.md')
REVIEWER_SAYS = ("sh", "-c", 'printf "APPROVE\\nCorrect: the README says Hello.\\n" > "$AGENT_OUTBOX/review.md"')


def _loop_role(key: str, mode: Mode, image: str, command: Sequence[str] | None, count: int = 1,
               **env: str) -> RoleSpec:
    role = Role(key, key.title(), count, Department.ENGINEERING, mode, f"The {key} agent.")
    return RoleSpec(role, image=image, command=tuple(command) if command else None, env=env)


@pytest.mark.docker
def test_the_whole_loop_by_real_cycles_issue_to_merge_and_one_revert_when_production_falls(
    docker_client: docker.DockerClient, agent_image: str, fleet_id: str, tmp_path: Path,
    record_property: Any,
) -> None:
    """Thinker -> issue for role:builder -> builder's pull request closing it -> the reviewer (another identity)
    approves at its head -> the next cycle merges it -> the issue is closed; then production answers 503 and the
    Sentinel opens one revert pull request however many cycles run. Agents get their tokens from the fleet's two
    GitHub identities (AGENT_IDENTITIES_FILE, as the stack's githubIdentities deploy it): the reviewer role acts
    as `reviewer`, every other role as `author`, by their modes."""
    with FakeGitServer(token=AGENT_TOKEN, extra_tokens=(REVIEWER_TOKEN,)) as git, FakeGitHub(
        token=COORDINATOR_TOKEN, required_checks=("ci",), resolve_branch=git.head, merge_branch=git.squash,
        diff=git.diff, extra_tokens={AGENT_TOKEN: AGENT_LOGIN, REVIEWER_TOKEN: REVIEWER_LOGIN},
        writers=(AGENT_LOGIN, REVIEWER_LOGIN), labels=("role:builder", "role:thinker", "role:reviewer",
                                                       "role:sentinel", "revert"),
    ) as github, production(200) as prod:
        def roster_file(thinkers: int) -> Path:
            return write_roster(tmp_path / "roster.json", [
                _loop_role("thinker", Mode.THINKER, agent_image, THINKER_SAYS, count=thinkers),
                _loop_role("builder", Mode.TASK_DRIVEN, agent_image, BUILDER_DOES),
                _loop_role("reviewer", Mode.REVIEWER, agent_image, REVIEWER_SAYS),
                _loop_role("sentinel", Mode.SENTINEL, agent_image, None, AGENT_HEALTH_RECHECK_S="1"),
            ])

        roster = roster_file(thinkers=1)
        identities = tmp_path / "identities.json"
        identities.write_text(json.dumps({"author": {"token": AGENT_TOKEN}, "reviewer": {"token": REVIEWER_TOKEN}}))
        env = cycle_env(
            fleet_id, roster, GITHUB_REPOSITORY=github.repository, GITHUB_TOKEN=COORDINATOR_TOKEN,
            GITHUB_API_URL=github.api_url, GITHUB_SERVER_URL=git.url, AGENT_IDENTITIES_FILE=str(identities),
            AGENT_NETWORK="host", REQUIRED_CHECKS="ci", HEALTH_URL=prod.url,
        )

        def cycle() -> dict[str, Any]:
            """One real cycle, then its agents run to their end; CI passes on every open pull request's head."""
            done = run_cycle(env)
            assert done.returncode == 0, done.stdout + done.stderr
            _wait_for("the cycle's agents to finish", lambda: all(
                c.status == "exited" for c in fleet_containers(docker_client, fleet_id)))
            for container in fleet_containers(docker_client, fleet_id):
                state = docker_client.api.inspect_container(container.id)["State"]
                logs = docker_client.api.logs(container.id).decode("utf-8", errors="replace")
                assert state["ExitCode"] == 0, logs
                assert AGENT_TOKEN not in logs and REVIEWER_TOKEN not in logs
            for pull in github.pulls:
                if pull.state == "open" and not pull.title.startswith("Revert"):
                    github.add_check_run(pull.number, "ci")
            return done.report

        opened_at = merged_at = None
        for number in range(1, 9):
            report = cycle()
            if opened_at is None and github.issues:
                opened_at = number
                # One idea is enough: a Thinker cloning just before the merge would ask for the greeting again
                # (the issue closed, the README not yet changed), so the role is scaled to 0, as an operator would.
                roster_file(thinkers=0)
            if github.pulls and github.pull(1).merged:
                merged_at = number
                assert 1 in report["merge"]["merged"], report["merge"]
                break
        assert opened_at is not None and merged_at is not None, (github.issues, github.pulls)
        record_property("cycles_from_issue_to_merge", merged_at - opened_at)
        print(f"\nissue opened in cycle {opened_at}, its pull request merged in cycle {merged_at}: "
              f"{merged_at - opened_at} cycles")

        [issue] = github.issues
        pull = github.pull(1)
        assert issue["labels"] == ["role:builder"] and issue["author"] == AGENT_LOGIN
        assert issue["state"] == "CLOSED" and issue["closed_by"] == 1
        assert f"Closes #{issue['number']}" in pull.body and pull.author == AGENT_LOGIN
        [approval] = [r for r in pull.reviews if r.state == "APPROVED"]
        assert approval.reviewer == REVIEWER_LOGIN and approval.commit_id == pull.head_sha
        assert git.file_at("main", "README.md") == f"# webapp\nHello (#{issue['number']})"
        assert any("agent-fleet:claim" in c["body"] for c in github.comments(issue["number"]))

        # production falls after the merge: one revert pull request, however many cycles run
        prod.answer(503)
        for _ in range(3):
            cycle()
        reverts = [p for p in github.pulls if p.title.startswith("Revert")]
        assert [p.title for p in reverts] == [f"Revert #1: {pull.title}"], [p.title for p in github.pulls]
        [revert] = reverts
        assert sorted(revert.labels) == ["revert", "role:sentinel"] and "HTTP 503" in revert.body
        assert git.file_at(revert.head_sha, "README.md") == "# webapp"
        assert len(github.issues) == 1
