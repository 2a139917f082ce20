"""The package's layers point one way, with no import cycle; every import is read with `ast`,
imports inside functions too.

    pipelines, config, registry, numpy_clahe, phantoms      (foundations)
      -> models                                             (networks, from spec tables)
      -> artifacts                                          (a trained model on disk)
      -> training, device, evaluation, explain, audit, export, predict
      -> commands                                           (one module per subcommand)
      -> cli, __main__

A module imports from its own layer or the ones to its left. Inside the middle layer the
packages are siblings: `MIDDLE` lists the few sibling imports that are allowed (the trainer
scores its test split with evaluation's metrics; the audit reports through evaluation and
explain; predict serves through export's archive and draws through explain).

An import inside a function is allowed only where it is deliberately lazy (a heavy or optional
library kept off a path that does not need it, such as TensorFlow off `cxr-cascade --help`): the
line says so with a ``# lazy: why`` comment, on the import's line or the line above it (above a
run of consecutive imports, the comment covers the run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cxr_cascade.models.cascade import STAGE1_CLASSES, STAGE2_CLASSES
from experiments import base

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cxr_cascade", "pipelines")

LAYERS = (
    ("pipelines", "cxr_cascade.config", "cxr_cascade.compat", "cxr_cascade.registry",
     "cxr_cascade.numpy_clahe", "cxr_cascade.phantoms", "cxr_cascade.selection", "cxr_cascade"),
    ("cxr_cascade.models",),
    ("cxr_cascade.artifacts",),
    ("cxr_cascade.training", "cxr_cascade.device", "cxr_cascade.evaluation", "cxr_cascade.explain",
     "cxr_cascade.audit", "cxr_cascade.export", "cxr_cascade.predict"),
    ("cxr_cascade.commands",),
    ("cxr_cascade.cli", "cxr_cascade.__main__"),
)
# sibling imports allowed inside the middle layer: package -> what it may import
MIDDLE = {
    "cxr_cascade.training": ("cxr_cascade.evaluation.metrics",),
    "cxr_cascade.device": ("cxr_cascade.training",),
    "cxr_cascade.evaluation": (),
    "cxr_cascade.explain": (),
    "cxr_cascade.audit": ("cxr_cascade.evaluation", "cxr_cascade.explain"),
    "cxr_cascade.export": (),
    "cxr_cascade.predict": ("cxr_cascade.export", "cxr_cascade.explain"),
}
# the foundations do not import each other except: config reads pipelines' configs, the registry
# and the deprecated-key aliases; phantoms write through pipelines' atomic writers
FOUNDATIONS = {
    "pipelines": (),
    "cxr_cascade": (),
    "cxr_cascade.registry": ("pipelines",),
    "cxr_cascade.config": ("pipelines", "cxr_cascade.registry", "cxr_cascade.compat"),
    "cxr_cascade.compat": (),
    "cxr_cascade.numpy_clahe": ("pipelines",),
    "cxr_cascade.phantoms": ("pipelines", "cxr_cascade.registry"),
    "cxr_cascade.selection": ("pipelines", "cxr_cascade.config", "cxr_cascade.registry"),
}
ENTRY = {"cxr_cascade.__main__": ("cxr_cascade.cli",), "cxr_cascade.cli": ()}
LAZY_MARK = "# lazy:"


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def import_nodes(path: Path):
    """(node, absolute module names, at module top?) of every import statement in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top = {id(node) for node in tree.body}
    for parent in tree.body:  # imports under a module-level `if`/`try` count as top level
        if isinstance(parent, (ast.If, ast.Try)):
            top.update(id(node) for node in ast.walk(parent))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield node, [alias.name for alias in node.names], id(node) in top
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(p for p in parts + [base] if p)
            yield node, [base] + [f"{base}.{alias.name}" for alias in node.names], id(node) in top


def _resolve(name: str, known: dict) -> str | None:
    """The project module `name` refers to (`pkg.mod.attr` -> `pkg.mod`), or None."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def graph(known: dict | None = None) -> dict[str, set[str]]:
    """Project module -> the project modules it imports (anywhere in the file)."""
    known = modules() if known is None else known
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set()
        for _, names, _ in import_nodes(path):
            resolved = {_resolve(n, known) for n in names} - {None, name}
            # `from pkg import mod` names both pkg and pkg.mod: keep the most specific
            targets |= {t for t in resolved if not any(o != t and o.startswith(t + ".") for o in resolved)}
        edges[name] = targets
    return edges


def _group(name: str) -> tuple[int, str]:
    """(layer index, the most specific group prefix) of a module."""
    best = None
    for index, groups in enumerate(LAYERS):
        for group in groups:
            if _within(name, group) and (best is None or len(group) > len(best[1])):
                best = (index, group)
    if best is None:
        raise AssertionError(f"{name} belongs to no layer: add it to LAYERS")
    return best


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    found = []
    for source, targets in sorted(edges.items()):
        rank, group = _group(source)
        for target in sorted(targets):
            other_rank, other = _group(target)
            if other == group:
                continue
            if other_rank > rank:
                found.append(f"{source} imports {target} (a later layer)")
            elif other_rank == rank:
                allowed = {**FOUNDATIONS, **MIDDLE, **ENTRY}.get(group)
                if allowed is None or not any(_within(target, a) for a in allowed):
                    found.append(f"{source} imports its sibling {target}")
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _import_runs(tree: ast.AST):
    """Each run of consecutive import statements inside a function (or a class body): its
    first statement and all of its statements."""
    for owner in ast.walk(tree):
        if not isinstance(owner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for block in _blocks(owner):
            run: list[ast.stmt] = []
            for stmt in block + [None]:
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    run.append(stmt)
                    continue
                if run:
                    yield run[0], run
                run = []


def _blocks(owner: ast.AST):
    """The statement lists directly under `owner` and its nested if/try/with/for/while."""
    pending = [owner]
    while pending:
        node = pending.pop()
        for field in ("body", "orelse", "finalbody", "handlers"):
            block = getattr(node, field, None)
            if isinstance(block, list) and block and isinstance(block[0], (ast.stmt, ast.excepthandler)):
                yield [s for s in block if isinstance(s, ast.stmt)]
                pending.extend(s for s in block if isinstance(s, (ast.If, ast.Try, ast.With, ast.For,
                                                                  ast.While, ast.ExceptHandler)))


def unmarked_lazy_imports(paths) -> list[str]:
    """Imports inside a function not marked as deliberately lazy: a run of consecutive imports
    is marked by a ``# lazy: why`` comment on the line above its first import or on that line."""
    found = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        tree = ast.parse(text, filename=str(path))
        for first, run in _import_runs(tree):
            here = lines[first.lineno - 1]
            above = lines[first.lineno - 2].strip() if first.lineno > 1 else ""
            if LAZY_MARK in here or above.startswith(LAZY_MARK):
                continue
            for node in run:
                name = node.names[0].name if isinstance(node, ast.Import) else "." * node.level + (node.module or "")
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name} inside a function")
    return found


# ---------------------------------------------------------------------------------- the rules
def test_imports_point_one_way():
    assert layer_violations(graph()) == []


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_imports_inside_functions_say_why():
    paths = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    assert unmarked_lazy_imports(paths) == []


# ----------------------------------------------------------------------- negative controls
@pytest.fixture
def planted():
    made = []

    def plant(relative: str, text: str) -> Path:
        path = ROOT / relative
        path.write_text(text)
        made.append(path)
        return path

    yield plant
    for path in made:
        path.unlink()


def test_a_planted_upward_import_is_reported(planted):
    before = set(layer_violations(graph()))
    planted("cxr_cascade/models/_planted_layer_test.py",
            "def f():\n    from cxr_cascade.artifacts import load  # lazy: planted\n    return load\n")
    assert sorted(set(layer_violations(graph())) - before) == [
        "cxr_cascade.models._planted_layer_test imports cxr_cascade.artifacts (a later layer)"]


def test_a_planted_sibling_import_is_reported(planted):
    before = set(layer_violations(graph()))
    planted("cxr_cascade/evaluation/_planted_layer_test.py", "import cxr_cascade.export.archive\n")
    assert sorted(set(layer_violations(graph())) - before) == [
        "cxr_cascade.evaluation._planted_layer_test imports its sibling cxr_cascade.export.archive"]


def test_a_planted_cycle_is_reported(planted):
    before = cycles(graph())
    planted("pipelines/_planted_cycle_a.py", "from pipelines import _planted_cycle_b\n")
    planted("pipelines/_planted_cycle_b.py", "def f():\n    from pipelines import _planted_cycle_a  # lazy: planted\n")
    assert [c for c in cycles(graph()) if c not in before] == [["pipelines._planted_cycle_a", "pipelines._planted_cycle_b"]]


def test_an_unmarked_import_in_a_function_is_reported(planted):
    path = planted("pipelines/_planted_lazy_test.py",
                   "def f():\n    import json\n\n\ndef g():\n    # lazy: planted, marked\n    import csv\n    import io\n"
                   "    x = 1\n    import zlib\n")
    assert unmarked_lazy_imports([path]) == ["pipelines/_planted_lazy_test.py:2 imports json inside a function",
                                             "pipelines/_planted_lazy_test.py:10 imports zlib inside a function"]


def test_experiment_classes_match_the_models():
    """experiments/base.py states the classes as plain data; they are the models' constants."""
    assert (base.STAGE1_CLASSES, base.STAGE2_CLASSES) == (STAGE1_CLASSES, STAGE2_CLASSES)
