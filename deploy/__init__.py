"""The Pulumi side of agent-fleet: stack config, the coordinator container's specification, the components.

`stack_config` and `container_spec` are pure (no Pulumi import) and shared with the end-to-end tests;
`pulumi_config` and `components` declare resources.
"""
