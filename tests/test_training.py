"""Training runner specification: run directory, artifacts, divergence stop, data errors.

The paper's networks are far too slow to train in the default suite, so these tests train a
tiny stand-in classifier (two convolutions, MoEx, dropout; same `cam_features` -> `logits` ->
`probabilities` ending) on tiny phantoms through the real readers, splits and tf.data pipelines.
`tests/test_config.py` builds every real network; `make demo` trains them.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

# A stand-in model and a command-line entry point for subprocess tests (test_resume, test_strategy).
STANDIN_SOURCE = r'''
import json, os, sys
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tiny_model(config):
    """Conv(4) -> [MoEx] -> Conv(8) = cam_features -> GAP -> dropout -> logits -> probabilities."""
    import keras
    from cxr_cascade import models

    from cxr_cascade.models.build import augmentation_layers

    inputs = keras.Input((config.image_size, config.image_size, 1), name="image")
    x = inputs
    for layer in augmentation_layers(config):  # augment.placement="model"
        x = layer(x)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv1")(x)
    if config.moex is not None:
        x = models.MomentExchange(config.moex.prob, config.moex.lam, config.moex.epsilon,
                                  seed=config.seed, name="moex")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="cam_features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(0.25, name="dropout")(x)
    x = keras.layers.Dense(len(config.classes), name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    cls = models.MoExClassifier if config.moex is not None else keras.Model
    return cls(inputs, outputs, name="tiny")


def main(spec):
    if spec.get("logical_cpus"):
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * spec["logical_cpus"])
    from cxr_cascade.config import load_experiment, load_resolved
    from cxr_cascade.training.runner import train

    run_dir = spec["run_dir"]
    if spec.get("resume"):
        config = load_resolved(os.path.join(run_dir, "config.json"))
    else:
        config = load_experiment(spec["experiment"], spec.get("overrides", []))
    result = train(config, run_dir, data_paths=spec.get("data", []), resume=spec.get("resume", False),
                   model_fn=tiny_model, verbose=2, argv=["standin"], **spec.get("train_kwargs", {}))
    print("STANDIN-DONE", json.dumps({"epochs": result.state["epochs_completed"],
                                      "stopped": result.stopped}), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
'''

# Small, fast stage-1 settings on 32 px phantoms.
TINY = [
    "image_size=32",
    "batch_size=4",
    "epochs=2",
    "learning_rate=0.05",
    "dedup=off",
]


@pytest.fixture(scope="session")
def standin_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("standin") / "standin_train.py"
    path.write_text(STANDIN_SOURCE)
    return path


@pytest.fixture(scope="session")
def standin(standin_path):
    spec = importlib.util.spec_from_file_location("standin_train", standin_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory) -> Path:
    from cxr_cascade.phantoms import write_phantom_dataset

    root = tmp_path_factory.mktemp("phantoms") / "set"
    write_phantom_dataset(root, n=40, size=48, seed=3)
    return root


def tiny_config(name="table4_resnet50_seme", extra=()):
    from cxr_cascade.config import load_experiment

    return load_experiment(name, TINY + list(extra))


def _train(standin, config, run_dir, data, **kwargs):
    from cxr_cascade.training.runner import train

    return train(config, run_dir, data_paths=data, model_fn=standin.tiny_model, verbose=0,
                 argv=["test"], **kwargs)


# ------------------------------------------------------------------------------------------ runs
@pytest.fixture(scope="module")
def finished_run(standin, phantom_root, tmp_path_factory):
    """One finished 2-epoch stage-1 run shared by the tests that only read it."""
    run = tmp_path_factory.mktemp("finished") / "run"
    config = tiny_config()
    result = _train(standin, config, run, [str(phantom_root / "chest_xray")])
    return config, run, result


def test_run_directory_holds_every_artifact(finished_run):
    from pipelines.records import read_manifest
    from pipelines.splits import leaking_patients

    config, run, result = finished_run

    for name in ("config.json", "environment.json", "command.txt", "inputs.json", "splits.csv",
                 "splits.sha256", "state.json", "best.weights.h5", "history.csv", "curves.png",
                 "results.json"):
        assert (run / name).is_file(), name
    # the last checkpoint and the one before it (the fallback should the last be damaged)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "epoch-0001.weights.h5", "epoch-0002.weights.h5"]
    assert not list(run.rglob(".*.tmp*")), "temporary files left behind"

    assert json.loads((run / "config.json").read_text())["preprocess"]["image_size"] == 32
    env = json.loads((run / "environment.json").read_text())
    assert env["tensorflow"] and env["keras"] and env["devices"] and env["replicas"] == 1
    assert isinstance(env["threads"], dict)  # TF_NUM_INTRAOP_THREADS etc. when a run was given them

    with open(run / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(rows[0])
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", (run / "curves.png").read_bytes()[16:24])
    assert width > 400 and height > 200

    records = read_manifest(run / "splits.csv")
    assert {r.split for r in records} == {"train", "val", "test"}
    assert not leaking_patients(records)
    assert {r.label for r in records} == {"normal", "bacterial", "viral"}

    results = json.loads((run / "results.json").read_text())
    assert results["evaluated_split"] == "test" and results["epochs"] == 2
    assert results["n"] == sum(r.split == "test" for r in records)
    assert 0.0 <= results["accuracy"] <= 1.0 and 0.0 <= results["macro_f1"] <= 1.0
    assert np.sum(results["confusion_matrix"]) == results["n"]
    assert results["command"] == "test" and results["wall_seconds"] > 0
    assert result.state["finished"] and result.state["best"]["epoch"] in (1, 2)

    # TensorBoard event files for both splits.
    assert list((run / "tensorboard" / "train").glob("events.out.tfevents.*"))
    assert list((run / "tensorboard" / "validation").glob("events.out.tfevents.*"))


def test_results_accuracy_matches_an_independent_evaluation(standin, finished_run):
    """results.json's accuracy/F1 = scikit-learn on the best weights' predictions.

    Macro F1 averages over every class of the experiment (a class absent from the test split
    and from the predictions counts as F1 0), as `cxr-cascade evaluate` reports it: the trainer
    scores with the same `cxr_cascade.evaluation.metrics.classification_metrics`.
    """
    from sklearn.metrics import accuracy_score, f1_score
    from pipelines.config import PreprocessConfig
    from pipelines.datasets import build_dataset
    from pipelines.records import read_manifest

    config, run, _ = finished_run
    model = standin.tiny_model(config)
    model.load_weights(run / "best.weights.h5")
    test = [r for r in read_manifest(run / "splits.csv") if r.split == "test"]
    ds = build_dataset(test, class_names=config.classes, preprocess=PreprocessConfig(image_size=32),
                       batch_size=8, training=False)
    y_true = np.concatenate([y.numpy() for _, y in ds])
    y_pred = np.concatenate([model.predict(x, verbose=0).argmax(-1) for x, _ in ds])
    results = json.loads((run / "results.json").read_text())
    assert results["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    labels = list(range(len(config.classes)))
    assert results["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    assert results["class_names"] == list(config.classes)


def test_existing_run_directory_is_never_overwritten(standin, phantom_root, finished_run):
    from cxr_cascade.training.runner import ResumeError

    config, run, _ = finished_run
    before = {p: p.read_bytes() for p in run.glob("*.json")}
    with pytest.raises(ResumeError, match="already holds a run; pass --resume"):
        _train(standin, config, run, [str(phantom_root / "chest_xray")])
    assert {p: p.read_bytes() for p in run.glob("*.json")} == before


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(standin, phantom_root, tmp_path):
    """Epoch 1 trains normally; epoch 2's images are NaN: clear error, epoch-1 checkpoint kept."""
    import tensorflow as tf
    from cxr_cascade.training import data as data_mod
    from cxr_cascade.training.callbacks import TrainingDiverged
    from cxr_cascade.training.runner import train

    run = tmp_path / "run"
    config = tiny_config(extra=["epochs=2"])
    bundle = data_mod.prepare_data(config, [str(phantom_root / "chest_xray")], run_dir=run)
    good = bundle.make_train

    def poisoned(epoch):
        ds = good(epoch)
        return ds if epoch == 0 else ds.map(lambda x, y: (x * float("nan"), y))

    bundle.make_train = poisoned
    with pytest.raises(TrainingDiverged, match=r"(loss became nan at|NaN/inf during) epoch 2.*"
                                               r"Last good checkpoint: checkpoints/epoch-0001"):
        train(config, run, data=bundle, model_fn=standin.tiny_model, verbose=0)
    state = json.loads((run / "state.json").read_text())
    assert state["epochs_completed"] == 1 and state["stopped"].startswith("diverged")
    assert state["checkpoint"] == "checkpoints/epoch-0001.weights.h5"
    model = standin.tiny_model(config)
    model.load_weights(run / state["checkpoint"])
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_epochs_do_not_reset_tensorflows_global_seed(standin, phantom_root, tmp_path, monkeypatch):
    """Per-epoch seeding must leave TensorFlow's global seed alone.

    `tf.random.set_seed` (called by `keras.utils.set_random_seed`) clears TensorFlow's kernel
    cache, so the next `fit` re-instantiates and re-optimises the whole train-step graph: 18 s of
    every 27 s epoch for DenseNet169 at 64 px on 2 CPU cores. Seeding once per run is fine.
    """
    import tensorflow as tf

    calls = []
    original = tf.random.set_seed
    monkeypatch.setattr(tf.random, "set_seed", lambda seed: (calls.append(seed), original(seed))[1])
    counts = {}
    for epochs in (1, 3):
        calls.clear()
        _train(standin, tiny_config(extra=[f"epochs={epochs}"]), tmp_path / f"run{epochs}",
               [str(phantom_root / "chest_xray")])
        counts[epochs] = len(calls)
    assert counts[3] == counts[1] <= 1


def test_epoch_divergence_rule():
    from cxr_cascade.training.callbacks import check_epoch_divergence

    history = [{"loss": 1.0}]
    assert check_epoch_divergence({"loss": 0.5, "val_loss": 0.7}, history, 100.0) is None
    assert "exceeds divergence_factor=100" in check_epoch_divergence({"loss": 150.0}, history, 100.0)
    assert check_epoch_divergence({"loss": 150.0}, history, None) is None
    assert "val_loss is inf" in check_epoch_divergence({"loss": 1.0, "val_loss": math.inf}, history, None)
    assert check_epoch_divergence({"loss": 5.0}, [], 2.0) is None  # nothing to compare with yet


# ------------------------------------------------------------------------------------------ data
def test_wrong_data_path_is_one_clear_error(tmp_path):
    from cxr_cascade.training.data import prepare_data

    with pytest.raises(FileNotFoundError, match=r"--data .*nowhere: no such file or folder"):
        prepare_data(tiny_config(), [str(tmp_path / "nowhere")])
    with pytest.raises(ValueError, match="no data: pass --data"):
        prepare_data(tiny_config(), [])


def test_missing_class_is_named(phantom_root, tmp_path):
    from cxr_cascade.training.data import prepare_data

    copy = tmp_path / "chest_xray"
    shutil.copytree(phantom_root / "chest_xray", copy)
    for path in copy.rglob("*virus*"):
        path.unlink()
    with pytest.raises(ValueError, match=r"no images of class 'viral' \(found: bacterial \d+, normal \d+\)"):
        prepare_data(tiny_config(), [str(copy)])


def test_config_that_does_not_fit_the_data(phantom_root):
    from cxr_cascade.training.data import prepare_data

    stage2 = tiny_config("table5_seme_densenet169", ["segmented_copies=false"])
    with pytest.raises(ValueError, match=r"no images of class 'covid19'.*needs classes covid19, viral"):
        prepare_data(stage2, [str(phantom_root / "chest_xray")])
    plus = tiny_config("table5_seme_densenet169_kermany_viral", ["segmented_copies=false"])
    with pytest.raises(ValueError, match="needs the Kermany set too"):
        prepare_data(plus, [str(phantom_root / "covid-chestxray-dataset")])
    unet = tiny_config("unet_lungs", ["unet_filters=4,8"])
    with pytest.raises(ValueError, match="no image has a lung mask"):
        prepare_data(unet, [str(phantom_root / "chest_xray")])


def test_stage2_negative_class_choices(phantom_root):
    """ieee8023 viral only vs plus Kermany viral: same COVID-19 images, more negatives."""
    from cxr_cascade.training.data import read_sources, select_records

    ieee = str(phantom_root / "covid-chestxray-dataset")
    kermany = str(phantom_root / "chest_xray")
    records = read_sources([ieee, kermany])
    only = select_records(tiny_config("table5_seme_densenet169"), records, [ieee, kermany])
    plus = select_records(tiny_config("table5_seme_densenet169_kermany_viral"), records, [ieee, kermany])
    assert {r.dataset for r in only} == {"ieee8023"}  # source: ieee8023/<publishing origin>
    assert {(r.dataset, r.label) for r in plus} == {("ieee8023", "covid19"), ("ieee8023", "viral"),
                                                   ("kermany", "viral")}
    assert [r for r in plus if r.label == "covid19"] == [r for r in only if r.label == "covid19"]


def test_max_per_class_keeps_class_proportions_in_every_split(phantom_root):
    from cxr_cascade.training.data import read_sources, select_records, split

    config = tiny_config(extra=["max_per_class=4"])
    data = [str(phantom_root / "chest_xray")]
    records = split(config, select_records(config, read_sources(data), data))
    train = [r for r in records if r.split == "train"]
    for label in config.classes:
        assert 1 <= sum(r.label == label for r in train) <= 4 + 2  # whole patients: may overshoot
    assert any(r.split == "test" for r in records)


def test_unet_run_reports_mean_iou(phantom_root, tmp_path):
    """The U-Net path end to end at a tiny width: mean IoU on validation and in results.json."""
    from cxr_cascade.config import load_experiment
    from cxr_cascade.training.runner import train

    config = load_experiment(
        "unet_lungs",
        ["image_size=32", "batch_size=4", "epochs=1", "unet_filters=4,8", "dedup=off", "max_per_class=12"],
    )
    run = tmp_path / "unet"
    result = train(config, run, data_paths=[str(phantom_root / "lung-masks")], verbose=0)
    row = result.state["history"][0]
    assert {"loss", "mean_iou", "val_loss", "val_mean_iou"} <= set(row)
    results = json.loads((run / "results.json").read_text())
    assert 0.0 <= results["mean_iou"] <= 1.0


def test_classifier_monitored_by_balanced_accuracy(standin, phantom_root, tmp_path):
    """`monitor=val_balanced_accuracy` logs the metric each epoch and picks the best epoch by it."""
    config = tiny_config(extra=["epochs=2", "monitor=val_balanced_accuracy"])
    result = _train(standin, config, tmp_path / "run", [str(phantom_root / "chest_xray")])
    history = result.state["history"]
    assert all({"balanced_accuracy", "val_balanced_accuracy"} <= set(row) for row in history)
    best = max(history, key=lambda row: row["val_balanced_accuracy"])
    assert result.state["best"]["monitor"] == "val_balanced_accuracy"
    assert result.state["best"]["value"] == pytest.approx(best["val_balanced_accuracy"])
    from cxr_cascade.artifacts import load

    assert load(tmp_path / "run").model.count_params() > 0  # model.keras reloads with it
    with pytest.raises(ValueError, match="val_balanced_accuracy"):
        from cxr_cascade.config import load_experiment

        load_experiment("unet_lungs", ["monitor=val_balanced_accuracy"])


def test_augment_placement_model_moves_the_draws_into_the_network(standin, phantom_root, tmp_path):
    """`augment.placement=model`: CLAHE draws and rotation run as layers, the pipeline leaves them out."""
    import keras

    from cxr_cascade.models.build import augmentation_layers, build_model

    model_side = ["augment.placement=model", "augment.rotation_degrees=30", "augment.shift=0.1"]
    config = tiny_config(extra=model_side)
    host = config.augment.for_host()
    assert (host.clahe_fraction, host.rotation_degrees, host.shift, host.placement) == (0.0, 0.0, 0.0, "pipeline")
    assert [layer.name for layer in augmentation_layers(config)] == ["augment_clahe", "augment_affine"]
    clahe_layer = augmentation_layers(config)[0]
    assert clahe_layer.fraction == 0.4 and clahe_layer.tile_grid_size == tuple(config.preprocess.tile_grid_size)
    net = build_model(config)
    assert [layer.name for layer in net.layers[1:3]] == ["augment_clahe", "augment_affine"]
    # Negative control: the default placement adds no layer and leaves the pipeline its draws.
    plain = tiny_config(extra=["augment.rotation_degrees=30"])
    assert augmentation_layers(plain) == [] and plain.augment.for_host() is plain.augment
    assert "augment_clahe" not in [layer.name for layer in build_model(plain).layers]
    # "add"-mode copies are planned by the pipeline whatever the placement.
    add = tiny_config(name="table5_seme_densenet169", extra=["augment.placement=model"])
    assert add.augment.for_host().clahe_fraction == add.augment.clahe_fraction == 1.0
    assert [layer.name for layer in augmentation_layers(add)] == ["augment_affine"]

    result = _train(standin, config, tmp_path / "run", [str(phantom_root / "chest_xray")])
    assert result.state["finished"] and result.results["evaluated_split"] == "test"
    from cxr_cascade.artifacts import load

    loaded = load(tmp_path / "run").model
    assert {"augment_clahe", "augment_affine"} <= {layer.name for layer in loaded.layers}
    x = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    without = keras.Model(loaded.get_layer("conv1").input, loaded.output)  # inference: identity layers
    np.testing.assert_allclose(loaded.predict(x, verbose=0), without.predict(x, verbose=0), atol=1e-6)
    from cxr_cascade.explain.gradcam import gradcam

    maps, _ = gradcam(loaded, x)
    assert maps.shape[0] == 2 and np.isfinite(maps).all()  # Grad-CAM reads such a model as any other


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["augment.placement=device"], "placement"),
        (["augment.placement=model", "augment.fill_mode=reflect"], "fill_mode='constant'"),
    ],
)
def test_augment_placement_bad_values(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(extra=overrides)
    if overrides == ["augment.placement=device"]:
        return
    from cxr_cascade.config import load_experiment

    with pytest.raises(ValueError, match="image and mask must move together"):
        load_experiment("unet_lungs", ["augment.placement=model"])


# ------------------------------------------------------------------------------------------ files
def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    from pipelines.atomic import atomic_path, atomic_write_json

    target = tmp_path / "state.json"
    atomic_write_json(target, {"epoch": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"epoch": ')  # half-written
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_history_csv_and_curves_from_history(tmp_path):
    from cxr_cascade.training.callbacks import plot_curves, write_history_csv

    history = [{"epoch": e, "loss": 1.0 / e, "accuracy": 0.5 + e / 10, "val_loss": 1.2 / e,
                "val_accuracy": 0.4 + e / 10} for e in (1, 2, 3)]
    write_history_csv(tmp_path / "h.csv", history)
    with open(tmp_path / "h.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["val_accuracy"]) for r in rows] == pytest.approx([0.5, 0.6, 0.7])
    plot_curves(tmp_path / "c.png", history, title="x")
    assert (tmp_path / "c.png").stat().st_size > 10_000


def test_train_command_line_errors(tmp_path, capsys):
    from cxr_cascade.cli import main

    assert main(["train", "table4_resnet50_seme", "--data", str(tmp_path / "missing"),
                 "--set", "image_size=32", "--run-dir", str(tmp_path / "r")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["train", "table4_resnet50_seme", "--set", "imag_size=32"]) == 2
    assert "Did you mean `image_size`?" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["train", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "table4_resnet50_seme" in listing and "Table 4, row SEME, ResNet50" in listing


# ----------------------------------------------------------------------------------- image cache
def _garble(paths) -> None:
    """Overwrite files with garbage of the same size and time (what a cache key sees)."""
    import os

    for path in paths:
        stat = os.stat(path)
        Path(path).write_bytes(b"x" * stat.st_size)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _read_all(ds) -> int:
    return sum(int(images.shape[0]) for images, *_ in ds)


def test_train_cache_serves_later_epochs_without_decoding(phantom_root, tmp_path):
    """`train --cache DIR`: epoch 1 writes the keyed cache, epoch 2 reads it (no decoding)."""
    import tensorflow as tf

    from cxr_cascade.training.data import prepare_data

    data = tmp_path / "chest_xray"
    shutil.copytree(phantom_root / "chest_xray", data)
    cache = tmp_path / "cache"
    config = tiny_config()
    bundle = prepare_data(config, [str(data)], cache_dir=str(cache))
    plain = prepare_data(config, [str(data)])  # negative control: no cache
    first = _read_all(bundle.make_train(0))
    train_files = sorted(p.name for p in cache.glob(f"{config.name}-train-*.index"))
    assert len(train_files) == 1  # a complete epoch was written
    assert sorted(p.name for p in cache.glob(f"{config.name}-eval-*.index")) == []  # val not read yet
    _read_all(bundle.val)
    assert len(list(cache.glob(f"{config.name}-eval-*.index"))) == 1
    train_paths = [r.path for r in bundle.records if r.split == "train"]
    _garble(train_paths)
    assert _read_all(bundle.make_train(1)) == first  # served from the cache file
    with pytest.raises(tf.errors.InvalidArgumentError):  # no cache: the garbled files are decoded
        _read_all(plain.make_train(1))
    # Another preprocessing setting never reuses the cache: it decodes (and fails here).
    changed = prepare_data(tiny_config(extra=["preprocess.clip_limit=3"]), [str(data)],
                           cache_dir=str(cache))
    with pytest.raises(tf.errors.InvalidArgumentError):
        _read_all(changed.make_train(1))
    assert sorted(p.name for p in cache.glob(f"{config.name}-train-*.index")) == train_files


def test_train_with_cache_dir_writes_keyed_cache_files(standin, phantom_root, tmp_path):
    cache = tmp_path / "cache"
    result = _train(standin, tiny_config(), tmp_path / "run", [str(phantom_root / "chest_xray")],
                    cache_dir=str(cache))
    assert result.state["epochs_completed"] == 2
    name = tiny_config().name
    assert len(list(cache.glob(f"{name}-train-*.index"))) == 1  # one file for both epochs
    assert len(list(cache.glob(f"{name}-eval-*.index"))) >= 1  # validation (and test) sets
