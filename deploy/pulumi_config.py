"""Reads the stack's configuration from Pulumi and turns a bad setting into a plain Pulumi error.

The checks themselves live in `deploy.stack_config` (pure); this module only fetches raw text and the
secrets, so that nothing is declared before every setting has been checked. A secret's value is read
here twice: once, synchronously, only to check its shape and learn its names (the agent secrets' names,
whether a registry password is set), and once as the secret Output that is all the resources ever get.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime.config import CONFIG, get_config, get_config_env, is_config_secret

from coordinator.fleet import Role
from coordinator.identities import COORDINATOR as COORDINATOR_IDENTITY
from coordinator.identities import FILE_APP_KEYS, STACK_APP_KEYS
from coordinator.redact import scrub
from deploy.stack_config import (
    CONFIG_KEYS,
    NAMESPACE,
    SECRET_KEYS,
    SecretsPresent,
    StackConfig,
    StackConfigError,
    check_github_token,
    check_known_keys,
    fleet_id,
    parse_agent_secret_names,
    parse_deploy_app,
    parse_github_identities,
    parse_stack_config,
)


def namespace_keys() -> list[str]:
    """Every key set in the `agent-fleet:` namespace, not only the ones the program reads.

    `pulumi.Config` can only be asked for a key by name, so the whole map is read from where the
    runtime keeps it: set by the engine (PULUMI_CONFIG, as `pulumi up` runs the program) or by the
    program's host (the unit-test mocks).
    """
    prefix = f"{NAMESPACE}:"
    names = {*get_config_env(), *CONFIG.get()}
    return sorted(name[len(prefix):] for name in names if name.startswith(prefix))


def _secret_texts() -> list[str]:
    """Every secret value the stack holds, for scrubbing an error message (the last line of defence)."""
    texts: list[str] = []
    for key in SECRET_KEYS:
        raw = get_config(f"{NAMESPACE}:{key}")
        if not isinstance(raw, str) or not raw:
            continue
        texts.append(raw)
        try:
            loaded = json.loads(raw)
        except ValueError:
            continue
        if isinstance(loaded, dict):
            texts += [value for value in loaded.values() if isinstance(value, str) and value]
            # githubIdentities: name -> {"token": ...} or an App's fields, one level deeper.
            texts += [inner for value in loaded.values() if isinstance(value, dict)
                      for inner in value.values() if isinstance(inner, str) and inner]
    return texts


def _refused(exc: StackConfigError) -> pulumi.RunError:
    # The message quotes values through redact.shown and never a secret's; scrub it once more with every secret
    # itself, in case someone pasted one into another setting. RunError prints the message alone, without a
    # traceback.
    return pulumi.RunError(scrub(str(exc), _secret_texts()))


def _holds_something(raw: object) -> bool:
    """Whether a secret key's value holds a secret: the project's empty defaults ("" and {}) hold none."""
    return isinstance(raw, str) and raw.strip() not in ("", "{}")


def _check_secret_keys_are_secret() -> None:
    """A secret key set without --secret sits in Pulumi.<stack>.yaml in plain text: refused, value unshown.

    Pulumi.yaml cannot declare the optional ones `secret: true` (a secret may not have a plain default, and a key
    without a default is required), so the program holds the line itself.
    """
    for key in SECRET_KEYS:
        full = f"{NAMESPACE}:{key}"
        if _holds_something(get_config(full)) and not is_config_secret(full):
            path = " --path" if key in ("agentSecrets", "githubIdentities", "githubApp") else ""
            raise StackConfigError(
                f"{full} is stored in plain text in the stack's file; remove it with `pulumi config rm{path} {key}` "
                f"and set it again with `pulumi config set --secret{path} {key} ...`"
            )


def secrets_present() -> SecretsPresent:
    return SecretsPresent(
        agent_secrets=parse_agent_secret_names(get_config(f"{NAMESPACE}:agentSecrets")),
        registry_password=_holds_something(get_config(f"{NAMESPACE}:registryPassword")),
        identities=parse_github_identities(get_config(f"{NAMESPACE}:githubIdentities")),
        deploy_app=parse_deploy_app(get_config(f"{NAMESPACE}:githubApp")),
    )


def load_stack_config(roles: Iterable[Role]) -> StackConfig:
    config = pulumi.Config(NAMESPACE)
    try:
        check_known_keys(namespace_keys())
        _check_secret_keys_are_secret()
        check_github_token(get_config(f"{NAMESPACE}:githubToken"))
        raw = {key: config.get(key) for key in CONFIG_KEYS}
        return parse_stack_config(raw, roles, secrets_present())
    except StackConfigError as exc:
        raise _refused(exc) from None


@dataclass(frozen=True)
class StackSecrets:
    """The stack's secrets, each only ever a secret Output."""

    github_token: pulumi.Output[str] | None  # githubToken: the deploy's, unless it is an App (githubApp)
    agent_secrets: pulumi.Output[str] | None  # the JSON object AGENT_SECRETS_FILE holds; None: no agent secret
    registry_password: pulumi.Output[str] | None
    # githubApp: the deploy's App, {"appId", "installationId", "privateKey"}, for the provider's app_auth.
    deploy_app: pulumi.Output[dict[str, Any]] | None = None
    # What AGENT_IDENTITIES_FILE holds (githubIdentities but the coordinator's, in the file's snake_case keys).
    agent_identities: pulumi.Output[str] | None = None
    # What the running coordinator merges with: a token (GITHUB_TOKEN_FILE) or an App (GITHUB_APP_FILE, JSON).
    coordinator_token: pulumi.Output[str] | None = None
    coordinator_app: pulumi.Output[str] | None = None


def _json_object(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def file_identity(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One identity as the coordinator's files spell it: {"token"} or {"app_id", "installation_id", "private_key"}."""
    if "token" in entry:
        return {"token": entry["token"]}
    return {file_key: entry[stack_key] for stack_key, file_key in zip(STACK_APP_KEYS, FILE_APP_KEYS, strict=True)}


def stack_secrets(config: StackConfig) -> StackSecrets:
    """The secrets `load_stack_config` checked, as secret Outputs (`pulumi config set --secret ...`)."""
    stack = pulumi.Config(NAMESPACE)
    agent_secrets = stack.get_secret_object("agentSecrets") if config.agent_secret_names else None
    token = stack.get_secret("githubToken") if _holds_something(get_config(f"{NAMESPACE}:githubToken")) else None
    deploy_app = stack.get_secret_object("githubApp") if config.secrets.deploy_app else None
    if token is None and deploy_app is None:
        raise pulumi.RunError(
            f"{NAMESPACE}:githubToken is not set, nor {NAMESPACE}:githubApp: the deploy needs one of them; set it "
            "with `pulumi config set --secret githubToken TOKEN` (docs/operations.md says which permissions)"
        )
    identities = stack.get_secret_object("githubIdentities") if config.secrets.identities is not None else None
    agent_identities: pulumi.Output[str] | None = None
    coordinator_token: pulumi.Output[str] | None = None
    coordinator_app: pulumi.Output[str] | None = None
    if identities is not None:
        agent_identities = pulumi.Output.secret(identities.apply(lambda all_: _json_object(
            {name: file_identity(entry) for name, entry in all_.items() if name != COORDINATOR_IDENTITY})))
        if config.coordinator_kind == "token":
            coordinator_token = pulumi.Output.secret(identities.apply(lambda all_: str(all_[COORDINATOR_IDENTITY][
                "token"]).strip()))
        elif config.coordinator_kind == "app":
            coordinator_app = pulumi.Output.secret(identities.apply(
                lambda all_: _json_object(file_identity(all_[COORDINATOR_IDENTITY]))))
    if coordinator_token is None and coordinator_app is None:  # the deploy's own credential (warned about)
        if token is not None:
            coordinator_token = token
        elif deploy_app is not None:
            coordinator_app = pulumi.Output.secret(deploy_app.apply(lambda app: _json_object(file_identity(app))))
    return StackSecrets(
        github_token=token,
        agent_secrets=pulumi.Output.secret(agent_secrets.apply(_json_object)) if agent_secrets is not None else None,
        registry_password=stack.get_secret("registryPassword") if config.secrets.registry_password else None,
        deploy_app=deploy_app,
        agent_identities=agent_identities,
        coordinator_token=coordinator_token,
        coordinator_app=coordinator_app,
    )


def current_fleet_id(config: StackConfig) -> str:
    try:
        return fleet_id(pulumi.get_project(), pulumi.get_stack(), config.runtime)
    except StackConfigError as exc:
        raise _refused(exc) from None
