"""The cascade combiner of Cascade-SEMEnet (Lv et al. 2020, Fig. 1) and its end-to-end evaluation.

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

from typing import Sequence

import numpy as np

import keras

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
