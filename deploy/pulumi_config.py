"""Reads the stack's configuration from Pulumi and turns a bad setting into a plain Pulumi error.

The checks themselves live in `deploy.stack_config` (pure); this module only fetches raw text and the
secret token, so that nothing is declared before every setting has been checked.
"""

from __future__ import annotations

from collections.abc import Iterable

import pulumi
from pulumi.runtime.config import CONFIG, get_config, get_config_env

from coordinator.fleet import Role
from coordinator.redact import scrub
from deploy.stack_config import (
    CONFIG_KEYS,
    NAMESPACE,
    StackConfig,
    StackConfigError,
    check_known_keys,
    fleet_id,
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


def _refused(exc: StackConfigError) -> pulumi.RunError:
    # The message quotes values through redact.shown; scrub it once more with the token itself, in case
    # someone pasted it into another setting. RunError prints the message alone, without a traceback.
    token = get_config(f"{NAMESPACE}:githubToken")
    return pulumi.RunError(scrub(str(exc), [token] if isinstance(token, str) else []))


def load_stack_config(roles: Iterable[Role]) -> StackConfig:
    config = pulumi.Config(NAMESPACE)
    try:
        check_known_keys(namespace_keys())
        raw = {key: config.get(key) for key in CONFIG_KEYS}
        return parse_stack_config(raw, roles)
    except StackConfigError as exc:
        raise _refused(exc) from None


def github_token() -> pulumi.Output[str]:
    """The token, only ever as a secret Output (`pulumi config set --secret githubToken ...`)."""
    return pulumi.Config(NAMESPACE).require_secret("githubToken")


def current_fleet_id() -> str:
    try:
        return fleet_id(pulumi.get_project(), pulumi.get_stack())
    except StackConfigError as exc:
        raise _refused(exc) from None
