"""The import graph of ``src/cacheport`` has no cycle: data flows config + context → plan → render, and no
module reaches back, not even for a type (``TYPE_CHECKING``) or inside a function."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import cacheport

SRC = Path(cacheport.__file__).parent
#: The core chain and what plugins build on. Here even an import inside a function counts.
CORE = {"cacheport", "cacheport.records", "cacheport.entry", "cacheport.errors", "cacheport.masking",
        "cacheport.config", "cacheport.options", "cacheport.values", "cacheport.context", "cacheport.trust",
        "cacheport.plan", "cacheport.render",
        "cacheport.hookspecs", "cacheport.plugins", "cacheport.refs", "cacheport.kit",
        "cacheport.records.job", "cacheport.records.entries", "cacheport.records.store", "cacheport.records.plan",
        "cacheport.records.hooks"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = ("cacheport", *path.relative_to(SRC).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(tree: ast.AST, *, nested: bool) -> Iterator[str]:
    """What a module imports, by name: at module level (``if TYPE_CHECKING:`` and ``try:`` blocks included),
    and with ``nested`` also inside functions and classes."""
    body: list[ast.stmt] = list(getattr(tree, "body", []))
    while body:
        node = body.pop()
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                # `from cacheport import hookspecs` is an edge to the submodule, not to the package.
                yield f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not nested:
            continue
        else:
            body.extend(child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt))


def _graph(*, nested: bool) -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        found = set(_imports(ast.parse(path.read_text()), nested=nested))
        graph[name] = {m for m in found if m in MODULES and m != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_type_only_and_nested_imports() -> None:
    # The test itself: it must see what it is meant to see, or an empty graph would pass.
    assert "cacheport.oci.auth" in _graph(nested=False)["cacheport.kit"]  # under TYPE_CHECKING
    assert "cacheport.trust" in _graph(nested=True)["cacheport.plan"]  # inside _decide_trust
    assert "cacheport.trust" not in _graph(nested=False)["cacheport.plan"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_module_imports_one_that_imports_it_even_for_types() -> None:
    assert _cycle(_graph(nested=False)) is None


@pytest.mark.parametrize("nested", [False, True], ids=["module level", "with nested imports"])
def test_the_core_has_no_import_cycle(nested: bool) -> None:
    graph = _graph(nested=nested)
    assert _cycle({name: graph[name] & CORE for name in CORE}) is None


def test_records_and_masking_are_leaves_of_the_core() -> None:
    graph = _graph(nested=True)
    assert graph["cacheport.masking"] == set()
    records = {name for name in graph if name.split(".")[:2] == ["cacheport", "records"]}
    assert set().union(*(graph[name] for name in records)) - records <= {"cacheport.entry", "cacheport.errors"}
