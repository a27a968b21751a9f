"""The exit codes of every `python -m coordinator` command, defined once at the bottom of the import graph.

`cli.py` returns them, and so do the commands it runs (`status`, the health check) and the scheduler's
reading of a cycle's end (`metrics`); this module imports nothing, so any of them may use it.
"""

from __future__ import annotations

EXIT_OK = 0  # done; every step succeeded (skipped counts as success); healthy
EXIT_FAILED = 1  # a step failed; unhealthy; the record could not be read
EXIT_CONFIG = 2  # bad settings or arguments: nothing was done
