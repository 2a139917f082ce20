"""The cascade's classes and its combination layer (Lv et al. 2020, Fig. 1), with the models.

Stage 1 gives ``p1`` over normal / bacterial / viral; stage 2 splits the viral class into
COVID-19 / other viral, ``p2``. The cascade's distribution replaces the refined stage-1 class by
stage 2's classes, weighted by the probability of reaching stage 2:

    p(covid19) = p1(viral) p2(covid19),  p(viral) = p1(viral) p2(viral),
    p(normal) = p1(normal),              p(bacterial) = p1(bacterial).

Evaluation (`cxr_cascade.evaluation.cascade`) and export (`cxr_cascade.export.serving`) both
take the class constants and ``CascadeCombine`` from here instead of importing each other.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

import keras
from keras import ops

__all__ = [
    "CascadeCombine",
    "REFINED_CLASS",
    "STAGE1_CLASSES",
    "STAGE2_CLASSES",
    "RULES",
    "DEFAULT_RULE",
    "CascadeDecision",
    "cascade_class_names",
    "cascade_decision",
    "check_rule",
    "combine_probabilities",
]

STAGE1_CLASSES = ("normal", "bacterial", "viral")
STAGE2_CLASSES = ("covid19", "viral")
REFINED_CLASS = "viral"
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


class _TwoStageLayer(keras.layers.Layer):
    """Shared argument check and shape check of the layers reading ``[p1, p2]``."""

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


def _products(p1, p2, r: int):
    """``[p1[:, :r], p1[:, r] * p2, p1[:, r+1:]]`` as one tensor (the cascade's scores)."""
    refined = p1[:, r : r + 1]
    return ops.concatenate([p1[:, :r], refined * ops.cast(p2, p1.dtype), p1[:, r + 1 :]], axis=-1)


@keras.saving.register_keras_serializable(package="cxr_cascade")
class CascadeCombine(_TwoStageLayer):
    """Combines stage-1 and stage-2 probabilities into the cascade's distribution.

    Args:
        refined_index: index of the stage-1 class that stage 2 subdivides (2, "viral").

    Call arguments:
        inputs: ``[p1, p2]``, float ``[B, C1]`` and ``[B, C2]``.

    Returns:
        float ``[B, C1 - 1 + C2]``: ``p1[:, :r]``, ``p1[:, r] * p2``, ``p1[:, r+1:]``.
    """

    def call(self, inputs):
        p1, p2 = inputs
        return _products(p1, p2, self.refined_index)

    def compute_output_shape(self, input_shape):
        shape1, shape2 = input_shape
        width = None if shape1[-1] is None or shape2[-1] is None else shape1[-1] - 1 + shape2[-1]
        return (shape1[0], width)

    def get_config(self):
        return {**super().get_config(), "refined_index": self.refined_index}


@keras.saving.register_keras_serializable(package="cxr_cascade")
class CascadeDecision(_TwoStageLayer):
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
        super().__init__(refined_index, **kwargs)
        self.rule = check_rule(rule)

    def call(self, inputs):
        p1, p2 = inputs
        r = self.refined_index
        if self.rule == "soft":
            products = _products(p1, p2, r)
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
