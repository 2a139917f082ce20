"""Class balance of a training epoch, NumPy only (shared by `pipelines.datasets` and the
TensorFlow-free `cxr_cascade.training.arrays`, so both engines balance the same way)."""

from __future__ import annotations

from collections import Counter

import numpy as np

__all__ = ["balanced_weights", "oversample"]


def oversample(indices: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Repeats each class's entries (whole copies + a seeded random rest) up to the largest class.

    Args:
        indices: int ``[N]`` entries (indices into `labels`).
        labels: int class index per entry of the whole table.
        rng: the seeded generator; one `choice` call per class, in class order.

    Returns:
        int ``[K * max count]``, grouped by class (shuffle afterwards).
    """
    counts = Counter(labels[indices].tolist())
    target = max(counts.values())
    out = []
    for cls in sorted(counts):
        members = indices[labels[indices] == cls]
        whole, rest = divmod(target, len(members))
        out.append(np.tile(members, whole))
        out.append(rng.choice(members, size=rest, replace=False))
    return np.concatenate(out)


def balanced_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """float64 ``[num_classes]``: ``N / (K * N_c)`` (scikit-learn's "balanced"), K = classes
    present; an absent class gets 0."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes)
    present = int((counts > 0).sum())
    return np.array([len(labels) / (present * c) if c else 0.0 for c in counts], np.float64)
