"""Writing a small file in one step: the heartbeat, and the memos the Docker adapters keep beside it.

At the bottom of the import graph (it imports nothing of the coordinator), so the heartbeat and the
runtimes' adapters share it without importing each other.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace_file(path: Path, text: str) -> None:
    """Write `path` in one step, so that no reader ever sees half of it. Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary file is in the same directory, because os.replace is atomic only within a file system.
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as temp:
            temp.write(text)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
