"""The coordinator's imports, read from its source: they run downhill, with no circle among them.

A module that imports a module that imports it back works only while each side's imports happen to run
in a lucky order (or hide inside functions); shared vocabulary belongs at the bottom instead. The graph is
built with `ast` from every file under coordinator/, function-local and TYPE_CHECKING imports included,
so an import tucked away to break a circle is still seen.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "coordinator"
TOP = "coordinator.cli"
ENTRY = "coordinator.__main__"
DESIGN = ROOT / "docs" / "design.md"
LAYERS_HEADING = "## The modules and their layers"
# The Pulumi program and the roster: above the coordinator, built on its lowest layers.
PROGRAM = [ROOT / "__main__.py", ROOT / "roster.py", *sorted((ROOT / "deploy").glob("*.py"))]
PROGRAM_MAY_IMPORT_UP_TO = 2


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


@cache
def documented_layers() -> dict[str, int]:
    """Each module's layer, from the table in docs/design.md: the row's number, the modules in backticks."""
    text = DESIGN.read_text(encoding="utf-8")
    section = text.split(LAYERS_HEADING, 1)[1].split("\n## ", 1)[0]
    layers: dict[str, int] = {}
    for row in re.findall(r"^\| (\d+) [^|]*\| ([^|]*) \|", section, re.MULTILINE):
        for module in re.findall(r"`([\w.]+)`", row[1]):
            assert f"{PACKAGE}.{module}" not in layers, f"{module} is in two rows of the table"
            layers[f"{PACKAGE}.{module}"] = int(row[0])
    return layers


def test_every_module_is_in_the_documented_layers_and_only_those() -> None:
    """Package markers that import nothing (`coordinator/__init__.py`, `steps/__init__.py`, ...) need no row."""
    graph = import_graph()
    unlisted = {name for name, imported in graph.items() if name not in documented_layers()
                and not (imported == frozenset() and (ROOT / name.replace(".", "/") / "__init__.py").exists())}
    assert not unlisted, f"docs/design.md's table of layers does not name {sorted(unlisted)}"
    gone = set(documented_layers()) - set(graph)
    assert not gone, f"docs/design.md's table of layers names modules that do not exist: {sorted(gone)}"


def uphill_imports(graph: dict[str, frozenset[str]], layers: dict[str, int]) -> list[str]:
    """Each import from a module to one of a higher layer, worded for the failure message."""
    return [
        f"{name} (layer {layers[name]}) imports {imported} (layer {layers[imported]})"
        for name, imports in sorted(graph.items()) if name in layers
        for imported in sorted(imports) if imported in layers and layers[imported] > layers[name]
    ]


def test_imports_run_down_the_documented_layers() -> None:
    uphill = uphill_imports(import_graph(), documented_layers())
    assert not uphill, "imports against docs/design.md's layers:\n" + "\n".join(uphill)


@pytest.mark.parametrize("path", PROGRAM, ids=lambda path: str(path.relative_to(ROOT)))
def test_the_pulumi_program_builds_on_the_lowest_layers(path: Path) -> None:
    layers = documented_layers()
    imported = imported_modules(ast.parse(path.read_text(encoding="utf-8")), frozenset(layers))
    higher = sorted(name for name in imported if layers.get(name, 0) > PROGRAM_MAY_IMPORT_UP_TO)
    assert not higher, f"{path.name} imports {higher}, above layer {PROGRAM_MAY_IMPORT_UP_TO}"


def test_an_import_up_the_layers_is_caught() -> None:
    """The check itself, on the documented layers: `report` importing `cli` is uphill, `cli` importing `report` not."""
    layers = documented_layers()
    assert uphill_imports({"coordinator.report": frozenset({TOP})}, layers) == [
        f"coordinator.report (layer {layers['coordinator.report']}) imports {TOP} (layer 6)"]
    assert uphill_imports({TOP: frozenset({"coordinator.report"})}, layers) == []
