"""Experiment configs specification: every config loads, says what it reproduces, builds its model;
`--set` overrides coerce types; bad values fail with errors that name the field."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from cxr_cascade.config import (
    ExperimentConfig,
    MoExConfig,
    apply_overrides,
    from_dict,
    list_experiments,
    load_experiment,
    load_resolved,
)

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"

# Table row -> experiment (the list; a missing or renamed file fails here).
PAPER_ROWS = {
    "table4_vgg19_base": ("vgg19", "flatten", None, False, 224),
    "table4_vgg19_gap": ("vgg19", "gap", None, False, 512),
    "table4_resnet50_base": ("resnet50", "flatten", None, False, 224),
    "table4_resnet50_gap": ("resnet50", "gap", None, False, 512),
    "table4_resnet50_se": ("resnet50", "gap", 16, False, 512),
    "table4_resnet50_seme": ("resnet50", "gap", 16, True, 512),
    "table4_densenet169_base": ("densenet169", "flatten", None, False, 224),
    "table4_densenet169_gap": ("densenet169", "gap", None, False, 512),
    "table4_densenet169_se": ("densenet169", "gap", 16, False, 512),
    "table4_densenet169_seme": ("densenet169", "gap", 16, True, 512),
    "table5_moex_resnet50": ("resnet50", "gap", None, True, 512),
    "table5_seme_resnet50": ("resnet50", "gap", 16, True, 512),
    "table5_moex_densenet169": ("densenet169", "gap", None, True, 512),
    "table5_seme_densenet169": ("densenet169", "gap", 16, True, 512),
    "table5_seme_densenet169_kermany_viral": ("densenet169", "gap", 16, True, 512),
}


def test_every_paper_row_has_its_config():
    names = set(list_experiments())
    assert set(PAPER_ROWS) | {"unet_lungs"} <= names
    for name, (backbone, head, se, moex, size) in PAPER_ROWS.items():
        config = load_experiment(name)
        assert (config.backbone, config.head, config.se_reduction, config.moex is not None,
                config.image_size) == (backbone, head, se, moex, size), name


@pytest.mark.parametrize("name", list_experiments())
def test_every_config_states_row_figure_and_command(name):
    text = (EXPERIMENTS / f"{name}.py").read_text()
    doc = ast.get_docstring(ast.parse(text))
    assert doc and "Paper:" in doc and f"Command: cxr-cascade train {name}" in doc, name
    config = load_experiment(name)
    assert config.name == name and config.paper and config.description
    assert "Figure" in config.paper


def test_paper_training_settings():
    stage1 = load_experiment("table4_resnet50_seme")
    assert (stage1.optimizer, stage1.learning_rate, stage1.momentum, stage1.epochs) == ("sgd", 1e-4, 0.9, 80)
    assert (stage1.augment.clahe_fraction, stage1.augment.clahe_mode, stage1.lr_schedule) == (0.4, "replace", "constant")
    assert stage1.classes == ("normal", "bacterial", "viral")
    assert load_experiment("table4_resnet50_gap").augment.clahe_fraction == 0.0  # CLAHE came with SEME
    stage2 = load_experiment("table5_seme_densenet169")
    assert (stage2.lr_schedule, stage2.learning_rate, stage2.lr_min) == ("cosine", 0.1, 1e-8)
    assert (stage2.augment.rotation_degrees, stage2.augment.clahe_fraction, stage2.augment.clahe_mode) == (30.0, 1.0, "add")
    assert stage2.augment.segmented_copies and stage2.classes == ("covid19", "viral")
    assert stage2.stage2_negative == "ieee8023_viral"
    assert load_experiment("table5_seme_densenet169_kermany_viral").stage2_negative == (
        "ieee8023_plus_kermany_viral")
    unet = load_experiment("unet_lungs")
    assert (unet.optimizer, unet.lr_schedule, unet.monitor) == ("adam", "cosine", "val_mean_iou")


def _tiny(name: str) -> ExperimentConfig:
    config = load_experiment(name, ["image_size=32"])
    if config.task == "unet":
        config = config.replace(unet_filters="4,8,16")
    return config


def test_every_config_builds_its_model_at_a_tiny_size():
    """One build per distinct network (table rows share architectures), outputs checked."""
    import keras
    import numpy as np
    from cxr_cascade.models import build_model
    from cxr_cascade.training.runner import compile_model

    built = {}
    for name in list_experiments():
        config = _tiny(name)
        key = (config.task == "unet", config.backbone, config.head, config.se_reduction,
               config.moex is not None, len(config.classes))
        if key in built:
            continue
        model = build_model(config)
        compile_model(model, config, steps_per_epoch=1, jit_compile=False)
        out = model(np.zeros((2, 32, 32, 1), "float32"), training=False)
        if config.task == "unet":
            assert tuple(out.shape) == (2, 32, 32, 1)
        else:
            assert tuple(out.shape) == (2, len(config.classes))
            np.testing.assert_allclose(keras.ops.convert_to_numpy(out).sum(-1), 1.0, rtol=1e-5)
            names = [layer.name for layer in model.layers]
            assert {"cam_features", "logits", "probabilities"} <= set(names)
            assert ("moex" in names) == (config.moex is not None)
        built[key] = name
    assert len(built) >= 12


# ------------------------------------------------------------------------------ overrides
def test_set_overrides_coerce_types():
    config = load_experiment(
        "table4_resnet50_seme",
        ["image_size=224", "learning_rate=3e-4", "deterministic=false", "se_reduction=none",
         "moex.prob=0.5", "classes=normal,bacterial,viral", "mixed_precision=true", "jit_compile=off",
         "max_per_class=20"],
    )
    assert config.image_size == 224 and config.learning_rate == 3e-4
    assert config.deterministic is False and config.se_reduction is None
    assert config.moex == MoExConfig(prob=0.5)
    assert config.mixed_precision == "auto" and config.jit_compile == "off" and config.max_per_class == 20
    assert load_experiment("table4_resnet50_gap", ["moex.lam=0.8"]).moex == MoExConfig(lam=0.8)
    assert load_experiment("table4_resnet50_seme", ["moex=none"]).moex is None
    assert load_experiment("unet_lungs", ["unet_filters=8,16,32"]).unet_filters == (8, 16, 32)


@pytest.mark.parametrize(
    "override, message",
    [
        ("imag_size=224", "unknown config key `imag_size`. Did you mean `image_size`?"),
        ("image_size=big", "`preprocess.image_size` must be of type int. Received: preprocess.image_size='big'"),
        ("image_size=8", "`preprocess.image_size` must be >= 32. Received: preprocess.image_size=8"),
        ("backbone=resnet5", "`backbone` must be one of vgg19, resnet50, densenet169. Did you mean `resnet50`?"),
        ("learning_rate=0", "`learning_rate` must be > 0.0"),
        ("momentum=1.5", "`momentum` must be >= 0.0 and <= 1.0"),
        ("moex.pro=1", "unknown `moex` key `pro`. Did you mean `prob`?"),
        ("deterministic=maybe", "`deterministic` must be of type bool"),
        ("image_size", "--set expects KEY=VALUE. Received: 'image_size'"),
        ("image_size.x=1", "`image_size` has no sub-fields"),
        ("monitor=val_mean_iou", "val_mean_iou is for the U-Net"),
        ("clahe_mode=copy", "`augment.clahe_mode` must be one of ('replace', 'add')"),
    ],
)
def test_bad_override_names_the_field(override, message):
    with pytest.raises(ValueError) as error:
        load_experiment("table4_resnet50_seme", [override])
    assert message in str(error.value)


def test_cross_field_validation():
    with pytest.raises(ValueError, match="VGG19 has no SE variant"):
        load_experiment("table4_vgg19_gap", ["se_reduction=16"])
    with pytest.raises(ValueError, match="`lr_min` < `learning_rate`"):
        load_experiment("table5_seme_densenet169", ["lr_min=0.5"])
    with pytest.raises(ValueError, match="divisible by 2\\*\\*\\(len\\(unet_filters\\) - 1\\) = 16"):
        load_experiment("unet_lungs", ["image_size=40"])
    with pytest.raises(ValueError, match="segmented_copies.*stage-2 option"):
        load_experiment("table4_resnet50_seme", ["segmented_copies=true"])
    with pytest.raises(ValueError, match="needs at least two `classes`"):
        load_experiment("table4_resnet50_seme", ["classes=normal"])


# ------------------------------------------------------------------------------ loading
def test_load_by_path_and_errors(tmp_path):
    path = tmp_path / "my_run.py"
    path.write_text(
        "from experiments.base import STAGE1, derive\nCONFIG = derive(STAGE1, image_size=64)\n"
    )
    config = load_experiment(str(path))
    assert config.name == "my_run" and config.image_size == 64
    with pytest.raises(ValueError, match="unknown experiment 'table4_resnet50_sem'. Did you mean `table4_resnet50_seme`"):
        load_experiment("table4_resnet50_sem")
    with pytest.raises(FileNotFoundError, match="experiment file not found"):
        load_experiment(str(tmp_path / "absent.py"))
    (tmp_path / "bad.py").write_text("CONFIG = [1, 2]\n")
    with pytest.raises(ValueError, match="must define CONFIG as a dict. Received: CONFIG=list"):
        load_experiment(str(tmp_path / "bad.py"))
    (tmp_path / "typo.py").write_text(
        "from experiments.base import STAGE1, derive\nCONFIG = derive(STAGE1, epoch=3)\n"
    )
    with pytest.raises(ValueError, match="unknown key `epoch`. Did you mean `epochs`?"):
        load_experiment(str(tmp_path / "typo.py"))


def test_resolved_config_round_trips(tmp_path):
    config = load_experiment("table5_seme_densenet169", ["epochs=3", "moex.prob=0.25"])
    path = tmp_path / "config.json"
    path.write_text(config.to_json())
    assert load_resolved(path) == config
    assert from_dict(json.loads(config.to_json())) == config
    assert apply_overrides(config, None) is config
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_resolved(path)


# ---------------------------------------------------------------- preprocessing / augmentation sections
def test_sections_hold_the_pipeline_objects():
    from pipelines.config import AugmentConfig, PreprocessConfig

    config = load_experiment("table5_seme_densenet169", ["preprocess.clip_limit=3", "augment.zoom=0.1"])
    assert isinstance(config.preprocess, PreprocessConfig) and isinstance(config.augment, AugmentConfig)
    assert config.preprocess.clip_limit == 3.0 and config.preprocess.tile_grid_size == (8, 8)
    assert config.augment == AugmentConfig(1.0, "add", True, 30.0, 0.0, 0.1, "constant")
    assert config.image_size == config.preprocess.image_size == 512
    # The resolved dict nests them and round-trips exactly.
    data = config.to_dict()
    assert data["preprocess"]["clip_limit"] == 3.0 and "image_size" not in data
    assert from_dict(json.loads(json.dumps(data))) == config


def test_flat_keys_of_old_runs_still_load():
    old = {"name": "old", "task": "stage1", "classes": ["a", "b"], "image_size": 64,
           "clahe_fraction": 0.4, "clahe_mode": "add", "rotation_degrees": 10.0}
    config = from_dict(old)
    assert config.preprocess.image_size == 64
    assert (config.augment.clahe_fraction, config.augment.clahe_mode, config.augment.rotation_degrees) == (
        0.4, "add", 10.0)
    assert load_experiment("demo_stage1", ["image_size=32"]).preprocess.image_size == 32


@pytest.mark.parametrize(
    "override, message",
    [
        ("preprocess.clip_limit=-1", "`preprocess.clip_limit` must be a finite number >= 0 (0: no clipping, as OpenCV's clipLimit). Received: preprocess.clip_limit=-1.0"),
        ("preprocess.resize_mode=crop", "`preprocess.resize_mode` must be one of ('stretch', 'pad'). Received: preprocess.resize_mode='crop'"),
        ("preprocess.tile_grid_size=8", "`preprocess.tile_grid_size` must be two positive ints"),
        ("preprocess.clahe=maybe", "`preprocess.clahe` must be of type bool. Received: preprocess.clahe='maybe'"),
        ("preprocess.clip_limt=3", "unknown `preprocess` key `clip_limt`. Did you mean `clip_limit`?"),
        ("augment.fill_mode=mirror", "`augment.fill_mode` must be one of ('constant', 'reflect', 'wrap', 'nearest')"),
        ("augment.shift=2", "`augment.shift` must be a number >= 0.0 and <= 1.0. Received: augment.shift=2.0"),
        ("augment.rotation_degrees=-1", "`augment.rotation_degrees` must be a number >= 0.0"),
    ],
)
def test_bad_section_override_names_the_field(override, message):
    with pytest.raises(ValueError) as error:
        load_experiment("table4_resnet50_seme", [override])
    assert message in str(error.value)


def test_unet_sections_are_checked():
    with pytest.raises(ValueError, match="preprocess.segment=false and augment.clahe_mode='replace'"):
        load_experiment("unet_lungs", ["preprocess.segment=true"])
