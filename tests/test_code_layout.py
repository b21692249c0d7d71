"""The layout of design.md ("Map", "What goes where") and issue 31's acceptance, checked on the source text (``ast``,
nothing imported): no function over 80 lines in ``src/`` or ``benchmarks/``; no import from one system package into
another (``systems/__init__.py`` is the registry and may import any); nothing in ``latent3d`` outside ``systems/`` and
``cli.py`` imports ``latent3d.systems`` (arrows only go down; ``benchmarks/`` sit on top, as ``cli.py`` does); no
import cycle between the modules of ``src/``. Imports inside functions count, relative ones are resolved. Every failure
names ``file:line``."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
MAX_FUNCTION_LINES = 80
SYSTEMS = "latent3d.systems"


def _python_files() -> list[Path]:
    return sorted(SRC.rglob("*.py")) + sorted((ROOT / "benchmarks").rglob("*.py"))


def _module_parts(rel: str) -> list[str]:
    """``src/latent3d/systems/ldm3d/panorama.py`` -> ``["latent3d", "systems", "ldm3d", "panorama"]`` (a package's
    ``__init__`` is the package); ``[]`` outside ``src/``."""
    parts = Path(rel).with_suffix("").parts
    if parts[0] != "src":
        return []
    return list(parts[1:-1]) if parts[-1] == "__init__" else list(parts[1:])


def imported_modules(rel: str, tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, absolute module)`` of every import anywhere in the file; ``from M import a`` gives ``M`` and ``M.a``
    (``a`` may be a submodule), relative imports are resolved against the file's package."""
    mod = _module_parts(rel)
    package = mod if rel.endswith("__init__.py") else mod[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level and not package:
                continue  # a relative import outside src/ (none today) cannot be resolved here
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            yield node.lineno, module
            yield from ((node.lineno, f"{module}.{alias.name}") for alias in node.names)


def _one_per_line(pairs: Iterator[tuple[int, str]]) -> dict[int, str]:
    first: dict[int, str] = {}
    for line, target in pairs:
        first.setdefault(line, target)
    return first


def long_functions(rel: str, tree: ast.AST) -> list[str]:
    return [f"{rel}:{n.lineno}: {n.name} is {n.end_lineno - n.lineno + 1} lines (at most {MAX_FUNCTION_LINES})"
            for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]  # fmt: skip


def cross_system_imports(rel: str, tree: ast.AST) -> list[str]:
    mod = _module_parts(rel)
    if mod[:2] != SYSTEMS.split(".") or len(mod) < 3:  # outside a system package, or systems/__init__ (the registry)
        return []
    return [f"{rel}:{line}: system {mod[2]!r} imports {target} (go through an interface in priors/, registered in "
            f"latent3d/systems/__init__.py)"
            for line, target in _one_per_line((line, t) for line, t in imported_modules(rel, tree)
                                              if t.startswith(SYSTEMS + ".") and t.split(".")[2] != mod[2]).items()]


def upward_imports(rel: str, tree: ast.AST) -> list[str]:
    mod = _module_parts(rel)
    if not mod or mod[:2] == SYSTEMS.split(".") or mod == ["latent3d", "cli"]:
        return []
    return [f"{rel}:{line}: {'.'.join(mod)} imports {target}: only systems/ and cli.py may (arrows go down)"
            for line, target in _one_per_line((line, t) for line, t in imported_modules(rel, tree)
                                              if t == SYSTEMS or t.startswith(SYSTEMS + ".")).items()]


CHECKS = {"long_functions": long_functions, "cross_system_imports": cross_system_imports,
          "upward_imports": upward_imports}  # fmt: skip


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_layout(check: str):
    problems = []
    for path in _python_files():
        rel = path.relative_to(ROOT).as_posix()
        problems += CHECKS[check](rel, ast.parse(path.read_text(encoding="utf-8"), rel))
    assert not problems, f"{len(problems)} {check.replace('_', ' ')}:\n" + "\n".join(problems)


def import_cycles(trees: dict[str, ast.AST]) -> list[str]:
    """The cycles of the module import graph of ``src/`` (an edge per import anywhere in a module, lazy ones too),
    one per strongly connected component, each edge as ``file:line``. (Among whole subpackages there are cycles
    today, e.g. ``render`` <-> ``io`` through lazy imports, so the check is per module.)"""
    names = {".".join(_module_parts(rel)): rel for rel in trees}
    edges: dict[str, dict[str, str]] = {m: {} for m in names}
    for mod, rel in names.items():
        for line, target in imported_modules(rel, trees[rel]):
            if target in names and target != mod:
                edges[mod].setdefault(target, f"{rel}:{line}")
    return [" -> ".join(f"{m} ({edges[m][nxt]})" for m, nxt in zip(cycle, cycle[1:] + cycle[:1]))
            for cycle in _cycles(edges)]  # fmt: skip


def _cycles(edges: dict[str, dict[str, str]]) -> list[list[str]]:
    """One cycle (a list of nodes, each with an edge to the next and the last to the first) per cyclic strongly
    connected component (Tarjan 1972), found iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = stack[stack.index(node):]
                    del stack[stack.index(node):]
                    if len(component) > 1:
                        found.append(_cycle_in(set(component), edges))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                work.append((child, iter(edges[child])))
            elif child in stack:
                low[node] = min(low[node], index[child])
    return found


def _cycle_in(component: set[str], edges: dict[str, dict[str, str]]) -> list[str]:
    """A cycle through the first node of a strongly connected component: follow edges inside it until a repeat."""
    path = [min(component)]
    while True:
        nxt = min(t for t in edges[path[-1]] if t in component)
        if nxt in path:
            return path[path.index(nxt):]
        path.append(nxt)


def test_no_import_cycle_between_modules():
    trees = {p.relative_to(ROOT).as_posix(): ast.parse(p.read_text(encoding="utf-8")) for p in SRC.rglob("*.py")}
    cycles = import_cycles(trees)
    assert not cycles, f"{len(cycles)} import cycles:\n" + "\n".join(cycles)


def test_the_cycle_check_sees_a_lazy_cycle():
    trees = {"src/latent3d/a.py": ast.parse("import latent3d.b\n"),
             "src/latent3d/b.py": ast.parse("def f():\n    from latent3d import a\n"),
             "src/latent3d/c.py": ast.parse("import latent3d.a\n")}  # fmt: skip
    assert import_cycles(trees) == ["latent3d.a (src/latent3d/a.py:1) -> latent3d.b (src/latent3d/b.py:2)"]


@pytest.mark.parametrize("rel, code, check, expected", [
    ("src/latent3d/systems/depthfusion/a.py", "def f():\n    from latent3d.systems.ldm3d import x\n",
     "cross_system_imports", [2]),
    ("src/latent3d/systems/depthfusion/a.py", "from ..ldm3d.panorama import x\nfrom . import y\n",
     "cross_system_imports", [1]),
    ("src/latent3d/systems/depthfusion/a.py", "from latent3d.systems import ldm3d, depthfusion\n",
     "cross_system_imports", [1]),
    ("src/latent3d/systems/__init__.py", "from latent3d.systems.ldm3d import x\n", "cross_system_imports", []),
    ("src/latent3d/render/a.py", "import latent3d.systems.ldm3d\n", "upward_imports", [1]),
    ("src/latent3d/render/a.py", "from latent3d import systems\n", "upward_imports", [1]),
    ("src/latent3d/render/__init__.py", "from ..systems import x\n", "upward_imports", [1]),
    ("src/latent3d/cli.py", "from latent3d.systems.ldm3d import command\n", "upward_imports", []),
    ("src/latent3d/a.py", "class A:\n    def f(self):\n" + "        pass\n" * 80, "long_functions", [2]),
    ("src/latent3d/a.py", "def f():\n" + "    pass\n" * 79, "long_functions", []),
])  # fmt: skip
def test_the_checks_see_what_they_should(rel: str, code: str, check: str, expected: list[int]):
    """Lazy, relative and ``from package import module`` imports are caught; the registry and cli.py are allowed;
    81 lines fail, 80 pass."""
    problems = CHECKS[check](rel, ast.parse(code))
    assert [int(p.split(":")[1]) for p in problems if p.startswith(f"{rel}:")] == expected, problems
