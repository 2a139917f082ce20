"""A trained run is one artifact: config (with its preprocessing) + model.keras, one loader.

A run trained with `--set preprocess.clip_limit=3` records it in its
config.json, `cxr_cascade.artifacts.load` returns it, and the exported serving graph's CLAHE
equals OpenCV's `cv2.createCLAHE(clipLimit=3)`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_training import TINY, _train, phantom_root, standin, standin_path, tiny_config  # noqa: F401

# CLAHE on every image at clip limit 3, 2x2 tiles of 16x16 pixels: OpenCV's clip is then
# clipLimit * 256 / 256 = 3 counts per bin (at 8x8 tiles of 4x4 pixels clip 2 and 3 would both
# round up to OpenCV's floor of 1 and the test could not tell them apart).
OVERRIDES = ["preprocess.clahe=true", "preprocess.clip_limit=3", "preprocess.tile_grid_size=2,2",
             "augment.clahe_fraction=0", "epochs=1"]


@pytest.fixture(scope="module")
def clahe_run(standin, phantom_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("artifact") / "run"
    config = tiny_config(extra=OVERRIDES)
    _train(standin, config, run, [str(phantom_root / "chest_xray")])
    return config, run


def _test_image(size=32):
    """A deterministic 8-bit test image: a smooth gradient, a bright disc and noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:size, :size]
    image = 60 + 2.5 * x + 40 * ((x - 20) ** 2 + (y - 12) ** 2 < 40) + rng.normal(0, 6, (size, size))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def test_run_records_its_preprocessing_and_load_returns_it(clahe_run):
    from cxr_cascade.artifacts import load
    from cxr_cascade.artifacts.layout import MODEL_FILE
    from pipelines.config import PreprocessConfig

    config, run = clahe_run
    saved = json.loads((run / "config.json").read_text())
    assert saved["preprocess"]["clip_limit"] == 3.0 and saved["preprocess"]["clahe"] is True
    assert saved["preprocess"]["tile_grid_size"] == [2, 2]
    assert (run / MODEL_FILE).is_file()

    stage = load(run)
    assert stage.preprocess == PreprocessConfig(32, "stretch", True, 3.0, (2, 2), False)
    assert stage.preprocess == config.preprocess
    assert stage.task == "stage1" and stage.class_names == ("normal", "bacterial", "viral")


def test_model_keras_holds_the_best_weights(standin, clahe_run, capsys):
    """model.keras (MoEx model, custom layers) = the network rebuilt from best.weights.h5."""
    from cxr_cascade import models
    from cxr_cascade.artifacts import load

    config, run = clahe_run
    stage = load(run)
    assert isinstance(stage.model, models.MoExClassifier)
    assert "no model.keras" not in capsys.readouterr().err
    rebuilt = standin.tiny_model(config)
    rebuilt.load_weights(run / "best.weights.h5")
    images = np.random.default_rng(1).random((3, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(stage.model(images, training=False)), np.asarray(rebuilt(images, training=False)),
        rtol=0, atol=1e-6,
    )


def test_exported_serving_graph_applies_opencv_clahe_at_the_run_clip_limit(clahe_run, tmp_path):
    cv2 = pytest.importorskip("cv2")
    import tensorflow as tf

    from cxr_cascade.export import export_models
    from cxr_cascade.artifacts import load

    _, run = clahe_run
    written = export_models(tmp_path / "models", stage1=load(run))
    served = tf.saved_model.load(str(written["stage1"]))
    image = _test_image()
    png = tf.io.encode_png(image[..., None]).numpy()
    out = served.signatures["preprocess"](image_bytes=tf.constant([png]))
    (pre,) = out.values()
    got = np.round(pre.numpy()[0, ..., 0] * 255).astype(np.uint8)

    expected = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(2, 2)).apply(image)
    np.testing.assert_array_equal(got, expected)
    # Negative control: OpenCV at the default clip limit 2 gives another image.
    assert not np.array_equal(got, cv2.createCLAHE(clipLimit=2.0, tileGridSize=(2, 2)).apply(image))
