"""The program's building blocks: one component per role, the images it builds, the coordinator (a container on one
engine, a service on a swarm), and the repository's settings."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pulumi
import pulumi_docker as docker
import pulumi_github as github

from coordinator.fleet import BLOCKING_LABEL, Department, Role, role_label
from deploy.coordinator_spec import CoordinatorSpec, HealthCheck, Source, SpecFile
from deploy.stack_config import DEFAULT_BASE_IMAGE, MergeQueueLimits, StackConfig

T = TypeVar("T")
GITHUB_LABEL_DESCRIPTION_LIMIT = 100  # GitHub refuses longer label descriptions

# One colour per department, so a pull request's role label shows where it comes from.
DEPARTMENT_COLOURS: dict[Department, str] = {
    Department.PRODUCT: "7057ff",
    Department.ENGINEERING: "0075ca",
    Department.QUALITY: "0e8a16",
    Department.SECURITY: "b60205",
    Department.PERFORMANCE: "fbca04",
    Department.CODE_HEALTH: "c5def5",
    Department.STANDARDS: "bfdadc",
    Department.INFRASTRUCTURE: "5319e7",
    Department.GATES: "d93f0b",
    Department.GROWTH: "006b75",
}


def label_description(brief: str) -> str:
    """The brief within GitHub's label-description limit: whole, else its first sentence, else cut at a word."""
    limit = GITHUB_LABEL_DESCRIPTION_LIMIT
    if len(brief) <= limit:
        return brief
    first_sentence = brief.split(". ", 1)[0].rstrip(".") + "."
    if len(first_sentence) <= limit:
        return first_sentence
    return brief[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


@dataclass(frozen=True)
class RoleArgs:
    """A role as deployed. Every field is an input of the role's resource, so `pulumi preview` names the
    field that changed (`~ count`, `~ resources`) on that role's own resource."""

    key: str
    title: str
    count: int
    department: str
    mode: str
    brief: str
    image: pulumi.Input[str]  # the built reference image's digest, unless the stack names one
    resources: Mapping[str, Any] | None = None  # {"cpus": 0.5, "memory": "512m"}, either may be absent
    secrets: tuple[str, ...] | None = None  # the agent secrets it receives by name; None: all of them
    identity: str | None = None  # its GitHub identity's name (never a value); None: reviewer or author by mode
    github_permissions: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_role(cls, role: Role, *, count: int, image: pulumi.Input[str]) -> RoleArgs:
        return cls(
            key=role.key,
            title=role.title,
            count=count,
            department=role.department.value,
            mode=role.mode.value,
            brief=role.brief,
            image=image,
            resources=role.resources.to_dict() if role.resources is not None else None,
            secrets=role.secrets,
            identity=role.identity,
            github_permissions=role.github_permissions,
        )

    def inputs(self) -> dict[str, Any]:
        inputs: dict[str, Any] = {
            **({"identity": self.identity} if self.identity is not None else {}),
            **({"githubPermissions": dict(self.github_permissions)} if self.github_permissions else {}),
            "key": self.key,
            "title": self.title,
            "count": self.count,
            "department": self.department,
            "mode": self.mode,
            "brief": self.brief,
            "image": self.image,
        }
        if self.resources is not None:
            inputs["resources"] = dict(self.resources)
        if self.secrets is not None:
            inputs["secrets"] = list(self.secrets)  # names only; the values never leave agentSecrets
        return inputs


class RoleResource(pulumi.ComponentResource):
    """One role of the fleet and its GitHub label `role:<key>`.

    The coordinator reads the roles from its roster file; this resource is what makes a change to one role
    show up in `pulumi preview` as a change of that role, with the field named.
    """

    label: github.IssueLabel

    def __init__(
        self, name: str, args: RoleArgs, *, repository: str, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-fleet:index:Role", name, args.inputs(), opts)
        self.label = github.IssueLabel(
            f"{name}-label",
            repository=repository,
            name=role_label(args.key),
            description=label_description(args.brief),
            color=DEPARTMENT_COLOURS.get(Department(args.department), "ededed"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"label": self.label.name})


# --- images ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryLogin:
    """Credentials for the registry the images are pushed to and pulled from; the password stays a secret."""

    server: str
    username: str
    password: pulumi.Output[str]


@dataclass(frozen=True)
class BuiltImageArgs:
    """An image built from a Dockerfile on the deploying engine; pushed to a registry when `push` is set."""

    image_name: str  # repository:tag
    context: str
    dockerfile: str  # relative to the program's directory, as pulumi-docker reads it
    base_image: str = DEFAULT_BASE_IMAGE
    push: bool = False
    login: RegistryLogin | None = None  # None with `push`: the engine's own login (or a registry without one)


class BuiltImage(pulumi.ComponentResource):
    """One image the program builds: the coordinator's, and the reference agent's when no agentImage is set.

    `ref` pins what was built: the local image id (`sha256:...`) when it stays on the engine, the pushed
    manifest (`registry/name@sha256:...`) when every node pulls it. A rebuild changes it, so whatever runs the
    image is replaced or updated, never left on the old one.
    """

    image: docker.Image
    ref: pulumi.Output[str]

    def __init__(self, name: str, args: BuiltImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agent-fleet:index:BuiltImage", name, {"imageName": args.image_name, "push": args.push},
                         opts)
        login = args.login
        self.image = docker.Image(
            name,
            image_name=args.image_name,
            build=docker.DockerBuildArgs(
                context=args.context, dockerfile=args.dockerfile, args={"BASE_IMAGE": args.base_image}
            ),
            skip_push=not args.push,
            registry=docker.RegistryArgs(
                server=login.server, username=login.username, password=pulumi.Output.secret(login.password)
            ) if login is not None else None,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.ref = self.image.repo_digest
        self.register_outputs({"ref": self.ref})


# --- the coordinator ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoordinatorArgs:
    spec: CoordinatorSpec
    image: pulumi.Input[str]
    # The content of each of the spec's files, by source: the roster, the token, the agents' secrets.
    contents: Mapping[Source, pulumi.Input[str]]
    login: RegistryLogin | None = None  # for the swarm's nodes to pull the coordinator's image


def _content(args: CoordinatorArgs, spec_file: SpecFile) -> pulumi.Input[str]:
    content = args.contents[spec_file.source]
    # A secret file's content is the secret Output: secretness covers that content alone, so the rest stays
    # readable in preview and the secret's value never reaches the state in plain text.
    return pulumi.Output.secret(content) if spec_file.secret else content


def _base64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _label_args(make: Callable[..., T], labels: Mapping[str, str]) -> list[T]:
    """The labels as pulumi-docker's label arguments of one kind (container, service, secret, ...), sorted."""
    return [make(label=key, value=value) for key, value in sorted(labels.items())]


def _healthcheck_args(make: Callable[..., T], check: HealthCheck) -> T:
    """The health check as pulumi-docker's arguments for a container or a service's task (the same fields)."""
    return make(
        tests=list(check.test),
        interval=f"{check.interval_seconds}s",
        timeout=f"{check.timeout_seconds}s",
        retries=check.retries,
        start_period=f"{check.start_period_seconds}s",
    )


# The component the container was declared under before the swarm runtime came: an alias keeps the container's
# URN, so upgrading a stack updates it in place instead of creating a second container under the same fixed name.
PREVIOUS_COORDINATOR_TYPE = "agent-fleet:index:Coordinator"


class CoordinatorContainer(pulumi.ComponentResource):
    """The coordinator on one Docker engine: a long-running container with the socket mounted."""

    container: docker.Container

    def __init__(self, name: str, args: CoordinatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        moved = pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=PREVIOUS_COORDINATOR_TYPE)])
        super().__init__(
            "agent-fleet:index:CoordinatorContainer", name, None, pulumi.ResourceOptions.merge(opts, moved)
        )
        spec = args.spec
        self.container = docker.Container(
            f"{name}-container",
            name=spec.name,
            image=args.image,
            command=list(spec.command) if spec.command is not None else None,
            envs=[f"{key}={value}" for key, value in sorted(spec.env.items())],
            uploads=[
                docker.ContainerUploadArgs(file=f.path, content=_content(args, f), permissions=f.permissions)
                for f in spec.files
            ],
            volumes=[
                docker.ContainerVolumeArgs(
                    host_path=mount.host_path, container_path=mount.container_path, read_only=mount.read_only
                )
                for mount in spec.mounts
            ],
            labels=_label_args(docker.ContainerLabelArgs, spec.labels),
            healthcheck=_healthcheck_args(docker.ContainerHealthcheckArgs, spec.healthcheck),
            ports=[docker.ContainerPortArgs(internal=spec.published_port, external=spec.published_port)]
            if spec.published_port else None,
            restart=spec.restart,
            log_driver=spec.log_driver,
            log_opts=dict(spec.log_options),
            init=spec.init,
            network_mode=spec.network,
            # Docker waits this long after SIGTERM on a replacement or destroy (destroy_grace_seconds), and on any
            # other stop, a person's `docker stop` or a restart (stop_timeout): the running cycle writes its report.
            destroy_grace_seconds=spec.stop_grace_seconds,
            stop_timeout=spec.stop_grace_seconds,
            # The container's name is fixed (one coordinator per fleet), so the old one must go first.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.register_outputs({"name": self.container.name})


class CoordinatorService(pulumi.ComponentResource):
    """The coordinator on a Docker Swarm: a one-replica service on a manager, with the manager's socket mounted.

    The roster reaches it as a swarm config, the token and the agents' secrets as Docker secrets. Neither can
    change in place, so each is named by Pulumi's auto-naming (`<resource name>-<random suffix>`): a new value
    is a new object, the service is updated to it, and the old one is deleted after.
    """

    service: docker.Service
    secrets: dict[Source, docker.Secret]
    configs: dict[Source, docker.ServiceConfig]

    def __init__(self, name: str, args: CoordinatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agent-fleet:index:CoordinatorService", name, None, opts)
        spec = args.spec
        child = pulumi.ResourceOptions(parent=self)
        self.secrets, self.configs = {}, {}
        secret_refs: list[docker.ServiceTaskSpecContainerSpecSecretArgs] = []
        config_refs: list[docker.ServiceTaskSpecContainerSpecConfigArgs] = []
        for spec_file in spec.files:
            content = _content(args, spec_file)
            if spec_file.secret:
                # Base64 of the secret Output: still the secret Output.
                data: pulumi.Output[str] = pulumi.Output.from_input(content).apply(_base64)
                secret = docker.Secret(
                    f"{name}-{spec_file.source}",
                    data=data,
                    labels=_label_args(docker.SecretLabelArgs, spec.labels),
                    opts=child,
                )
                self.secrets[spec_file.source] = secret
                secret_refs.append(docker.ServiceTaskSpecContainerSpecSecretArgs(
                    secret_id=secret.id, secret_name=secret.name, file_name=spec_file.path,
                    file_uid="0", file_gid="0", file_mode=spec_file.mode,
                ))
            else:
                config = docker.ServiceConfig(
                    f"{name}-{spec_file.source}",
                    data_raw=content,
                    labels=_label_args(docker.ServiceConfigLabelArgs, spec.labels),
                    opts=child,
                )
                self.configs[spec_file.source] = config
                config_refs.append(docker.ServiceTaskSpecContainerSpecConfigArgs(
                    config_id=config.id, config_name=config.name, file_name=spec_file.path,
                    file_uid="0", file_gid="0", file_mode=spec_file.mode,
                ))
        login = args.login
        self.service = docker.Service(
            f"{name}-service",
            name=spec.name,
            labels=_label_args(docker.ServiceLabelArgs, spec.labels),
            task_spec=docker.ServiceTaskSpecArgs(
                container_spec=docker.ServiceTaskSpecContainerSpecArgs(
                    image=args.image,
                    # The container's `command` replaces the image's CMD; on a service that is `args`.
                    args=list(spec.command) if spec.command is not None else None,
                    env=dict(spec.env),
                    stop_grace_period=f"{spec.stop_grace_seconds}s",
                    labels=_label_args(docker.ServiceTaskSpecContainerSpecLabelArgs, spec.labels),
                    mounts=[
                        docker.ServiceTaskSpecContainerSpecMountArgs(
                            type="bind", source=mount.host_path, target=mount.container_path,
                            read_only=mount.read_only,
                        )
                        for mount in spec.mounts
                    ],
                    healthcheck=_healthcheck_args(docker.ServiceTaskSpecContainerSpecHealthcheckArgs,
                                                  spec.healthcheck),
                    init=spec.init,
                    secrets=secret_refs,
                    configs=config_refs,
                ),
                restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(
                    condition=spec.service_restart_condition, delay=f"{spec.service_restart_delay_seconds}s",
                    max_attempts=0,
                ),
                placement=docker.ServiceTaskSpecPlacementArgs(constraints=list(spec.placement)),
                log_driver=docker.ServiceTaskSpecLogDriverArgs(name=spec.log_driver, options=dict(spec.log_options)),
                networks_advanceds=[docker.ServiceTaskSpecNetworksAdvancedArgs(name=spec.network)]
                if spec.network else None,
            ),
            mode=docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=1)),
            update_config=docker.ServiceUpdateConfigArgs(parallelism=1, order=spec.update_order),
            endpoint_spec=docker.ServiceEndpointSpecArgs(ports=[
                # Host mode: bound on the node that runs the task, no routing mesh (IPVS) needed.
                docker.ServiceEndpointSpecPortArgs(
                    target_port=spec.published_port, published_port=spec.published_port, publish_mode="host",
                    protocol="tcp",
                )
            ]) if spec.published_port else None,
            auth=docker.ServiceAuthArgs(
                server_address=login.server, username=login.username, password=pulumi.Output.secret(login.password)
            ) if login is not None else None,
            # The service's name is fixed (one coordinator per fleet): a replacement must remove the old one first.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.register_outputs({"name": self.service.name})


@dataclass(frozen=True)
class RepositorySettingsArgs:
    repository: str  # the repository's name; the owner comes from the GitHub provider
    ruleset_name: str
    required_checks: Sequence[str] = ()
    blocking_label: str = BLOCKING_LABEL
    merge_queue: MergeQueueLimits | None = None  # None: no merge queue rule
    require_up_to_date: bool = False  # the required checks' strict policy


class RepositorySettings(pulumi.ComponentResource):
    """What the merge step relies on: a ruleset on the default branch and the blocking label.

    Deliberately not a `github.Repository`: that resource owns the whole repository (its deletion included),
    so adopting it would put the repository under `pulumi destroy`. Squash merging is the only merge method
    the ruleset allows on the default branch; GitHub enables it per repository by default.
    """

    ruleset: github.RepositoryRuleset
    blocking_label: github.IssueLabel

    def __init__(self, name: str, args: RepositorySettingsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agent-fleet:index:RepositorySettings", name, None, opts)
        checks = (
            github.RepositoryRulesetRulesRequiredStatusChecksArgs(
                required_checks=[
                    github.RepositoryRulesetRulesRequiredStatusChecksRequiredCheckArgs(context=check)
                    for check in args.required_checks
                ],
                strict_required_status_checks_policy=args.require_up_to_date,
            )
            if args.required_checks
            else None
        )
        self.ruleset = github.RepositoryRuleset(
            f"{name}-default-branch",
            name=args.ruleset_name,
            repository=args.repository,
            target="branch",
            enforcement="active",
            conditions=github.RepositoryRulesetConditionsArgs(
                ref_name=github.RepositoryRulesetConditionsRefNameArgs(includes=["~DEFAULT_BRANCH"], excludes=[]),
            ),
            rules=github.RepositoryRulesetRulesArgs(
                pull_request=github.RepositoryRulesetRulesPullRequestArgs(
                    required_approving_review_count=1,
                    dismiss_stale_reviews_on_push=True,
                    allowed_merge_methods=["squash"],
                ),
                required_status_checks=checks,
                merge_queue=merge_queue_rule(args.merge_queue) if args.merge_queue is not None else None,
                deletion=True,
                non_fast_forward=True,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.blocking_label = github.IssueLabel(
            f"{name}-{args.blocking_label}",
            repository=args.repository,
            name=args.blocking_label,
            description="The coordinator never merges a pull request with this label.",
            color="b60205",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"ruleset": self.ruleset.name})


def merge_queue_rule(limits: MergeQueueLimits) -> github.RepositoryRulesetRulesMergeQueueArgs:
    """The ruleset's merge_queue rule: squash (the only method the ruleset allows), every entry's merged result
    tested (ALLGREEN), the stack's limits. The coordinator enqueues; the queue merges."""
    return github.RepositoryRulesetRulesMergeQueueArgs(
        merge_method="SQUASH",
        grouping_strategy="ALLGREEN",
        check_response_timeout_minutes=limits.check_timeout_minutes,
        max_entries_to_build=limits.max_entries_to_build,
        min_entries_to_merge=limits.min_entries_to_merge,
        max_entries_to_merge=limits.max_entries_to_merge,
        min_entries_to_merge_wait_minutes=limits.min_entries_to_merge_wait_minutes,
    )


def github_provider(
    config: StackConfig, token: pulumi.Output[str] | None, app: pulumi.Output[dict[str, Any]] | None = None
) -> github.Provider:
    """Explicit, so the credential comes only from the stack's secrets and never from the environment: the deploy's
    token, or its App (`githubApp`) as the provider's app_auth, the key's contents as `pem_file`."""
    if app is not None and token is None:
        app_auth = github.ProviderAppAuthArgs(
            id=app.apply(lambda a: str(a["appId"])),
            installation_id=app.apply(lambda a: str(a["installationId"])),
            pem_file=pulumi.Output.secret(app.apply(lambda a: str(a["privateKey"]))),
        )
        return github.Provider("github", owner=config.owner, app_auth=app_auth, base_url=config.github_api_url)
    return github.Provider("github", owner=config.owner, token=token, base_url=config.github_api_url)


def docker_client_config(login: RegistryLogin) -> pulumi.Output[str]:
    """A Docker client config.json holding the registry credentials, as a secret Output: with it the coordinator's
    Docker SDK sends them with each pull and service create (what `--with-registry-auth` does for the CLI)."""
    def config(password: str) -> str:
        auth = base64.b64encode(f"{login.username}:{password}".encode()).decode("ascii")
        return json.dumps({"auths": {login.server: {"auth": auth}}})

    return pulumi.Output.secret(login.password.apply(config))


def registry_login(config: StackConfig, password: pulumi.Output[str] | None) -> RegistryLogin | None:
    """The registry credentials, when the stack sets them (a registry without login needs none)."""
    if config.registry_server is None or config.registry_username is None or password is None:
        return None
    return RegistryLogin(server=config.registry_server, username=config.registry_username, password=password)


def docker_provider(config: StackConfig) -> docker.Provider | None:
    """The Docker host of `dockerHost`, or None for the default provider (DOCKER_HOST or the local socket).

    On a swarm it must be a manager: the images are built there and the service is declared through it.
    """
    if config.docker_host is None:
        return None
    return docker.Provider("docker", host=config.docker_host)
