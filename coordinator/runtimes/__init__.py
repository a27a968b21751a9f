"""The adapters of the agent runtime port (`coordinator.runtime.AgentRuntime`), one module per engine.

`open_runtime` picks one by `FLEET_RUNTIME`; each is imported only when chosen.
"""

from __future__ import annotations

from coordinator.runtime import AgentRuntime
from coordinator.settings import RuntimeSettings
from coordinator.values import SWARM_RUNTIME


def open_runtime(settings: RuntimeSettings) -> AgentRuntime:
    from coordinator.runtimes.engine import ApiVersionMemo

    versions = ApiVersionMemo(settings.api_version_file) if settings.api_version_file else None
    if settings.kind == SWARM_RUNTIME:
        from coordinator.runtimes.swarm import SwarmRuntime

        return SwarmRuntime(api_version_memo=versions)
    from coordinator.runtimes.docker import DockerRuntime, ExitMemo

    return DockerRuntime(exit_memo=ExitMemo(settings.exit_memo_file) if settings.exit_memo_file else None,
                         api_version_memo=versions)
