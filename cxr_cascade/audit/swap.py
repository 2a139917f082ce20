"""Outside swap: does the decision follow what lies *outside* the lungs, the lungs held fixed?

For every test image ``i`` and every class ``c`` a composite keeps image ``i`` wherever either
lung mask (``i``'s or the donor's) is set and takes the rest of the film from a donor image ``d``
of class ``c``. Only the outside of the lungs changes, and it changes the same way for every
class (the seam, the donor's scanner and text), so the composites are a placebo-controlled
experiment on one model:

    effect_i = mean_c [ p_c(i | outside of class c) - mean_{c' != c} p_c(i | outside of class c') ]

``effect`` is how much a class's probability rises when the outside comes from a film of that
class rather than another one. A model that reads only the lungs has effect 0 whatever the seams
do to its inputs (the composite for class c and c' differ only in content it ignores); a model
trained on lung-masked films has exactly 0; a model reading a label-bearing marker, burned-in
text or a source's look outside the lungs has a positive effect. It is the counterfactual form of
DeGrave, Janizek & Lee (Nat. Mach. Intell. 2021), who swapped image regions to expose shortcuts.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from cxr_cascade.audit.attention import resize_masks


def pick_donors(labels, num_classes: int, seed: int = 0) -> np.ndarray:
    """int ``[N, C]``: for image ``i`` and class ``c``, a random other image of class ``c``
    (``-1`` when the test set holds none)."""
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    n = len(labels)
    donors = np.full((n, num_classes), -1, dtype=np.int64)
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        for i in range(n):
            pool = members[members != i]
            if pool.size:
                donors[i, c] = pool[rng.integers(pool.size)]
    return donors


def composite(images, lung_masks, i, d) -> np.ndarray:
    """Images ``i`` inside the union of the lung masks of ``i`` and ``d``, ``d`` elsewhere.

    Args:
        images: float ``[N, H, W, C]``; lung_masks: ``[N, h, w]`` (non-zero = lung);
        i, d: int ``[M]`` row indices. Returns float32 ``[M, H, W, C]``.
    """
    images = np.asarray(images, dtype=np.float32)
    masks = resize_masks(lung_masks, images.shape[1:3])
    keep = (masks[i] | masks[d])[..., None]
    return np.where(keep, images[i], images[d]).astype(np.float32)


def outside_swap_effects(predict: Callable, images, labels, lung_masks, num_classes: int,
                         seed: int = 0) -> np.ndarray:
    """Per-image ``effect_i`` (module docstring), float ``[N]``; NaN where a class has no donor.

    Args:
        predict: ``images -> probabilities [M, C]``.
        images: float ``[N, H, W, C]`` as the model takes them; labels: int ``[N]``;
        lung_masks: ``[N, h, w]``; num_classes: C (at least 2).
    """
    if num_classes < 2:
        raise ValueError(f"`num_classes` must be at least 2. Received: num_classes={num_classes}")
    images = np.asarray(images, dtype=np.float32)
    n = len(images)
    donors = pick_donors(labels, num_classes, seed)
    probs = np.full((n, num_classes, num_classes), np.nan)  # [image, outside class, class]
    rows = np.arange(n)
    for c in range(num_classes):
        ok = rows[donors[:, c] >= 0]
        if ok.size:
            probs[ok, c] = np.asarray(predict(composite(images, lung_masks, ok, donors[ok, c])))
    diag = np.stack([probs[:, c, c] for c in range(num_classes)], axis=1)
    other = np.stack([
        (np.sum(probs[:, :, c], axis=1) - probs[:, c, c]) / (num_classes - 1)
        for c in range(num_classes)
    ], axis=1)
    return np.mean(diag - other, axis=1)
