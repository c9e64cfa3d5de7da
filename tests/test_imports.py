"""The server's modules form layers: no import cycle among them, lazy imports included.

A request walks down (service -> upstream -> events -> transport) and its
answer comes back as return values; no module imports one that imports it.
Read from the source with ast, so an import inside a function counts too.
"""

from __future__ import annotations

import ast

from support import REPO_ROOT

PACKAGE = REPO_ROOT / "bridge"


def _module_name(path_parts: tuple[str, ...]) -> str:
    parts = list(path_parts)
    parts[-1] = parts[-1].removesuffix(".py")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """bridge module -> the bridge modules it imports anywhere in its source."""
    files = {
        _module_name(path.relative_to(REPO_ROOT).parts): path for path in PACKAGE.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                candidates = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            imported.update(c for c in candidates if c in files and c != name)
        graph[name] = imported
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for module in graph[todo.pop()] - seen:
            seen.add(module)
            todo.append(module)
    return seen


def a_cycle(graph: dict[str, set[str]], modules: set[str]) -> list[str] | None:
    """One import cycle among `modules`, as the path that closes it, or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for imported in sorted(graph[module] & modules):
            found = visit(imported, [*path, module])
            if found:
                return found
        done.add(module)
        return None

    for module in sorted(modules):
        found = visit(module, [])
        if found:
            return found
    return None


def test_the_servers_modules_import_each_other_without_a_cycle():
    graph = import_graph()
    modules = reachable(graph, "bridge.server")
    assert {
        "bridge.service",
        "bridge.admission",
        "bridge.calls",
        "bridge.upstream",
        "bridge.events",
        "bridge.transport",
        "bridge.mapping",
        "bridge.observe",
        "bridge.metrics",
    } <= modules
    cycle = a_cycle(graph, modules)
    assert cycle is None, " -> ".join(cycle or ())


def test_a_cycle_would_be_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert a_cycle(graph, set(graph)) == ["a", "b", "c", "a"]
    assert a_cycle(graph, {"a", "b", "d"}) is None


def test_the_answer_goes_back_up_as_return_values_never_as_imports():
    graph = import_graph()
    below = {"bridge.upstream", "bridge.events", "bridge.transport", "bridge.calls"}
    for module in below:
        assert not graph[module] & {"bridge.service", "bridge.server"}, module
    assert "bridge.upstream" not in graph["bridge.events"]
