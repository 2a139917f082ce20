"""Training without TensorFlow: the same trainer on JAX, NumPy/Pillow data that match `pipelines`.

`cxr-cascade train EXPERIMENT --backend jax` runs `training.runner` with the batches of
`training.arrays` (Pillow decoding, NumPy resize/CLAHE/rotation) instead of `tf.data`. These tests
check (1) that those arrays equal what the TF pipeline feeds the model, within one grey level, on
phantoms, on hand-made files of every container/colour mode, and on real images when present;
(2) that the array batches train through the runner into a complete run folder (TF backend, so
CI runs it); (3) on JAX, in a subprocess where importing TensorFlow or OpenCV fails, that a run
trains, writes the same run folder, resumes to the same numbers, and that the CLI path works.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cxr_cascade.training import arrays as A

REPO_ROOT = Path(__file__).resolve().parent.parent
HAS_JAX = importlib.util.find_spec("jax") is not None
GREY_LEVEL = 1.0 / 255.0
# The requirement is "within one grey level"; measured: <= 0.002 levels (float rounding of the
# resampling sums). A tenth of a level still catches any 8-bit rounding on the way, as the
# negative control shows with the retired trainer's decoding (Pillow "L", uint8 resize).
TOLERANCE = 0.1 * GREY_LEVEL

# Runs python with `tensorflow`, `cv2` and `tensorboard` imports refused, as on an accelerator
# image that has JAX but neither; then runs the module or script named by argv[1].
NO_TF_RUNNER = r'''
import importlib.abc, runpy, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "cv2", "tensorboard"):
            raise ModuleNotFoundError(f"No module named {name!r} (refused by the test)", name=name)
        return None

sys.meta_path.insert(0, Refuse())
target, sys.argv = sys.argv[1], [sys.argv[1]] + sys.argv[2:]
if target.endswith(".py"):
    runpy.run_path(target, run_name="__main__")
else:
    runpy.run_module(target, run_name="__main__", alter_sys=True)
'''

# A tiny stand-in network (the paper's are minutes per epoch on CPU) trained by the real runner.
TINY_MODEL = r'''
def tiny_model(config):
    import keras
    from cxr_cascade import models

    inputs = keras.Input((config.image_size, config.image_size, 1), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv1")(inputs)
    x = models.MomentExchange(config.moex.prob, config.moex.lam, config.moex.epsilon,
                              seed=config.seed, name="moex")(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="cam_features")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(len(config.classes), name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return models.MoExClassifier(inputs, outputs, name="tiny")
'''

TINY_TRAIN = TINY_MODEL + r'''
import json, sys

spec = json.loads(sys.argv[1])
import keras
from cxr_cascade.config import load_experiment
from cxr_cascade.training.runner import train

config = load_experiment(spec["experiment"], spec["overrides"])
result = train(config, spec["run_dir"], data_paths=spec["data"], resume=spec.get("resume", False),
               model_fn=tiny_model, verbose=2, argv=["tiny"],
               stop_after_epochs=spec.get("stop_after"))
print("TINY-DONE", json.dumps({"backend": keras.backend.backend(),
                               "epochs": result.state["epochs_completed"],
                               "modules": sorted(m for m in sys.modules
                                                 if m.split(".")[0] in ("tensorflow", "cv2"))}))
'''

TINY = ["image_size=32", "batch_size=4", "epochs=2", "dedup=off", "learning_rate=1e-3",
        "lr_min=1e-5", "clahe_fraction=0.5", "rotation_degrees=10", "balance=oversample"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    from cxr_cascade.phantoms import write_phantom_dataset

    out = tmp_path_factory.mktemp("portable") / "phantoms"
    write_phantom_dataset(out, n=48, size=64, seed=3)
    return out


# ---------------------------------------------------------------------------- decoding
def _tf_input(path: Path, size, resize_mode="stretch", clahe=False) -> np.ndarray:
    """What the TF pipeline feeds the model: `pipelines.preprocess.preprocess_image_bytes`."""
    from pipelines.preprocess import preprocess_image_bytes

    out = preprocess_image_bytes(Path(path).read_bytes(), image_size=size, resize_mode=resize_mode,
                                 clahe=clahe)
    return out.numpy()[..., 0]


def _assert_within_one_level(path: Path, size, resize_mode="stretch") -> None:
    expected = _tf_input(path, size, resize_mode)
    got = A.load_image(str(path), size, resize_mode)
    assert got.shape == expected.shape and got.dtype == np.float32
    worst = float(np.abs(got - expected).max())
    assert worst <= TOLERANCE, f"{path}: differs by {worst * 255:.3f} grey levels ({resize_mode})"


def test_decode_resize_matches_pipelines_on_phantoms(phantoms):
    files = sorted(p for p in phantoms.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    files = [p for p in files if "mask" not in str(p).lower()][::7][:24]
    assert len(files) >= 10
    for path in files:
        for size, mode in ((48, "stretch"), (100, "stretch"), ((40, 56), "pad")):
            _assert_within_one_level(path, size, mode)


def test_decode_matches_pipelines_for_every_container_and_colour_mode(tmp_path):
    """16-bit, palette, grey+alpha, RGB(A), 1-bit PNG; JPEG grey/RGB; BMP and GIF refused by both."""
    from PIL import Image
    import tensorflow as tf

    from pipelines.decode import decode_image

    rng = np.random.default_rng(0)
    grey = (rng.random((37, 53)) * 255).astype(np.uint8)
    rgb = (rng.random((37, 53, 3)) * 255).astype(np.uint8)
    cases = {
        "grey.png": Image.fromarray(grey),
        "grey16.png": Image.fromarray((rng.random((37, 53)) * 65535).astype(np.uint16)),
        "rgb.png": Image.fromarray(rgb),
        "rgba.png": Image.fromarray(np.dstack([rgb, grey])),
        "la.png": Image.merge("LA", [Image.fromarray(grey), Image.fromarray(grey[::-1])]),
        "palette.png": Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE),
        "bits.png": Image.fromarray(grey > 128),
        "grey.jpg": Image.fromarray(grey),
        "rgb.jpg": Image.fromarray(rgb),
    }
    for name in ("rgb.bmp", "grey.gif"):  # one decode policy: refused here as by tf.data
        path = tmp_path / name
        Image.fromarray(rgb).save(path)
        with pytest.raises(tf.errors.InvalidArgumentError):
            decode_image(tf.constant(path.read_bytes()))
        with pytest.raises(ValueError, match="only PNG and JPEG"):
            A.decode_image_file(str(path))
    for name, image in cases.items():
        path = tmp_path / name
        image.save(path)
        expected = decode_image(tf.constant(path.read_bytes())).numpy()[..., 0]
        got = A.decode_image_file(str(path))
        assert got.shape == expected.shape, name
        worst = float(np.abs(got - expected).max())
        assert worst <= TOLERANCE, f"{name}: {worst * 255:.3f} grey levels"
        _assert_within_one_level(path, 24)


def test_decode_resize_matches_pipelines_on_real_images(kermany_dir, ieee8023_dir):
    files = sorted((kermany_dir / "test" / "NORMAL").glob("*.jpeg"))[:2]
    files += sorted((kermany_dir / "test" / "PNEUMONIA").glob("*.jpeg"))[:2]
    images = sorted((ieee8023_dir / "images").iterdir())
    files += [p for p in images if p.suffix.lower() == ".png"][:2]
    files += [p for p in images if p.suffix.lower() in (".jpg", ".jpeg")][:2]
    assert files
    for path in files:
        _assert_within_one_level(path, 224)
        _assert_within_one_level(path, 96, "pad")


def test_negative_control_8_bit_resize_is_caught(phantoms):
    """The retired trainer's decoding (Pillow "L", bilinear on uint8) fails the same check."""
    from PIL import Image

    worst = 0.0
    for path in sorted((phantoms / "covid-chestxray-dataset").rglob("*.jp*g"))[:6]:
        with Image.open(path) as image:
            old = np.asarray(image.convert("L").resize((100, 100), Image.Resampling.BILINEAR))
        worst = max(worst, float(np.abs(old / np.float32(255) - _tf_input(path, 100)).max()))
    assert worst > TOLERANCE


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ValueError, match="broken.png"):
        A.load_images([str(bad)], 32)


def test_clahe_and_rotation_match_pipelines(phantoms):
    import tensorflow as tf

    from pipelines import transforms as T

    path = sorted((phantoms / "chest_xray").rglob("*.jpeg"))[0]
    image = _tf_input(path, 64)
    expected = T.apply_clahe(tf.constant(image[..., None]), 2.0, (8, 4)).numpy()[..., 0]
    np.testing.assert_array_equal(A.clahe(image, 2.0, (8, 4)), expected)
    # Negative control: another clip limit is another image.
    assert np.abs(A.clahe(image, 4.0, (8, 4)) - expected).max() > GREY_LEVEL

    for angle in (0.0, 17.0, -30.0):
        matrix = T.affine_matrix(64, 64, angle)
        expected = T.affine_transform(tf.constant(image[..., None]), matrix).numpy()[..., 0]
        np.testing.assert_allclose(A.rotation_matrix(64, 64, angle), matrix.numpy()[:6], atol=1e-5)
        got = A.affine_transform(image, A.rotation_matrix(64, 64, angle))
        np.testing.assert_allclose(got, expected, atol=1e-4)
        mask = (image > 0.5).astype(np.float32)
        expected = T.affine_transform(tf.constant(mask[..., None]), matrix,
                                      interpolation="nearest").numpy()[..., 0]
        got = A.affine_transform(mask, A.rotation_matrix(64, 64, angle), interpolation="nearest")
        assert np.mean(got != expected) < 0.002  # rounding ties only


# ---------------------------------------------------------------------------- the epoch recipe
def _records(phantoms, overrides):
    from cxr_cascade.config import load_experiment
    from cxr_cascade.training import data as D

    config = load_experiment("demo_stage1", overrides)
    paths = [str(phantoms / "chest_xray")]
    return config, D.split(config, D.select_records(config, D.read_sources(paths), paths))


def test_epoch_recipe_follows_the_config(phantoms):
    config, records = _records(phantoms, TINY + ["balance=sample_weight", "clahe_mode=add",
                                                 "clahe_fraction=0.25"])
    bundle = A.build_bundle(config, records)
    train = [r for r in records if r.split == "train"]
    assert bundle.class_names == config.classes
    epoch0 = bundle.make_train(0)
    # "add": round(0.25 N) CLAHE copies join the N originals; whole batches only.
    n = len(train) + round(0.25 * len(train))
    assert len(epoch0) == n // config.batch_size == bundle.steps_per_epoch
    assert int(epoch0.use_clahe.sum()) == round(0.25 * len(train))
    x, y, w = epoch0[0]
    assert x.shape == (4, 32, 32, 1) and x.dtype == np.float32 and y.dtype == np.int32
    counts = np.bincount(epoch0.targets, minlength=3)  # all training images, before copies
    np.testing.assert_allclose(w, (len(train) / (3 * counts))[y], rtol=1e-6)
    # Same (seed, epoch), same epoch; another epoch, another order.
    again = A.build_bundle(config, records).make_train(1)
    np.testing.assert_array_equal(bundle.make_train(1).entries, again.entries)
    assert not np.array_equal(bundle.make_train(2).entries, again.entries)
    # Oversampling: every class as often as the largest.
    config, records = _records(phantoms, TINY)
    entries = A.build_bundle(config, records).make_train(0).entries
    labels = np.array([config.classes.index(r.label) for r in records if r.split == "train"])
    assert len(set(np.bincount(labels[entries]).tolist())) == 1


def _stage2_records(phantoms, overrides):
    from cxr_cascade.config import load_experiment
    from cxr_cascade.training import data as D

    config = load_experiment("demo_stage2", overrides)
    paths = [str(phantoms / "covid-chestxray-dataset")]
    return config, D.split(config, D.select_records(config, D.read_sources(paths), paths))


SEGMENTED = ["image_size=32", "batch_size=4", "dedup=off", "rotation_degrees=0",
             "clahe_mode=add", "clahe_fraction=1.0", "segmented_copies=true"]


def test_segmented_copies_without_masks_or_unet_are_refused_with_a_clear_error(phantoms):
    config, records = _stage2_records(phantoms, SEGMENTED)
    with pytest.raises(ValueError, match="segmented_copies.*--unet"):
        A.build_bundle(config, records)


def test_segmented_copies_double_every_element_and_mask_it_after_clahe(phantoms):
    """plan_copies' recipe: originals + CLAHE copies, then all of them again lung-masked; the
    lung is mask_fn(resized image) > 0.5, applied after CLAHE (independent reference below)."""
    config, records = _stage2_records(phantoms, SEGMENTED)
    train = [r for r in records if r.split == "train"]

    def left_half(image):  # a stand-in U-Net: lung = left half of the image
        probability = np.zeros_like(np.asarray(image))
        probability[:, : probability.shape[1] // 2] = 0.9
        return probability

    epoch = A.build_bundle(config, records, mask_fn=left_half).make_train(0)
    assert len(epoch.entries) == 4 * len(train)  # x2 CLAHE copies ("add", 1.0), x2 segmented
    assert epoch.use_lung.sum() == 2 * len(train) and (epoch.use_clahe & epoch.use_lung).sum() == len(train)
    x, _, _ = epoch[0]
    for i in range(len(x)):
        image = epoch.images[epoch.entries[i]]
        expected = A.clahe(image) if epoch.use_clahe[i] else image
        if epoch.use_lung[i]:
            expected = expected.copy()
            expected[:, expected.shape[1] // 2:] = 0.0
        np.testing.assert_array_equal(x[i, ..., 0], expected)
    # Negative control: without segmented copies no element is masked.
    plain = A.build_bundle(config.replace(**{"augment.segmented_copies": False}), records).make_train(0)
    assert plain.use_lung is None and len(plain.entries) == 2 * len(train)


def _tiny_model(config):
    namespace: dict = {}
    exec(TINY_MODEL, namespace)
    return namespace["tiny_model"](config)


def _check_run_folder(run_dir: Path, epochs: int) -> dict:
    for name in ("config.json", "history.csv", "best.weights.h5", "model.keras", "splits.csv",
                 "state.json", "results.json", "environment.json", "command.txt"):
        assert (run_dir / name).is_file(), f"{name} missing from {run_dir}"
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["preprocess"]["image_size"] == 32 and config["balance"] == "oversample"
    return json.loads((run_dir / "results.json").read_text())


def test_array_batches_train_through_the_runner_on_tensorflow(phantoms, tmp_path):
    """The portable data path under the TF backend (CI has no JAX): same runner, same folder."""
    import keras

    from cxr_cascade.training.runner import train

    config, records = _records(phantoms, TINY)
    bundle = A.build_bundle(config, records)
    result = train(config, tmp_path / "run", data=bundle, model_fn=_tiny_model, verbose=0)
    results = _check_run_folder(tmp_path / "run", 2)
    assert results["n"] == sum(r.split == "test" for r in records)
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert model.output_shape == (None, 3) and result.state["finished"]


def test_unet_masks_train_through_the_runner(phantoms, tmp_path):
    """U-Net: {0, 1} masks decoded and resized as the pipelines, rotated with their image."""
    from cxr_cascade.config import load_experiment
    from cxr_cascade.training import data as D
    from cxr_cascade.training.runner import train

    config = load_experiment("demo_unet", ["image_size=32", "unet_filters=4,8", "epochs=1",
                                           "dedup=off", "rotation_degrees=20", "clahe_fraction=0.5"])
    paths = [str(phantoms / "lung-masks")]
    records = D.split(config, D.select_records(config, D.read_sources(paths), paths))
    bundle = A.build_bundle(config, records)
    x, y = bundle.make_train(0)[0]
    assert x.shape == y.shape == (config.batch_size, 32, 32, 1)
    assert set(np.unique(y).tolist()) <= {0.0, 1.0} and y.mean() > 0.05
    first = next(r for r in records if r.split == "val")
    import tensorflow as tf

    from pipelines import decode, transforms as T

    expected = T.resize_mask(decode.read_mask(tf.constant(first.mask_path)), 32).numpy()[..., 0]
    assert np.mean(A.load_mask(first.mask_path, 32) != expected) < 0.002
    result = train(config, tmp_path / "unet", data=bundle, verbose=0)
    assert result.state["finished"] and (tmp_path / "unet" / "model.keras").is_file()
    assert 0.0 <= json.loads((tmp_path / "unet" / "results.json").read_text())["mean_iou"] <= 1.0


def test_portable_runtime_settings():
    from cxr_cascade.config import load_experiment
    from cxr_cascade.training import backend

    assert backend.precision_policy("bfloat16") == "mixed_bfloat16"
    assert backend.precision_policy("off") == "float32"
    with pytest.raises(ValueError, match="mixed_precision"):
        backend.precision_policy("fp8")
    config = load_experiment("demo_stage1", ["strategy=mirrored"])
    with pytest.raises(ValueError, match="strategy='mirrored'"):
        backend._portable_runtime(config)


def test_cli_backend_cannot_switch_a_started_keras(capsys):
    import keras

    from cxr_cascade.cli import main

    assert keras.backend.backend() == "tensorflow"
    assert main(["train", "demo_stage1", "--backend", "jax", "--data", "nowhere"]) == 2
    assert "KERAS_BACKEND=jax" in capsys.readouterr().err


def test_cli_without_opencv_names_what_a_command_needs(tmp_path):
    """On an image without OpenCV the CLI still starts; `data phantoms` says it needs cv2."""
    runner = tmp_path / "no_tf.py"
    runner.write_text(NO_TF_RUNNER)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, str(runner), "cxr_cascade", "data", "phantoms", "--out", str(tmp_path / "out")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "needs cv2" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, str(runner), "cxr_cascade", "train", "--help"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--backend" in proc.stdout, proc.stderr[-2000:]


# ---------------------------------------------------------------------------- JAX, no TF, no cv2
def _run_without_tf(tmp_path: Path, *args: str, timeout: int = 600) -> str:
    runner = tmp_path / "no_tf.py"
    runner.write_text(NO_TF_RUNNER)
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(REPO_ROOT), JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(runner), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _tiny_on_jax(tmp_path: Path, phantoms: Path, run_dir: Path, **spec) -> dict:
    script = tmp_path / "tiny_train.py"
    script.write_text(TINY_TRAIN)
    spec = {"experiment": "demo_stage1", "overrides": TINY, "run_dir": str(run_dir),
            "data": [str(phantoms / "chest_xray")], **spec}
    out = _run_without_tf(tmp_path, str(script), json.dumps(spec))
    return json.loads(out.split("TINY-DONE", 1)[1].strip().splitlines()[0])


@pytest.mark.skipif(not HAS_JAX, reason="JAX is not installed")
def test_jax_trains_without_tensorflow(phantoms, tmp_path):
    done = _tiny_on_jax(tmp_path, phantoms, tmp_path / "whole")
    assert done == {"backend": "jax", "epochs": 2, "modules": []}
    _check_run_folder(tmp_path / "whole", 2)
    env = json.loads((tmp_path / "whole" / "environment.json").read_text())
    assert env["keras_backend"] == "jax" and "tensorflow" not in env


@pytest.mark.slow
@pytest.mark.skipif(not HAS_JAX, reason="JAX is not installed")
def test_jax_run_resumes_to_the_same_numbers(phantoms, tmp_path):
    _tiny_on_jax(tmp_path, phantoms, tmp_path / "whole")
    whole = _check_run_folder(tmp_path / "whole", 2)
    assert _tiny_on_jax(tmp_path, phantoms, tmp_path / "cut", stop_after=1)["epochs"] == 1
    assert not (tmp_path / "cut" / "results.json").exists()
    assert _tiny_on_jax(tmp_path, phantoms, tmp_path / "cut", resume=True)["epochs"] == 2
    resumed = _check_run_folder(tmp_path / "cut", 2)
    history = [list(csv.DictReader((tmp_path / d / "history.csv").open())) for d in ("whole", "cut")]
    for a, b in zip(*history):
        assert a["loss"] == b["loss"] and a["val_loss"] == b["val_loss"]
    assert resumed["accuracy"] == whole["accuracy"]
    # The split is the TF trainer's (same readers, same patient split from the same seed).
    assert (tmp_path / "whole" / "splits.csv").read_bytes() == (tmp_path / "cut" / "splits.csv").read_bytes()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_JAX, reason="JAX is not installed")
def test_cli_backend_jax_trains_the_experiment_network(phantoms, tmp_path):
    """`cxr-cascade train demo_stage1 --backend jax`: SEME-ResNet50 + MoEx, 1 epoch at 32 px."""
    run_dir = tmp_path / "cli"
    _run_without_tf(tmp_path, "cxr_cascade", "train", "demo_stage1", "--backend", "jax",
                    "--data", str(phantoms / "chest_xray"), "--run-dir", str(run_dir), "--quiet",
                    *[a for o in TINY + ["epochs=1"] for a in ("--set", o)])
    results = _check_run_folder(run_dir, 1)
    assert results["experiment"] == "demo_stage1" and "--backend jax" in results["command"]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_JAX, reason="JAX is not installed")
def test_jax_trains_with_augmentation_in_the_model(phantoms, tmp_path):
    """`--set augment.placement=model` on JAX: rotation and shift (which the NumPy path does not
    implement) run as layers of SEME-ResNet50; the run finishes and its model.keras holds them."""
    run_dir = tmp_path / "in_model"
    _run_without_tf(tmp_path, "cxr_cascade", "train", "demo_stage1", "--backend", "jax",
                    "--data", str(phantoms / "chest_xray"), "--run-dir", str(run_dir), "--quiet",
                    *[a for o in TINY + ["epochs=1", "augment.placement=model",
                                         "augment.rotation_degrees=30", "augment.shift=0.1"]
                      for a in ("--set", o)])
    results = _check_run_folder(run_dir, 1)
    assert results["experiment"] == "demo_stage1"
    architecture = (run_dir / "model.keras").read_bytes()
    assert b"RandomAffine" in architecture and b"AdaptiveEqualization" in architecture
