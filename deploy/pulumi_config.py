"""Reads the stack's configuration from Pulumi and turns a bad setting into a plain Pulumi error.

The checks themselves live in `deploy.stack_config` (pure); this module only fetches raw text and the
secret token, so that nothing is declared before every setting has been checked.
"""

from __future__ import annotations

from collections.abc import Iterable

import pulumi

from coordinator.fleet import Role
from deploy.stack_config import CONFIG_KEYS, NAMESPACE, StackConfig, StackConfigError, fleet_id, parse_stack_config


def load_stack_config(roles: Iterable[Role]) -> StackConfig:
    config = pulumi.Config(NAMESPACE)
    raw = {key: config.get(key) for key in CONFIG_KEYS}
    try:
        return parse_stack_config(raw, roles)
    except StackConfigError as exc:
        # RunError prints the message alone, without a Python traceback.
        raise pulumi.RunError(str(exc)) from None


def github_token() -> pulumi.Output[str]:
    """The token, only ever as a secret Output (`pulumi config set --secret githubToken ...`)."""
    return pulumi.Config(NAMESPACE).require_secret("githubToken")


def current_fleet_id() -> str:
    try:
        return fleet_id(pulumi.get_project(), pulumi.get_stack())
    except StackConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
