"""Cluster (patient-level) bootstrap confidence intervals.

Images of one patient are correlated (same anatomy, same scanner, often the same day), so
resampling images understates the uncertainty. Each replicate draws patient ids with replacement
and takes *all* images of every drawn patient (a cluster bootstrap; Field & Welsh 2007). The
interval is the percentile interval of the replicate values (Efron & Tibshirani 1993, ch. 13).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from cxr_cascade.evaluation.metrics import classification_metrics, headline_numbers


def patient_index_groups(patient_ids: Sequence) -> list[np.ndarray]:
    """Row indices of each distinct patient, in first-appearance order."""
    patient_ids = np.asarray(patient_ids)
    if patient_ids.ndim != 1:
        raise ValueError(
            f"`patient_ids` must be 1-D. Received: patient_ids.shape={patient_ids.shape}"
        )
    _, first, inverse = np.unique(patient_ids, return_index=True, return_inverse=True)
    order = np.argsort(first)  # stable, reproducible ordering of clusters
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    cluster = rank[inverse]
    sorter = np.argsort(cluster, kind="mergesort")
    bounds = np.r_[0, np.cumsum(np.bincount(cluster, minlength=order.size))]
    return [sorter[bounds[i] : bounds[i + 1]] for i in range(order.size)]


def cluster_bootstrap_indices(
    patient_ids: Sequence, n_boot: int, seed: int = 0
) -> list[np.ndarray]:
    """``n_boot`` arrays of row indices, each the images of patients drawn with replacement."""
    if n_boot < 1:
        raise ValueError(f"`n_boot` must be a positive integer. Received: n_boot={n_boot}")
    groups = patient_index_groups(patient_ids)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(groups), size=(n_boot, len(groups)))
    return [np.concatenate([groups[g] for g in draw]) for draw in draws]


def bootstrap_ci(
    statistic: Callable[[np.ndarray], Mapping[str, float | None]],
    patient_ids: Sequence,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict]:
    """Percentile CIs of every number ``statistic(indices)`` returns, over a patient bootstrap.

    Args:
        statistic: maps an index array (rows of the test set) to ``{name: value}``; ``None`` or
            NaN marks a value undefined in that replicate (e.g. an AUC without positives), and
            such replicates are left out of that number's interval.
        patient_ids: ``[N]`` patient id of each row.
        n_boot: number of replicates.
        confidence: two-sided coverage, e.g. 0.95.
        seed: seed of the NumPy generator (same seed, same intervals).

    Returns:
        ``{name: {"value", "low", "high", "n_valid"}}`` where ``value`` is the statistic on all
        rows and ``n_valid`` the number of replicates in which it was defined.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be in (0, 1). Received: confidence={confidence}")
    n = len(patient_ids)
    point = statistic(np.arange(n))
    samples: dict[str, list[float]] = {key: [] for key in point}
    for indices in cluster_bootstrap_indices(patient_ids, n_boot, seed):
        values = statistic(indices)
        for key in samples:
            value = values.get(key)
            if value is not None and np.isfinite(value):
                samples[key].append(float(value))
    alpha = (1.0 - confidence) / 2.0
    result: dict[str, dict] = {}
    for key, value in point.items():
        values = np.asarray(samples[key])
        if values.size:
            low, high = np.quantile(values, [alpha, 1.0 - alpha])
            low, high = float(low), float(high)
        else:
            low = high = None
        result[key] = {"value": value, "low": low, "high": high, "n_valid": int(values.size)}
    return result


def classification_cis(
    y_true,
    probs,
    patient_ids: Sequence,
    class_names: Sequence[str] | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    y_pred=None,
) -> dict[str, dict]:
    """Patient-bootstrap CIs of every headline number of ``classification_metrics`` (decisions
    ``y_pred`` when given, else the argmax of ``probs``)."""
    y_true = np.asarray(y_true)
    y_pred = None if y_pred is None else np.asarray(y_pred)
    probs = np.asarray(probs, dtype=np.float64)
    if len(patient_ids) != len(y_true):
        raise ValueError(
            "`patient_ids` must have one id per label. "
            f"Received: len(patient_ids)={len(patient_ids)}, len(y_true)={len(y_true)}"
        )

    def statistic(indices: np.ndarray):
        pred = None if y_pred is None else y_pred[indices]
        return headline_numbers(classification_metrics(y_true[indices], probs[indices], class_names, pred))

    return bootstrap_ci(statistic, patient_ids, n_boot=n_boot, confidence=confidence, seed=seed)
