"""The project's import graph, read from the source (every import statement, including those
inside functions), with module names as installed (``service/app.py`` is
``magneto.service.app``)."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_dirs() -> dict[str, Path]:
    """Installed package name -> its folder in the repository (from pyproject.toml)."""
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = setup.get("package-dir", {})
    dirs = {}
    for package in setup["packages"]:
        parent = next(
            (m for m in sorted(mapped, key=len, reverse=True) if package.startswith(m)), ""
        )
        base = ROOT / mapped[parent] if parent else ROOT
        rest = package[len(parent) :].lstrip(".") if parent else package
        dirs[package] = base.joinpath(*rest.split(".")) if rest else base
    return dirs


def modules() -> dict[str, Path]:
    """Every installed module (packages by their ``__init__``) -> its file."""
    found = {}
    for package, folder in package_dirs().items():
        for path in sorted(folder.glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run (``if TYPE_CHECKING:`` blocks never do)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def lazy_exports(tree: ast.AST) -> set[str]:
    """Modules named by string in a module that imports by name (``importlib.import_module``,
    as the public face's ``__getattr__`` does)."""
    source = ast.unparse(tree)
    if "import_module" not in source:
        return set()
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def imported_names(module: str, path: Path, *, lazy: bool = True) -> set[str]:
    """Absolute names ``module`` imports (``from a import b`` gives ``a.b`` and ``a``), and
    with ``lazy`` the modules it imports by name on first attribute access."""
    package = module if path.stem == "__init__" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = lazy_exports(tree) if lazy else set()
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def graph(*, lazy: bool = True) -> dict[str, set[str]]:
    """module -> the project modules it imports (with ``lazy``, by name too).

    Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first, so those count as
    imported too, except the importer's own ancestors (already being imported by then).
    """
    known = modules()
    edges: dict[str, set[str]] = {}
    for module, path in known.items():
        own = set(_ancestors(module))
        targets: set[str] = set()
        for name in imported_names(module, path, lazy=lazy):
            if name in known:
                targets.add(name)
                targets.update(a for a in _ancestors(name) if a in known and a not in own)
        targets.discard(module)
        edges[module] = targets
    return edges


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for target in edges.get(stack.pop(), ()):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found
