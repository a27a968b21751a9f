"""The docs against the code: the generated configuration reference is current and names every setting."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from coordinator.settings import VARIABLES
from deploy.stack_config import KNOWN_KEYS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# --- the generated reference ---------------------------------------------------------------------


def reference_script() -> ModuleType:
    """scripts/reference as a module (it has no .py suffix), so its `render` runs in this process."""
    path = ROOT / "scripts" / "reference"
    loader = importlib.machinery.SourceFileLoader("scripts_reference", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # its dataclasses look their module up there
    loader.exec_module(module)
    return module


def test_the_configuration_reference_is_the_generators_output() -> None:
    expected = reference_script().render()
    assert text(CONFIGURATION) == expected, (
        "docs/configuration.md is out of date: run `scripts/reference > docs/configuration.md` and commit it"
    )


@pytest.mark.parametrize("name", sorted(VARIABLES))
def test_every_runtime_variable_is_in_the_configuration_reference(name: str) -> None:
    assert f"| `{name}` |" in text(CONFIGURATION)


@pytest.mark.parametrize("key", KNOWN_KEYS)
def test_every_stack_key_is_in_the_configuration_reference(key: str) -> None:
    assert f"| `{key}` |" in text(CONFIGURATION)


# --- the README ----------------------------------------------------------------------------------


def test_the_readme_names_the_two_set_up_commands() -> None:
    assert "scripts/up      # deploy" in text(README) and "scripts/test    # the whole test suite" in text(README)
