"""The README's set-up scripts, as far as they can run here (no Pulumi CLI can be installed)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pty
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import docker
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_up_without_the_pulumi_cli_stops_with_the_way_to_install_it(tmp_path: Path) -> None:
    # A PATH with bash and coreutils but no pulumi: the script must stop before touching anything.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "env", "dirname", "id"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "up")],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 127
    assert proc.stderr.strip() == (
        "scripts/up: the Pulumi CLI is missing; install it with: curl -fsSL https://get.pulumi.com | sh"
    )


def test_scripts_are_executable() -> None:
    for script in ("scripts/up", "scripts/test", "scripts/virtualenv", "scripts/try", "scripts/docker-engine",
                   "scripts/base-image", ".ci/run"):
        assert os.access(ROOT / script, os.X_OK), script


@pytest.mark.docker
def test_base_image_stands_in_for_an_image_that_cannot_be_pulled_knowing_nothing_beside_the_repository(
    tmp_path: Path, docker_client: docker.DockerClient, base_image: str,
) -> None:
    # The script alone in an empty folder: whatever it needs, it has. Its stand-in (already built here, under a
    # tag of this test's own, so the minute of debootstrap is not spent again) replaces the image it cannot pull.
    script = tmp_path / "base-image"
    shutil.copy(ROOT / "scripts" / "base-image", script)
    stand_in = f"agent-fleet-test/python-base:{uuid.uuid4().hex[:8]}"
    docker_client.images.get(base_image).tag(stand_in)
    try:
        proc = subprocess.run(
            [str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
            env={**os.environ, "BASE_IMAGE": "agent-fleet-test/no-such-python:never", "BASE_IMAGE_STAND_IN": stand_in},
        )
    finally:
        docker_client.images.remove(stand_in)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == stand_in
    assert "scripts/base-image: cannot pull agent-fleet-test/no-such-python:never (" in proc.stderr
    assert re.search(rf"using a stand-in built from Debian \w+'s packages: {re.escape(stand_in)}$", proc.stderr, re.M)


# --- scripts/up on a fresh clone, its Pulumi calls made by a recording stand-in (this test's only) --------------

# Models what scripts/up relies on: `stack select` fails without the file backend's folder (Pulumi cannot open the
# bucket), `config` needs a selected stack, `config get` of an unset key fails with Pulumi's own message, and
# `config set` without a value reads it from stdin (Pulumi prompts on a terminal).
PULUMI_STAND_IN = r"""#!/usr/bin/env bash
set -u
calls="$STAND_IN_STATE/calls"; config="$STAND_IN_STATE/config"
echo "$*" >>"$calls"
case "$1" in
  stack)
    if [ ! -d .pulumi-state ]; then
      echo "error: could not open bucket file://./.pulumi-state: no such file or directory" >&2; exit 255
    fi
    [ -x .venv/bin/python ] || { echo "error: the virtualenv .venv does not exist" >&2; exit 255; }
    touch "$STAND_IN_STATE/stack"; exit 0 ;;
  config)
    [ -e "$STAND_IN_STATE/stack" ] || { echo "error: no stack selected" >&2; exit 255; }
    verb=$2; shift 2; words=()
    for word in "$@"; do case $word in --secret|--path) ;; *) words+=("$word") ;; esac; done
    key=${words[0]}
    case $verb in
      get)
        line=$(grep -m1 -E "^$key(=|\\.)" "$config" 2>/dev/null) && { echo "${line#*=}"; exit 0; }
        echo "error: configuration key 'agent-fleet:$key' not found for stack 'prod'" >&2; exit 255 ;;
      set)
        value=${words[1]-}; [ -n "$value" ] || read -r value
        echo "$key=$value" >>"$config"; exit 0 ;;
    esac ;;
  up) exit 0 ;;
esac
echo "stand-in: unexpected call: $*" >&2; exit 99
"""


def fresh_clone(tmp_path: Path, *, installed: bool = True) -> Path:
    """The working tree's files as a fresh clone has them (nothing git ignores: no .venv, no .pulumi-state).
    `installed`: a virtualenv whose dependencies are current, as scripts/virtualenv leaves it (installing them for
    real takes minutes)."""
    clone = tmp_path / "clone"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    if installed:
        subprocess.run(["python3", "-m", "venv", "--without-pip", str(clone / ".venv")], check=True)
        digest = hashlib.sha256((clone / "pyproject.toml").read_bytes()).hexdigest()
        (clone / ".venv" / ".agent-fleet-installed").write_text(digest + "\n")
    return clone


def stand_in_env(tmp_path: Path, settings: dict[str, str] | None = None) -> dict[str, str]:
    bin_dir, state = tmp_path / "bin", tmp_path / "stand-in"
    bin_dir.mkdir()
    state.mkdir()
    (bin_dir / "pulumi").write_text(PULUMI_STAND_IN)
    (bin_dir / "pulumi").chmod(0o755)
    (state / "config").write_text("".join(f"{key}={value}\n" for key, value in (settings or {}).items()))
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), "STAND_IN_STATE": str(state),
            "PULUMI_CONFIG_PASSPHRASE": "test-passphrase"}


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "stand-in" / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_up_on_a_fresh_clone_makes_the_state_folder_and_the_stack_then_refuses_the_missing_settings(
    tmp_path: Path,
) -> None:
    clone = fresh_clone(tmp_path)
    proc = subprocess.run(["scripts/up"], cwd=clone, env=stand_in_env(tmp_path), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    # The stack was created (the stand-in refuses without the backend's folder or the virtualenv), then both
    # missing settings are named at once, each with its command; nothing was deployed.
    assert calls(tmp_path) == ["stack select --create prod", "config get repository", "config get githubToken",
                               "config get githubApp"]
    assert (clone / ".pulumi-state").is_dir()
    assert proc.stderr.splitlines()[-3:] == [
        "scripts/up: stack prod lacks required settings; set them, then run scripts/up again:",
        "  repository, the repository the fleet works on: pulumi config set repository OWNER/NAME",
        "  githubToken, the deploy's GitHub token: pulumi config set --secret githubToken (or an App as githubApp)",
    ]


def test_up_with_the_settings_in_place_deploys_passing_its_arguments_on(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path)
    env = stand_in_env(tmp_path, {"repository": "acme/shop", "githubToken": "t", "agentImage": "ghcr.io/acme/a:1",
                                  "githubIdentities.author.token": "a", "githubIdentities.reviewer.token": "r"})
    proc = subprocess.run(["scripts/up", "--yes"], cwd=clone, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert calls(tmp_path) == [
        "stack select --create prod", "config get repository", "config get githubToken",
        "config get --path githubIdentities.author", "config get --path githubIdentities.reviewer",
        "config get agentImage", "config get agentImage", "up --yes",
    ]


def test_up_on_a_terminal_asks_for_each_missing_setting(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path)
    env = stand_in_env(tmp_path)
    controller, terminal = pty.openpty()
    with subprocess.Popen(["scripts/up"], cwd=clone, env=env, stdin=terminal, stdout=terminal, stderr=terminal) as up:
        os.close(terminal)
        os.write(controller, b"acme/shop\ndeploy-token\nauthor-token\nreviewer-token\nmodel-key\n")
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the script has ended and the terminal is gone
            while chunk := os.read(controller, 4096):
                shown += chunk
        assert up.wait(timeout=60) == 0, shown.decode()
    os.close(controller)
    assert "the repository the fleet works on (OWNER/NAME)" in shown.decode()
    assert calls(tmp_path) == [
        "stack select --create prod",
        "config get repository", "config set repository acme/shop",
        "config get githubToken", "config get githubApp", "config set --secret githubToken",
        "config get --path githubIdentities.author", "config set --secret --path githubIdentities.author.token",
        "config get --path githubIdentities.reviewer", "config set --secret --path githubIdentities.reviewer.token",
        "config get agentImage",
        "config get --path agentSecrets.ANTHROPIC_API_KEY", "config set --secret --path agentSecrets.ANTHROPIC_API_KEY",
        "up",
    ]
    assert (tmp_path / "stand-in" / "config").read_text().splitlines() == [
        "repository=acme/shop", "githubToken=deploy-token", "githubIdentities.author.token=author-token",
        "githubIdentities.reviewer.token=reviewer-token", "agentSecrets.ANTHROPIC_API_KEY=model-key",
    ]


def test_up_after_a_pull_that_changed_the_dependencies_installs_them_before_any_pulumi_call(tmp_path: Path) -> None:
    # A bare `pulumi up` would run the program against the old dependencies; scripts/up installs first. (This
    # virtualenv has no pip, so the install fails at once: what matters is that it is tried, before Pulumi.)
    clone = fresh_clone(tmp_path)
    with (clone / "pyproject.toml").open("a") as pyproject:
        pyproject.write("# a dependency changed\n")
    env = stand_in_env(tmp_path, {"repository": "acme/shop", "githubToken": "t"})
    proc = subprocess.run(["scripts/up"], cwd=clone, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "scripts/virtualenv: installing the project and its dependencies into .venv" in proc.stderr
    assert calls(tmp_path) == []


# --- scripts/test --no-install: says what is missing, changes nothing ---------------------------------------------


def test_test_without_installing_names_everything_missing_and_changes_nothing(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "env", "dirname", "cat", "cut", "sha256sum", "docker"):  # no prometheus, no promtool
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    venv = tmp_path / "venv"
    proc = subprocess.run(
        [str(ROOT / "scripts" / "test"), "--no-install", "-k", "nothing"],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path), "VENV": str(venv),
             "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"},
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "scripts/test --no-install: missing, and left for you to install:",
        f"  - the virtualenv {venv} with the project's current dependencies: run scripts/virtualenv",
        "  - a Docker engine that answers: start one (e.g. 'sudo systemctl start docker'), or set DOCKER_HOST",
        "  - prometheus: install Debian's prometheus package (apt-get install --no-install-recommends prometheus)",
        "  - promtool: install Debian's prometheus package (apt-get install --no-install-recommends prometheus)",
        "  - chromium: install Debian's chromium package (apt-get install --no-install-recommends chromium)",
    ]
    assert not venv.exists()


@pytest.mark.docker
def test_base_image_without_building_says_the_stand_in_is_missing(docker_client: docker.DockerClient) -> None:
    stand_in = f"agent-fleet-test/python-base:{uuid.uuid4().hex[:8]}"
    proc = subprocess.run(
        [str(ROOT / "scripts" / "base-image"), "--no-build"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "BASE_IMAGE": "agent-fleet-test/no-such-python:never", "BASE_IMAGE_STAND_IN": stand_in},
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines()[-1] == (
        f"scripts/base-image: {stand_in} is not built either; build it with scripts/base-image (as root), or set "
        "BASE_IMAGE to a Python 3.11+ image the engine has"
    )
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(stand_in)
