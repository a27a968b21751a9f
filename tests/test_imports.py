"""The coordinator's imports, read from its source: they run downhill, with no circle among them.

A module that imports a module that imports it back works only while each side's imports happen to run
in a lucky order (or hide inside functions); shared vocabulary belongs at the bottom instead. The graph is
built with `ast` from every file under coordinator/, function-local and TYPE_CHECKING imports included,
so an import tucked away to break a circle is still seen.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "coordinator"
TOP = "coordinator.cli"
ENTRY = "coordinator.__main__"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, modules: frozenset[str], *, prefix: str = PACKAGE) -> set[str]:
    """The modules among `modules` (or, for `prefix` outside the package, any module under it) `tree` imports;
    `from package import submodule` counts as importing the submodule."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            found |= {name if name in modules else node.module for name in names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name == prefix or name.startswith(prefix + ".")}


@cache
def import_graph() -> dict[str, frozenset[str]]:
    """Each coordinator module and the coordinator modules it imports (itself left out)."""
    files = {module_name(path): path for path in sorted((ROOT / PACKAGE).rglob("*.py"))}
    modules = frozenset(files)
    return {
        name: frozenset(imported_modules(ast.parse(path.read_text(encoding="utf-8")), modules) - {name})
        for name, path in files.items()
    }


def find_cycle(graph: dict[str, frozenset[str]]) -> list[str] | None:
    """One circle of imports as the path around it (first module repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once every path from it is explored
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == "open":
                return [*path[path.index(imported):], imported]
            if imported not in state and (circle := visit(imported)) is not None:
                return circle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (circle := visit(module)) is not None:
            return circle
    return None


def test_find_cycle_finds_a_circle_and_only_a_circle() -> None:
    """The checker itself: a circle through three modules is found, a diamond is not one."""
    circle = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"})}
    assert find_cycle(circle) == ["a", "b", "c", "a"]
    diamond = {"a": frozenset({"b", "c"}), "b": frozenset({"d"}), "c": frozenset({"d"}), "d": frozenset()}
    assert find_cycle(diamond) is None


def test_the_graph_sees_imports_inside_functions_and_type_checking() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from coordinator import report\n"
        "if TYPE_CHECKING:\n    from coordinator.runtime import AgentRuntime\n"
        "def f():\n    from coordinator.status import run_status\n    import coordinator.cli\n"
    )
    modules = frozenset({"coordinator.report", "coordinator.runtime", "coordinator.status", "coordinator.cli"})
    assert imported_modules(ast.parse(source), modules) == modules


def test_the_coordinators_imports_have_no_circle() -> None:
    graph = import_graph()
    assert {"coordinator.report", "coordinator.cli", "coordinator.runtimes.docker"} <= set(graph)
    assert find_cycle(graph) is None, "a circle of imports: " + " -> ".join(find_cycle(graph) or [])


def test_the_command_line_is_the_top_imported_by_nobody() -> None:
    """cli.py runs the commands; no command or helper reaches back up into it (`__main__` is how it is run)."""
    importers = sorted(name for name, imported in import_graph().items() if TOP in imported)
    assert importers == [ENTRY]


def test_the_coordinator_never_imports_the_pulumi_program() -> None:
    """deploy/ builds on the coordinator's vocabulary (roster, settings); the coordinator knows nothing of it."""
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert not imported_modules(tree, frozenset(), prefix="deploy"), path
