"""Calibration: expected calibration error and reliability-diagram bins.

Top-label calibration (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017): the
confidence of a prediction is its largest class probability; predictions are put in ``n_bins``
equal-width confidence bins, ``(0, 1/M], (1/M, 2/M], ...`` and

    ECE = sum_m |B_m| / N * |accuracy(B_m) - confidence(B_m)|.
"""

from __future__ import annotations

import numpy as np


def _bin_ids(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    # Right-closed bins as in Guo et al.; a confidence of exactly 0 goes to the first bin.
    return np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def reliability_bins(y_true, probs, n_bins: int = 15) -> dict:
    """Per-bin count, mean confidence and accuracy of the top-label prediction.

    Args:
        y_true: int ``[N]``.
        probs: float ``[N, C]``.
        n_bins: number of equal-width confidence bins.

    Returns:
        Dict of lists, one entry per bin: ``edges`` (``n_bins + 1``), ``count``,
        ``confidence`` and ``accuracy`` (``None`` for empty bins).
    """
    if int(n_bins) < 1:
        raise ValueError(f"`n_bins` must be a positive integer. Received: n_bins={n_bins}")
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true)
    if probs.ndim != 2 or len(probs) != len(y_true):
        raise ValueError(
            "`probs` must have shape [N, C] with N = len(y_true). "
            f"Received: probs.shape={probs.shape}, len(y_true)={len(y_true)}"
        )
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    ids = _bin_ids(confidence, n_bins)
    count = np.bincount(ids, minlength=n_bins)
    conf_sum = np.bincount(ids, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(ids, weights=correct, minlength=n_bins)
    mean_conf = [float(c / k) if k else None for c, k in zip(conf_sum, count)]
    mean_acc = [float(a / k) if k else None for a, k in zip(acc_sum, count)]
    return {
        "edges": np.linspace(0.0, 1.0, n_bins + 1).tolist(),
        "count": count.tolist(),
        "confidence": mean_conf,
        "accuracy": mean_acc,
    }


def expected_calibration_error(y_true, probs, n_bins: int = 15) -> float:
    """Top-label ECE in [0, 1] (Guo et al. 2017, eq. 3) with ``n_bins`` equal-width bins."""
    bins = reliability_bins(y_true, probs, n_bins)
    total = sum(bins["count"])
    if total == 0:
        raise ValueError("`y_true` must not be empty. Received: 0 samples")
    ece = 0.0
    for k, conf, acc in zip(bins["count"], bins["confidence"], bins["accuracy"]):
        if k:
            ece += k / total * abs(acc - conf)
    return float(ece)
