"""The README's set-up scripts, as far as they can run here (no Pulumi CLI can be installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

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
    for script in ("scripts/up", "scripts/test", "scripts/docker-engine", ".ci/run"):
        assert os.access(ROOT / script, os.X_OK), script
