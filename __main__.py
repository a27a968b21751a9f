"""agent-fleet: one coordinator container keeps the roster's agents running on a repository.

Every setting is read and checked first (deploy.pulumi_config); nothing is declared if one is wrong.
"""

import pulumi

from deploy.components import (
    Coordinator,
    CoordinatorArgs,
    CoordinatorImageArgs,
    RepositorySettings,
    RepositorySettingsArgs,
    RoleArgs,
    RoleResource,
    docker_provider,
    github_provider,
)
from deploy.container_spec import coordinator_container_spec
from deploy.pulumi_config import current_fleet_id, github_token, load_stack_config
from deploy.stack_config import resolve_roster
from roster import ROSTER

config = load_stack_config(ROSTER)
fleet_id = current_fleet_id()
roster = resolve_roster(ROSTER, config)
image_name = f"agent-fleet/coordinator:{pulumi.get_stack()}"
container_spec = coordinator_container_spec(fleet_id=fleet_id, image=image_name, roster=roster, config=config)

token = github_token()
on_github = pulumi.ResourceOptions(providers=[github_provider(config, token)])
docker_host = docker_provider(config)
on_docker = pulumi.ResourceOptions(providers=[docker_host] if docker_host else None)

for role in roster:
    RoleResource(role.key, RoleArgs.from_spec(role), repository=config.repository_name, opts=on_github)

RepositorySettings(
    "repository",
    RepositorySettingsArgs(
        repository=config.repository_name,
        ruleset_name=f"agent-fleet ({fleet_id})",
        required_checks=config.required_checks,
    ),
    opts=on_github,
)

coordinator = Coordinator(
    "coordinator",
    CoordinatorArgs(
        spec=container_spec,
        image=CoordinatorImageArgs(image_name=image_name, base_image=config.base_image),
        github_token=token,
    ),
    opts=on_docker,
)

pulumi.export("fleetId", fleet_id)
pulumi.export("coordinatorContainer", coordinator.container.name)
pulumi.export("coordinatorImage", coordinator.image.image_name)
pulumi.export("agents", {role.key: role.role.count for role in roster})
