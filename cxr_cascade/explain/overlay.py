"""Heatmap overlays on radiographs (the paper's Figures 11 and 17: original | overlay)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from matplotlib import colormaps
from PIL import Image

from pipelines.atomic import atomic_path


def _gray_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[-1] in (1, 3):
        image = image.mean(axis=-1)
    if image.ndim != 2:
        raise ValueError(f"`image` must have shape [H, W] or [H, W, 1|3]. Received: image.shape={image.shape}")
    if image.max() > 1.0 + 1e-6:  # accept uint8-range images too
        image = image / 255.0
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def overlay_heatmap(image, heatmap, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """Blend a colour-mapped heatmap onto a grey radiograph.

    Args:
        image: ``[H, W]`` or ``[H, W, 1|3]``, values in [0, 1] (or [0, 255]).
        heatmap: ``[H, W]`` in [0, 1].
        alpha: weight of the heatmap, in [0, 1].

    Returns:
        uint8 RGB ``[H, W, 3]``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha}")
    gray = _gray_uint8(image)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape != gray.shape:
        raise ValueError(
            f"`heatmap` must have the image's shape {gray.shape}. Received: heatmap.shape={heatmap.shape}"
        )
    colour = colormaps[colormap](np.clip(heatmap, 0.0, 1.0))[..., :3] * 255.0
    rgb = np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)
    return np.clip((1.0 - alpha) * rgb + alpha * colour + 0.5, 0, 255).astype(np.uint8)


def side_by_side(image, heatmap, alpha: float = 0.4, gap: int = 4,
                 min_size: int | None = None) -> np.ndarray:
    """uint8 RGB panel: the original on the left, the overlay on the right (Figures 11, 17).

    ``min_size``: enlarge (bilinear) images whose shorter side is below it, for display only.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image.mean(axis=-1)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if min_size and min(image.shape[:2]) < min_size:
        scale = min_size / min(image.shape[:2])
        dsize = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, dsize, interpolation=cv2.INTER_LINEAR)
        heatmap = cv2.resize(heatmap, dsize, interpolation=cv2.INTER_LINEAR)
    gray = _gray_uint8(image)
    left = np.repeat(gray[..., None], 3, axis=-1)
    right = overlay_heatmap(image, heatmap, alpha)
    spacer = np.full((gray.shape[0], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([left, spacer, right], axis=1)


def save_png(path, rgb: np.ndarray) -> Path:
    """Write a uint8 image as PNG via a temporary file and rename (never a half-written file)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")
    return path


def save_npy(path, array: np.ndarray) -> Path:
    """Save an array as ``.npy`` via a temporary file and rename."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(array))
    return path
