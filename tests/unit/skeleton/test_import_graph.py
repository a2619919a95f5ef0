"""The SDK's import graph has no cycle, counting imports inside functions too.

A function-level import hides a cycle from the interpreter but not from a reader:
lower layers never import upper ones. Imports under `if TYPE_CHECKING:` are for
annotations only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SDK = Path(__file__).resolve().parents[3] / "sdk"


def module_name(path: Path) -> str:
    parts = path.relative_to(SDK).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted((SDK / "durakube").rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name | ast.Attribute) and ast.unparse(node.test).endswith(
        "TYPE_CHECKING")


def imported_modules(tree: ast.AST) -> set[str]:
    """The durakube modules that `tree` imports, wherever the import statement sits."""
    found: set[str] = set()
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from package import module` imports the module; `from module import name`, the module.
            found.update(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES
                         else node.module for alias in node.names)
        pending.extend(ast.iter_child_nodes(node))
    return {name for name in found if name in MODULES}


GRAPH = {name: imported_modules(ast.parse(path.read_text())) - {name}
         for name, path in MODULES.items()}


def find_cycle() -> list[str] | None:
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name):], name]
        if name in done:
            return None
        for target in sorted(GRAPH[name]):
            cycle = visit(target, [*path, name])
            if cycle is not None:
                return cycle
        done.add(name)
        return None

    for name in sorted(GRAPH):
        cycle = visit(name, [])
        if cycle is not None:
            return cycle
    return None


def test_the_sdk_has_no_import_cycle() -> None:
    assert find_cycle() is None, " -> ".join(find_cycle() or [])


@pytest.mark.parametrize("leaf", ["durakube.current", "durakube.errors"])
def test_leaves_import_nothing_of_durakube(leaf: str) -> None:
    assert GRAPH[leaf] == set()


def test_the_task_registry_sits_below_the_step_engine() -> None:
    assert not GRAPH["durakube.tasks"] & {"durakube.context", "durakube.waiting",
                                          "durakube.triggering", "durakube.worker"}
