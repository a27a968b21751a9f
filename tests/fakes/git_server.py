"""A local git server for the tests: `git http-backend` (smart HTTP) behind a small threaded HTTP server.

It hosts one repository, ``http://127.0.0.1:PORT/<owner>/<name>.git``, seeded with an initial commit on
the default branch, and checks credentials as GitHub does for git over HTTPS: ``Authorization: Basic``
with the token as the password (any user name, e.g. ``x-access-token``), or ``Authorization: Bearer``.
Without credentials, or with a wrong token, it answers 401, so git (with GIT_TERMINAL_PROMPT=0) fails.
Its root URL is what GITHUB_SERVER_URL is for the repository on GitHub.

Usage::

    with FakeGitServer(token="...") as git:          # server runs inside the block
        git.clone_url                                  # http://127.0.0.1:PORT/acme/webapp.git
        git.head("main"); git.head("agent/x")          # a branch's head sha, or None
        git.file_at("agent/x", "README.md")            # a file's text at a ref, or None
        git.requests                                   # every request, as logged (GitRequest)
        FakeGitHub(resolve_branch=git.head)            # pull requests take their head from here

The log records each request's method, target, status, user agent and whether it carried the right token;
the Authorization header itself is kept apart (`GitRequest.authorization`), so a test can show the token
went nowhere else.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

SEED_AUTHOR = {
    "GIT_AUTHOR_NAME": "Seed", "GIT_AUTHOR_EMAIL": "seed@example.com", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_NAME": "Seed", "GIT_COMMITTER_EMAIL": "seed@example.com",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}


# GitHub refuses a push that creates or updates a workflow from a token without the `workflows` permission
# (classic scope `workflow`); the words are GitHub's.
WORKFLOWS_HOOK = """#!/bin/sh
zero=0000000000000000000000000000000000000000
while read old new ref; do
  [ "$new" = "$zero" ] && continue
  if [ "$old" = "$zero" ]; then range="$new --not --all"; else range="$old..$new"; fi
  for commit in $(git rev-list $range); do
    changed=$(git diff-tree --no-commit-id --name-only -r --root "$commit" | grep '^\\.github/workflows/' | head -n 1)
    if [ -n "$changed" ]; then
      echo "refusing to allow a GitHub App to create or update workflow \\`$changed\\`" \\
        "without \\`workflows\\` permission" >&2
      exit 1
    fi
  done
done
exit 0
"""


@dataclass(frozen=True)
class GitRequest:
    method: str
    target: str  # path and query string, as the request line had them
    status: int
    user_agent: str
    authorized: bool
    authorization: str  # the Authorization header as sent ("" when none); never part of `line`

    @property
    def line(self) -> str:
        """The logged request line: what a server's access log shows."""
        return f"{self.method} {self.target} {self.status} {self.user_agent!r}"


class FakeGitServer:
    """One bare repository served over smart HTTP; start/stop, or use it as a context manager."""

    def __init__(
        self,
        owner: str = "acme",
        name: str = "webapp",
        token: str = "git-token-0123456789abcdef",
        default_branch: str = "main",
        files: Mapping[str, str] | None = None,
        workflows_write: bool = True,
        extra_tokens: tuple[str, ...] = (),
    ) -> None:
        self.owner, self.name, self.token, self.default_branch = owner, name, token, default_branch
        self.requests: list[GitRequest] = []
        self.errors: list[str] = []  # http-backend's stderr, when it said anything
        self._lock = threading.Lock()
        self._root = Path(tempfile.mkdtemp(prefix="fake-git-"))
        self.path = self._root / owner / f"{name}.git"
        # False: the token lacks GitHub's `workflows` permission, so a push changing .github/workflows is refused.
        self.workflows_write = workflows_write
        self.extra_tokens = extra_tokens  # other identities' tokens (a reviewer's), accepted as well
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._init(dict(files or {"README.md": f"# {name}\n"}))

    # ------------------------------------------------------------------ the repository

    def git(self, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None) -> str:
        """git in the bare repository; raises CalledProcessError on failure."""
        proc = subprocess.run(
            ["git", "--git-dir", str(self.path), *args], input=input, capture_output=True, check=True,
            env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(self._root), **(env or {})},
        )
        return proc.stdout.decode("utf-8", errors="replace").strip()

    def _init(self, files: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True)
        subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch", self.default_branch, str(self.path)],
                       check=True, capture_output=True, env={**os.environ, "HOME": str(self._root)})
        self.git("config", "http.receivepack", "true")
        entries = []
        for file_name, content in sorted(files.items()):
            blob = self.git("hash-object", "-w", "--stdin", input=content.encode())
            entries.append(f"100644 blob {blob}\t{file_name}")
        tree = self.git("mktree", input=("\n".join(entries) + "\n").encode())
        commit = self.git("commit-tree", tree, "-m", "Initial commit", env=SEED_AUTHOR)
        self.git("update-ref", f"refs/heads/{self.default_branch}", commit)
        if not self.workflows_write:
            hook = self.path / "hooks" / "pre-receive"
            hook.write_text(WORKFLOWS_HOOK, encoding="utf-8")
            hook.chmod(0o755)

    def squash(self, base: str, head: str, message: str) -> str | None:
        """GitHub's squash merge of `head` (a sha) into the branch `base`: one commit on top of base with the
        three-way merged tree; the new base sha, or None when the two conflict (nothing changes then)."""
        base_sha = self.head(base)
        if base_sha is None:
            return None
        try:
            tree = self.git("merge-tree", "--write-tree", base_sha, head).splitlines()[0]
        except subprocess.CalledProcessError:  # exit 1: conflicts
            return None
        commit = self.git("commit-tree", tree, "-p", base_sha, "-m", message, env=SEED_AUTHOR)
        self.git("update-ref", f"refs/heads/{base}", commit, base_sha)
        return commit

    def diff(self, base: str, head: str) -> str:
        """What GitHub's pull request diff shows: head against its merge base with `base`."""
        try:
            return self.git("diff", f"{base}...{head}") + "\n"
        except subprocess.CalledProcessError:
            return ""

    def head(self, branch: str) -> str | None:
        """The head sha of `branch` (a name, `refs/heads/...` or `owner:name`), or None when there is none."""
        name = branch.split(":", 1)[1] if ":" in branch else branch
        name = name.removeprefix("refs/heads/")
        try:
            return self.git("rev-parse", "--verify", "--quiet", f"refs/heads/{name}^{{commit}}") or None
        except subprocess.CalledProcessError:
            return None

    def branches(self) -> dict[str, str]:
        out = self.git("for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads/")
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def file_at(self, ref: str, path: str) -> str | None:
        try:
            return self.git("show", f"{ref}:{path}")
        except subprocess.CalledProcessError:
            return None

    def log(self, ref: str, *, format: str = "%H %an <%ae> %s") -> list[str]:
        return self.git("log", f"--format={format}", ref).splitlines()

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The server's root URL: GITHUB_SERVER_URL."""
        if self._server is None:
            raise RuntimeError("FakeGitServer is not started; call start() or use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def repository(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def clone_url(self) -> str:
        return f"{self.url}/{self.repository}.git"

    def start(self) -> FakeGitServer:
        if self._server is None:
            self._server = _Server(("127.0.0.1", 0), _Handler)
            self._server.fake = self
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="fake-git", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server, self._thread = None, None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> FakeGitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ HTTP

    def authorized(self, header: str) -> bool:
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credential, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            credential = decoded.partition(":")[2]
        elif scheme.lower() not in ("bearer", "token"):
            return False
        tokens = (self.token, *self.extra_tokens)
        matches = [hmac.compare_digest(credential.encode(), token.encode()) for token in tokens]
        return bool(credential) and any(matches)

    def _record(self, request: GitRequest) -> None:
        with self._lock:
            self.requests.append(request)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeGitServer

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGitServer/1.0"
    timeout = 60
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # the log is `FakeGitServer.requests`
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self) -> None:
        fake = self.server.fake
        body = self._body()
        authorization = self.headers.get("Authorization", "")
        authorized = fake.authorized(authorization) if authorization else False
        status = self._handle(fake, body, authorized)
        fake._record(GitRequest(self.command, self.path, status, self.headers.get("User-Agent", ""), authorized,
                                authorization))

    def _handle(self, fake: FakeGitServer, body: bytes, authorized: bool) -> int:
        split = urlsplit(self.path)
        path = unquote(split.path)
        prefix = f"/{fake.repository}.git/"
        if not path.lower().startswith(prefix.lower()):
            self._answer(404, {"Content-Type": "text/plain"}, b"Repository not found.\n")
            return 404
        if not authorized:  # a private repository: every request needs the token, as on GitHub
            self._answer(401, {"Content-Type": "text/plain", "WWW-Authenticate": 'Basic realm="GitHub"'},
                         b"Invalid username or token.\n")
            return 401
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(fake._root),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_PROJECT_ROOT": str(fake._root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": self.client_address[0],
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": f"/{fake.owner}/{fake.name}.git/{path[len(prefix):]}",
            "QUERY_STRING": split.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
        }
        for header in ("Content-Encoding", "Git-Protocol"):
            if self.headers.get(header):
                env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
        if proc.stderr.strip():
            fake.errors.append(proc.stderr.decode("utf-8", errors="replace"))
        head, separator, payload = proc.stdout.partition(b"\r\n\r\n")
        if not separator:
            head, separator, payload = proc.stdout.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split(" ", 1)[0])
            elif key:
                headers[key.strip()] = value.strip()
        if proc.returncode != 0 and status == 200:
            status = 500
        self._answer(status, headers, payload)
        return status

    do_GET = do_POST = do_HEAD = _serve
