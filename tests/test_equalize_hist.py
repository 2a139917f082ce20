"""pipelines.clahe.equalize_hist: identical to cv2.equalizeHist (the paper's HE, Fig. 7)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tensorflow as tf

from _helpers import assert_identical, per_plane, read_grey
from pipelines.clahe import equalize_hist


def opencv_equalize(images: np.ndarray) -> np.ndarray:
    return per_plane(cv2.equalizeHist, images)


@pytest.fixture
def radiographs(kermany_dir, ieee8023_dir) -> list[np.ndarray]:
    kermany = sorted((kermany_dir / "train" / "PNEUMONIA").glob("*.jpeg"))[:2]
    ieee = sorted((ieee8023_dir / "images").glob("*.jp*g"))
    return [read_grey(p) for p in kermany + ieee[30:31] + ieee[300:301]]


@pytest.mark.parametrize("size", [(512, 512), (500, 333), (17, 9), (1024, 1024)])
def test_matches_opencv_on_real_radiographs(radiographs, size):
    height, width = size
    images = np.stack([cv2.resize(r, (width, height), interpolation=cv2.INTER_AREA) for r in radiographs])
    out = equalize_hist(images[..., None])[..., 0]
    assert_identical(out, opencv_equalize(images), f"real {size}")


def test_matches_opencv_on_native_radiographs(radiographs):
    for image in radiographs:  # native sizes, one call each
        assert_identical(equalize_hist(image), cv2.equalizeHist(image), f"native {image.shape}")


@pytest.mark.slow
@pytest.mark.parametrize("size", [(2000, 1700), (1700, 2000), (333, 500)])
def test_matches_opencv_on_real_radiographs_large(radiographs, size):
    height, width = size
    images = np.stack([cv2.resize(r, (width, height), interpolation=cv2.INTER_CUBIC) for r in radiographs])
    assert_identical(equalize_hist(images[..., None])[..., 0], opencv_equalize(images), f"real {size}")


def _special_images(height: int, width: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(height * 31 + width)
    two = np.full((height, width), 10, np.uint8)
    two.flat[::3] = 200
    dark = rng.integers(0, 3, (height, width), dtype=np.uint8)
    return {
        "uniform noise": rng.integers(0, 256, (height, width), dtype=np.uint8),
        "smooth": cv2.GaussianBlur(rng.integers(0, 256, (height, width), dtype=np.uint8), (0, 0), 3),
        # OpenCV returns a one-level image unchanged (no division by zero)
        "one level": np.full((height, width), 77, np.uint8),
        "one level at 0": np.zeros((height, width), np.uint8),
        "one level at 255": np.full((height, width), 255, np.uint8),
        "two levels": two,
        "three dark levels": dark,
    }


@pytest.mark.parametrize("size", [(512, 512), (500, 333), (17, 9), (1, 1), (2, 3)])
def test_matches_opencv_on_random_and_degenerate_images(size):
    for name, image in _special_images(*size).items():
        assert_identical(equalize_hist(image), cv2.equalizeHist(image), f"{name} {size}")


def test_batch_equalises_each_image_on_its_own():
    images = np.stack(list(_special_images(40, 30).values()))[..., None]  # [7, 40, 30, 1]
    out = equalize_hist(images)
    assert_identical(out, opencv_equalize(images[..., 0])[..., None], "batch")


@pytest.mark.parametrize("shape", [(20, 30), (20, 30, 1), (3, 20, 30, 1), (20, 30, 3), (2, 20, 30, 3)])
def test_shapes_and_channels(shape):
    image = np.random.default_rng(0).integers(0, 200, shape, dtype=np.uint8)
    out = equalize_hist(image).numpy()
    assert out.shape == image.shape and out.dtype == np.uint8
    planes = np.moveaxis(image.reshape(shape if len(shape) > 2 else shape + (1,)), -1, -3)
    ref = np.moveaxis(opencv_equalize(np.ascontiguousarray(planes)), -3, -1)
    assert_identical(out.reshape(ref.shape), ref, f"shape {shape}")


@pytest.mark.parametrize("mode", ["eager", "function", "jit_compile", "dataset", "saved_model"])
def test_execution_modes(mode, tmp_path):
    images = _special_images(33, 50)
    for name in ("smooth", "one level", "two levels"):
        image = images[name][..., None]
        if mode == "eager":
            out = equalize_hist(image)
        elif mode == "function":
            out = tf.function(equalize_hist, input_signature=[tf.TensorSpec([None, None, 1], tf.uint8)])(image)
        elif mode == "jit_compile":
            out = tf.function(equalize_hist, jit_compile=True)(image)
        elif mode == "dataset":
            out = next(iter(tf.data.Dataset.from_tensors(image).map(equalize_hist)))
        else:
            module = tf.Module()
            module.equalize = tf.function(equalize_hist, input_signature=[tf.TensorSpec([None, None, 1], tf.uint8)])
            tf.saved_model.save(module, str(tmp_path / name))
            out = tf.saved_model.load(str(tmp_path / name)).equalize(image)
        assert_identical(np.asarray(out)[..., 0], cv2.equalizeHist(image[..., 0]), f"{mode} {name}")


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((8, 8), np.float32), "dtype=float32"),
        (np.zeros((8, 8), np.uint16), "dtype=uint16"),
        (np.zeros((8,), np.uint8), "shape"),
        (np.zeros((1, 1, 8, 8, 1), np.uint8), "shape"),
    ],
)
def test_bad_images(image, match):
    with pytest.raises(ValueError, match=match):
        equalize_hist(image)
