"""Every module says what it exports, and nothing outside it uses more.

Each module of the server (bridge/), of the caller helper (myrouter_client/)
and of the embedded upstream (myrouter_upstream/) lists its public names in
`__all__`. What another module, a test or the benchmark harness imports from
one of them is in that list: an underscore name, or a name a module never
declared, is a detail its owner may change without telling anyone, so a test
that leaned on it would break on a refactor that changed no behaviour. Read
from the source (AST), so the check costs no import and can name the line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bridge", "myrouter_client", "myrouter_upstream")
MODULES = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
# Every file that may import the packages: themselves, the tests, the harness, the examples.
IMPORTERS = sorted(
    path
    for folder in (*PACKAGES, "tests", "bench", "examples", "tools")
    for path in (ROOT / folder).rglob("*.py")
    if ".venv" not in path.parts and "node_modules" not in path.parts
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def declared_exports(source: str) -> list[str] | None:
    """The names of the module's top-level `__all__`, or None when it has none."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            targets, assigned = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, assigned = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            value = ast.literal_eval(assigned)
            assert isinstance(value, list | tuple), "__all__ is a literal list of names"
            return [str(name) for name in value]
    return None


def top_level_names(source: str) -> set[str]:
    """The names a module binds at its top level: definitions, assignments, imports."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).partition(".")[0] for a in node.names)
    return names


def _imported_from(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` in `path` reads from."""
    if not node.level:
        return node.module or ""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _ours(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def uses(path: Path, source: str) -> Iterator[tuple[int, str, str]]:
    """(line, module, name) for every name `source` takes from a module of ours.

    Both `from bridge.x import name` and `from bridge import x` followed by
    `x.name` (or `import bridge.x as x`) count; a name that is itself a module
    (`from bridge import mapping`) is a module, not an export, and is skipped.
    """
    aliases: dict[str, str] = {}  # local name -> module of ours it stands for
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = _imported_from(path, node)
            if not _ours(module):
                continue
            for alias in node.names:
                if _is_module(f"{module}.{alias.name}"):
                    aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
                else:
                    yield node.lineno, module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name) and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            target = aliases[node.value.id]
            if not _is_module(f"{target}.{node.attr}"):
                yield node.lineno, target, node.attr


def _is_module(name: str) -> bool:
    return name in _MODULE_NAMES


_MODULE_NAMES = frozenset(module_name(path) for path in MODULES)
_EXPORTS = {module_name(p): declared_exports(p.read_text(encoding="utf-8")) for p in MODULES}


def undeclared_uses(path: Path, source: str) -> list[str]:
    """`file:line module.name` for each use of a name its module does not export."""
    found = []
    for line, module, name in uses(path, source):
        exported = _EXPORTS.get(module) or []
        if name not in exported:
            found.append(f"{path.relative_to(ROOT)}:{line} {module}.{name}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_each_module_declares_what_it_exports(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    exported = declared_exports(source)
    assert exported is not None, f"{module_name(path)} has no __all__"
    assert len(exported) == len(set(exported)), "a name is listed twice"
    assert sorted(set(exported) - top_level_names(source)) == []  # each one exists


def test_every_name_used_across_modules_is_exported() -> None:
    found = [u for path in IMPORTERS for u in undeclared_uses(path, path.read_text("utf-8"))]
    assert found == []


def test_no_private_name_is_exported() -> None:
    private = [
        f"{module}.{name}"
        for module, exported in _EXPORTS.items()
        for name in exported or []
        if name.startswith("_") and not name.startswith("__")
    ]
    assert private == []


def test_the_export_check_can_fail() -> None:
    path = ROOT / "tests" / "unit" / "test_example.py"
    source = (
        "from bridge.config import _setting, BridgeConfig\n"
        "from bridge import mapping, errors as errs\n"
        "import bridge.sse as sse\n"
        "mapping.decode, mapping._Converter, errs._secret, sse.DONE, sse.undeclared\n"
        "from os import _exit\n"  # not ours
    )
    assert undeclared_uses(path, source) == [
        "tests/unit/test_example.py:1 bridge.config._setting",
        "tests/unit/test_example.py:4 bridge.mapping._Converter",
        "tests/unit/test_example.py:4 bridge.errors._secret",
        "tests/unit/test_example.py:4 bridge.sse.undeclared",
    ]
    relative = ROOT / "bridge" / "server.py"
    assert undeclared_uses(relative, "from .errors import _private\nfrom . import sse\n") == [
        "bridge/server.py:1 bridge.errors._private"
    ]
    assert declared_exports("x = 1\n") is None
    assert top_level_names("import a.b\nfrom c import d as e\nf: int = 1\ndef g(): h = 1\n") == {
        "a",
        "e",
        "f",
        "g",
    }
    assert declared_exports("__all__ = ['a', 'b']\n") == ["a", "b"]


def _module_stems(package: str) -> set[str]:
    return {p.stem for p in (ROOT / package).glob("*.py") if not p.stem.startswith("__")}


def test_the_module_maps_name_every_module() -> None:
    """bridge/__init__.py lists the server's modules, docs/development.md's layout names them
    and the embedded upstream's: a module added, renamed or removed shows here."""
    docstring = ast.get_docstring(ast.parse((ROOT / "bridge" / "__init__.py").read_text("utf-8")))
    assert docstring is not None
    listed = {line.split("``")[1] for line in docstring.splitlines() if line.startswith("* ``")}
    assert listed == _module_stems("bridge")
    readme = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    layout = readme[readme.index("\nLayout") : readme.index("A module with tests of both kinds")]
    for package in ("bridge", "myrouter_upstream"):
        unnamed = sorted(m for m in _module_stems(package) if f"`{m}`" not in layout)
        assert unnamed == [], package
