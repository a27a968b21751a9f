"""agent-fleet: a coordinator keeps the roster's agents running on a repository, on one Docker engine or a swarm.

Every setting is read and checked first (deploy.pulumi_config); nothing is declared if one is wrong.
"""

import pulumi

from coordinator.fleet import roster_to_json
from deploy.components import (
    BuiltImage,
    BuiltImageArgs,
    CoordinatorArgs,
    CoordinatorContainer,
    CoordinatorService,
    RepositorySettings,
    RepositorySettingsArgs,
    RoleArgs,
    RoleResource,
    docker_client_config,
    docker_provider,
    github_provider,
    registry_login,
)
from deploy.coordinator_spec import Source, coordinator_spec
from deploy.pulumi_config import current_fleet_id, load_stack_config, stack_secrets
from deploy.stack_config import (
    coordinator_credential_warning,
    deploy_summary,
    merge_policy_warnings,
    reference_secret_warnings,
    resolve_roster,
    role_image,
)
from roster import ROSTER

config = load_stack_config(ROSTER)
fleet_id = current_fleet_id(config)
secrets = stack_secrets(config)
stack = pulumi.get_stack()

on_github = pulumi.ResourceOptions(providers=[github_provider(config, secrets.github_token, secrets.deploy_app)])
docker_host = docker_provider(config)
on_docker = pulumi.ResourceOptions(providers=[docker_host] if docker_host else None)
login = registry_login(config, secrets.registry_password)


def build(component: str, context: str) -> BuiltImage:
    """An image from `<component>/Dockerfile`, pushed to the stack's registry when it names one."""
    return BuiltImage(
        f"{component}-image",
        BuiltImageArgs(
            image_name=f"{config.image_repository(component)}:{stack}",
            context=context,
            dockerfile=f"{component}/Dockerfile",
            base_image=config.base_image,
            push=config.registry is not None,
            login=login,
        ),
        opts=on_docker,
    )


coordinator_image = build("coordinator", ".")
# The reference agent image, for every role the stack names no image for (agentImage, images.<role>).
needs_agent_image = any(role_image(role, config) is None for role in ROSTER)
agent_image = build("agent", "agent").ref if needs_agent_image else None
for warning in [*reference_secret_warnings(ROSTER, config), *merge_policy_warnings(config)]:
    pulumi.log.warn(warning)
if (credential_warning := coordinator_credential_warning(config)) is not None:
    pulumi.log.warn(credential_warning)
ruleset_name = f"agent-fleet ({fleet_id})"
pulumi.log.info(deploy_summary(ROSTER, config, ruleset_name))

for role in ROSTER:
    image = role_image(role, config) or agent_image
    assert image is not None
    RoleResource(role.key, RoleArgs.from_role(role, count=config.count_of(role), image=image),
                 repository=config.repository_name, opts=on_github)

RepositorySettings(
    "repository",
    RepositorySettingsArgs(
        repository=config.repository_name,
        ruleset_name=ruleset_name,
        required_checks=config.required_checks,
        merge_queue=config.merge_queue_limits if config.merge_queue else None,
        require_up_to_date=config.require_up_to_date,
    ),
    opts=on_github,
)

roster_file = pulumi.Output.from_input(agent_image).apply(
    lambda built: roster_to_json(resolve_roster(ROSTER, config, built_agent_image=built))
)
contents: dict[Source, pulumi.Input[str]] = {Source.ROSTER: roster_file}
if secrets.coordinator_token is not None:
    contents[Source.GITHUB_TOKEN] = secrets.coordinator_token
if secrets.coordinator_app is not None:
    contents[Source.GITHUB_APP] = secrets.coordinator_app
if secrets.agent_secrets is not None:
    contents[Source.AGENT_SECRETS] = secrets.agent_secrets
if secrets.agent_identities is not None:
    contents[Source.AGENT_IDENTITIES] = secrets.agent_identities
if login is not None:
    contents[Source.REGISTRY_AUTH] = docker_client_config(login)
coordinator_args = CoordinatorArgs(
    spec=coordinator_spec(fleet_id=fleet_id, config=config),
    image=coordinator_image.ref,
    contents=contents,
    login=login,
)
if config.on_swarm:
    service = CoordinatorService("coordinator", coordinator_args, opts=on_docker)
    pulumi.export("coordinatorService", service.service.name)
else:
    container = CoordinatorContainer("coordinator", coordinator_args, opts=on_docker)
    pulumi.export("coordinatorContainer", container.container.name)

pulumi.export("fleetId", fleet_id)
pulumi.export("runtime", config.runtime)
pulumi.export("coordinatorImage", coordinator_image.ref)
pulumi.export("agentImage", agent_image or config.agent_image)
pulumi.export("agents", {role.key: config.count_of(role) for role in ROSTER})
