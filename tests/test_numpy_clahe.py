"""The NumPy CLAHE twin reproduces cv2.createCLAHE(...).apply bit for bit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cxr_cascade.numpy_clahe import clahe_numpy


def _cv2_clahe(image, clip, grid):
    # OpenCV's tileGridSize is (cols, rows); ours is (rows, cols).
    return cv2.createCLAHE(clipLimit=clip, tileGridSize=(grid[1], grid[0])).apply(image)


@pytest.mark.parametrize("shape", [(64, 64), (50, 33), (17, 9), (24, 38), (26, 36)])
@pytest.mark.parametrize("clip", [0.0, 1.0, 2.0, 4.0, 40.0])
@pytest.mark.parametrize("grid", [(8, 8), (4, 6)])
def test_matches_opencv_on_random_images(shape, clip, grid):
    image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(clahe_numpy(image, clip, grid), _cv2_clahe(image, clip, grid))


def test_matches_opencv_on_real_radiographs(kermany_dir):
    paths = sorted((kermany_dir / "test").glob("*/*.jpeg"))[::100]
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        for size in [(512, 512), (333, 500)]:
            resized = cv2.resize(image, size)
            np.testing.assert_array_equal(clahe_numpy(resized), _cv2_clahe(resized, 2.0, (8, 8)))


def test_constant_image_keeps_shape_and_dtype():
    image = np.full((16, 16), 7, np.uint8)
    out = clahe_numpy(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, _cv2_clahe(image, 2.0, (8, 8)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image": np.zeros((4, 4), np.float32)}, "image"),
        ({"image": np.zeros((4, 4, 1), np.uint8)}, "image"),
        ({"image": np.zeros((4, 4), np.uint8), "clip_limit": -1.0}, "clip_limit"),
        ({"image": np.zeros((4, 4), np.uint8), "tile_grid_size": (0, 2)}, "tile_grid_size"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=f"Received: {match}"):
        clahe_numpy(**kwargs)
