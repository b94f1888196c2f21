"""The codebase's shape, checked: the rules of docs/architecture.md as tests.

Each rule is measured on the source (Python's `ast`), not on a list kept by hand: an import
cycle among `microtome` modules (imports deferred into functions count too), `click` outside
`microtome/cli/`, a folder of more than 20 modules, a function over 60 lines, `render` over
16 parameters, technique ids named outside `techniques/`, a tracked file over 1 MB.
"""

from __future__ import annotations

import ast
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "microtome"
MAX_FILES, MAX_LINES, MAX_RENDER_PARAMS, MAX_ID_MODULES = 20, 60, 16, 2
# Technique ids that are never ordinary words or JSON fields (so a literal is a technique's name).
DISTINCT_IDS = ("feature_vis", "dataset_examples", "deepdream")
ID_CONSTANTS = ("FEATURE_VIS", "DEEPDREAM", "DATASET_EXAMPLES", "TUNING", "CONNECTIONS", "LABELS", "SAE",
                "SIMILAR", "ATLAS")


def modules() -> dict[str, ast.Module]:
    """{dotted module name: parsed source} for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), str(path))
    return out


def imported(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The package's modules that `name` imports, anywhere in its source."""
    package = name if (PACKAGE / Path(*name.split(".")[1:]) / "__init__.py").exists() else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def trees() -> dict[str, ast.Module]:
    return modules()


def test_no_import_cycle(trees):
    known = set(trees)
    # a package's __init__ re-exporting its own modules is how a package is read, not a cycle
    graph = {n: {m for m in imported(n, t, known) if not m.startswith(n + ".")} for n, t in trees.items()}
    assert cycles(graph) == []


def test_click_only_in_cli(trees):
    users = [n for n, t in trees.items() if "click" in _top_imports(t) and not n.startswith("microtome.cli")]
    assert users == []


def test_no_crowded_folder():
    crowded = {str(d.relative_to(ROOT)): n for d in [PACKAGE, *PACKAGE.rglob("*/")]
               if (n := len(list(d.glob("*.py")))) > MAX_FILES}
    assert crowded == {}


def test_no_long_function(trees):
    long = [f"{n}.{f.name}: {f.end_lineno - f.lineno + 1} lines" for n, t in trees.items() for f in ast.walk(t)
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.end_lineno - f.lineno + 1 > MAX_LINES]
    assert long == []


def test_render_takes_at_most_16_parameters():
    import inspect

    from microtome.optvis.render import render

    assert len(inspect.signature(render).parameters) <= MAX_RENDER_PARAMS


def test_technique_ids_stay_in_techniques(trees):
    naming = defaultdict(list)
    for n, t in trees.items():
        if n.startswith("microtome.techniques"):
            continue
        for node in ast.walk(t):
            if isinstance(node, ast.Constant) and node.value in DISTINCT_IDS:
                naming[n].append(node.value)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("microtome.techniques"):
                naming[n] += [a.name for a in node.names if a.name in ID_CONSTANTS]
    naming = {n: v for n, v in naming.items() if v}
    assert len(naming) <= MAX_ID_MODULES, naming


def test_no_tracked_file_over_1mb():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    big = [f for f in files.decode().split("\0") if f and (ROOT / f).is_file() and (ROOT / f).stat().st_size > 1 << 20]
    assert big == []


def _top_imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.partition(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.partition(".")[0])
    return names


if __name__ == "__main__":  # a report of every rule at once: python tests/test_architecture.py
    found = modules()
    graph = {n: {m for m in imported(n, t, set(found)) if not m.startswith(n + ".")} for n, t in found.items()}
    for group in cycles(graph):
        print("cycle:", " <-> ".join(group))
    for n, t in found.items():
        if "click" in _top_imports(t) and not n.startswith("microtome.cli"):
            print("click outside cli:", n)
        if not n.startswith("microtome.techniques"):
            ids = {node.value for node in ast.walk(t) if isinstance(node, ast.Constant) and node.value in DISTINCT_IDS}
            ids |= {a.name for node in ast.walk(t) if isinstance(node, ast.ImportFrom)
                    and (node.module or "").startswith("microtome.techniques") for a in node.names
                    if a.name in ID_CONSTANTS}
            if ids:
                print("technique ids in", n, sorted(ids))
