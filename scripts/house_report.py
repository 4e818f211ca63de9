"""The package's shape, read from its source: modules, import cycles, largest functions.

For the closing notes of the refactor issue ("One straight house"): run it on two checkouts
to get the before/after tables. Imports are counted wherever they are written (module level,
inside functions, under ``if TYPE_CHECKING``), as ``tests/test_layers.py`` counts them; that
test reads the graph with the functions here.

Usage::

    python scripts/house_report.py                      # this checkout's bayesgmm/
    python scripts/house_report.py /tmp/before/bayesgmm  # another checkout
    git archive 385b15d | tar -x -C /tmp/before          # e.g. the tree before wave 2
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent.parent / "bayesgmm"


def module_path(package: Path, module: str) -> Path:
    """The file of ``module`` (``density``, ``em.driver``, ``em`` or ``__init__``)."""
    if module == "__init__":
        return package / "__init__.py"
    parts = module.split(".")
    if (package.joinpath(*parts) / "__init__.py").exists():
        return package.joinpath(*parts) / "__init__.py"
    return package.joinpath(*parts[:-1]) / f"{parts[-1]}.py"


def module_names(package: Path) -> list[str]:
    """Every module of the package: ``density``, ``em`` (a subpackage's ``__init__``),
    ``em.driver``; ``__init__`` is the package root."""
    names = []
    for p in package.rglob("*.py"):
        rel = p.relative_to(package).with_suffix("").parts
        if rel[-1] == "__init__" and len(rel) > 1:
            rel = rel[:-1]
        names.append(".".join(rel))
    return sorted(names)


def _package_of(package: Path, module: str) -> list[str]:
    """The package a module's relative imports start from, as parts below the root."""
    parts = [] if module == "__init__" else module.split(".")
    return parts if module_path(package, module).name == "__init__.py" else parts[:-1]


def imports_of(package: Path, module: str, root: str = "bayesgmm") -> set[str]:
    """Modules of the package that ``module`` imports anywhere in its source, ``__init__``
    standing for the package root."""
    tree = ast.parse(module_path(package, module).read_text())
    known = set(module_names(package))
    out = set()

    def resolve(target: list[str], names):
        base = ".".join(target)
        if not base:  # the package root: "from . import x" names a module or a root name
            for alias in names:
                out.add(alias.name if alias.name in known else "__init__")
            return
        subs = [f"{base}.{a.name}" for a in names if f"{base}.{a.name}" in known]
        out.update(subs)  # "from .em import driver"
        if len(subs) < len(names):
            out.add(base if base in known else base.rsplit(".", 1)[0])

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if (node.module or "").split(".")[0] != root:
                    continue
                target = (node.module or "").split(".")[1:]
            else:
                pkg = _package_of(package, module)
                if node.level - 1 > len(pkg):
                    raise ValueError(f"{module}: relative import above the package")
                target = pkg[: len(pkg) - (node.level - 1)]
                target = target + (node.module.split(".") if node.module else [])
            resolve(target, node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == root:
                    out.add("__init__")
                elif alias.name.startswith(root + "."):
                    out.add(alias.name.removeprefix(root + "."))
    out.discard(module)
    return out


def import_graph(package: Path) -> dict[str, set[str]]:
    return {m: imports_of(package, m) for m in module_names(package)}


def find_cycle(graph):
    """A list of modules forming a cycle, or None (depth-first search)."""
    state, stack = {}, []

    def visit(v):
        state[v] = "open"
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == "open":
                return stack[stack.index(w) :] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        stack.pop()
        state[v] = "done"
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def modules_in_cycles(graph) -> set[str]:
    """Every module on some import cycle (the non-trivial strongly connected components)."""
    reach = {}
    for v in graph:
        seen, todo = set(), list(graph[v])
        while todo:
            w = todo.pop()
            if w not in seen:
                seen.add(w)
                todo.extend(graph.get(w, ()))
        reach[v] = seen
    return {v for v in graph if v in reach[v]}


def largest_functions(package: Path, top: int = 10) -> list[tuple[int, int, str]]:
    """``(code lines, lines, "module.function")`` of the longest functions and methods
    (code lines: without the docstring), longest first."""
    out = []
    for m in module_names(package):
        tree = ast.parse(module_path(package, m).read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                total = node.end_lineno - node.lineno + 1
                doc = node.body[0]
                has_doc = isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                code = total - (doc.end_lineno - doc.lineno + 1 if has_doc else 0)
                out.append((code, total, f"{m}.{node.name}"))
    return sorted(out, reverse=True)[:top]


def report(package: Path) -> str:
    graph = import_graph(package)
    lines = [f"## {package}", ""]
    cyc = sorted(modules_in_cycles(graph))
    lines.append(f"{len(graph)} modules; {len(cyc)} on an import cycle: {', '.join(cyc) or '-'}")
    cycle = find_cycle(graph)
    if cycle:
        lines.append("a cycle: " + " -> ".join(cycle))
    lines += ["", "| module | lines | imports |", "|---|---|---|"]
    for m in sorted(graph):
        n = len(module_path(package, m).read_text().splitlines())
        lines.append(f"| {m} | {n} | {', '.join(sorted(graph[m]))} |")
    lines += ["", "| largest functions | code lines | with docstring |", "|---|---|---|"]
    lines += [f"| {name} | {c} | {n} |" for c, n, name in largest_functions(package)]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", type=Path, default=[DEFAULT])
    args = parser.parse_args(argv)
    print("\n\n".join(report(p) for p in args.packages))


if __name__ == "__main__":
    main()
