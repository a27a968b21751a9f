"""Docker labels that mark what belongs to a fleet. The coordinator touches nothing without them."""

FLEET = "agent-fleet.fleet"
ROLE = "agent-fleet.role"
SLOT = "agent-fleet.slot"
COMPONENT = "agent-fleet.component"  # "agent" or "coordinator"
# How many agents of this slot crashed in a row before this one was spawned; read back from
# the exited container to derive the crash-loop backoff without any state file.
CRASH_STREAK = "agent-fleet.crash-streak"
# Likewise, how many agents of this slot in a row exited with nothing to do: the evidence behind the
# advice to lower a role's count, kept on the agents themselves rather than on old containers.
IDLE_STREAK = "agent-fleet.idle-streak"

AGENT = "agent"
COORDINATOR = "coordinator"
