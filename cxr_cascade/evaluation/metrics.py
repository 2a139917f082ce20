"""Classification metrics in NumPy: confusion matrices, per-class scores, one-vs-rest ROC AUC.

Everything here works on integer labels ``y_true`` of shape ``[N]`` and class probabilities
``probs`` of shape ``[N, C]`` (rows sum to one; only their ranking matters for AUC). The tests
compare every number with scikit-learn; they are implemented here so that a bootstrap replicate
costs one pass of NumPy rather than a dozen sklearn calls with their input validation.

Definitions follow the usual conventions (and sklearn's ``zero_division=0``): a precision,
recall, specificity or F1 whose denominator is zero is 0; an AUC for a class that is absent (or
the only class present) is NaN and is left out of the macro average.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

HEADLINE_PER_CLASS = ("precision", "recall", "specificity", "f1", "auc")


def _check_labels(y_true, num_classes: int) -> np.ndarray:
    y_true = np.asarray(y_true)
    if y_true.ndim != 1:
        raise ValueError(f"`y_true` must be 1-D integer labels. Received: y_true.shape={y_true.shape}")
    if y_true.size and (y_true.min() < 0 or y_true.max() >= num_classes):
        raise ValueError(
            f"`y_true` values must lie in [0, {num_classes}). "
            f"Received: min={y_true.min()}, max={y_true.max()}"
        )
    return y_true.astype(np.int64)


def _check_probs(probs, n: int | None = None) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(
            f"`probs` must have shape [N, C] with C >= 2. Received: probs.shape={probs.shape}"
        )
    if n is not None and probs.shape[0] != n:
        raise ValueError(
            f"`probs` must have one row per label. Received: probs.shape={probs.shape}, len(y_true)={n}"
        )
    if not np.all(np.isfinite(probs)):
        raise ValueError("`probs` must be finite. Received: probs with NaN or inf")
    return probs


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts ``[C, C]``; rows are the true class, columns the predicted class (sklearn's layout)."""
    y_true = _check_labels(y_true, num_classes)
    y_pred = _check_labels(y_pred, num_classes)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"`y_true` and `y_pred` must have the same length. Received: {len(y_true)} and {len(y_pred)}"
        )
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def normalise_confusion(counts: np.ndarray) -> np.ndarray:
    """Row-normalised confusion matrix (each true class sums to 1; empty rows stay 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def _safe_div(num, den):
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def per_class_scores(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall (sensitivity), specificity and F1 per class from a confusion matrix."""
    counts = np.asarray(counts, dtype=np.float64)
    tp = np.diag(counts)
    fp = counts.sum(axis=0) - tp
    fn = counts.sum(axis=1) - tp
    tn = counts.sum() - tp - fp - fn
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    specificity = _safe_div(tn, tn + fp)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    return {"precision": precision, "recall": recall, "specificity": specificity, "f1": f1}


def roc_curve(y_binary, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve of one binary problem: ``(fpr, tpr, thresholds)``, thresholds decreasing.

    One point per distinct score (ties move together), starting at (0, 0) with threshold +inf,
    as sklearn's ``roc_curve(drop_intermediate=False)``.
    """
    y_binary = np.asarray(y_binary).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    scores_sorted = scores[order]
    y_sorted = y_binary[order]
    # Index of the last element of each run of equal scores.
    distinct = np.where(np.diff(scores_sorted))[0]
    ends = np.r_[distinct, y_sorted.size - 1]
    tps = np.cumsum(y_sorted)[ends]
    fps = (ends + 1) - tps
    tps = np.r_[0, tps]
    fps = np.r_[0, fps]
    thresholds = np.r_[np.inf, scores_sorted[ends]]
    pos, neg = tps[-1], fps[-1]
    tpr = tps / pos if pos > 0 else np.full(tps.shape, np.nan)
    fpr = fps / neg if neg > 0 else np.full(fps.shape, np.nan)
    return fpr, tpr, thresholds


def binary_auc(y_binary, scores) -> float:
    """Area under the ROC curve by the rank statistic (Mann-Whitney U); NaN if one class is absent.

    Ties between a positive and a negative count one half, which equals the trapezoidal area
    under the ROC curve with tied scores moving together (sklearn's ``roc_auc_score``).
    """
    y_binary = np.asarray(y_binary).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(y_binary.sum())
    n_neg = y_binary.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    u = ranks[y_binary].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (scipy's ``rankdata`` 'average')."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.r_[0, np.where(np.diff(sorted_values))[0] + 1]
    ends = np.r_[starts[1:], values.size]
    average = (starts + ends + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def one_vs_rest_auc(y_true, probs) -> np.ndarray:
    """ROC AUC of each class against the rest, shape ``[C]`` (NaN where a class is absent)."""
    probs = _check_probs(probs)
    y_true = _check_labels(y_true, probs.shape[1])
    return np.array([binary_auc(y_true == c, probs[:, c]) for c in range(probs.shape[1])])


def classification_metrics(
    y_true, probs, class_names: Sequence[str] | None = None, y_pred=None
) -> dict:
    """Every headline number of one classifier on one test set.

    Args:
        y_true: int array ``[N]``, true class indices.
        probs: float array ``[N, C]``, predicted class probabilities; the prediction is the argmax.
        class_names: ``C`` names; default ``class_0`` ...
        y_pred: int array ``[N]``, the decisions when they are not the argmax of ``probs`` (the
            cascade's gate); ``probs`` still score the ROC AUCs.

    Returns:
        A JSON-ready dict: ``n``, ``accuracy``, ``macro_f1``, ``macro_auc`` (mean over classes
        with a defined AUC), ``per_class`` (name -> precision, recall, specificity, f1, auc,
        support), ``confusion_matrix`` (counts, list of lists) and ``confusion_matrix_normalised``.
    """
    probs = _check_probs(probs)
    num_classes = probs.shape[1]
    y_true = _check_labels(y_true, num_classes)
    _check_probs(probs, len(y_true))
    if len(y_true) == 0:
        raise ValueError("`y_true` must not be empty. Received: 0 samples")
    if class_names is None:
        class_names = [f"class_{i}" for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(
            f"`class_names` must have one name per column of `probs` ({num_classes}). "
            f"Received: class_names={list(class_names)}"
        )
    if y_pred is None:
        y_pred = probs.argmax(axis=1)
    else:
        y_pred = _check_labels(y_pred, num_classes)
        if len(y_pred) != len(y_true):
            raise ValueError(
                "`y_pred` must have one decision per label. "
                f"Received: len(y_pred)={len(y_pred)}, len(y_true)={len(y_true)}"
            )
    counts = confusion_matrix(y_true, y_pred, num_classes)
    scores = per_class_scores(counts)
    auc = one_vs_rest_auc(y_true, probs)
    support = counts.sum(axis=1)
    per_class = {
        name: {
            "precision": float(scores["precision"][i]),
            "recall": float(scores["recall"][i]),
            "specificity": float(scores["specificity"][i]),
            "f1": float(scores["f1"][i]),
            "auc": _json_float(auc[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    defined = auc[np.isfinite(auc)]
    return {
        "n": int(len(y_true)),
        "class_names": list(class_names),
        "accuracy": float(np.trace(counts) / counts.sum()),
        "macro_f1": float(scores["f1"].mean()),
        "macro_auc": _json_float(defined.mean() if defined.size else float("nan")),
        "per_class": per_class,
        "confusion_matrix": counts.tolist(),
        "confusion_matrix_normalised": normalise_confusion(counts).round(6).tolist(),
    }


def headline_numbers(metrics: dict) -> dict[str, float | None]:
    """Flatten the scalar headline numbers of ``classification_metrics`` into ``name -> value``.

    Keys: ``accuracy``, ``macro_f1``, ``macro_auc`` and ``<class>/<score>`` for each class and
    each of precision, recall, specificity, f1, auc. These are the numbers that get bootstrap CIs.
    """
    flat: dict[str, float | None] = {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "macro_auc": metrics["macro_auc"],
    }
    for name, scores in metrics["per_class"].items():
        for key in HEADLINE_PER_CLASS:
            flat[f"{name}/{key}"] = scores[key]
    return flat


def _json_float(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
