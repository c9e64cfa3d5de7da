"""Rules about the server's modules as a whole, read from their source.

No module of bridge/ writes the process's environment (configuration is one
object passed in, never a variable one module sets for another to read), and
no two modules import each other, directly or through others, counting the
imports inside functions: a lazy import hides a cycle, it does not remove it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "bridge"
MODULES = sorted(PACKAGE.rglob("*.py"))

_ENVIRON_WRITES = frozenset(
    {"pop", "popitem", "update", "setdefault", "clear", "__setitem__", "__delitem__"}
)


def _is_environ(node: ast.expr) -> bool:
    """`os.environ` or a bare `environ` (imported from os)."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ"
    return isinstance(node, ast.Name) and node.id == "environ"


def environment_writes(source: str) -> list[int]:
    """Line numbers where `source` changes os.environ (or calls putenv/unsetenv)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign | ast.Delete):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        written = any(isinstance(t, ast.Subscript) and _is_environ(t.value) for t in targets)
        if written and isinstance(node, ast.stmt):
            lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method, owner = node.func.attr, node.func.value
            if (method in _ENVIRON_WRITES and _is_environ(owner)) or method in (
                "putenv",
                "unsetenv",
            ):
                lines.append(node.lineno)
    return lines


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: frozenset[str]) -> set[str]:
    """The modules of `known` that `path` imports anywhere, function bodies included."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            candidates = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c in known and c != name)
    return found


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The import cycles of `graph`: each a path that returns to where it started."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> Iterator[list[str]]:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                yield [*path[path.index(target) :], target]
            elif target not in state:
                yield from visit(target, [*path, target])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            found.extend(visit(start, [start]))
    return found


@pytest.mark.parametrize("path", MODULES, ids=[_module_name(p) for p in MODULES])
def test_no_module_of_the_server_writes_the_environment(path: Path) -> None:
    assert environment_writes(path.read_text(encoding="utf-8")) == []


def test_the_environment_check_can_fail() -> None:
    source = (
        "import os\nfrom os import environ\n"
        "os.environ['A'] = '1'\n"
        "environ['B'] += 'x'\n"
        "del os.environ['C']\n"
        "os.environ.pop('D', None)\n"
        "os.environ.update(E='1')\n"
        "os.putenv('F', '1')\n"
        "value = os.environ.get('G')\n"  # reading is fine
        "env = {**os.environ, 'H': '1'}\n"  # so is a copy for a child process
    )
    assert environment_writes(source) == [3, 4, 5, 6, 7, 8]


def test_no_import_cycle_between_the_server_modules() -> None:
    known = frozenset(_module_name(path) for path in MODULES)
    graph = {_module_name(path): imports_of(path, known) for path in MODULES}
    assert graph["bridge.cli"]  # the graph is read at all
    assert cycles(graph) == []


def test_the_cycle_check_can_fail() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
