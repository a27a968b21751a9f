"""The program's building blocks: one component per role, the coordinator, and the repository's settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker
import pulumi_github as github

from coordinator.fleet import BLOCKING_LABEL, Department, RoleSpec, role_label
from deploy.container_spec import CoordinatorContainerSpec
from deploy.stack_config import DEFAULT_BASE_IMAGE, StackConfig

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
    field that changed (`~ count`) on that role's own resource."""

    key: str
    title: str
    count: int
    department: str
    mode: str
    brief: str
    image: str

    @classmethod
    def from_spec(cls, spec: RoleSpec) -> RoleArgs:
        role = spec.role
        return cls(
            key=role.key,
            title=role.title,
            count=role.count,
            department=role.department.value,
            mode=role.mode.value,
            brief=role.brief,
            image=spec.image,
        )

    def inputs(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "count": self.count,
            "department": self.department,
            "mode": self.mode,
            "brief": self.brief,
            "image": self.image,
        }


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


@dataclass(frozen=True)
class CoordinatorImageArgs:
    """How the coordinator image is built: locally, never pushed."""

    image_name: str
    context: str = "."
    dockerfile: str = "coordinator/Dockerfile"
    base_image: str = DEFAULT_BASE_IMAGE


@dataclass(frozen=True)
class CoordinatorArgs:
    spec: CoordinatorContainerSpec
    image: CoordinatorImageArgs
    github_token: pulumi.Output[str]


class Coordinator(pulumi.ComponentResource):
    """The coordinator image, built on the Docker host, and its long-running container."""

    image: docker.Image
    container: docker.Container

    def __init__(self, name: str, args: CoordinatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agent-fleet:index:Coordinator", name, None, opts)
        spec = args.spec
        self.image = docker.Image(
            f"{name}-image",
            image_name=args.image.image_name,
            build=docker.DockerBuildArgs(
                context=args.image.context,
                dockerfile=args.image.dockerfile,
                args={"BASE_IMAGE": args.image.base_image},
            ),
            skip_push=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        uploads = [
            docker.ContainerUploadArgs(file=file.path, content=file.content, permissions=file.permissions)
            for file in spec.files
        ]
        # The token goes in as a file whose content is the secret Output: secretness covers that upload
        # alone, and the environment stays readable in preview. World-readable inside the container
        # because the image's user is the Dockerfile's choice; nothing else runs in this container.
        uploads.append(
            docker.ContainerUploadArgs(
                file=spec.secret_file, content=pulumi.Output.secret(args.github_token), permissions="0444"
            )
        )
        self.container = docker.Container(
            f"{name}-container",
            name=spec.name,
            # The built image's id, not its tag: a rebuilt image must replace the container.
            image=self.image.repo_digest,
            command=list(spec.command) if spec.command is not None else None,
            envs=[f"{key}={value}" for key, value in sorted(spec.env.items())],
            uploads=uploads,
            volumes=[
                docker.ContainerVolumeArgs(
                    host_path=mount.host_path, container_path=mount.container_path, read_only=mount.read_only
                )
                for mount in spec.mounts
            ],
            labels=[docker.ContainerLabelArgs(label=key, value=value) for key, value in sorted(spec.labels.items())],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=list(spec.healthcheck.test),
                interval=f"{spec.healthcheck.interval_seconds}s",
                timeout=f"{spec.healthcheck.timeout_seconds}s",
                retries=spec.healthcheck.retries,
                start_period=f"{spec.healthcheck.start_period_seconds}s",
            ),
            restart=spec.restart,
            log_driver=spec.log_driver,
            log_opts=dict(spec.log_options),
            init=spec.init,
            network_mode=spec.network_mode,
            # The container's name is fixed (one coordinator per fleet), so the old one must go first.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.register_outputs({"containerName": self.container.name, "imageName": self.image.image_name})


@dataclass(frozen=True)
class RepositorySettingsArgs:
    repository: str  # the repository's name; the owner comes from the GitHub provider
    ruleset_name: str
    required_checks: Sequence[str] = ()
    blocking_label: str = BLOCKING_LABEL


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


def github_provider(config: StackConfig, token: pulumi.Output[str]) -> github.Provider:
    """Explicit, so the token comes only from the stack's secret and never from the environment."""
    return github.Provider("github", owner=config.owner, token=token, base_url=config.github_api_url)


def docker_provider(config: StackConfig) -> docker.Provider | None:
    """The Docker host of `dockerHost`, or None for the default provider (DOCKER_HOST or the local socket)."""
    if config.docker_host is None:
        return None
    return docker.Provider("docker", host=config.docker_host)
