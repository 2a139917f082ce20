"""Trained classifiers on a test set: predictions, and metrics with patient-bootstrap CIs.

The Python side of ``cxr-cascade evaluate RUN [RUN ...]``: a stage (``cxr_cascade.artifacts.Stage``:
model, class names, evaluation preprocessing, lung masking) and test records
(``pipelines.records.Record``) in; probabilities and the metrics of
``cxr_cascade.evaluation.report.evaluate_predictions`` out. Several stages of one task are scored
on the same records (the paper's Figures 12, 13, 18 and 19 compare them).

Example:
    >>> from cxr_cascade.artifacts import load
    >>> result = evaluate_classifiers({"resnet50": load("runs/resnet50")}, records, n_boot=200)
    >>> result.sections["resnet50"]["confidence_intervals"]["accuracy"]
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence

import numpy as np

from cxr_cascade.artifacts import load_unet_mask_fn
from cxr_cascade.evaluation import report
from cxr_cascade.evaluation import data as R


def predict(stage, records: Sequence, unet=None, batch_size: int = 16) -> np.ndarray:
    """Probabilities of ``stage.model`` on the records' images, float32 ``[N, C]`` in record order.

    Every image goes through ``stage.preprocess`` (`evaluation.data.load_images`); a stage that
    reads lung-masked images (``stage.segment``) takes each record's mask file, else the U-Net of
    run ``unet``, else a ``ValueError`` names the file.
    """
    mask_fn = load_unet_mask_fn(unet, stage.preprocess.image_size) if stage.segment and unet else None
    images = R.load_images(list(records), stage.preprocess, stage.segment, mask_fn)
    return stage.model.predict(images, batch_size=batch_size, verbose=0)


def check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return int(value)


@dataclasses.dataclass
class ClassifierEvaluation:
    """What ``evaluate_classifiers`` returns.

    Attributes:
        class_names: the stages' ``C`` class names.
        records: the ``N`` records scored (those whose label is a class name), in order.
        y_true: int64 ``[N]`` indices into ``class_names``.
        probabilities: ``{name: float32 [N, C]}`` per stage.
        sections: ``{name: metrics dict}`` (``report.evaluate_predictions``; with ``by_source``
            when asked).
        dropped: records left out because their label is none of ``class_names``.
    """

    class_names: tuple[str, ...]
    records: list
    y_true: np.ndarray
    probabilities: dict[str, np.ndarray]
    sections: dict[str, dict]
    dropped: int


def evaluate_classifiers(
    stages: Mapping[str, object],
    records: Sequence,
    *,
    out_dir=None,
    unet=None,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 16,
    by_source: bool = False,
) -> ClassifierEvaluation:
    """Scores classifier stages of one task on the same test records.

    Args:
        stages: ``{name: Stage}``, at least one; all with the same ``class_names``. The names
            key the sections (and the figures' file names).
        records: test records with ``path``, ``label``, ``patient_key`` and ``source``; those
            whose label is not a class name are dropped (counted in ``dropped``).
        out_dir: where ``figures/`` are written (None: no figures).
        unet: U-Net run for stages that read lung-masked images when records carry no mask.
        n_boot: bootstrap replicates over patients (>= 1). seed: the bootstrap's seed.
        batch_size: inference batch size (>= 1).
        by_source: add per-source metrics to each section (``report.group_metrics``).

    Raises:
        ValueError: no stage, stages of different classes, a bad count, or no record left.
    """
    if not stages:
        raise ValueError("`stages` must hold at least one stage. Received: stages={}")
    n_boot, batch_size = check_positive("n_boot", n_boot), check_positive("batch_size", batch_size)
    first_name, first = next(iter(stages.items()))
    class_names = tuple(first.class_names)
    for name, stage in stages.items():
        if tuple(stage.class_names) != class_names:
            raise ValueError(
                f"`stages` must share their class names. Received: {name!r} has "
                f"{list(stage.class_names)}, {first_name!r} has {list(class_names)}"
            )
    kept, dropped = R.keep_classes(list(records), class_names)
    if not kept:
        raise ValueError(f"no test images with labels in {list(class_names)}")
    y = R.label_indices(kept, class_names)
    pids = [r.patient_key for r in kept]
    common = dict(n_boot=n_boot, seed=seed)
    probabilities, sections = {}, {}
    for name, stage in stages.items():
        probs = predict(stage, kept, unet, batch_size)
        sections[name] = report.evaluate_predictions(
            y, probs, pids, class_names, out_dir, name=name, **common)
        if by_source:
            sections[name]["by_source"] = report.group_metrics(
                y, probs, [r.source for r in kept], pids, class_names, **common)
        probabilities[name] = probs
    return ClassifierEvaluation(class_names, kept, y, probabilities, sections, dropped)
