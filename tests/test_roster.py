"""roster.py against the guide's roster table, and the refusal of bad roster entries."""

from __future__ import annotations

import dataclasses
import re

import pytest

from coordinator.fleet import Department, Mode, Role, RosterError, validate_roster
from roster import ROSTER

# Transcribed from the guide's "Roster Configuration (38 instances)" table: (title, key, count, dept, mode).
GUIDE_TABLE = [
    ("Product Designer", "product_designer", 1, "Product", "Thinker"),
    ("System Architect", "system_architect", 1, "Product", "Thinker"),
    ("UI/UX Designer", "uiux_designer", 1, "Product", "Thinker"),
    ("UI Builder", "ui_builder", 3, "Engineering", "Task-driven"),
    ("API Builder", "api_builder", 3, "Engineering", "Task-driven"),
    ("Fullstack Builder", "fullstack_builder", 3, "Engineering", "Task-driven"),
    ("Unit Tester", "unit_tester", 2, "Quality", "Self-directed"),
    ("E2E Tester", "e2e_tester", 2, "Quality", "Self-directed"),
    ("Security Auditor", "security_auditor", 1, "Security", "Self-directed"),
    ("Dependency Manager", "dependency_manager", 1, "Security", "Self-directed"),
    ("Frontend Optimizer", "frontend_optimizer", 1, "Performance", "Self-directed"),
    ("Backend Optimizer", "backend_optimizer", 1, "Performance", "Self-directed"),
    ("Mobile Optimizer", "mobile_optimizer", 1, "Performance", "Self-directed"),
    ("Refactorer", "refactorer", 1, "Code Health", "Self-directed"),
    ("Type Hardener", "type_hardener", 1, "Code Health", "Self-directed"),
    ("Code Cleaner", "code_cleaner", 1, "Code Health", "Self-directed"),
    ("Web Standards Engineer", "web_standards_engineer", 1, "Standards", "Self-directed"),
    ("Documentation Engineer", "documentation_engineer", 1, "Standards", "Self-directed"),
    ("CI/CD Engineer", "cicd_engineer", 1, "Infrastructure", "Self-directed"),
    ("Code Reviewer", "code_reviewer", 4, "Gates", "Reviewer"),
    ("Sentinel", "sentinel", 1, "Gates", "Sentinel"),
    ("Growth Strategist", "growth_strategist", 1, "Growth", "Thinker"),
    ("Growth Engineer", "growth_engineer", 2, "Growth", "Task-driven"),
    ("Content Creator", "content_creator", 2, "Growth", "Self-directed"),
    ("Analytics Engineer", "analytics_engineer", 1, "Growth", "Self-directed"),
]


def test_roster_is_the_guides_table_row_for_row() -> None:
    actual = [(r.title, r.key, r.count, r.department.value, r.mode.value) for r in ROSTER]
    assert actual == GUIDE_TABLE


def test_roster_has_25_roles_and_38_instances() -> None:
    assert len(ROSTER) == 25
    assert sum(role.count for role in ROSTER) == 38


def test_roles_are_frozen_typed_values() -> None:
    role = ROSTER[0]
    assert isinstance(role.mode, Mode) and isinstance(role.department, Department)
    with pytest.raises(dataclasses.FrozenInstanceError):
        role.count = 5  # type: ignore[misc]


@pytest.mark.parametrize("role", ROSTER, ids=lambda role: role.key)
def test_each_brief_is_one_or_two_sentences_that_say_when_to_exit(role: Role) -> None:
    sentences = [s for s in re.split(r"(?<=\.)\s+", role.brief.strip()) if s]
    assert 1 <= len(sentences) <= 2, role.brief
    assert "Exit when" in role.brief  # the guide: agents exit when nothing meaningful exists


def _role(**changes: object) -> Role:
    fields: dict[str, object] = {
        "key": "api_builder", "title": "API Builder", "count": 3,
        "department": Department.ENGINEERING, "mode": Mode.TASK_DRIVEN, "brief": "Builds APIs.",
    }
    fields.update(changes)
    return Role(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "field", "value"),
    [
        ({"key": "API-builder"}, "key", "API-builder"),
        ({"key": "1builder"}, "key", "1builder"),
        ({"count": -1}, "count", "-1"),
        ({"brief": "   "}, "brief", "'   '"),
        ({"brief": ""}, "brief", "''"),
        ({"mode": "Thinker"}, "mode", "Thinker"),
        ({"department": "Sales"}, "department", "Sales"),
    ],
)
def test_bad_role_is_refused_naming_role_and_field(changes: dict[str, object], field: str, value: str) -> None:
    with pytest.raises(RosterError) as refused:
        _role(**changes)
    message = str(refused.value)
    assert f"field {field!r}" in message and value in message
    assert repr(changes.get("key", "api_builder")) in message


def test_duplicate_keys_are_refused_naming_the_role() -> None:
    with pytest.raises(RosterError, match=r"role 'api_builder': field 'key'.*unique"):
        validate_roster([_role(), _role(title="Another API Builder")])
