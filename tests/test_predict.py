"""`cxr-cascade export` on run directories, then `cxr-cascade predict` on the export."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import keras

from cxr_cascade.cli import main
from cxr_cascade.config import from_dict
from cxr_cascade.artifacts import load
from cxr_cascade.models import build_unet
from cxr_cascade.predict import Failure, Prediction, Predictor, find_model
from pipelines.config import PreprocessConfig
from pipelines.datasets import build_dataset

STAGE1 = ["normal", "bacterial", "viral"]
STAGE2 = ["covid19", "viral"]


def tiny_classifier(num_classes: int, name: str) -> keras.Model:
    inputs = keras.Input((32, 32, 1), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Activation("linear", name="cam_features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, keras.layers.Activation("softmax", name="probabilities")(logits), name=name)


def write_run(folder: Path, config: dict, model: keras.Model, as_weights: bool = False) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(from_dict(config).to_dict()))
    if as_weights:
        model.save_weights(folder / "best.weights.h5")
    else:
        model.save(folder / "model.keras")
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("predict")
    base = {"image_size": 32, "backbone": "resnet50"}
    s1 = tiny_classifier(3, "stage1")
    s2 = tiny_classifier(2, "stage2")
    run1 = write_run(root / "run1", {"name": "s1", "task": "stage1", "classes": STAGE1, **base}, s1)
    run2 = write_run(root / "run2", {"name": "s2", "task": "stage2", "classes": STAGE2, **base}, s2)
    models = root / "models"
    assert main(["export", str(run1), str(run2), "--out", str(models)]) == 0
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir()
    good = []
    for i, suffix in enumerate((".png", ".jpg", ".png")):
        path = images / f"scan{i}{suffix}"
        cv2.imwrite(str(path), (rng.random((40 + i, 36, 3 if i == 1 else 1)) * 255).astype(np.uint8))
        good.append(path)
    corrupt = images / "corrupt.png"
    corrupt.write_bytes(good[0].read_bytes()[:70])
    text = images / "notes.png"
    text.write_text("not an image")
    return {"root": root, "models": models, "s1": s1, "s2": s2, "good": good,
            "corrupt": corrupt, "text": text, "run1": run1}


def test_export_command_writes_the_layout_and_refuses_overwrite(exported, capsys):
    models = exported["models"]
    for name in ("stage1", "stage2", "cascade"):
        assert (models / name / "1" / "saved_model.pb").is_file()
    assert "cascade" in (models / "models.config").read_text()
    info = json.loads((models / "cascade" / "1" / "assets.extra" / "cxr_cascade.json").read_text())
    assert info["class_names"] == ["normal", "bacterial", "covid19", "viral"]
    assert info["stage1"]["source"] == str(exported["run1"])
    capsys.readouterr()
    assert main(["export", str(exported["run1"]), "--out", str(models), "--version", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(exported["root"] / "nope"), "--out", str(models)]) == 2
    assert "run directory not found" in capsys.readouterr().err


def test_load_run_rebuilds_from_config_and_weights(tmp_path, capsys):
    """An old run folder (flat `image_size` in config.json, weights, no model.keras) still loads."""
    unet = build_unet(input_shape=(32, 32, 1), filters=(4, 8))
    config = {"name": "u", "task": "unet", "image_size": 32, "unet_filters": [4, 8],
              "monitor": "val_mean_iou"}
    run = tmp_path / "unet"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config))
    unet.save_weights(run / "best.weights.h5")
    stage = load(run)
    note = capsys.readouterr().err
    assert note.count("\n") == 1 and "no model.keras" in note and "best.weights.h5" in note
    assert stage.task == "unet" and stage.class_names == () and stage.preprocess.image_size == 32
    x = np.random.default_rng(0).random((1, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(stage.model(x).numpy(), unet(x).numpy(), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load(tmp_path)


def test_predict_json_lines_heatmaps_and_bad_files(exported, capsys, tmp_path):
    good, models = exported["good"], exported["models"]
    files = [good[0], exported["corrupt"], good[1], exported["text"], tmp_path / "missing.png", good[2]]
    capsys.readouterr()
    code = main(["predict", *map(str, files), "--models", str(models), "--json",
                 "--heatmap", str(tmp_path / "heat")])
    captured = capsys.readouterr()
    assert code == 1
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["file"] for r in rows] == [str(f) for f in files]
    errors = {r["file"]: r["error"] for r in rows if "error" in r}
    assert set(errors) == {str(exported["corrupt"]), str(exported["text"]), str(tmp_path / "missing.png")}
    assert "Invalid PNG data" in errors[str(exported["corrupt"])]
    assert errors[str(exported["text"])] == "not a PNG or JPEG file (unknown file signature)"
    assert errors[str(exported["corrupt"])].startswith("corrupt or truncated image (Invalid PNG data")
    assert errors[str(tmp_path / "missing.png")] == "file not found"
    assert len([l for l in captured.err.splitlines() if l.startswith("cxr-cascade predict: ")]) == 4

    # Independent reference: the Keras models on the evaluation pipeline's tensors.
    ds = build_dataset(([str(p) for p in good], ["viral"] * 3), class_names=["viral"],
                       preprocess=PreprocessConfig(image_size=32), batch_size=3, training=False)
    x = next(iter(ds))[0].numpy()
    p1, p2 = exported["s1"](x).numpy(), exported["s2"](x).numpy()
    ok = [r for r in rows if "error" not in r]
    for i, row in enumerate(ok):
        expected = [p1[i, 0], p1[i, 1], p1[i, 2] * p2[i, 0], p1[i, 2] * p2[i, 1]]
        got = [row["probabilities"][n] for n in ("normal", "bacterial", "covid19", "viral")]
        np.testing.assert_allclose(got, expected, atol=1e-5)
        k1 = int(np.argmax(p1[i]))  # the paper's gate: stage 2 decides what stage 1 calls viral
        gate = 2 + int(np.argmax(p2[i])) if k1 == 2 else k1
        assert row["diagnosis"] == ["normal", "bacterial", "covid19", "viral"][gate]
        np.testing.assert_allclose(list(row["stage1_probabilities"].values()), p1[i], atol=1e-5)
        heat = cv2.imread(row["heatmap"])
        assert heat is not None and heat.shape[0] == 32 and heat.shape[1] > 64  # original | overlay


def test_predict_table_and_all_good_exit_code(exported, capsys):
    capsys.readouterr()
    assert main(["predict", *map(str, exported["good"]), "--models", str(exported["models"])]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["file", "diagnosis"] and "p(covid19)" in out[0]
    assert len(out) == 4 and all(str(p) in line for p, line in zip(exported["good"], out[1:]))


def test_predict_rule_soft_is_argmax_of_products(exported):
    from cxr_cascade.predict import Predictor

    names = ["normal", "bacterial", "covid19", "viral"]
    for path in exported["good"]:
        data = Path(path).read_bytes()
        soft = Predictor(exported["models"], rule="soft").predict_bytes(data)
        gate = Predictor(exported["models"]).predict_bytes(data)
        products = [soft.probabilities[n] for n in names]
        assert soft.class_name == names[int(np.argmax(products))]
        s1, s2 = list(gate.stage1.values()), list(gate.stage2.values())
        k1 = int(np.argmax(s1))
        assert gate.class_name == names[2 + int(np.argmax(s2)) if k1 == 2 else k1]


def test_predictor_api_and_missing_models(exported, tmp_path):
    predictor = Predictor(exported["models"], "stage1")
    results = list(predictor.predict_files([exported["good"][0], exported["text"]]))
    assert isinstance(results[0], Prediction) and set(results[0].probabilities) == set(STAGE1)
    assert isinstance(results[1], Failure)
    assert find_model(exported["models"], "cascade").name == "1"
    with pytest.raises(FileNotFoundError, match="no exported model 'cascade'"):
        Predictor(tmp_path)
