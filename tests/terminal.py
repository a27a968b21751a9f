"""A command on a pseudo-terminal, for what commands print to a person (text) rather than to a pipe (JSON)."""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Callable, Mapping

import pytest

from tests.conftest import ROOT


class Terminal:
    """A command on a pseudo-terminal (its stdin, stdout and stderr), its screen read as it comes."""

    def __init__(self, argv: list[str], env: Mapping[str, str]) -> None:
        self._master, slave = os.openpty()
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=dict(env), cwd=ROOT,
                                        start_new_session=True)
        os.close(slave)
        self.output = ""

    def read_until(self, condition: Callable[[str], bool], what: str, timeout: float = 60) -> str:
        """Read until `condition(everything read so far)`; the bound only turns a hang into a failure."""
        deadline = time.monotonic() + timeout
        while not condition(self.output):
            if time.monotonic() > deadline:
                pytest.fail(f"gave up waiting for {what}; the terminal shows:\n{self.output}")
            ready, _, _ = select.select([self._master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self._master, 65536)
                except OSError:  # EIO: every process on the terminal has closed it
                    chunk = b""
                if not chunk and self.process.poll() is not None:
                    if not condition(self.output):
                        pytest.fail(f"the command exited before {what}; the terminal shows:\n{self.output}")
                    break
                self.output += chunk.decode(errors="replace")
        return self.output

    def drain(self, seconds: float) -> str:
        """Read whatever the command prints for `seconds`, to see what it draws while nothing changes."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self._master], [], [], min(left, 0.2))
            if ready:
                try:
                    chunk = os.read(self._master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                self.output += chunk.decode(errors="replace")
        return self.output

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        os.close(self._master)
