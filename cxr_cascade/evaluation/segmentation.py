"""Lung-mask metrics of the U-Net on a test split, with patient-bootstrap CIs.

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

from cxr_cascade.evaluation import data as R
from cxr_cascade.evaluation.bootstrap import bootstrap_ci

__all__ = ["confusion_counts", "segmentation_metrics", "evaluate_unet", "unet_markdown"]
METRICS = ("mean_iou", "lung_iou", "dice")


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


def evaluate_unet(stage, records: Sequence, *, n_boot: int = 1000, seed: int = 0,
                  batch_size: int = 16) -> tuple[list, dict]:
    """A trained U-Net (``cxr_cascade.artifacts.Stage``) on the records that carry a lung mask file.

    Returns:
        ``(records scored, segmentation_metrics(...))``: the records with a ``mask_path``, in
        order, and their mean IoU, lung IoU and Dice with patient-bootstrap CIs.

    Raises:
        ValueError: no record with a mask file, or an image or mask that cannot be read.
    """
    kept = [r for r in records if r.mask_path]
    if not kept:
        raise ValueError(f"no test images with a lung mask (mask_path) among the {len(records)} records")
    images = R.load_images(kept, stage.preprocess)
    masks = R.load_lung_masks(kept, stage.preprocess)
    probs = stage.model.predict(images, batch_size=batch_size, verbose=0)
    return kept, segmentation_metrics(masks, probs, [r.patient_key for r in kept], n_boot=n_boot, seed=seed)


def unet_markdown(metrics: dict, title: str, population: str) -> str:
    """The U-Net report: the three numbers with their 95 % CIs."""
    ci = metrics["confidence_intervals"]
    lines = [f"# {title}", "", f"n = {metrics['n']} images ({population}), "
             "95 % patient-bootstrap CIs", "", "| metric | value | 95 % CI |", "|---|---|---|"]
    for key in METRICS:
        lines.append(f"| {key} | {ci[key]['value']:.4f} | {ci[key]['low']:.4f}-{ci[key]['high']:.4f} |")
    return "\n".join(lines) + "\n"
