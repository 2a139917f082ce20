"""Lungs-removed and lungs-only evaluation.

A model that reads the lungs should fall to chance when the lungs are blanked out and keep most
of its accuracy when only the lungs are shown; a model that reads markers or text outside the
lungs does the opposite (compare Maguolo & Nanni, Information Fusion 2021, who blanked the lungs
of public COVID-19 sets and still classified their sources).
"""

from __future__ import annotations

import numpy as np

from cxr_cascade.audit.attention import resize_masks

MODES = ("lungs_removed", "lungs_only")


def ablate(images, lung_masks, mode: str, fill: float | str = "mean") -> np.ndarray:
    """Blank the lungs (``"lungs_removed"``) or everything else (``"lungs_only"``).

    Args:
        images: float ``[N, H, W, C]``.
        lung_masks: ``[N, h, w]`` (non-zero = lung), resized to ``[H, W]`` by nearest neighbour.
        mode: one of ``MODES``.
        fill: value written into the blanked pixels: a number (0 = black in the pipelines'
            [0, 1] range) or ``"mean"``, each image's mean over the pixels it keeps, which keeps
            the image's brightness without leaking anything from the blanked region (a blanked
            lung filled with its own mean would still tell a dense consolidation from clear air).

    Returns:
        A new float32 array of the images' shape.
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"`images` must have shape [N, H, W, C]. Received: images.shape={images.shape}")
    masks = resize_masks(lung_masks, images.shape[1:3])
    if len(masks) != len(images):
        raise ValueError(
            f"`lung_masks` must have one mask per image. Received: {len(masks)} masks, {len(images)} images"
        )
    blank = (masks if mode == "lungs_removed" else ~masks)[..., None]
    if isinstance(fill, str):
        if fill != "mean":
            raise ValueError(f"`fill` must be a number or 'mean'. Received: fill={fill!r}")
        kept = np.broadcast_to(~blank, images.shape)
        count = kept.sum(axis=(1, 2), keepdims=True)
        value = (images * kept).sum(axis=(1, 2), keepdims=True)
        value = np.divide(value, count, out=np.zeros_like(value), where=count > 0)
    else:
        value = np.float32(fill)
    return np.where(blank, value, images).astype(np.float32)


def chance_accuracy(labels, num_classes: int | None = None) -> float:
    """Accuracy of always predicting the most common class (the no-information rate)."""
    labels = np.asarray(labels, dtype=np.int64)
    return float(np.bincount(labels, minlength=num_classes or 0).max() / len(labels))


def ablation_accuracies(predict, images, labels, lung_masks, fill: float | str = "mean") -> dict:
    """Accuracy on the full, lungs-removed and lungs-only images.

    Args:
        predict: callable ``images -> probabilities [N, C]`` (e.g. ``model.predict``).
        images, lung_masks: as in ``ablate``. labels: int ``[N]``.

    Returns:
        ``{"full", "lungs_removed", "lungs_only", "chance", "skill_retained_without_lungs",
        "skill_retained_lungs_only"}``; ``skill_retained = (acc - chance) / (full - chance)``
        (``None`` when the model itself is at chance).
    """
    labels = np.asarray(labels, dtype=np.int64)
    out: dict = {}
    for name, batch in (
        ("full", np.asarray(images, dtype=np.float32)),
        ("lungs_removed", ablate(images, lung_masks, "lungs_removed", fill)),
        ("lungs_only", ablate(images, lung_masks, "lungs_only", fill)),
    ):
        probs = np.asarray(predict(batch))
        out[name] = float((probs.argmax(axis=1) == labels).mean())
    chance = chance_accuracy(labels)
    out["chance"] = chance
    skill = out["full"] - chance
    for key, name in (("skill_retained_without_lungs", "lungs_removed"),
                      ("skill_retained_lungs_only", "lungs_only")):
        out[key] = float((out[name] - chance) / skill) if skill > 1e-9 else None
    out["fill"] = fill if isinstance(fill, str) else float(fill)
    return out
