"""Report import cycles between mlops_spark modules (module-level and function-level imports).

    python scripts/import_cycles.py          # exit 1 and print each cycle when there is one

A package's ``__init__`` that re-exports its modules counts as importing them.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "mlops_spark"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if not name.startswith(PACKAGE):
                continue
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in (ROOT / PACKAGE).rglob("*.py")}
    modules = set(files)
    edges = {m: imports(p, modules) - {m} for m, p in files.items()}
    # importing a.b.c runs a/__init__ and a/b/__init__ first; a module inside a package is
    # already past its own package's __init__, so only other packages' count
    for m in list(edges):
        deps = {parent for dep in edges[m] for parent in _with_parents(dep, modules)}
        own = {d for d in deps if dep_is_ancestor(d, m) and d not in imports_direct(files[m], d)}
        edges[m] = deps - own - {m}
    return edges


def dep_is_ancestor(dep: str, module: str) -> bool:
    return module.startswith(dep + ".")


def imports_direct(path: Path, package: str) -> set[str]:
    """{package} when ``path`` imports names from ``package`` itself (its __init__)."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == package and node.level == 0:
            return {package}
    return set()


def _with_parents(name: str, modules: set[str]) -> set[str]:
    out = {name}
    parts = name.split(".")
    for i in range(1, len(parts)):
        parent = ".".join(parts[:i])
        if parent in modules and parent != PACKAGE:
            out.add(parent)
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    found = cycles(graph())
    for comp in found:
        print("import cycle:", " <-> ".join(comp))
    sys.exit(1 if found else 0)
