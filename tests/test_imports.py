"""No import cycle in src/: the graph is read from the source with ``ast``, not from the
interpreter, so lazy imports inside functions count as edges too (they are how a cycle
hides until the wrong module is imported first)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "jmds_pipeline"


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, modules: set[str], src: Path = SRC) -> set[str]:
    """The project modules ``path`` imports, anywhere in the file (relative ones resolved).

    ``from a.b import c`` names module ``a.b.c`` when that is a module, else ``a.b``.
    ``typing.TYPE_CHECKING`` blocks are skipped: they never run.
    """
    name = module_name(path, src)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf8"), filename=str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for body in node.body for child in ast.walk(body))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            # `import a.b.c` also runs a/__init__ and a/b/__init__, but those are edges of
            # their own only if they import back; the module itself is the edge here.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module → the project modules it imports, for every module under ``src``."""
    paths = sorted((src / PACKAGE).rglob("*.py"))
    modules = {module_name(path, src) for path in paths}
    return {module_name(path, src): imported_modules(path, modules, src) for path in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a closed path [a, b, ..., a], or None (depth-first)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == 1:
                return [*path[path.index(successor):], successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_on_hand_made_graphs() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None  # a diamond
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y"}, "y": {"y2"}, "y2": {"y"}}) == ["y", "y2", "y"]


def test_graph_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import leaf\n")
    (package / "sub" / "leaf.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from jmds_pipeline import top\n"
        "def f():\n    from ..top import g\n    return g\n"
    )
    (package / "top.py").write_text("import jmds_pipeline.sub.leaf\n")
    graph = import_graph(tmp_path)
    assert graph[f"{PACKAGE}.sub"] == {f"{PACKAGE}.sub.leaf"}
    assert graph[f"{PACKAGE}.sub.leaf"] == {f"{PACKAGE}.top"}  # the lazy one, not the
    assert graph[f"{PACKAGE}.top"] == {f"{PACKAGE}.sub.leaf"}  # TYPE_CHECKING one
    assert find_cycle(graph) == [f"{PACKAGE}.sub.leaf", f"{PACKAGE}.top", f"{PACKAGE}.sub.leaf"]


def test_src_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50, "the walker found too few modules: is SRC right?"
    assert f"{PACKAGE}.config" in graph[f"{PACKAGE}.comparison.methods"]  # it sees edges
    cycle = find_cycle(graph)
    if cycle:
        pytest.fail("import cycle: " + " → ".join(cycle))
