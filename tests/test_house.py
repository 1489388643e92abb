"""The house rules of ``src/`` (docs/architecture.md, "Bounds"), checked on the source.

- No import cycle between the package's modules, ``TYPE_CHECKING`` imports included.
- No module over 400 lines (generated ones aside) and no function over 60 lines.
- At most 12 modules directly under ``switchboard/server/``; the rest live in packages
  that name the part of the architecture they belong to.
- The layers import only downwards (the list in ``switchboard/server/__init__.py``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "switchboard"
SERVER = PACKAGE / "server"

GENERATED = {
    "switchboard/_rest/_sync_api.py",
    "switchboard/_rest/_channels_sync.py",
    "switchboard/_rest/_project_sync.py",
    "switchboard/_rest/_tokens_sync.py",
    "switchboard/_rest/_transport_sync.py",
}
"""Written by ``_rest/_unasync.py`` from its async twin (its drift test checks it)."""

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_SERVER_MODULES = 12

LAYERS = {
    # package: the server packages it must never import (directly or by a function-level import)
    "protocol": {"fanout", "edge", "api", "service", "store", "broker", "webhooks", "cli", "node"},
    "fanout": {"edge", "api", "service", "store", "webhooks", "cli", "node"},
    "edge": {"api", "store", "cli", "node"},
    # The API serves the gateway at /ws and reads the hub's figures (console, metrics):
    # it may know the edge and the fan-out, never the store behind the service.
    "api": {"store", "cli", "node"},
    "service": {"edge", "fanout", "api", "cli", "node"},
    "store": {"edge", "fanout", "api", "service", "broker", "webhooks", "cli", "node"},
    "broker": {"edge", "fanout", "api", "service", "store", "webhooks", "cli", "node"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield module_name(path), path


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of the package that ``path`` imports, wherever the import is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            # ``from pkg import mod`` imports the module ``pkg.mod`` when there is one.
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = dict(modules())
    known = set(paths)
    graph = {name: imports_of(name, path, known) for name, path in paths.items()}
    # Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first, but a package
    # that imports its own submodules is not a cycle with them: drop parent edges.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_one() -> None:
    # So that the test above cannot pass by finding nothing.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    graph = import_graph()
    assert "switchboard.server.protocol.frames" in graph["switchboard.server.protocol.session"]


def test_no_module_over_the_bound() -> None:
    long = {
        str(path.relative_to(SRC)): n
        for _, path in modules()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
        and str(path.relative_to(SRC)) not in GENERATED
    }
    assert long == {}


def long_functions(path: Path) -> Iterator[tuple[str, int]]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            # From the def (decorators aside) to its last line.
            n = node.end_lineno - node.lineno + 1
            if n > MAX_FUNCTION_LINES:
                yield f"{path.relative_to(SRC)}:{node.lineno} {node.name}", n


def test_no_function_over_the_bound() -> None:
    long = {
        name: n
        for _, path in modules()
        if str(path.relative_to(SRC)) not in GENERATED
        for name, n in long_functions(path)
    }
    assert long == {}


def test_few_modules_directly_under_server() -> None:
    flat = sorted(p.name for p in SERVER.glob("*.py"))
    assert len(flat) <= MAX_SERVER_MODULES, flat


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layers_import_only_downwards(layer: str) -> None:
    graph = import_graph()
    prefix = f"switchboard.server.{layer}"
    banned = {f"switchboard.server.{b}" for b in LAYERS[layer]}
    wrong = {
        (name, target)
        for name, targets in graph.items()
        if name == prefix or name.startswith(prefix + ".")
        for target in targets
        if any(target == b or target.startswith(b + ".") for b in banned)
    }
    assert wrong == set()
