"""The package layers point one way; every import is read with `ast`, lazy ones too.

    pipelines  <-  cxr_cascade.models  <-  cxr_cascade.artifacts  <-  evaluation, export,
    training, ...  <-  commands

* `pipelines` (TensorFlow input pipelines) never imports `cxr_cascade`.
* `cxr_cascade.models` imports no other part of `cxr_cascade` (config aside).
* `cxr_cascade.artifacts` (runs and releases on disk) imports nothing above it.
* evaluation and export share what they both need through the models and `cxr_cascade.artifacts`,
  never importing each other; neither reaches into the trainer (the trainer uses evaluation's
  metrics module only).
* only the command-line layer imports `cxr_cascade.commands`.
* no import loop joins two parts of the package (nor runs inside artifacts, export, evaluation).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in parts + [base] if p)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(folder: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for name in sorted(imports_of(path)):
            if _within(name, forbidden) and not _within(name, allowed):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


ABOVE_ARTIFACTS = ("cxr_cascade.training", "cxr_cascade.evaluation", "cxr_cascade.explain",
                   "cxr_cascade.audit", "cxr_cascade.export", "cxr_cascade.predict",
                   "cxr_cascade.commands", "cxr_cascade.cli", "cxr_cascade.device")

# (folder, forbidden imports, allowed exceptions)
RULES = [
    ("pipelines", ("cxr_cascade",), ()),
    ("cxr_cascade/models", ("cxr_cascade.training", "cxr_cascade.evaluation", "cxr_cascade.export",
                            "cxr_cascade.commands", "cxr_cascade.artifacts", "cxr_cascade.explain",
                            "cxr_cascade.audit"), ()),
    ("cxr_cascade/artifacts", ABOVE_ARTIFACTS, ()),
    ("cxr_cascade/evaluation", ("cxr_cascade.export", "cxr_cascade.training.runner",
                                "cxr_cascade.commands"), ()),
    ("cxr_cascade/export", ("cxr_cascade.evaluation", "cxr_cascade.training", "cxr_cascade.commands"), ()),
    # The trainer scores its test split with the one metrics module, nothing else of evaluation.
    ("cxr_cascade/training", ("cxr_cascade.evaluation", "cxr_cascade.export", "cxr_cascade.commands"),
     ("cxr_cascade.evaluation.metrics",)),
]


@pytest.mark.parametrize("folder, forbidden, allowed", RULES, ids=[r[0] for r in RULES])
def test_imports_point_one_way(folder, forbidden, allowed):
    assert violations(folder, forbidden, allowed) == []


def test_the_checker_sees_lazy_imports():
    """Negative control: a planted lazy import inside a function is reported."""
    planted = ROOT / "pipelines" / "_planted_layer_test.py"
    planted.write_text("def f():\n    from cxr_cascade.config import from_dict\n    return from_dict\n")
    try:
        assert violations("pipelines", ("cxr_cascade",)) == [
            "pipelines/_planted_layer_test.py imports cxr_cascade.config",
            "pipelines/_planted_layer_test.py imports cxr_cascade.config.from_dict",
        ]
    finally:
        planted.unlink()
    assert "cxr_cascade.models.cascade" in imports_of(ROOT / "cxr_cascade" / "evaluation" / "cascade.py")


def module_graph(folders: tuple[str, ...] = ("cxr_cascade", "pipelines")) -> dict[str, set[str]]:
    """{module: the package modules it imports}, every import (lazy ones too) resolved to a file
    of the package (`from a.b import c` names module a.b.c when that is a file, else a.b)."""
    modules = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    graph = {}
    for name, path in modules.items():
        edges = set()
        for imported in imports_of(path):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                edges.add(imported)
        graph[name] = edges
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan), each sorted.

    A submodule importing its own package (`from cxr_cascade.export import archive` in
    `cxr_cascade.export.exporter`, which names the package first) is not counted as a loop with
    the package's `__init__` importing it: those upward edges are dropped."""
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def _part(module: str) -> str:
    """The subpackage a module belongs to (`cxr_cascade.training.data` -> `cxr_cascade.training`)."""
    return ".".join(module.split(".")[:2])


def test_no_import_cycle_between_parts_of_the_package():
    """The loops release <-> runs <-> export and runs <-> training are gone: no cycle joins two
    parts of the package, and none runs inside the artifacts, export or evaluation."""
    own = ("cxr_cascade.artifacts", "cxr_cascade.export", "cxr_cascade.evaluation")
    cycles = [c for c in import_cycles(module_graph())
              if len({_part(m) for m in c}) > 1 or any(_within(m, own) for m in c)]
    assert cycles == []


def test_the_cycle_check_sees_a_loop():
    """Negative controls: a loop of three is one cycle (a package importing its own submodules
    is none); one planted import from the artifacts up to the trainer closes a loop through the
    real package and breaks the artifacts' layer rule."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "p": {"p.x"}, "p.x": {"p"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
    graph = module_graph()
    graph["cxr_cascade.artifacts.layout"].add("cxr_cascade.training.runner")
    assert any("cxr_cascade.artifacts.layout" in c and "cxr_cascade.training.runner" in c
               for c in import_cycles(graph))
    planted = ROOT / "cxr_cascade" / "artifacts" / "_planted_layer_test.py"
    planted.write_text("def f():\n    from cxr_cascade.training.runner import train\n    return train\n")
    try:
        assert violations("cxr_cascade/artifacts", ABOVE_ARTIFACTS) == [
            "cxr_cascade/artifacts/_planted_layer_test.py imports cxr_cascade.training.runner",
            "cxr_cascade/artifacts/_planted_layer_test.py imports cxr_cascade.training.runner.train",
        ]
    finally:
        planted.unlink()


def test_experiment_classes_match_the_models():
    """experiments/base.py states the classes as plain data; they are the models' constants."""
    from cxr_cascade.models.cascade import STAGE1_CLASSES, STAGE2_CLASSES
    from experiments import base

    assert (base.STAGE1_CLASSES, base.STAGE2_CLASSES) == (STAGE1_CLASSES, STAGE2_CLASSES)
