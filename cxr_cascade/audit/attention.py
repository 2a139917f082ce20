"""Lung attention: how much of a heatmap's mass lies inside the lungs.

For a non-negative map ``M`` and a binary lung mask ``L`` of the same size,

    share = sum(M * L) / sum(M),    area = mean(L).

A map that ignores anatomy (uniform) has ``share == area``; a model that reads the lungs puts
more than their area's share of its evidence there (``ratio = share / area > 1``), and a model
that reads a corner marker or burned-in text puts less.
"""

from __future__ import annotations

import cv2
import numpy as np


def resize_masks(masks, shape: tuple[int, int]) -> np.ndarray:
    """Binary masks ``[N, h, w]`` (any non-zero is inside) resized to ``shape`` by nearest neighbour."""
    masks = np.asarray(masks)
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if masks.ndim != 3:
        raise ValueError(f"`masks` must have shape [N, H, W]. Received: masks.shape={masks.shape}")
    binary = masks > 0
    if binary.shape[1:] == tuple(shape):
        return binary
    return np.stack([
        cv2.resize(m.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        for m in binary
    ])


def lung_attention(maps, lung_masks) -> dict:
    """Per-image and summary lung attention of heatmaps.

    Args:
        maps: float ``[N, H, W]``, non-negative heatmaps (e.g. Grad-CAM in [0, 1]).
        lung_masks: ``[N, h, w]`` lung masks (non-zero = lung), resized to ``[H, W]`` if needed.

    Returns:
        Dict with per-image lists ``share``, ``area`` and ``ratio`` (``None`` for an all-zero map
        or an empty mask) and summaries ``mean_share``, ``mean_area``, ``median_ratio``,
        ``fraction_below_area`` (images whose share is below their lung area) and ``n_scored``.
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3:
        raise ValueError(f"`maps` must have shape [N, H, W]. Received: maps.shape={maps.shape}")
    if np.any(maps < 0):
        raise ValueError("`maps` must be non-negative (apply ReLU first). Received: negative values")
    masks = resize_masks(lung_masks, maps.shape[1:])
    if len(masks) != len(maps):
        raise ValueError(
            f"`lung_masks` must have one mask per map. Received: {len(masks)} masks, {len(maps)} maps"
        )
    total = maps.sum(axis=(1, 2))
    inside = (maps * masks).sum(axis=(1, 2))
    area = masks.mean(axis=(1, 2))
    valid = (total > 0) & (area > 0)
    share = np.where(valid, inside / np.where(valid, total, 1), np.nan)
    ratio = np.where(valid, share / np.where(valid, area, 1), np.nan)
    scored = np.flatnonzero(valid)
    as_list = lambda a: [float(v) if np.isfinite(v) else None for v in a]  # noqa: E731
    return {
        "share": as_list(share),
        "area": as_list(area),
        "ratio": as_list(ratio),
        "n_scored": int(scored.size),
        "mean_share": float(share[scored].mean()) if scored.size else None,
        "mean_area": float(area[scored].mean()) if scored.size else None,
        "median_ratio": float(np.median(ratio[scored])) if scored.size else None,
        "fraction_below_area": float((share[scored] < area[scored]).mean()) if scored.size else None,
    }
