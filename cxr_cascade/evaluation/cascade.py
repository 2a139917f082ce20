"""The cascade combiner of Cascade-SEMEnet (Lv et al. 2020, Fig. 1) and its end-to-end evaluation
(``evaluate_cascade``: two trained stages and test records in, every rule's metrics out).

Stage 1 gives ``p1`` over normal / bacterial / viral; stage 2 splits the viral class into
COVID-19 / other viral, ``p2``. The cascade's distribution replaces the refined stage-1 class by
stage 2's classes, weighted by the probability of reaching stage 2:

    p(covid19) = p1(viral) p2(covid19),  p(viral) = p1(viral) p2(viral),
    p(normal) = p1(normal),              p(bacterial) = p1(bacterial).

This is arithmetic, not control flow, so it batches and exports as one graph: both stages run on
every image and ``CascadeCombine`` mixes their outputs. The rows still sum to one, and they are the
cascade's *scores* (ROC curves and AUCs). The class constants, ``CascadeCombine`` and
``CascadeDecision`` live with the models (`cxr_cascade.models.cascade`, shared with export) and are
re-exported here.

The *decision* follows the paper (section 3): stage 2 refines the films that stage 1 calls viral.
``rule="gate"`` (the default everywhere) is that hard gate: the stage-1 argmax, and where it is the
refined class, stage 2's argmax among stage 2's classes. ``rule="soft"`` is the argmax of the
products above, which disagrees with the gate on some films: p1 = (.35, .25, .40), p2 = (.55, .45)
gives products (.35, .25, .22, .18), "normal", while the gate says "covid19". The gate is computed
with ``where`` on the stage-1 argmax (``CascadeDecision``), so it too is one static graph.
``rule="pneumonia"`` sends every film stage 1 calls bacterial or viral to stage 2: stage 2's
COVID-19 overrides stage 1's call, stage 2's negative keeps it; its scores are the pneumonia
route's distribution (`cxr_cascade.models.cascade`), not the products.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

import keras

from cxr_cascade.evaluation import report
from cxr_cascade.evaluation.data import keep_classes
from cxr_cascade.evaluation.stages import check_positive, predict

from cxr_cascade.models.cascade import (  # noqa: F401  (re-exported: they live with the models)
    DEFAULT_RULE,
    NORMAL_CLASS,
    REFINED_CLASS,
    RULES,
    STAGE1_CLASSES,
    STAGE2_CLASSES,
    CascadeCombine,
    CascadeDecision,
    cascade_class_names,
    cascade_decision,
    check_rule,
    combine_probabilities,
    route_indices,
)

STAGE2_DATASET = "ieee8023"  # the population of the paper's Table 5 (stage 2 alone)


def build_cascade_model(
    stage1: keras.Model,
    stage2: keras.Model,
    refined_index: int = 2,
    name: str = "cascade",
    rule: str = DEFAULT_RULE,
    normal_index: int = 0,
    negative_index: int = 1,
) -> keras.Model:
    """One-input functional model: both stages on the same image, combined by ``CascadeCombine``.

    When the stages take different input sizes, the image is resized (bilinear) to each stage's
    size inside the graph. Stage 2's own preprocessing (lung masking by the U-Net) belongs to the
    export graph (``cxr_cascade.export``); this model is the arithmetic core evaluated here.

    Returns:
        ``keras.Model(image -> {"probabilities", "class_index", "stage1_probabilities",
        "stage2_probabilities"})`` with the cascade distribution (the scores) in
        ``cascade_class_names`` order and the decision of `rule` (``CascadeDecision``); under
        rule "pneumonia" the scores are that route's distribution (``normal_index``: stage 1's
        normal class, ``negative_index``: stage 2's class that keeps stage 1's call).
    """
    check_rule(rule)
    shape1 = tuple(stage1.inputs[0].shape[1:])
    shape2 = tuple(stage2.inputs[0].shape[1:])
    if shape1[-1] != shape2[-1]:
        raise ValueError(
            "Both stages must take the same number of channels. "
            f"Received: stage1 input {shape1}, stage2 input {shape2}"
        )
    image = keras.Input(shape1, name="image")
    x2 = image
    if shape2[:2] != shape1[:2]:
        x2 = keras.layers.Resizing(shape2[0], shape2[1], name="stage2_resize")(image)
    p1 = stage1(image, training=False)
    p2 = stage2(x2, training=False)
    p1 = keras.layers.Identity(name="stage1_probabilities")(p1)
    p2 = keras.layers.Identity(name="stage2_probabilities")(p2)
    route = dict(rule=rule, normal_index=normal_index, negative_index=negative_index)
    probs = CascadeCombine(refined_index, name="probabilities", **route)([p1, p2])
    index = CascadeDecision(refined_index, name="class_index", **route)([p1, p2])
    return keras.Model(
        image,
        {"probabilities": probs, "class_index": index,
         "stage1_probabilities": p1, "stage2_probabilities": p2},
        name=name,
    )


def cascade_labels(labels: Sequence[str], class_names: Sequence[str]) -> np.ndarray:
    """Indices of 4-class ground-truth label strings in ``class_names`` (unknown label: error)."""
    index = {name: i for i, name in enumerate(class_names)}
    out = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        if label not in index:
            raise ValueError(
                f"Every test label must be one of the cascade's classes {list(class_names)}. "
                f"Received: label={label!r} at row {i}"
            )
        out[i] = index[label]
    return out


def stage2_subset(y_cascade: np.ndarray, class_names: Sequence[str],
                  stage2_classes: Sequence[str] = STAGE2_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose truth is a stage-2 class and their stage-2 labels, to score stage 2 alone."""
    mapping = {class_names.index(c): j for j, c in enumerate(stage2_classes)}
    rows = np.flatnonzero(np.isin(y_cascade, list(mapping)))
    return rows, np.array([mapping[int(y)] for y in y_cascade[rows]], dtype=np.int64)


def stage1_labels(y_cascade: np.ndarray, class_names: Sequence[str],
                  stage1_classes: Sequence[str] = STAGE1_CLASSES,
                  stage2_classes: Sequence[str] = STAGE2_CLASSES,
                  refined_class: str = REFINED_CLASS) -> np.ndarray:
    """Stage-1 labels of 4-class truth: stage-2 classes collapse to ``refined_class``."""
    stage1_classes = list(stage1_classes)
    out = np.empty(len(y_cascade), dtype=np.int64)
    for i, y in enumerate(y_cascade):
        name = class_names[int(y)]
        out[i] = stage1_classes.index(refined_class if name in stage2_classes else name)
    return out


@dataclasses.dataclass
class CascadeEvaluation:
    """What ``evaluate_cascade`` returns.

    Attributes:
        class_names: the cascade's 4 class names (``cascade_class_names``).
        rule: the chosen decision rule; its section is ``"cascade"``.
        records: the ``N`` records scored (those whose label is a cascade class), in order.
        y_true: int64 ``[N]`` indices into ``class_names``.
        stage1_probabilities: float32 ``[N, 3]``; stage2_probabilities: float32 ``[N, 2]``.
        predictions: ``{section: (scores float [N, 4], decisions int [N])}`` per applicable rule:
            ``"cascade"`` for ``rule``, ``"cascade_<other rule>"`` for the others.
        sections: ``{name: metrics dict}``: the rules' sections in the order above, then
            ``"stage1"`` (stage 1 on the collapsed truth) and ``"stage2"`` (stage 2 alone on the
            paper's Table 5 population, when the records hold it).
        notes: ``{key: why}`` for each section left out (``"cascade_<rule>_section"``,
            ``"stage2_section"``).
        dropped: records left out because their label is none of ``class_names``.
    """

    class_names: list
    rule: str
    records: list
    y_true: np.ndarray
    stage1_probabilities: np.ndarray
    stage2_probabilities: np.ndarray
    predictions: dict[str, tuple[np.ndarray, np.ndarray]]
    sections: dict[str, dict]
    notes: dict[str, str]
    dropped: int


def evaluate_cascade(
    stage1,
    stage2,
    records: Sequence,
    *,
    rule: str = DEFAULT_RULE,
    out_dir=None,
    unet=None,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 16,
    by_source: bool = False,
) -> CascadeEvaluation:
    """The 4-class cascade of two trained stages, end to end on test records with 4-class truth.

    Both stages see every image (each through its own ``preprocess``); their probabilities are
    combined and decided under every rule of ``RULES`` that can route these stages' classes
    (``route_indices``), ``rule`` first. Each rule's section scores its decisions (accuracy, F1,
    confusion) and its scores (ROC AUCs, calibration) with patient-bootstrap CIs
    (``report.evaluate_predictions``); stage 1 is scored on the truth collapsed to its classes
    (``stage1_labels``), stage 2 on the films of ``STAGE2_DATASET`` whose truth is one of its
    classes (the paper's Table 5).

    Args:
        stage1, stage2: ``cxr_cascade.artifacts.Stage`` of each stage (model, class_names,
            preprocess, segment).
        records: test records with ``path``, ``label``, ``patient_key``, ``source`` and
            ``dataset``; those whose label is not a cascade class are dropped (``dropped``).
        rule: the decision rule of the ``"cascade"`` section, one of ``RULES``.
        out_dir: where ``figures/`` are written (None: no figures).
        unet: U-Net run for stages that read lung-masked images when records carry no mask.
        n_boot: bootstrap replicates over patients (>= 1). seed: the bootstrap's seed.
        batch_size: inference batch size (>= 1). by_source: add per-source metrics.

    Raises:
        ValueError: an unknown rule or one these stages cannot route, a bad count, or no
            record with a cascade label.
    """
    check_rule(rule)
    n_boot, batch_size = check_positive("n_boot", n_boot), check_positive("batch_size", batch_size)
    names = cascade_class_names(stage1.class_names, stage2.class_names, REFINED_CLASS)
    rules, routes, notes = [], {}, {}
    for candidate in [rule] + [r for r in RULES if r != rule]:
        try:
            routes[candidate] = route_indices(stage1.class_names, stage2.class_names, REFINED_CLASS, candidate)
        except ValueError as error:
            if candidate == rule:
                raise
            notes[f"cascade_{candidate}_section"] = f"left out: {error}"
            continue
        rules.append(("cascade" if candidate == rule else f"cascade_{candidate}", candidate))
    kept, dropped = keep_classes(list(records), names)
    if not kept:
        raise ValueError(f"no test images with labels in {names}")
    p1 = predict(stage1, kept, unet, batch_size)
    p2 = predict(stage2, kept, unet, batch_size)
    y = cascade_labels([r.label for r in kept], names)
    pids = [r.patient_key for r in kept]
    sources = [r.source for r in kept]
    common = dict(n_boot=n_boot, seed=seed)
    predictions, sections = {}, {}
    for key, name in rules:
        probs = combine_probabilities(p1, p2, rule=name, **routes[name])
        decision = cascade_decision(p1, p2, rule=name, **routes[name])
        predictions[key] = (probs, decision)
        sections[key] = report.evaluate_predictions(
            y, probs, pids, names, out_dir, name=key, y_pred=decision, rule=name, **common)
        if by_source:
            sections[key]["by_source"] = report.group_metrics(
                y, probs, sources, pids, names, y_pred=decision, **common)
    y1 = stage1_labels(y, names, stage1.class_names, stage2.class_names)
    sections["stage1"] = report.evaluate_predictions(
        y1, p1, pids, stage1.class_names, out_dir, name="stage1", **common)
    rows, y2 = stage2_subset(y, names, stage2.class_names)
    keep = [j for j, i in enumerate(rows) if kept[i].dataset == STAGE2_DATASET]
    rows, y2 = rows[keep], y2[keep]
    if len(rows) and len(set(y2.tolist())) > 1:
        sections["stage2"] = report.evaluate_predictions(
            y2, p2[rows], [pids[i] for i in rows], stage2.class_names, out_dir, name="stage2", **common)
        sections["stage2"]["population"] = (
            f"{STAGE2_DATASET} films of the test set whose truth is one of "
            f"{list(stage2.class_names)} (the paper's Table 5)")
        if by_source:
            sections["stage2"]["by_source"] = report.group_metrics(
                y2, p2[rows], [sources[i] for i in rows], [pids[i] for i in rows],
                stage2.class_names, **common)
    else:
        notes["stage2_section"] = (
            f"left out: the test set holds no {STAGE2_DATASET} films of both "
            f"{list(stage2.class_names)}")
    return CascadeEvaluation(names, rule, kept, y, p1, p2, predictions, sections, notes, dropped)
