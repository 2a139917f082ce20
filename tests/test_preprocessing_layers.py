"""CLAHE and rotation as keras.ops layers (`cxr_cascade.models.preprocessing`), on any backend.

Backend-agnostic: the file runs under the session's Keras backend (TensorFlow in CI), and one
test re-runs it under JAX in a subprocess when JAX is installed. On a GPU machine the same file
checks the accelerator: ``KERAS_BACKEND=jax python -m pytest tests/test_preprocessing_layers.py``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from keras import ops

from cxr_cascade.models.preprocessing import (
    AdaptiveEqualization,
    RandomAffine,
    affine_matrices,
    affine_transform,
    clahe,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
BACKEND = keras.backend.backend()


def _cv2_clahe(image, clip, grid):
    # `tile_grid_size` is OpenCV's tileGridSize: (tiles along width, tiles along height).
    return cv2.createCLAHE(clipLimit=clip, tileGridSize=tuple(grid)).apply(image)


def _compiled(fn):
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return fn


def _images(shape, count=3, seed=0):
    return np.random.default_rng(seed + sum(shape)).integers(0, 256, (count, *shape), dtype=np.uint8)


# --- clahe: OpenCV's numbers ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64, 64), (50, 33), (17, 9), (24, 38), (3, 2), (1, 1), (5, 40)])
@pytest.mark.parametrize("clip", [0.0, 1.0, 2.0, 40.0])
@pytest.mark.parametrize("grid", [(8, 8), (4, 6)])
def test_clahe_matches_opencv(shape, clip, grid):
    """Eager, batched: divisible and padded sizes, pads wider than the image (folded again)."""
    images = _images(shape)
    expected = np.stack([_cv2_clahe(img, clip, grid) for img in images])[..., None]
    out = clahe(images[..., None], clip, grid)
    np.testing.assert_array_equal(ops.convert_to_numpy(out), expected)


@pytest.mark.parametrize("shape, clip, grid", [((64, 64), 2.0, (8, 8)), ((50, 33), 4.0, (4, 6)), ((5, 40), 0.0, (8, 8))])
def test_clahe_compiled_matches_opencv(shape, clip, grid):
    """Compiled (XLA under TensorFlow and JAX): no fused multiply-add changes a bit."""
    images = _images(shape, count=4, seed=1)
    expected = np.stack([_cv2_clahe(img, clip, grid) for img in images])[..., None]
    out = _compiled(lambda x: clahe(x, clip, grid))(images[..., None])
    np.testing.assert_array_equal(ops.convert_to_numpy(out), expected)


def test_clahe_matches_opencv_on_real_radiographs(kermany_dir):
    paths = sorted((kermany_dir / "test").glob("*/*.jpeg"))[::150]
    fn = _compiled(lambda x: clahe(x, 2.0, (8, 8)))
    for size in [(512, 512), (333, 500)]:
        images = np.stack([cv2.resize(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), size[::-1]) for p in paths])
        expected = np.stack([_cv2_clahe(img, 2.0, (8, 8)) for img in images])[..., None]
        np.testing.assert_array_equal(ops.convert_to_numpy(fn(images[..., None])), expected)


def test_clahe_shapes_dtypes_and_channels():
    rgb = _images((20, 30), count=2, seed=3).transpose(1, 2, 0)  # [H, W, 2]: each channel on its own
    out = ops.convert_to_numpy(clahe(rgb))
    assert out.shape == (20, 30, 2) and out.dtype == np.uint8
    for c in range(2):
        np.testing.assert_array_equal(out[..., c], _cv2_clahe(rgb[..., c], 2.0, (8, 8)))
    gray = rgb[..., 0]
    np.testing.assert_array_equal(ops.convert_to_numpy(clahe(gray)), _cv2_clahe(gray, 2.0, (8, 8)))
    as_int = ops.convert_to_numpy(clahe(gray.astype(np.int32)))
    assert as_int.dtype == np.int32
    np.testing.assert_array_equal(as_int, _cv2_clahe(gray, 2.0, (8, 8)))
    beyond = gray.astype(np.int32) * 2 - 100  # clipped to 0..255 first
    np.testing.assert_array_equal(
        ops.convert_to_numpy(clahe(beyond)), _cv2_clahe(np.clip(beyond, 0, 255).astype(np.uint8), 2.0, (8, 8))
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"clip_limit": -1.0}, "clip_limit"),
        ({"clip_limit": float("nan")}, "clip_limit"),
        ({"tile_grid_size": (0, 8)}, "tile_grid_size"),
        ({"tile_grid_size": 8}, "tile_grid_size"),
    ],
)
def test_clahe_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"{match}.*Received"):
        clahe(np.zeros((8, 8), np.uint8), **kwargs)


@pytest.mark.parametrize(
    "images", [np.zeros((8, 8), np.float32), np.zeros((8,), np.uint8), np.zeros((8, 8), np.uint16)]
)
def test_clahe_rejects_floats_and_bad_ranks(images):
    with pytest.raises(ValueError, match="images.*Received: images with dtype"):
        clahe(images)


# --- AdaptiveEqualization: the pipeline's bits inside a model -----------------------------------


def _pipeline_clahe(x):
    """What `pipelines.transforms.apply_clahe` gives, by its definition, via OpenCV."""
    q = np.round(np.clip(x, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
    out = np.stack([_cv2_clahe(img[..., 0], 2.0, (8, 8)) for img in q])[..., None]
    return out.astype(np.float32) * np.float32(1.0 / 255.0)


def test_layer_on_floats_equals_quantise_opencv_rescale():
    x = np.random.default_rng(4).random((3, 32, 24, 1), dtype=np.float32)
    out = ops.convert_to_numpy(AdaptiveEqualization()(x))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, _pipeline_clahe(x))


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the tf.data pipeline needs the TensorFlow backend")
def test_layer_equals_the_tf_data_pipeline():
    from pipelines.transforms import apply_clahe

    x = np.random.default_rng(5).random((2, 40, 36, 1), dtype=np.float32)
    expected = np.stack([apply_clahe(img, 2.0, (8, 8)).numpy() for img in x])
    np.testing.assert_array_equal(ops.convert_to_numpy(AdaptiveEqualization()(x)), expected)


def test_layer_keeps_float32_under_mixed_precision():
    x = np.random.default_rng(6).random((2, 32, 32, 1), dtype=np.float32)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = AdaptiveEqualization()
        out = ops.convert_to_numpy(layer(x))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    np.testing.assert_array_equal(out.astype(np.float32), _pipeline_clahe(x))


def test_layer_fraction_draws_per_image_in_training_only():
    x = np.random.default_rng(7).random((64, 16, 16, 1), dtype=np.float32)
    enhanced = _pipeline_clahe(x)
    layer = AdaptiveEqualization(fraction=0.5, seed=1)
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(x, training=False)), x)
    out = ops.convert_to_numpy(layer(x, training=True))
    is_enhanced = [np.array_equal(o, e) for o, e in zip(out, enhanced)]
    is_original = [np.array_equal(o, i) for o, i in zip(out, x)]
    assert all(a or b for a, b in zip(is_enhanced, is_original))
    assert 16 <= sum(is_enhanced) <= 48  # about half, never all or none
    always = ops.convert_to_numpy(AdaptiveEqualization(fraction=1.0)(x, training=True))
    np.testing.assert_array_equal(always, enhanced)
    never = ops.convert_to_numpy(AdaptiveEqualization(fraction=0.0)(x, training=True))
    np.testing.assert_array_equal(never, x)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"fraction": 1.5}, "fraction"), ({"fraction": True}, "fraction"), ({"clip_limit": -2}, "clip_limit")],
)
def test_layer_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"{match}.*Received"):
        AdaptiveEqualization(**kwargs)


def test_layer_rejects_integer_inputs_other_than_uint8():
    with pytest.raises(ValueError, match="uint8 or float. Received: inputs.dtype=int32"):
        AdaptiveEqualization()(np.zeros((1, 8, 8, 1), np.int32))


# --- RandomAffine ---------------------------------------------------------------------------------


def test_affine_is_identity_in_inference_and_at_the_middle_draw():
    x = np.random.default_rng(8).random((2, 12, 10, 1), dtype=np.float32)
    layer = RandomAffine(30.0, shift=0.1, zoom=0.2)
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(x, training=False)), x)
    middle = np.full((2, 4), 0.5, np.float32)  # angle 0, no shift, scale 1
    np.testing.assert_allclose(ops.convert_to_numpy(layer.transform(x, middle)), x, atol=1e-6)


@pytest.mark.parametrize("k, degrees, u0", [(1, 90.0, 1.0), (2, 180.0, 1.0), (3, 90.0, 0.0)])
def test_rotation_by_quarter_turns_is_rot90(k, degrees, u0):
    """angle = (2 u0 - 1) * rotation_degrees: +90, +180 and -90 (= three quarter turns)."""
    x = np.random.default_rng(k).random((1, 9, 9, 1), dtype=np.float32)
    layer = RandomAffine(degrees)
    out = ops.convert_to_numpy(layer.transform(x, np.array([[u0, 0.5, 0.5, 0.5]], np.float32)))
    np.testing.assert_allclose(out[0], np.rot90(x[0], k=k), atol=1e-5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the tf.data augmentation needs the TensorFlow backend")
def test_affine_equals_the_tf_data_augmentation():
    import pipelines.transforms as T

    x = np.random.default_rng(9).random((3, 20, 16, 1), dtype=np.float32)
    u = np.random.default_rng(10).random((3, 4), dtype=np.float32)
    layer = RandomAffine(30.0, shift=0.1, zoom=0.2)
    expected = []
    for img, ui in zip(x, u):
        m = T.random_affine_matrix(ui, 20, 16, rotation_degrees=30.0, shift=0.1, zoom=0.2)
        expected.append(T.affine_transform(img, m).numpy())
    np.testing.assert_allclose(ops.convert_to_numpy(layer.transform(x, u)), np.stack(expected), atol=1e-5)
    for interpolation in ("nearest", "bilinear"):  # a map with exact coordinates: the same bits
        m = T.affine_matrix(20, 16, 0.0, 1.0, 2.0, -3.0)
        expected = T.affine_transform(x[0], m, interpolation=interpolation, fill_value=0.25).numpy()
        out = affine_transform(x[:1], ops.convert_to_numpy(m)[None], interpolation, fill_value=0.25)
        np.testing.assert_array_equal(ops.convert_to_numpy(out)[0], expected)


def test_affine_matrices_batch_and_broadcast():
    m = ops.convert_to_numpy(affine_matrices(10, 20, np.zeros(3, np.float32)))
    assert m.shape == (3, 8)
    np.testing.assert_allclose(m, np.tile([1, 0, 0, 0, 1, 0, 0, 0], (3, 1)), atol=1e-6)


def test_nearest_rotation_keeps_masks_binary():
    mask = (np.random.default_rng(11).random((4, 16, 16, 1)) > 0.5).astype(np.float32)
    out = ops.convert_to_numpy(RandomAffine(30.0, interpolation="nearest", seed=2)(mask, training=True))
    assert set(np.unique(out)) <= {0.0, 1.0}
    assert not np.array_equal(out, mask)  # it did move


@pytest.mark.parametrize(
    "kwargs, match",
    [({"rotation_degrees": 200.0}, "rotation_degrees"), ({"zoom": 1.0}, "zoom"), ({"interpolation": "cubic"}, "interpolation")],
)
def test_affine_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"{match}.*Received"):
        RandomAffine(**kwargs)


# --- inside a model -------------------------------------------------------------------------------


def test_layers_in_a_saved_model_round_trip(tmp_path):
    inputs = keras.Input((24, 24, 1))
    h = AdaptiveEqualization(clip_limit=3.0, tile_grid_size=(4, 6))(inputs)
    h = RandomAffine(30.0, seed=3)(h)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(h))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(12).random((2, 24, 24, 1), dtype=np.float32)
    np.testing.assert_array_equal(ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)))
    assert loaded.layers[1].get_config()["tile_grid_size"] == [4, 6]


@pytest.mark.skipif(BACKEND == "jax" or importlib.util.find_spec("jax") is None, reason="needs JAX installed (re-runs this file under it)")
def test_the_same_file_passes_under_jax():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__))],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
