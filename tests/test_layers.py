"""The package layers point one way (issue 13); every import is read with `ast`, lazy ones too.

    pipelines  <-  cxr_cascade.models  <-  evaluation, export, training, ...  <-  commands

* `pipelines` (TensorFlow input pipelines) never imports `cxr_cascade`.
* `cxr_cascade.models` imports no other part of `cxr_cascade` (config aside).
* evaluation and export share what they both need through the models and `cxr_cascade.runs`,
  never importing each other; neither reaches into the trainer (the trainer uses evaluation's
  metrics module only).
* only the command-line layer imports `cxr_cascade.commands`.
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


# (folder, forbidden imports, allowed exceptions)
RULES = [
    ("pipelines", ("cxr_cascade",), ()),
    ("cxr_cascade/models", ("cxr_cascade.training", "cxr_cascade.evaluation", "cxr_cascade.export",
                            "cxr_cascade.commands", "cxr_cascade.runs", "cxr_cascade.explain",
                            "cxr_cascade.audit"), ()),
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


def test_experiment_classes_match_the_models():
    """experiments/base.py states the classes as plain data; they are the models' constants."""
    from cxr_cascade.models.cascade import STAGE1_CLASSES, STAGE2_CLASSES
    from experiments import base

    assert (base.STAGE1_CLASSES, base.STAGE2_CLASSES) == (STAGE1_CLASSES, STAGE2_CLASSES)
