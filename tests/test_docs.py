"""The README documents every setting the code reads: the runtime's variables and the stack's keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.settings import VARIABLES
from deploy.stack_config import CONFIG_KEYS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(VARIABLES))
def test_every_runtime_variable_is_in_the_readme_table(name: str) -> None:
    assert f"| `{name}` |" in README


@pytest.mark.parametrize("key", [*CONFIG_KEYS, "githubToken"])
def test_every_stack_key_is_in_the_readme_table(key: str) -> None:
    assert f"| `{key}` |" in README


def test_the_readme_names_the_two_set_up_commands() -> None:
    assert "scripts/up      # deploy" in README and "scripts/test    # the whole test suite" in README
