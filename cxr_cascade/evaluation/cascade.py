"""The cascade combiner of Cascade-SEMEnet (Lv et al. 2020, Fig. 1) and its end-to-end evaluation.

Stage 1 gives ``p1`` over normal / bacterial / viral; stage 2 splits the viral class into
COVID-19 / other viral, ``p2``. The cascade's distribution replaces the refined stage-1 class by
stage 2's classes, weighted by the probability of reaching stage 2:

    p(covid19) = p1(viral) p2(covid19),  p(viral) = p1(viral) p2(viral),
    p(normal) = p1(normal),              p(bacterial) = p1(bacterial).

This is arithmetic, not control flow, so it batches and exports as one graph: both stages run on
every image and ``CascadeCombine`` mixes their outputs. The rows still sum to one, and they are the
cascade's *scores* (ROC curves and AUCs).

The *decision* follows the paper (section 3): stage 2 refines the films that stage 1 calls viral.
``rule="gate"`` (the default everywhere) is that hard gate: the stage-1 argmax, and where it is the
refined class, stage 2's argmax among stage 2's classes. ``rule="soft"`` is the argmax of the
products above, which disagrees with the gate on some films: p1 = (.35, .25, .40), p2 = (.55, .45)
gives products (.35, .25, .22, .18), "normal", while the gate says "covid19". The gate is computed
with ``where`` on the stage-1 argmax (``CascadeDecision``), so it too is one static graph.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

import keras
from keras import ops

STAGE1_CLASSES = ("normal", "bacterial", "viral")
STAGE2_CLASSES = ("covid19", "viral")
REFINED_CLASS = "viral"
STAGE2_DATASET = "ieee8023"  # the population of the paper's Table 5 (stage 2 alone)
RULES = ("gate", "soft")
DEFAULT_RULE = "gate"


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise ValueError(f"`rule` must be one of {list(RULES)}. Received: rule={rule!r}")
    return rule


def cascade_class_names(
    stage1_classes: Sequence[str] = STAGE1_CLASSES,
    stage2_classes: Sequence[str] = STAGE2_CLASSES,
    refined_class: str = REFINED_CLASS,
) -> list[str]:
    """Stage 1's class names with ``refined_class`` replaced in place by stage 2's names.

    The default gives ``["normal", "bacterial", "covid19", "viral"]``.
    """
    stage1_classes, stage2_classes = list(stage1_classes), list(stage2_classes)
    if refined_class not in stage1_classes:
        raise ValueError(
            f"`refined_class` must be one of stage 1's classes {stage1_classes}. "
            f"Received: refined_class={refined_class!r}"
        )
    i = stage1_classes.index(refined_class)
    names = stage1_classes[:i] + stage2_classes + stage1_classes[i + 1 :]
    if len(set(names)) != len(names):
        raise ValueError(
            "Stage 2's class names must differ from stage 1's other classes. "
            f"Received: stage1_classes={stage1_classes}, stage2_classes={stage2_classes}"
        )
    return names


def combine_probabilities(p1, p2, refined_index: int = 2) -> np.ndarray:
    """NumPy twin of ``CascadeCombine``: ``[N, C1]``, ``[N, C2]`` -> ``[N, C1 - 1 + C2]``."""
    p1 = np.asarray(p1, dtype=np.float64)
    p2 = np.asarray(p2, dtype=np.float64)
    _check_shapes(p1.shape, p2.shape, refined_index)
    refined = p1[:, refined_index : refined_index + 1]
    return np.concatenate([p1[:, :refined_index], refined * p2, p1[:, refined_index + 1 :]], axis=1)


def cascade_decision(p1, p2, refined_index: int = 2, rule: str = DEFAULT_RULE) -> np.ndarray:
    """NumPy twin of ``CascadeDecision``: int64 ``[N]`` class indices in ``cascade_class_names`` order.

    ``rule="gate"``: k1 = argmax p1; k1 itself below the refined index, ``refined_index + argmax p2``
    at it, ``k1 - 1 + C2`` above it. ``rule="soft"``: argmax of ``combine_probabilities``.
    """
    check_rule(rule)
    p1 = np.asarray(p1, dtype=np.float64)
    p2 = np.asarray(p2, dtype=np.float64)
    _check_shapes(p1.shape, p2.shape, refined_index)
    if rule == "soft":
        return combine_probabilities(p1, p2, refined_index).argmax(axis=1).astype(np.int64)
    k1 = p1.argmax(axis=1).astype(np.int64)
    k2 = p2.argmax(axis=1).astype(np.int64)
    shifted = np.where(k1 > refined_index, k1 - 1 + p2.shape[1], k1)
    return np.where(k1 == refined_index, refined_index + k2, shifted)


def _check_shapes(shape1, shape2, refined_index: int) -> None:
    if len(shape1) != 2 or len(shape2) != 2:
        raise ValueError(
            "Stage probabilities must have shape [N, C]. "
            f"Received: p1.shape={tuple(shape1)}, p2.shape={tuple(shape2)}"
        )
    if shape1[-1] is not None and not 0 <= refined_index < shape1[-1]:
        raise ValueError(
            f"`refined_index` must index a stage-1 class, in [0, {shape1[-1]}). "
            f"Received: refined_index={refined_index}"
        )


@keras.saving.register_keras_serializable(package="cxr_cascade")
class CascadeCombine(keras.layers.Layer):
    """Combines stage-1 and stage-2 probabilities into the cascade's distribution.

    Args:
        refined_index: index of the stage-1 class that stage 2 subdivides (2, "viral").

    Call arguments:
        inputs: ``[p1, p2]``, float ``[B, C1]`` and ``[B, C2]``.

    Returns:
        float ``[B, C1 - 1 + C2]``: ``p1[:, :r]``, ``p1[:, r] * p2``, ``p1[:, r+1:]``.
    """

    def __init__(self, refined_index: int = 2, **kwargs):
        super().__init__(**kwargs)
        if isinstance(refined_index, bool) or int(refined_index) != refined_index or refined_index < 0:
            raise ValueError(
                f"`refined_index` must be a non-negative int. Received: refined_index={refined_index!r}"
            )
        self.refined_index = int(refined_index)

    def build(self, input_shape):
        shape1, shape2 = input_shape
        _check_shapes(shape1, shape2, self.refined_index)

    def call(self, inputs):
        p1, p2 = inputs
        r = self.refined_index
        refined = p1[:, r : r + 1]
        return ops.concatenate([p1[:, :r], refined * ops.cast(p2, p1.dtype), p1[:, r + 1 :]], axis=-1)

    def compute_output_shape(self, input_shape):
        shape1, shape2 = input_shape
        width = None if shape1[-1] is None or shape2[-1] is None else shape1[-1] - 1 + shape2[-1]
        return (shape1[0], width)

    def get_config(self):
        return {**super().get_config(), "refined_index": self.refined_index}


@keras.saving.register_keras_serializable(package="cxr_cascade")
class CascadeDecision(keras.layers.Layer):
    """The cascade's decision from both stages' probabilities, without Python control flow.

    Args:
        refined_index: index of the stage-1 class that stage 2 subdivides (2, "viral").
        rule: "gate" (default, the paper's section 3: stage 2 decides where stage 1's argmax is
            the refined class) or "soft" (argmax of ``CascadeCombine``'s products).

    Call arguments:
        inputs: ``[p1, p2]``, float ``[B, C1]`` and ``[B, C2]``.

    Returns:
        int32 ``[B]``: class index in ``cascade_class_names`` order (``cascade_decision``'s twin).
    """

    def __init__(self, refined_index: int = 2, rule: str = DEFAULT_RULE, **kwargs):
        super().__init__(**kwargs)
        if isinstance(refined_index, bool) or int(refined_index) != refined_index or refined_index < 0:
            raise ValueError(
                f"`refined_index` must be a non-negative int. Received: refined_index={refined_index!r}"
            )
        self.refined_index = int(refined_index)
        self.rule = check_rule(rule)

    def build(self, input_shape):
        shape1, shape2 = input_shape
        _check_shapes(shape1, shape2, self.refined_index)

    def call(self, inputs):
        p1, p2 = inputs
        r = self.refined_index
        if self.rule == "soft":
            p2 = ops.cast(p2, p1.dtype)
            products = ops.concatenate([p1[:, :r], p1[:, r : r + 1] * p2, p1[:, r + 1 :]], axis=-1)
            return ops.cast(ops.argmax(products, axis=-1), "int32")
        k1 = ops.cast(ops.argmax(p1, axis=-1), "int32")
        k2 = ops.cast(ops.argmax(p2, axis=-1), "int32")
        c2 = ops.cast(ops.shape(p2)[-1], "int32")
        shifted = ops.where(k1 > r, k1 - 1 + c2, k1)
        return ops.where(ops.equal(k1, r), k2 + r, shifted)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0],)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor((inputs[0].shape[0],), dtype="int32")

    def get_config(self):
        return {**super().get_config(), "refined_index": self.refined_index, "rule": self.rule}


def build_cascade_model(
    stage1: keras.Model,
    stage2: keras.Model,
    refined_index: int = 2,
    name: str = "cascade",
    rule: str = DEFAULT_RULE,
) -> keras.Model:
    """One-input functional model: both stages on the same image, combined by ``CascadeCombine``.

    When the stages take different input sizes, the image is resized (bilinear) to each stage's
    size inside the graph. Stage 2's own preprocessing (lung masking by the U-Net) belongs to the
    export graph (``cxr_cascade.export``); this model is the arithmetic core evaluated here.

    Returns:
        ``keras.Model(image -> {"probabilities", "class_index", "stage1_probabilities",
        "stage2_probabilities"})`` with the cascade distribution (the scores) in
        ``cascade_class_names`` order and the decision of `rule` (``CascadeDecision``).
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
    probs = CascadeCombine(refined_index, name="probabilities")([p1, p2])
    index = CascadeDecision(refined_index, rule, name="class_index")([p1, p2])
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
