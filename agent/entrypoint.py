#!/usr/bin/env python3
"""The reference agent's entrypoint: one task, one branch, at most one pull request (docs/agents.md).

    clone $GITHUB_SERVER_URL/$GITHUB_REPOSITORY.git with the agent's own token (/run/secrets/GITHUB_TOKEN)
    -> a fresh branch agent/<role>-<slot>-<UTC time>
    -> the coding-agent CLI in the checkout: `claude -p <brief>` by default, the container's arguments
       (the role's `command`) when it has any
    -> nothing changed: exit 0 (idle); else commit, push the branch, open a pull request labelled
       role:<role>, exit 0.

Exit codes: 0 done (a pull request opened, or nothing to change); 1 a step failed (clone, CLI, commit,
push, pull request); 78 (EX_CONFIG) the configuration is wrong: a secret or variable missing or malformed (a
secret it cannot take whole: under MIN_SECRET_CHARS, over MAX_SECRET_BYTES, not UTF-8 text), the token
refused by the git server, or the CLI's program not in the image. The coordinator reads any
non-zero exit within a minute of the start as a crash and backs the slot off, so a missing secret costs
one short-lived container per backoff period, not a spin.

Stdout is JSON lines, one per step, `{"event": "agent.<step>", ...}`, the last always `agent.exit` with the
code, the outcome and, for a failure, a one-line reason. The CLI's own output is relayed to stderr. Every
line either stream gets is scrubbed of the secrets' values. The GitHub token reaches git alone, as an HTTP
header in git's environment (never argv, the remote URL, .git/config or another child's environment), and
the REST calls this script makes; the CLI gets the other secrets (the model's key) as environment variables.

Python 3.11 standard library only; runs outside a container too (AGENT_SECRETS_DIR, AGENT_WORK_DIR).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_CONFIG = 78  # sysexits.h EX_CONFIG

SECRETS_DIR = "/run/secrets"
TOKEN_SECRET = "GITHUB_TOKEN"
MODEL_SECRET = "ANTHROPIC_API_KEY"  # needed by the default CLI only
DEFAULT_SERVER_URL = "https://github.com"
DEFAULT_API_URL = "https://api.github.com"
DEFAULT_AUTHOR = ("agent-fleet", "agent@users.noreply")
HTTP_TIMEOUT_S = 30.0
# An agent secret's bounds, the coordinator's too (coordinator.redact MIN_SECRET_CHARS, coordinator.fleet
# MAX_AGENT_SECRET_BYTES; this image does not import the coordinator, a test holds them equal). A shorter value
# is no secret, and scrubbing it would blank ordinary text (and show the value by the gaps); a larger one is no
# key or token, and every secret but the token must fit one environment variable of the CLI (Linux allows 128 KiB).
MIN_SECRET_CHARS = 8
MAX_SECRET_BYTES = 64 * 1024
MAX_SUMMARY_CHARS = 8000  # of the CLI's output, quoted in the pull request's body
MAX_TITLE_CHARS = 200

# What git says when the server answers 401/403 to the token (it then wants a password, which it may not ask for).
REFUSED_SIGNS = ("terminal prompts disabled", "Authentication failed", "could not read Username",
                 "could not read Password", "returned error: 401", "returned error: 403")

ROLE_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
REPOSITORY_PATTERN = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
ENV_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Stop(Exception):
    """Ends the run: `code` and a one-line `reason` (no secret in it: it is scrubbed anyway)."""

    def __init__(self, code: int, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.outcome, self.reason = code, outcome, reason


def failed(reason: str) -> Stop:
    return Stop(EXIT_FAILED, "failed", reason)


def misconfigured(reason: str) -> Stop:
    return Stop(EXIT_CONFIG, "config", reason)


# ------------------------------------------------------------------------------------------------ output


class Output:
    """JSON lines on stdout, the CLI's output on stderr; both scrubbed of every secret value."""

    def __init__(self) -> None:
        self.secrets: list[str] = []
        self._lock = threading.Lock()

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def scrub_values(self, value: Any) -> Any:
        """`value` with every string in it scrubbed; keys, numbers and the JSON around them left as they are."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {key: self.scrub_values(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub_values(item) for item in value]
        return value

    def event(self, name: str, **fields: Any) -> None:
        # The fields are scrubbed before they are serialised, the event's name (this script's own) not at all: a
        # line scrubbed after could lose its quotes, keys or numbers to a secret, and stop being JSON.
        line = json.dumps({"event": f"agent.{name}", **self.scrub_values(fields)}, ensure_ascii=False)
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def relay(self, line: str) -> None:
        with self._lock:
            sys.stderr.write(self.scrub(line.rstrip("\n")) + "\n")
            sys.stderr.flush()


# ------------------------------------------------------------------------------------------------ settings


class Settings:
    """What the coordinator hands over: the environment and the secret files (`read_secrets`)."""

    def __init__(self, env: Mapping[str, str], argv: Sequence[str], secrets: SecretFiles) -> None:
        self.env = env
        self.command = list(argv)
        self.secrets_dir = secrets.directory
        self.secrets = secrets.values
        missing_vars = [name for name in ("AGENT_ROLE", "AGENT_SLOT", "AGENT_BRIEF", "GITHUB_REPOSITORY")
                        if not env.get(name, "").strip()]
        needed = [TOKEN_SECRET] + ([] if self.command else [MODEL_SECRET])
        missing_secrets = [name for name in needed if name not in secrets.values and name not in secrets.problems]
        problems = [f"secret {name} {problem}" for name, problem in secrets.problems.items()]
        if missing_secrets:
            noun = "secret" if len(missing_secrets) == 1 else "secrets"
            problems.insert(0, f"missing {noun} {', '.join(missing_secrets)} (a non-empty file "
                            f"{self.secrets_dir}/<NAME> each)")
        if missing_vars:
            noun = "variable" if len(missing_vars) == 1 else "variables"
            problems.append(f"missing {noun} {', '.join(missing_vars)}")
        if problems:
            raise misconfigured("; ".join(problems))
        self.role = env["AGENT_ROLE"].strip()
        self.slot = env["AGENT_SLOT"].strip()
        self.brief = env["AGENT_BRIEF"].strip()
        self.mode = env.get("AGENT_MODE", "").strip()
        self.repository = env["GITHUB_REPOSITORY"].strip()
        if not ROLE_PATTERN.fullmatch(self.role):
            raise misconfigured(f"AGENT_ROLE={self.role!r} is not a role key (lower case, digits, _)")
        if not self.slot.isascii() or not self.slot.isdigit():
            raise misconfigured(f"AGENT_SLOT={self.slot!r} is not a slot number")
        if not REPOSITORY_PATTERN.fullmatch(self.repository):
            raise misconfigured(f"GITHUB_REPOSITORY={self.repository!r} is not owner/name")
        self.server_url, self.api_url = github_urls(env)
        self.token = self.secrets[TOKEN_SECRET]

    def cli_secrets(self) -> dict[str, str]:
        """The secrets the CLI gets as environment variables: all but the GitHub token (the model's key...)."""
        return {name: value for name, value in self.secrets.items() if name != TOKEN_SECRET}

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repository.split("/", 1)[1]


class SecretFiles:
    """Every file of the secrets' directory: its value (the text, stripped), or what is wrong with it.

    Each one is either taken whole (given to the CLI, but the token, and scrubbed) or a problem that stops the run
    (exit 78, naming the secret, never its value): none is dropped. An empty file counts as no file.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.values: dict[str, str] = {}
        self.problems: dict[str, str] = {}
        if not directory.is_dir():
            return
        for path in sorted(directory.iterdir()):
            try:
                value = secret_text(path)
            except OSError as exc:
                self.problems[path.name] = f"is unreadable by uid {os.getuid()} ({exc.strerror or type(exc).__name__})"
                continue
            except ValueError as exc:
                self.problems[path.name] = str(exc)
                continue
            if not value:
                continue
            if not ENV_NAME_PATTERN.fullmatch(path.name):
                self.problems[path.name] = "is not named as an environment variable (A-Z, a-z, 0-9 and _)"
            elif len(value) < MIN_SECRET_CHARS:
                self.problems[path.name] = (f"is shorter than {MIN_SECRET_CHARS} characters, too short to be a "
                                            "secret (scrubbing it would blank ordinary text)")
            else:
                self.values[path.name] = value

    def scrubbed_forms(self) -> list[str]:
        """What output is scrubbed of, longest first (so that one containing another is scrubbed whole): every
        value as it is, as JSON writes it, and each line of it long enough to be a secret (the CLI's output is
        relayed line by line); the token also as git's Authorization header carries it."""
        forms: set[str] = set()
        for name, value in self.values.items():
            for text in (value, *value.splitlines()):
                text = text.strip()
                if len(text) >= MIN_SECRET_CHARS:
                    forms |= {text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}
            if name == TOKEN_SECRET:
                forms.add(base64.b64encode(f"x-access-token:{value}".encode()).decode())
        return sorted(forms, key=len, reverse=True)


def secret_text(path: Path) -> str:
    """A secret file's text, stripped. OSError when unreadable, ValueError (the reason) when it cannot be taken."""
    if not path.is_file():
        raise ValueError("is not a file")
    with open(path, "rb") as file:
        data = file.read(MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError(f"is larger than {MAX_SECRET_BYTES} bytes, the limit of an agent secret")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None


def github_urls(env: Mapping[str, str]) -> tuple[str, str]:
    """GITHUB_SERVER_URL and GITHUB_API_URL; either one implies the other (github.com, or GHE's /api/v3)."""
    server = env.get("GITHUB_SERVER_URL", "").strip().rstrip("/")
    api = env.get("GITHUB_API_URL", "").strip().rstrip("/")
    for name, value in (("GITHUB_SERVER_URL", server), ("GITHUB_API_URL", api)):
        if value and not re.fullmatch(r"https?://[^\s/@]+(/\S*)?", value):
            raise misconfigured(f"{name} is not an http(s) URL without credentials")
    if not server:
        server = api[: -len("/api/v3")] if api.endswith("/api/v3") else DEFAULT_SERVER_URL
    if not api:
        api = DEFAULT_API_URL if server == DEFAULT_SERVER_URL else server + "/api/v3"
    return server, api


# ------------------------------------------------------------------------------------------------ git


class Git:
    """git in one checkout. Only clone and push carry the token: as `http.<server>/.extraHeader`, set through
    GIT_CONFIG_COUNT in git's own environment, scoped to the GitHub server's URL."""

    def __init__(self, settings: Settings, output: Output, checkout: Path) -> None:
        self.settings, self.output, self.checkout = settings, output, checkout
        self.remote = f"{settings.server_url}/{settings.repository}.git"

    def _env(self, authenticated: bool) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_CONFIG_")}
        env["GIT_TERMINAL_PROMPT"] = "0"  # a refused token fails; it never waits for a password
        env["GCM_INTERACTIVE"] = "never"
        config = [
            ("http.lowSpeedLimit", "1000"),  # a stalled transfer fails after a minute instead of hanging
            ("http.lowSpeedTime", "60"),
        ]
        if authenticated:
            basic = base64.b64encode(f"x-access-token:{self.settings.token}".encode()).decode()
            config.append((f"http.{self.settings.server_url}/.extraHeader", f"Authorization: Basic {basic}"))
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for index, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env

    def run(self, *args: str, authenticated: bool = False, what: str | None = None, cwd: Path | None = None) -> str:
        try:
            proc = subprocess.run(
                ["git", *args], cwd=cwd or self.checkout, env=self._env(authenticated), stdin=subprocess.DEVNULL,
                capture_output=True, text=True, errors="replace",
            )
        except FileNotFoundError:
            raise misconfigured("git is not installed in the image") from None
        if proc.returncode != 0:
            detail = " ".join(line.strip() for line in proc.stderr.strip().splitlines()[-3:]) or "no message"
            if authenticated and any(sign in proc.stderr for sign in REFUSED_SIGNS):
                raise misconfigured(f"{what or 'git ' + args[0]} failed: {self.settings.server_url} refused the "
                                    f"{TOKEN_SECRET} secret (check the token and its access to "
                                    f"{self.settings.repository})")
            raise failed(f"{what or 'git ' + args[0]} failed (git exit {proc.returncode}): {detail}")
        return proc.stdout.strip()

    def clone(self) -> None:
        self.checkout.parent.mkdir(parents=True, exist_ok=True)
        self.run("clone", "--quiet", "--no-tags", "--single-branch", "--", self.remote, str(self.checkout),
                 authenticated=True, what=f"cloning {self.remote}", cwd=self.checkout.parent)

    def push(self, branch: str) -> None:
        self.run("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", authenticated=True,
                 what=f"pushing {branch}")

    def changed(self, base_sha: str) -> tuple[int, bool]:
        """(commits on top of the base, whether the working tree has changes git would commit)."""
        commits = int(self.run("rev-list", "--count", f"{base_sha}..HEAD") or "0")
        dirty = bool(self.run("status", "--porcelain", "--untracked-files=all"))
        return commits, dirty


# ------------------------------------------------------------------------------------------------ GitHub REST


class GitHub:
    """The two REST calls an agent makes, with its own token."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.repo_url = f"{settings.api_url}/repos/{settings.repository}"

    def call(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.settings.token}",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "agent-fleet-agent",
            **({"Content-Type": "application/json"} if data is not None else {}),
        })
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                payload = None
            return error.code, payload

    def open_pull(self, title: str, head: str, base: str, body: str) -> dict[str, Any]:
        url = f"{self.repo_url}/pulls"
        request = {"title": title, "head": head, "base": base, "body": body}
        for attempt in (1, 2):
            try:
                status, payload = self.call("POST", url, request)
            except (OSError, ValueError) as exc:  # no answer: it may or may not have been created
                status, payload = 0, {"message": str(exc) or type(exc).__name__}
            if status == 201 and isinstance(payload, dict):
                return payload
            if status and status < 500:
                raise failed(f"opening the pull request: POST {url} answered {status}: {github_message(payload)}")
            existing = self.find_open_pull(head)
            if existing is not None:
                return existing
            if attempt == 1:
                time.sleep(2)
        raise failed(f"opening the pull request: POST {url} answered {status or 'nothing'}: "
                     f"{github_message(payload)}")

    def find_open_pull(self, head: str) -> dict[str, Any] | None:
        try:
            status, payload = self.call("GET", f"{self.repo_url}/pulls?state=open&head={self.settings.owner}:{head}")
        except (OSError, ValueError):
            return None
        if status == 200 and isinstance(payload, list) and payload and isinstance(payload[0], dict):
            return payload[0]
        return None

    def add_label(self, number: int, label: str) -> None:
        url = f"{self.repo_url}/issues/{number}/labels"
        status, payload = 0, None
        for attempt in (1, 2):  # adding a label twice is harmless: retried once on no answer or a 5xx
            try:
                status, payload = self.call("POST", url, {"labels": [label]})
            except (OSError, ValueError) as exc:
                status, payload = 0, {"message": str(exc) or type(exc).__name__}
            if status == 200:
                return
            if status and status < 500:
                break
            if attempt == 1:
                time.sleep(2)
        raise failed(f"labelling pull request #{number} {label}: POST {url} answered {status or 'nothing'}: "
                     f"{github_message(payload)}")


def github_message(payload: Any) -> str:
    if not isinstance(payload, dict):
        return "no message"
    message = str(payload.get("message") or "no message")
    details = [str(e.get("message") or e.get("code")) for e in payload.get("errors") or [] if isinstance(e, dict)]
    return message + (f" ({'; '.join(details)})" if details else "")


# ------------------------------------------------------------------------------------------------ the CLI


def default_command(settings: Settings, branch: str, base: str) -> list[str]:
    prompt = (
        f"{settings.brief}\n\n"
        f"You are the {settings.role} agent (slot {settings.slot}) of a fleet of coding agents, working in a fresh "
        f"clone of {settings.repository} on the branch {branch}, made from {base}. Make your changes in this "
        f"working tree. When you finish, everything you changed is committed, pushed and opened as one pull "
        f"request labelled role:{settings.role}; do not push or open a pull request yourself. If nothing "
        f"meaningful is left to do, change nothing: then no pull request is opened."
    )
    return ["claude", "-p", prompt, "--output-format", "json", "--permission-mode", "acceptEdits"]


class CliResult:
    def __init__(self, code: int, stdout: str, seconds: float) -> None:
        self.code, self.stdout, self.seconds = code, stdout, seconds
        self.summary, self.is_error, self.cost_usd = "", False, None
        result = _last_json_object(stdout)
        if result is not None and isinstance(result.get("result"), str):
            self.summary = result["result"].strip()
            self.is_error = bool(result.get("is_error"))
            cost = result.get("total_cost_usd")
            self.cost_usd = cost if isinstance(cost, int | float) else None
        elif result is None:
            self.summary = stdout.strip()


def _last_json_object(text: str) -> dict[str, Any] | None:
    """Claude Code's `--output-format json` prints one object; stream-json prints one per line, the result last."""
    candidates = [text.strip()] + [line.strip() for line in reversed(text.strip().splitlines())]
    for candidate in candidates:
        if candidate.startswith("{"):
            try:
                value = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def run_cli(command: Sequence[str], settings: Settings, output: Output, checkout: Path, branch: str,
            base: str) -> CliResult:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_CONFIG_")}
    env |= settings.cli_secrets()
    env |= {"AGENT_BRANCH": branch, "AGENT_BASE_BRANCH": base, "AGENT_CHECKOUT": str(checkout)}
    env.setdefault("DISABLE_AUTOUPDATER", "1")
    started = time.monotonic()
    try:
        proc = subprocess.Popen(list(command), cwd=checkout, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
    except FileNotFoundError:
        raise misconfigured(f"the CLI {command[0]!r} is not in the image") from None
    except OSError as exc:
        raise failed(f"the CLI {command[0]!r} could not start: {exc.strerror or exc}") from None
    kept: list[str] = []

    def pump(stream: IO[str], keep: bool) -> None:
        for line in stream:
            output.relay(line)
            if keep:
                kept.append(line)

    assert proc.stdout is not None and proc.stderr is not None
    readers = [threading.Thread(target=pump, args=(proc.stdout, True), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, False), daemon=True)]
    for reader in readers:
        reader.start()
    code = proc.wait()
    for reader in readers:
        reader.join()
    return CliResult(code, "".join(kept), time.monotonic() - started)


# ------------------------------------------------------------------------------------------------ the run


def pull_body(settings: Settings, cli: CliResult, branch: str) -> str:
    lines = [
        f"Opened by the `{settings.role}` agent (slot {settings.slot}) of agent-fleet, from the branch `{branch}`.",
        "",
        f"Role: `role:{settings.role}`" + (f" ({settings.mode})" if settings.mode else ""),
        "",
        "Brief:",
        "",
        *(f"> {line}" if line else ">" for line in settings.brief.splitlines()),
    ]
    if cli.summary:
        summary = cli.summary
        if len(summary) > MAX_SUMMARY_CHARS:
            summary = summary[:MAX_SUMMARY_CHARS] + "\n\n(cut)"
        lines += ["", "What the agent says it did:", "", summary]
    return "\n".join(lines)


def one_line(text: str, limit: int = MAX_TITLE_CHARS) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def run(argv: Sequence[str], env: Mapping[str, str], output: Output) -> str:
    """The whole run; returns the outcome of a successful one ("opened" or "idle"), raises Stop otherwise."""
    secrets = SecretFiles(Path(env.get("AGENT_SECRETS_DIR") or SECRETS_DIR))
    output.secrets = secrets.scrubbed_forms()  # before anything is checked: an error message is scrubbed too
    settings = Settings(env, argv, secrets)
    command = settings.command or None
    output.event("start", role=settings.role, slot=int(settings.slot), repository=settings.repository,
                 server=settings.server_url, cli=(command[0] if command else "claude"))

    work = Path(env.get("AGENT_WORK_DIR") or tempfile.gettempdir())
    work.mkdir(parents=True, exist_ok=True)
    checkout = Path(tempfile.mkdtemp(prefix=f"{settings.role}-{settings.slot}-", dir=work)) / settings.name
    git = Git(settings, output, checkout)
    git.clone()
    base = git.run("rev-parse", "--abbrev-ref", "HEAD")
    base_sha = git.run("rev-parse", "--verify", "HEAD", what="reading the default branch (is the repository empty?)")
    branch = f"agent/{settings.role}-{settings.slot}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    git.run("switch", "--quiet", "-c", branch)
    name = env.get("GIT_AUTHOR_NAME", "").strip() or DEFAULT_AUTHOR[0]
    email = env.get("GIT_AUTHOR_EMAIL", "").strip() or DEFAULT_AUTHOR[1]
    git.run("config", "user.name", name)
    git.run("config", "user.email", email)
    output.event("cloned", base=base, base_sha=base_sha, branch=branch)

    cli = run_cli(command or default_command(settings, branch, base), settings, output, checkout, branch, base)
    output.event("cli", code=cli.code, seconds=round(cli.seconds, 1), is_error=cli.is_error, cost_usd=cli.cost_usd)
    if cli.code != 0:
        raise failed(f"the CLI exited {cli.code}")
    if cli.is_error:
        raise failed(f"the CLI reported an error: {one_line(cli.summary) or 'no message'}")

    commits, dirty = git.changed(base_sha)
    if not commits and not dirty:
        output.event("idle", reason="the CLI changed nothing")
        return "idle"
    first_commit = git.run("log", "--reverse", "--format=%s", f"{base_sha}..HEAD").splitlines()[:1]
    title = one_line(first_commit[0]) if first_commit else f"{settings.role}: changes from agent {settings.slot}"
    if dirty:
        git.run("add", "--all")
        message = title if not commits else f"{settings.role}: remaining changes from agent {settings.slot}"
        git.run("commit", "--quiet", "--no-verify", "-m", message, what="committing the changes")
    head = git.run("rev-parse", "HEAD")
    git.push(branch)
    output.event("pushed", branch=branch, head=head, commits=commits + (1 if dirty else 0))

    github = GitHub(settings)
    # What goes to GitHub is scrubbed too: the CLI can read the secret files, and may have printed one.
    pull = github.open_pull(output.scrub(title), branch, base, output.scrub(pull_body(settings, cli, branch)))
    number = int(pull["number"])
    label = f"role:{settings.role}"
    github.add_label(number, label)
    output.event("pull_request", number=number, url=pull.get("html_url"), head=head, label=label)
    return "opened"


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> NoReturn:
    output = Output()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        outcome = run(args, os.environ if env is None else env, output)
    except Stop as stop:
        output.event("exit", code=stop.code, outcome=stop.outcome, reason=one_line(stop.reason, 1000))
        sys.exit(stop.code)
    except Exception as exc:  # a bug here is still a failure with a one-line reason
        output.event("exit", code=EXIT_FAILED, outcome="failed", reason=one_line(f"{type(exc).__name__}: {exc}", 1000))
        sys.exit(EXIT_FAILED)
    output.event("exit", code=EXIT_DONE, outcome=outcome)
    sys.exit(EXIT_DONE)


if __name__ == "__main__":
    main()
