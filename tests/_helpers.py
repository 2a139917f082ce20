"""Test helpers shared by the OpenCV golden tests (imported as ``_helpers`` from tests/).

Not a conftest: plain functions, imported explicitly by the tests that compare against OpenCV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np


def per_plane(fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> np.ndarray:
    """``fn`` applied to each [H, W] plane of `images` ([..., H, W]); same shape out."""
    flat = images.reshape((-1,) + images.shape[-2:])
    return np.stack([fn(plane) for plane in flat]).reshape(images.shape)


def assert_identical(out, ref, context: str = "") -> None:
    """`out` has `ref`'s dtype and shape and equal values (the failure says how far off)."""
    out = np.asarray(out)
    assert out.dtype == ref.dtype and out.shape == ref.shape, (out.dtype, out.shape, ref.shape)
    diff = np.abs(out.astype(np.int64) - ref.astype(np.int64))
    assert diff.max() == 0, (
        f"{context}: max |diff| = {diff.max()} grey levels on {np.mean(diff > 0) * 100:.4f} % of pixels"
    )


def read_grey(path: Path) -> np.ndarray:
    """An image file as uint8 [H, W] grey levels (OpenCV's decoder)."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None, path
    return image
