"""The README's set-up scripts, as far as they can run here (no Pulumi CLI can be installed)."""

from __future__ import annotations

import os
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
    for script in ("scripts/up", "scripts/test", "scripts/docker-engine", "scripts/base-image", ".ci/run"):
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
