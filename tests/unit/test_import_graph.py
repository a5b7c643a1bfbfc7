"""The code's import graph: the product never reaches into the tooling, and nothing imports in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("rekey", "services", "shared")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def parsed(source: str) -> ast.Module:
    """``ast.parse``, again once after CPython 3.11.7's "AST constructor recursion depth
    mismatch": a SystemError it raises when another thread of the process builds an AST at the
    same moment (seen once in three suite runs with 6 workers; later 3.11 releases fix it)."""
    try:
        return ast.parse(source)
    except SystemError as error:
        if "recursion depth mismatch" not in str(error):
            raise
        return ast.parse(source)


def import_graph() -> dict[str, set[str]]:
    """Each module's imports of our modules, those inside functions included."""
    known = modules()

    def ours(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets: set[str] = set()
        for node in ast.walk(parsed(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(filter(None, (ours(a.name) for a in node.names)))
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets.update(filter(None, (ours(f"{node.module}.{a.name}") for a in node.names)))
        graph[name] = targets - {name}
    return graph


def cycle_from(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (found := visit(target)):
                return found
        state[module] = 2
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_module_imports_itself_in_a_circle() -> None:
    cycle = cycle_from(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_product_never_imports_the_tooling() -> None:
    product = {m: t for m, t in import_graph().items() if not m.startswith("rekey")}
    reaching = {m: sorted(t for t in targets if t.startswith("rekey")) for m, targets in product.items()}
    assert {m: t for m, t in reaching.items() if t} == {}


def test_the_shared_layer_never_imports_a_service() -> None:
    """``shared`` is what every service stands on (the bus, the stores' evidence, contracts):
    it reaching into one service would make every service depend on it."""
    shared = {m: t for m, t in import_graph().items() if m.startswith("shared")}
    reaching = {m: sorted(t for t in targets if t.startswith("services")) for m, targets in shared.items()}
    assert {m: t for m, t in reaching.items() if t} == {}


def test_a_cycle_is_found_when_there_is_one() -> None:
    assert cycle_from({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_from({"a": {"b"}, "b": set()}) is None
