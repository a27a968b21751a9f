"""Runs `__main__.py` under Pulumi's unit-test mocks and records every resource it declares.

No Pulumi CLI or provider plugin is involved: the mocks answer each registration with the inputs they were
given, plus what the provider would add: a docker.Image's `repoDigest` (the local image id, or the pushed
manifest's reference when it is pushed) and the auto-generated name of a swarm secret or config declared
without one (`<resource name>-<suffix>`, as pulumi-docker's auto-naming gives it). What is recorded is each
registration as the program sends it to the engine (the RPC struct), where a secret is marked exactly where it
sits: the mocks' own `args.inputs` would lift a nested secret up to its top-level property.
"""

from __future__ import annotations

import hashlib
import json
import runpy
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "agent-fleet"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # how the mocks mark a secret value
TOKEN = "fake-token-TESTTOKENtesttoken0123456789"
# Keys whose values the harness hands over as secrets, as `pulumi config set --secret` stores them.
SECRET_KEYS = ("githubToken", "githubApp", "githubIdentities", "agentSecrets", "registryPassword")
AUTONAME_SUFFIX = "a1b2c3d"


def image_digest(image_name: str) -> str:
    """The digest the mocks give the image built under `image_name` (distinct per name)."""
    return "sha256:" + hashlib.sha256(image_name.encode()).hexdigest()


def image_ref(image_name: str, pushed: bool) -> str:
    """What pulumi-docker's `repoDigest` is: the local image id, or `<repository>@<manifest digest>` once pushed."""
    repository = image_name.rsplit(":", 1)[0] if ":" in image_name.rsplit("/", 1)[-1] else image_name
    return f"{repository}@{image_digest(image_name)}" if pushed else image_digest(image_name)

BASE_CONFIG: dict[str, str] = {
    "repository": "acme/shop",
    "healthUrl": "https://shop.acme.test/healthz",
    "requiredChecks": '["test", "lint"]',
}


@dataclass(frozen=True)
class Declared:
    typ: str
    name: str
    inputs: Mapping[str, Any]  # as sent to the engine; numbers are floats
    parent: str
    provider: str
    delete_before_replace: bool
    aliases: tuple[Mapping[str, Any], ...] = ()  # alias specs, as sent: {"spec": {"type": ..., "name": ...}}


@dataclass(frozen=True)
class ProgramRun:
    resources: tuple[Declared, ...]

    def of_type(self, typ: str) -> list[Declared]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name: str | None = None) -> Declared:
        found = [r for r in self.of_type(typ) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {typ} {name or ''}, found {[r.name for r in found]}"
        return found[0]


class ProgramFailed(Exception):
    """The program raised; `declared` is what it had registered by then."""

    def __init__(self, error: BaseException, declared: tuple[Declared, ...]) -> None:
        super().__init__(str(error))
        self.error = error
        self.declared = declared


class _WireMonitor(MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.declared: list[Declared] = []

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method, named as in MockMonitor
        if request.type != "pulumi:pulumi:Stack":
            inputs = json_format.MessageToDict(request.object)
            aliases = tuple(json_format.MessageToDict(alias) for alias in request.aliases)
            self.declared.append(
                Declared(request.type, request.name, inputs, request.parent, request.provider,
                         request.deleteBeforeReplace, aliases)
            )
        return super().RegisterResource(request)


def project_defaults() -> dict[str, str]:
    """Pulumi.yaml's defaults, as the CLI hands them to the program for every key a stack leaves unset: strings
    as they are, other values as JSON; never marked secret."""
    schema = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    return {key: entry["default"] if isinstance(entry["default"], str) else json.dumps(entry["default"])
            for key, entry in schema.items() if isinstance(entry, dict) and "default" in entry}


AUTONAMED = ("docker:index/secret:Secret", "docker:index/serviceConfig:ServiceConfig")


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = dict(args.inputs)
        if args.typ == "docker:index/image:Image":
            outputs["repoDigest"] = image_ref(str(args.inputs["imageName"]), pushed=not args.inputs.get("skipPush"))
        if args.typ in AUTONAMED and not args.inputs.get("name"):
            outputs["name"] = f"{args.name}-{AUTONAME_SUFFIX}"
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def run_program(
    *, stack: str = "prod", preview: bool = True, config: Mapping[str, str | None] | None = None,
    token: str | None = TOKEN, roster: Sequence[Any] | None = None, plain_keys: Sequence[str] = (),
) -> ProgramRun:
    """Run the program once; `config` entries (without namespace) replace BASE_CONFIG's, None removes one, and
    Pulumi.yaml's defaults fill in every key left unset, as the CLI does.

    `roster` replaces roster.py's ROSTER for this run; `plain_keys` are secret keys handed over in plain text,
    as a `pulumi config set` without --secret leaves them.
    """
    settings = {**BASE_CONFIG, **(config or {})}
    values = {f"{PROJECT}:{key}": value for key, value in settings.items() if value is not None}
    if token is not None:
        values[f"{PROJECT}:githubToken"] = token
    # Secret only where the stack set the value itself with --secret, as the engine marks it.
    secret_keys = [f"{PROJECT}:{key}" for key in SECRET_KEYS if key not in plain_keys and f"{PROJECT}:{key}" in values]
    for key, default in project_defaults().items():
        values.setdefault(f"{PROJECT}:{key}", default)
    monitor = _WireMonitor(_Mocks())
    pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    pulumi.runtime.set_all_config(values, secret_keys=secret_keys)
    saved = sys.modules.get("roster")
    if roster is not None:
        module = types.ModuleType("roster")
        module.ROSTER = tuple(roster)  # type: ignore[attr-defined]
        sys.modules["roster"] = module
    try:
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")))
    except Exception as exc:
        raise ProgramFailed(exc, tuple(monitor.declared)) from exc
    finally:
        if roster is not None:
            if saved is None:
                sys.modules.pop("roster", None)
            else:
                sys.modules["roster"] = saved
    return ProgramRun(tuple(monitor.declared))


def is_secret(value: object) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270"


def plain_strings(value: object, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in `value` that is NOT inside a secret wrapper, with its path."""
    if is_secret(value):
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield path + f".{key}", str(key)
            yield from plain_strings(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from plain_strings(item, f"{path}[{index}]")


def secret_paths(value: object, path: str = "") -> Iterator[tuple[str, object]]:
    """Every secret wrapper in `value`, with its path and its revealed value."""
    if is_secret(value):
        assert isinstance(value, dict)
        yield path, value.get("value")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from secret_paths(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from secret_paths(item, f"{path}[{index}]")
