"""Segmentation metric for the U-Net: mean IoU of the binarised mask."""

from __future__ import annotations

import keras


def mean_iou(threshold: float = 0.5, name: str = "mean_iou") -> keras.metrics.Metric:
    """Mean over {background, lung} of the intersection-over-union, accumulated over batches.

    Predictions are binarised at ``threshold``; the confusion matrix is summed over every pixel
    seen since the last reset (dataset-level IoU, as ``keras.metrics.BinaryIoU`` and scikit-learn's
    ``jaccard_score(average="macro")`` define it).

    Args:
        threshold: probability above which a pixel is lung, in (0, 1).
        name: metric name in logs.

    Returns:
        A ``keras.metrics.BinaryIoU`` over class ids (0, 1).
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
        raise ValueError(f"`threshold` must be a number in (0, 1). Received: threshold={threshold!r}")
    return keras.metrics.BinaryIoU(target_class_ids=(0, 1), threshold=float(threshold), name=name)
