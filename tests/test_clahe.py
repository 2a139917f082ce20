"""pipelines.clahe.clahe and the CLAHE layer: identical to OpenCV's CLAHE.

Reference: ``cv2.createCLAHE(clipLimit, tileGridSize).apply`` (OpenCV imgproc/src/clahe.cpp).
Golden tests on real radiographs from ../shared/data (skipped when absent) and on random images;
the accepted tolerance of the issue (<= 1 grey level on <= 0.1 % of pixels) is not needed: the
outputs are required to be identical.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from _helpers import assert_identical, per_plane, read_grey
from pipelines.clahe import CLAHE, clahe

CLIPS = (0.0, 1.0, 2.0, 4.0, 40.0)
GRIDS = ((8, 8), (4, 6))


def opencv_clahe(images: np.ndarray, clip: float, grid) -> np.ndarray:
    """cv2 CLAHE of each [H, W] plane of `images` ([..., H, W])."""
    op = cv2.createCLAHE(clipLimit=clip, tileGridSize=tuple(grid))
    return per_plane(op.apply, images)


def resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    smaller = height * width < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if smaller else cv2.INTER_CUBIC)


@pytest.fixture
def radiographs(kermany_dir, ieee8023_dir) -> list[np.ndarray]:
    """Four real radiographs: two Kermany (224 px, R=G=B JPEG) and two ieee8023 (<= 768 px)."""
    kermany = sorted((kermany_dir / "train" / "NORMAL").glob("*.jpeg"))[:1] + sorted(
        (kermany_dir / "test" / "PNEUMONIA").glob("*.jpeg")
    )[:1]
    ieee = sorted((ieee8023_dir / "images").glob("*.jp*g"))
    return [read_grey(p) for p in kermany + ieee[10:11] + ieee[200:201]]


def random_images(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Half uniform noise (every histogram bin hit, heavy clipping), half smooth noise."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (count, height, width), dtype=np.uint8)
    sigma = max(1.0, min(height, width) / 40)
    smooth = [cv2.GaussianBlur(n, (0, 0), sigma) for n in noise[count // 2 :]]
    return np.concatenate([noise[: count // 2], np.reshape(smooth, (-1, height, width))])


# ---------------------------------------------------------------------------------------------
# Golden tests against OpenCV


def _golden_real(radiographs, size, clip, grid):
    height, width = size
    images = np.stack([resized(r, height, width) for r in radiographs])
    out = clahe(images[..., None], clip, grid)[..., 0]
    assert_identical(out, opencv_clahe(images, clip, grid), f"real {height}x{width} clip={clip} grid={grid}")


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("size", [(512, 512), (500, 333), (17, 9)])
def test_matches_opencv_on_real_radiographs(radiographs, size, clip, grid):
    _golden_real(radiographs, size, clip, grid)


def test_matches_opencv_on_real_radiographs_1024(radiographs):
    _golden_real(radiographs, (1024, 1024), 2.0, (8, 8))


@pytest.mark.slow
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("size", [(1024, 1024), (2000, 1700), (1700, 2000), (333, 500), (9, 17)])
def test_matches_opencv_on_real_radiographs_sweep(radiographs, size, clip, grid):
    _golden_real(radiographs, size, clip, grid)


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("clip", (0.0, 2.0, 40.0))
@pytest.mark.parametrize(
    "size",
    # divisible; padded on both axes; tiny; narrower than the grid; pad wider than the image
    # (8 rows reflected in a 8-row image whose width is not divisible); single pixel
    [(512, 512), (500, 333), (17, 9), (9, 17), (3, 5), (8, 9), (1, 1)],
)
def test_matches_opencv_on_random_images(size, clip, grid):
    images = random_images(2, *size, seed=size[0] * 1000 + size[1])
    out = clahe(images[..., None], clip, grid)[..., 0]
    assert_identical(out, opencv_clahe(images, clip, grid), f"random {size} clip={clip} grid={grid}")


@pytest.mark.slow
@pytest.mark.parametrize("grid", GRIDS + ((1, 1), (16, 3)))
@pytest.mark.parametrize("clip", CLIPS + (0.5, 3.7))
@pytest.mark.parametrize("size", [(1024, 1024), (2000, 1700), (64, 1000), (255, 257)])
def test_matches_opencv_on_random_images_sweep(size, clip, grid):
    images = random_images(2, *size, seed=1)
    out = clahe(images[..., None], clip, grid)[..., 0]
    assert_identical(out, opencv_clahe(images, clip, grid), f"random {size} clip={clip} grid={grid}")


@pytest.mark.parametrize("size, clip", [((100, 75), 0.0), ((100, 75), 40.0), ((256, 256), 2.0)])
def test_uint16_matches_opencv(radiographs, size, clip):
    """12-bit radiographs: OpenCV's CV_16U path (65536 bins, LUT scaled to 65535)."""
    twelve_bit = np.stack(
        [resized(r, *size).astype(np.uint16) * 16 + np.uint16(i) for i, r in enumerate(radiographs[1:3])]
    )
    noise = np.random.default_rng(0).integers(0, 4096, (1,) + size).astype(np.uint16)
    images = np.concatenate([twelve_bit, noise])
    out = clahe(images[..., None], clip, (8, 8))[..., 0]
    assert out.dtype == tf.uint16
    assert_identical(out, opencv_clahe(images, clip, (8, 8)), f"uint16 {size} clip={clip}")


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize(
    "dtype, count, size",
    # Static sizes big enough to be cut into bands of rows (2-4, uneven, padded, several planes).
    [(np.uint8, 3, (333, 500)), (np.uint8, 1, (1023, 997)), (np.uint16, 1, (600, 520))],
)
def test_row_bands_match_opencv(dtype, count, size, jit):
    from pipelines.clahe import _bands

    assert len(_bands(count, *size)) > 1  # the banded code path is the one under test
    images = random_images(count, *size, seed=7)
    if dtype == np.uint16:
        images = images.astype(np.uint16) * 16 + 5
    fn = tf.function(lambda x: clahe(x, 2.0, (8, 8)), jit_compile=jit)
    out = fn(tf.constant(images[..., None]))[..., 0]
    assert_identical(out, opencv_clahe(images, 2.0, (8, 8)), f"bands {dtype.__name__} {size} jit={jit}")


# ---------------------------------------------------------------------------------------------
# Execution modes: eager, tf.function, XLA, tf.data, SavedModel


def _run(mode: str, image: np.ndarray, clip: float, grid, tmp_path: Path) -> np.ndarray:
    fn = lambda x: clahe(x, clip, grid)  # noqa: E731
    if mode == "eager":
        return clahe(image, clip, grid).numpy()
    if mode == "function":
        spec = tf.TensorSpec([None, None, 1], tf.uint8)
        return tf.function(fn, input_signature=[spec])(image).numpy()
    if mode == "jit_compile":
        return tf.function(fn, jit_compile=True)(image).numpy()
    if mode == "dataset":
        dataset = tf.data.Dataset.from_tensors(image).repeat(2).map(fn).batch(2)
        batches = [b.numpy() for b in dataset]
        assert len(batches) == 1 and np.array_equal(batches[0][0], batches[0][1])
        return batches[0][0]
    if mode.startswith("saved_model"):
        shape = list(image.shape) if mode == "saved_model_fixed" else [None, None, 1]
        module = tf.Module()
        module.enhance = tf.function(fn, input_signature=[tf.TensorSpec(shape, tf.uint8)])
        path = str(tmp_path / mode)
        tf.saved_model.save(module, path)
        del module
        return tf.saved_model.load(path).enhance(tf.constant(image)).numpy()
    raise AssertionError(mode)


MODES = ("eager", "function", "jit_compile", "dataset", "saved_model_fixed", "saved_model_dynamic")


@pytest.mark.parametrize("mode", MODES)
def test_execution_modes_match_opencv(mode, tmp_path):
    for size, clip, grid in (((333, 500), 2.0, (4, 6)), ((17, 9), 40.0, (8, 8)), ((64, 64), 0.0, (8, 8))):
        image = random_images(2, *size, seed=3)[1]
        out = _run(mode, image[..., None], clip, grid, tmp_path)
        ref = opencv_clahe(image, clip, grid)
        assert_identical(out[..., 0], ref, f"{mode} {size} clip={clip} grid={grid}")


def test_jit_compile_option_eagerly_and_in_dataset_map(radiographs):
    images = np.stack([resized(r, 160, 120) for r in radiographs])[..., None]
    ref = opencv_clahe(images[..., 0], 2.0, (8, 8))[..., None]
    assert_identical(clahe(images, jit_compile=True), ref, "jit_compile=True, eager")
    dataset = tf.data.Dataset.from_tensor_slices(images).map(
        lambda x: clahe(x, 2.0, (8, 8), jit_compile=True)
    )
    assert_identical(np.stack([x.numpy() for x in dataset]), ref, "jit_compile=True, Dataset.map")
    with pytest.raises(ValueError, match="jit_compile"):
        clahe(images, jit_compile="yes")


def test_saved_model_with_unknown_size_on_real_radiograph(radiographs, tmp_path):
    image = resized(radiographs[2], 500, 333)
    out = _run("saved_model_dynamic", image[..., None], 2.0, (8, 8), tmp_path)
    assert_identical(out[..., 0], opencv_clahe(image, 2.0, (8, 8)), "SavedModel, real radiograph")


# ---------------------------------------------------------------------------------------------
# Shapes, dtypes, memory


@pytest.mark.parametrize(
    "shape", [(20, 30), (20, 30, 1), (3, 20, 30, 1), (20, 30, 3), (2, 20, 30, 3), (1, 1)]
)
def test_shapes_and_channels(shape):
    """Each channel of each image is equalised on its own, as OpenCV would per plane."""
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = clahe(image, 2.0, (4, 4)).numpy()
    assert out.shape == image.shape and out.dtype == np.uint8
    planes = np.moveaxis(image.reshape(shape if len(shape) > 2 else shape + (1,)), -1, -3)
    ref = np.moveaxis(opencv_clahe(np.ascontiguousarray(planes), 2.0, (4, 4)), -3, -1)
    assert_identical(out.reshape(ref.shape), ref, f"shape {shape}")


def test_no_tensor_of_pixels_times_bins():
    """Histograms by bincount, LUTs by gather: no H * W * 256 intermediate (Keras' one-hot)."""
    height, width = 256, 192
    fn = tf.function(lambda x: clahe(x, 2.0, (8, 8)))
    graph = fn.get_concrete_function(tf.TensorSpec([height, width, 1], tf.uint8)).graph
    largest = 0
    for op in graph.get_operations():
        for t in op.outputs:
            if t.shape.is_fully_defined():
                largest = max(largest, t.shape.num_elements())
    assert 0 < largest < height * width * 256 / 16, largest


# ---------------------------------------------------------------------------------------------
# Bad arguments


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"clip_limit": "2"}, "clip_limit"),
        ({"clip_limit": True}, "clip_limit"),
        ({"clip_limit": float("nan")}, "clip_limit"),
        ({"tile_grid_size": (0, 8)}, "tile_grid_size"),
        ({"tile_grid_size": (8,)}, "tile_grid_size"),
        ({"tile_grid_size": 8}, "tile_grid_size"),
        ({"tile_grid_size": (8.0, 8)}, "tile_grid_size"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        clahe(np.zeros((16, 16), np.uint8), **kwargs)
    with pytest.raises(ValueError, match=match):
        CLAHE(**kwargs)


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((16, 16), np.float32), "dtype=float32"),
        (np.zeros((16, 16), np.int32), "dtype=int32"),
        (np.zeros((16,), np.uint8), r"shape=\(16,\)"),
        (np.zeros((1, 2, 16, 16, 1), np.uint8), "shape"),
    ],
)
def test_bad_images(image, match):
    with pytest.raises(ValueError, match=match):
        clahe(image)


# ---------------------------------------------------------------------------------------------
# Keras layer


def test_layer_uint8_is_clahe():
    images = random_images(2, 40, 30, seed=5)[..., None]
    layer = CLAHE(clip_limit=3.0, tile_grid_size=(4, 6))
    out = layer(images)
    assert out.dtype == tf.uint8 and tuple(out.shape) == images.shape
    assert_identical(out, opencv_clahe(images[..., 0], 3.0, (4, 6))[..., None], "layer uint8")


def test_layer_float_input_is_quantised_equalised_and_rescaled():
    rng = np.random.default_rng(0)
    unit = rng.random((2, 40, 30, 1)).astype(np.float32)
    quantised = np.round(unit * 255).astype(np.uint8)
    expected = opencv_clahe(quantised[..., 0], 2.0, (8, 8))[..., None].astype(np.float32) / 255
    out = CLAHE()(unit)
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-7)
    # input_scale=255: float images in [0, 255] stay in [0, 255]
    out255 = CLAHE(input_scale=255.0)(unit * 255)
    np.testing.assert_allclose(out255, expected * 255, rtol=0, atol=1e-4)
    # values outside the range are clipped before quantisation
    out_clip = CLAHE()(np.clip(unit * 3 - 1, -1, 2).astype(np.float32))
    assert 0.0 <= float(tf.reduce_min(out_clip)) and float(tf.reduce_max(out_clip)) <= 1.0


def test_layer_jit_compile_option():
    images = random_images(2, 40, 30, seed=7)[..., None]
    layer = CLAHE(jit_compile=True)
    assert layer.get_config()["jit_compile"] is True
    assert_identical(layer(images), opencv_clahe(images[..., 0], 2.0, (8, 8))[..., None], "layer jit")


def test_layer_training_only_option():
    images = random_images(2, 40, 30, seed=6)[..., None]
    layer = CLAHE(apply_in_inference=False)
    np.testing.assert_array_equal(layer(images, training=False), images)
    np.testing.assert_array_equal(layer(images), images)
    enhanced = layer(images, training=True)
    assert_identical(enhanced, opencv_clahe(images[..., 0], 2.0, (8, 8))[..., None], "training=True")


def test_layer_config_round_trip():
    layer = CLAHE(clip_limit=4.0, tile_grid_size=(4, 6), apply_in_inference=False, input_scale=255.0, name="clahe")
    config = layer.get_config()
    assert config["clip_limit"] == 4.0 and tuple(config["tile_grid_size"]) == (4, 6)
    assert config["apply_in_inference"] is False and config["input_scale"] == 255.0
    assert config["jit_compile"] is False
    clone = CLAHE.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, CLAHE) and restored.get_config() == config


def test_layer_model_saves_and_reloads(tmp_path, radiographs):
    inputs = keras.Input(shape=(None, None, 1), dtype="uint8")
    model = keras.Model(inputs, CLAHE(clip_limit=2.0, tile_grid_size=(8, 8), name="clahe")(inputs))
    image = resized(radiographs[0], 100, 75)[None, ..., None]
    before = model.predict(image, verbose=0)
    path = tmp_path / "clahe.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    after = reloaded.predict(image, verbose=0)
    assert isinstance(reloaded.get_layer("clahe"), CLAHE)
    np.testing.assert_array_equal(before, after)
    assert_identical(after[0, ..., 0], opencv_clahe(image[0, ..., 0], 2.0, (8, 8)), "reloaded model")


def test_layer_rejects_integer_dtypes_other_than_uint():
    with pytest.raises(ValueError, match="int32"):
        CLAHE()(np.zeros((1, 8, 8, 1), np.int32))
    with pytest.raises(ValueError, match="input_scale"):
        CLAHE(input_scale=0)
    with pytest.raises(ValueError, match="apply_in_inference"):
        CLAHE(apply_in_inference="yes")
    with pytest.raises(ValueError, match="jit_compile"):
        CLAHE(jit_compile=1)
