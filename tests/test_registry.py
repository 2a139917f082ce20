"""One source for every list of valid names (`cxr_cascade.registry`): each registered name has an
implementation and no implementation lacks a name; config validation, the model builders and
the command line's choices read the registry; CLAHE's clip limit and tile grid have one check."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

from cxr_cascade import registry
from cxr_cascade.models import build, cascade, composer, heads

# (kind, registered names, implementations keyed by name)
PAIRS = [
    ("backbone", registry.BACKBONES, composer.BACKBONE_SPECS),
    ("head", registry.HEADS, heads.HEAD_BUILDERS),
    ("task", registry.TASKS, build.TASK_BUILDERS),
    ("cascade rule", registry.CASCADE_RULES, cascade.RULE_DECISIONS),
]


@pytest.mark.parametrize("kind, names, implementations", PAIRS, ids=[p[0] for p in PAIRS])
def test_every_registered_name_has_an_implementation_and_back(kind, names, implementations):
    assert registry.unmatched(kind, names, implementations) == []


def test_unmatched_names_both_directions():
    # Negative control: a registered name without code and code without a name are both reported.
    planted = {**composer.BACKBONE_SPECS, "vit_b16": object()}
    del planted["resnet50"]
    assert registry.unmatched("backbone", registry.BACKBONES, planted) == [
        "backbone 'resnet50' is registered but has no implementation",
        "backbone 'vit_b16' has an implementation but is not registered",
    ]


def test_backbone_specs_carry_their_registered_name():
    assert all(spec.name == name for name, spec in composer.BACKBONE_SPECS.items())


def test_registry_imports_no_keras_or_tensorflow():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(registry.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "typing", "pipelines.config"}


def test_config_validation_reads_the_registry(monkeypatch):
    from cxr_cascade import config as config_module
    from cxr_cascade.config import load_experiment

    base = load_experiment("demo_stage1")
    for name in registry.BACKBONES:
        assert base.replace(backbone=name, se_reduction=None).backbone == name
    with pytest.raises(ValueError, match=r"`backbone` must be one of vgg19, resnet50, densenet169"):
        base.replace(backbone="vit_b16")
    # The same tuple object: a name added to the registry is valid in the config.
    assert config_module.BACKBONES is registry.BACKBONES
    assert config_module.STAGE2_NEGATIVE_LABELS is registry.STAGE2_NEGATIVE_LABELS
    assert config_module.BALANCE_MODES is registry.BALANCE_MODES


def test_cli_choices_are_the_registry():
    from cxr_cascade.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    choices = {
        (command, action.dest): tuple(action.choices)
        for command, subparser in sub.choices.items()
        for action in subparser._actions
        if action.choices is not None and not isinstance(action, argparse._SubParsersAction)
    }
    for command in ("evaluate", "export", "predict"):
        assert choices[(command, "rule")] == registry.CASCADE_RULES
    assert choices[("train", "strategy")] == registry.STRATEGIES
    assert choices[("train", "backend")] == registry.KERAS_BACKENDS


def test_no_balancing_is_spelled_once():
    from cxr_cascade.config import ExperimentConfig
    from pipelines import datasets

    assert registry.NO_BALANCE == "off" == ExperimentConfig.__dataclass_fields__["balance"].default
    assert datasets.build_dataset.__kwdefaults__["balance"] == registry.NO_BALANCE
    assert registry.BALANCE_MODES == ("off", "oversample", "sample_weight")


# ------------------------------------------------------------------ one CLAHE argument checker
def _clahe_checkers():
    """Every CLAHE entry point, each called with (clip_limit, tile_grid_size)."""
    import tensorflow as tf

    from cxr_cascade.models.preprocessing import AdaptiveEqualization
    from cxr_cascade.numpy_clahe import clahe_numpy
    from pipelines.clahe import clahe
    from pipelines.config import PreprocessConfig

    image = np.zeros((8, 8), np.uint8)
    return {
        "PreprocessConfig": lambda c, g: PreprocessConfig(clip_limit=c, tile_grid_size=g),
        "pipelines.clahe.clahe": lambda c, g: clahe(tf.constant(image[..., None]), c, g),
        "AdaptiveEqualization": lambda c, g: AdaptiveEqualization(clip_limit=c, tile_grid_size=g),
        "numpy_clahe (clip limit only)": lambda c, g: clahe_numpy(image, c, (2, 2)),
    }


@pytest.mark.parametrize("clip_limit", [0.0, 0, 2.0, 40])
def test_every_clahe_accepts_the_same_clip_limits(clip_limit):
    for name, check in _clahe_checkers().items():
        check(clip_limit, (2, 2))  # no error


@pytest.mark.parametrize("clip_limit", [-1.0, math.nan, math.inf, True, "2"])
def test_every_clahe_refuses_the_same_clip_limits_in_one_words(clip_limit):
    want = ("`clip_limit` must be a finite number >= 0 (0: no clipping, as OpenCV's clipLimit). "
            f"Received: clip_limit={clip_limit!r}")
    for name, check in _clahe_checkers().items():
        with pytest.raises(ValueError) as info:
            check(clip_limit, (2, 2))
        assert str(info.value) == want, name


@pytest.mark.parametrize("grid", [(0, 2), (2,), 8, (2.0, 2), (True, 2), (2, -1)])
def test_every_clahe_refuses_the_same_tile_grids_in_one_words(grid):
    want = ("`tile_grid_size` must be two positive ints (tiles along width, tiles along height), "
            f"as cv2.createCLAHE's tileGridSize. Received: tile_grid_size={grid!r}")
    checkers = _clahe_checkers()
    del checkers["numpy_clahe (clip limit only)"]  # (rows, cols) order: its own grid check
    for name, check in checkers.items():
        with pytest.raises(ValueError) as info:
            check(2.0, grid)
        assert str(info.value) == want, name


# ------------------------------------------------------------------ deprecated aliases: compat
@pytest.mark.parametrize("flat, section, value", [
    ("image_size", "preprocess", 64), ("clahe_fraction", "augment", 0.5),
    ("rotation_degrees", "augment", 15.0),
])
def test_flat_keys_still_load_with_a_deprecation_warning(flat, section, value):
    from cxr_cascade.config import from_dict, load_experiment

    with pytest.warns(DeprecationWarning, match=f"`{flat}` is a deprecated alias of `{section}.{flat}`"):
        config = from_dict({"name": "old", "task": "stage1", "classes": ["a", "b"], flat: value})
    assert getattr(getattr(config, section), flat) == value
    with pytest.warns(DeprecationWarning, match=f"`{flat}`"):
        again = load_experiment("demo_stage1", [f"{flat}={value}"])
    assert getattr(getattr(again, section), flat) == value


def test_sectioned_keys_and_release_configs_load_without_warnings():
    import json
    import warnings
    from pathlib import Path

    from cxr_cascade.config import from_dict, load_experiment

    releases = sorted((Path(__file__).resolve().parent.parent / "releases").glob("*/*/config.json"))
    assert releases  # negative control of the loop below: it reads something
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        load_experiment("demo_stage1", ["preprocess.image_size=64"])
        for path in releases:
            from_dict(json.loads(path.read_text()))
