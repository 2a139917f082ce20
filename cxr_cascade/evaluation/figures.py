"""Report figures with matplotlib's Agg backend (no display needed).

- ``plot_roc``: one-vs-rest ROC curve of every class, one or several models overlaid (the
  paper's Figures 12 and 18 compare model variants on one test set).
- ``plot_confusion``: counts and row-normalised confusion matrix side by side (Figures 13, 19).
- ``plot_reliability``: reliability diagram with the ECE in the title (Guo et al. 2017).

Every function writes its PNG to a temporary name and renames it into place, so an interrupted
run never leaves a half-written figure under the final name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cxr_cascade.evaluation.metrics import (  # noqa: E402
    binary_auc,
    confusion_matrix,
    normalise_confusion,
    roc_curve,
)
from pipelines.atomic import atomic_path  # noqa: E402


def save_figure(fig, path) -> Path:
    """Save ``fig`` as PNG at ``path`` atomically (write-then-rename) and close it."""
    path = Path(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def plot_roc(
    models: Mapping[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    path,
    title: str = "ROC curves (one vs rest)",
) -> Path:
    """ROC curves of each class (one panel per class), each model a line.

    Args:
        models: ``{model name: (y_true [N], probs [N, C])}``.
        class_names: ``C`` class names.
        path: output PNG.
    """
    if not models:
        raise ValueError("`models` must name at least one model. Received: models={}")
    num_classes = len(class_names)
    fig, axes = plt.subplots(1, num_classes, figsize=(3.8 * num_classes, 3.8), squeeze=False,
                             constrained_layout=True)
    for c, (ax, name) in enumerate(zip(axes[0], class_names)):
        for model_name, (y_true, probs) in models.items():
            y_bin = np.asarray(y_true) == c
            if y_bin.all() or not y_bin.any():
                continue
            fpr, tpr, _ = roc_curve(y_bin, np.asarray(probs)[:, c])
            auc = binary_auc(y_bin, np.asarray(probs)[:, c])
            ax.plot(fpr, tpr, lw=1.5, label=f"{model_name} (AUC {auc:.3f})")
        ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="grey")
        ax.set_title(name)
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, path)


def _confusion_panel(ax, normalised, cell_text, class_names, title, fontsize) -> None:
    """One confusion-matrix panel: `normalised` (rows: truth) coloured on a fixed [0, 1] scale,
    ``cell_text(i, j)`` written in each cell (white on dark cells), class names on both axes."""
    ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(normalised.shape[0]):
        for j in range(normalised.shape[1]):
            ax.text(
                j, i, cell_text(i, j), ha="center", va="center",
                color="white" if normalised[i, j] > 0.5 else "black", fontsize=fontsize,
            )
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)


def plot_confusion(y_true, y_pred, class_names: Sequence[str], path, title: str = "") -> Path:
    """Counts and row-normalised confusion matrices (rows: truth, columns: prediction)."""
    counts = confusion_matrix(y_true, y_pred, len(class_names))
    normalised = normalise_confusion(counts)
    size = 1.0 + 0.9 * len(class_names)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1.5, size + 0.4), constrained_layout=True)
    for ax, matrix, fmt, label in (
        (axes[0], counts, "d", "counts"),
        (axes[1], normalised, ".2f", "normalised by true class"),
    ):
        _confusion_panel(
            ax, normalised, lambda i, j: format(matrix[i, j], fmt), class_names, label, fontsize=8
        )
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_reliability(bins: dict, ece: float, path, title: str = "Reliability diagram") -> Path:
    """Bar chart of accuracy per confidence bin against the diagonal; ``bins`` from
    ``calibration.reliability_bins``."""
    edges = np.asarray(bins["edges"])
    width = np.diff(edges)
    centres = edges[:-1] + width / 2
    acc = np.array([a if a is not None else 0.0 for a in bins["accuracy"]])
    conf = np.array([c if c is not None else 0.0 for c in bins["confidence"]])
    filled = np.array(bins["count"]) > 0
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.bar(centres[filled], acc[filled], width=width[filled], edgecolor="black", label="accuracy")
    ax.bar(
        centres[filled], conf[filled] - acc[filled], bottom=acc[filled], width=width[filled],
        color="salmon", alpha=0.5, edgecolor="red", label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], ls="--", color="grey")
    ax.set_xlabel("confidence (top-label probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"{title}\nECE = {ece:.3f}", fontsize=9)
    return save_figure(fig, path)


def plot_confusion_grid(
    models: Mapping[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    path,
    title: str = "Confusion matrices",
) -> Path:
    """One row-normalised confusion matrix per model (counts in brackets), side by side.

    Args:
        models: ``{model name: (y_true [N], y_pred [N])}``.
    """
    if not models:
        raise ValueError("`models` must name at least one model. Received: models={}")
    size = 1.0 + 0.9 * len(class_names)
    fig, axes = plt.subplots(1, len(models), figsize=(size * len(models) + 1.0, size + 0.6), squeeze=False,
                             constrained_layout=True)
    for ax, (model_name, (y_true, y_pred)) in zip(axes[0], models.items()):
        counts = confusion_matrix(y_true, y_pred, len(class_names))
        normalised = normalise_confusion(counts)
        _confusion_panel(
            ax,
            normalised,
            lambda i, j: f"{normalised[i, j]:.2f}\n({counts[i, j]})",
            class_names,
            model_name,
            fontsize=7,
        )
    fig.suptitle(title)
    return save_figure(fig, path)
