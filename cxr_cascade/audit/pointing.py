"""Pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", IJCV 2018).

A hit when the heatmap's maximum falls inside the lesion mask, dilated by ``tolerance`` pixels
(Zhang et al. allow 15 px at 224 px); images without a lesion (normal) are not scored.
"""

from __future__ import annotations

import cv2
import numpy as np

from cxr_cascade.audit.attention import resize_masks


def pointing_game(maps, lesion_masks, tolerance: int = 0) -> dict:
    """Hit rate of heatmap peaks in lesion masks.

    Args:
        maps: float ``[N, H, W]``.
        lesion_masks: ``[N, h, w]`` (non-zero = lesion), resized to ``[H, W]`` if needed.
        tolerance: dilation radius in pixels of the map's resolution.

    Returns:
        ``{"hits", "misses", "skipped" (empty lesion masks or flat maps), "score" (hits /
        (hits + misses), ``None`` when nothing was scored), "per_image" (True/False/None)}``.
    """
    if int(tolerance) != tolerance or tolerance < 0:
        raise ValueError(f"`tolerance` must be a non-negative int. Received: tolerance={tolerance!r}")
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3:
        raise ValueError(f"`maps` must have shape [N, H, W]. Received: maps.shape={maps.shape}")
    masks = resize_masks(lesion_masks, maps.shape[1:])
    if len(masks) != len(maps):
        raise ValueError(
            f"`lesion_masks` must have one mask per map. Received: {len(masks)} masks, {len(maps)} maps"
        )
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1, 2 * tolerance + 1))
    per_image = []
    for heat, mask in zip(maps, masks):
        if not mask.any() or heat.max() <= heat.min():
            per_image.append(None)
            continue
        if tolerance:
            mask = cv2.dilate(mask.astype(np.uint8), kernel) > 0
        y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
        per_image.append(bool(mask[y, x]))
    hits = sum(1 for p in per_image if p is True)
    misses = sum(1 for p in per_image if p is False)
    return {
        "hits": hits,
        "misses": misses,
        "skipped": sum(1 for p in per_image if p is None),
        "score": hits / (hits + misses) if hits + misses else None,
        "tolerance": int(tolerance),
        "per_image": per_image,
    }


def lesion_area_share(lesion_masks, lung_masks=None) -> float | None:
    """Mean share of the image (or of the lung) covered by lesions: a pointing-game baseline.

    A map whose peak falls at a random pixel (inside the lung) hits with about this probability.
    """
    lesions = resize_masks(lesion_masks, np.asarray(lesion_masks).shape[1:3])
    keep = lesions.reshape(len(lesions), -1).any(axis=1)
    if not keep.any():
        return None
    if lung_masks is None:
        return float(lesions[keep].mean())
    lungs = resize_masks(lung_masks, lesions.shape[1:])
    return float((lesions[keep].sum(axis=(1, 2)) / np.maximum(lungs[keep].sum(axis=(1, 2)), 1)).mean())
