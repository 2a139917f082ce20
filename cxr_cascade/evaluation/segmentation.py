"""Lung-mask metrics of the U-Net on a test split, with patient-bootstrap CIs (issue 11).

Per image the pixel confusion ``tp, fp, fn, tn`` of the binarised prediction against the mask
(lung = 1). Reported:

* ``mean_iou``: the training metric (`cxr_cascade.models.metrics.mean_iou`): IoU of lung and of
  background from the counts summed over the images, averaged over the two classes.
* ``lung_iou`` and ``dice``: the lung's IoU ``tp / (tp + fp + fn)`` and Dice
  ``2 tp / (2 tp + fp + fn)`` (Milletari et al. 2016) per image, averaged over images (an image
  with no lung in truth or prediction counts 1).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cxr_cascade.evaluation.bootstrap import bootstrap_ci

__all__ = ["confusion_counts", "segmentation_metrics"]


def confusion_counts(masks: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``[N, H, W]`` truth (bool or {0, 1}) and probabilities -> int64 ``[N, 4]`` (tp, fp, fn, tn)."""
    masks = np.asarray(masks).astype(bool)
    probs = np.asarray(probs)
    if probs.ndim == masks.ndim + 1 and probs.shape[-1] == 1:
        probs = probs[..., 0]
    if probs.shape != masks.shape:
        raise ValueError(f"`probs` must have the masks' shape {masks.shape}. Received: {probs.shape}")
    pred = probs >= threshold
    axes = tuple(range(1, masks.ndim))
    tp = np.sum(pred & masks, axis=axes)
    fp = np.sum(pred & ~masks, axis=axes)
    fn = np.sum(~pred & masks, axis=axes)
    tn = np.sum(~pred & ~masks, axis=axes)
    return np.stack([tp, fp, fn, tn], axis=1).astype(np.int64)


def _scores(counts: np.ndarray) -> dict:
    tp, fp, fn, tn = (counts[:, i].astype(np.float64) for i in range(4))
    union = tp + fp + fn
    lung = np.where(union > 0, tp / np.maximum(union, 1), 1.0)
    dice = np.where(union > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 1.0)
    total = counts.sum(axis=0).astype(np.float64)
    iou_lung = total[0] / max(total[0] + total[1] + total[2], 1)
    iou_back = total[3] / max(total[3] + total[1] + total[2], 1)
    return {"mean_iou": float((iou_lung + iou_back) / 2), "lung_iou": float(lung.mean()),
            "dice": float(dice.mean())}


def segmentation_metrics(masks, probs, patient_ids: Sequence, *, threshold: float = 0.5,
                         n_boot: int = 1000, seed: int = 0) -> dict:
    """mean IoU, lung IoU and Dice with 95 % patient-bootstrap CIs.

    Args:
        masks: ``[N, H, W]`` truth, lung = 1 / True.
        probs: ``[N, H, W]`` or ``[N, H, W, 1]`` lung probabilities.
        patient_ids: ``[N]`` patient of each image (the bootstrap draws patients).

    Returns:
        ``{"n", "mean_iou", "lung_iou", "dice", "confidence_intervals": {name: {value, low, high}}}``.
    """
    counts = confusion_counts(masks, probs, threshold)
    if len(patient_ids) != len(counts):
        raise ValueError(f"`patient_ids` must have one id per image ({len(counts)}). "
                         f"Received: {len(patient_ids)}")
    point = _scores(counts)
    cis = bootstrap_ci(lambda idx: _scores(counts[idx]), list(patient_ids), n_boot=n_boot, seed=seed)
    return {"n": int(len(counts)), **point, "threshold": threshold, "confidence_intervals": cis}
