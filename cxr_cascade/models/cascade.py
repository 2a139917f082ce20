"""The cascade's classes and its combination layer (Lv et al. 2020, Fig. 1), with the models.

Stage 1 gives ``p1`` over normal / bacterial / viral; stage 2 splits the viral class into
COVID-19 / other viral, ``p2``. The cascade's distribution replaces the refined stage-1 class by
stage 2's classes, weighted by the probability of reaching stage 2:

    p(covid19) = p1(viral) p2(covid19),  p(viral) = p1(viral) p2(viral),
    p(normal) = p1(normal),              p(bacterial) = p1(bacterial).

Decision rules (`RULES`): "gate", the paper's section 3 (stage 2 decides the films stage 1 calls
viral); "soft", the argmax of the products above; "pneumonia", stage 2 sees every film stage 1
calls a pneumonia (any class but normal): a film stage 2 calls COVID-19 becomes COVID-19, one
stage 2 calls negative keeps stage 1's call. Under "pneumonia" the scores follow the same route,

    p(covid19) = (1 - p1(normal)) p2(covid19),  p(viral) = p1(viral) p2(viral),
    p(normal) = p1(normal),                     p(bacterial) = p1(bacterial) p2(viral),

where p2(viral) is stage 2's negative class ("not COVID-19: keep stage 1's call"); the rows
still sum to one. With the paper's gate an adult COVID-19 film that stage 1 calls bacterial can
never be called COVID-19; the pneumonia rule lets stage 2 see it.

Evaluation (`cxr_cascade.evaluation.cascade`) and export (`cxr_cascade.export.serving`) both
take the class constants and ``CascadeCombine`` from here instead of importing each other.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

import keras
from keras import ops

from cxr_cascade.registry import CASCADE_RULES, DEFAULT_CASCADE_RULE

__all__ = [
    "CascadeCombine",
    "NORMAL_CLASS",
    "REFINED_CLASS",
    "STAGE1_CLASSES",
    "STAGE2_CLASSES",
    "RULES",
    "RULE_DECISIONS",
    "DEFAULT_RULE",
    "CascadeDecision",
    "cascade_class_names",
    "cascade_decision",
    "check_rule",
    "combine_probabilities",
    "route_indices",
]

STAGE1_CLASSES = ("normal", "bacterial", "viral")
STAGE2_CLASSES = ("covid19", "viral")
REFINED_CLASS = "viral"
NORMAL_CLASS = "normal"  # the stage-1 class the pneumonia rule never sends to stage 2
RULES = CASCADE_RULES  # `cxr_cascade.registry`: CLI choices, layers and export read it
DEFAULT_RULE = DEFAULT_CASCADE_RULE


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


def route_indices(
    stage1_classes: Sequence[str] = STAGE1_CLASSES,
    stage2_classes: Sequence[str] = STAGE2_CLASSES,
    refined_class: str = REFINED_CLASS,
    rule: str = DEFAULT_RULE,
) -> dict[str, int]:
    """``refined_index``, ``normal_index`` and ``negative_index`` of the rule from class names.

    ``normal_index``: stage 1's `NORMAL_CLASS`; ``negative_index``: stage 2's class named as the
    refined class (its "not COVID-19: keep stage 1's call"). Only rule "pneumonia" reads the last
    two; for the other rules classes without these names are fine (their defaults are kept).
    """
    check_rule(rule)
    stage1_classes, stage2_classes = list(stage1_classes), list(stage2_classes)
    if refined_class not in stage1_classes:
        raise ValueError(
            f"`refined_class` must be one of stage 1's classes {stage1_classes}. "
            f"Received: refined_class={refined_class!r}"
        )
    out = {"refined_index": stage1_classes.index(refined_class), "normal_index": 0, "negative_index": 1}
    if rule == "pneumonia":
        if NORMAL_CLASS not in stage1_classes or refined_class not in stage2_classes:
            raise ValueError(
                f"rule 'pneumonia' needs a stage-1 class {NORMAL_CLASS!r} and a stage-2 class "
                f"{refined_class!r} (stage 2's negative). Received: stage1_classes={stage1_classes}, "
                f"stage2_classes={stage2_classes}"
            )
        out["normal_index"] = stage1_classes.index(NORMAL_CLASS)
        out["negative_index"] = stage2_classes.index(refined_class)
    return out


def combine_probabilities(p1, p2, refined_index: int = 2, rule: str = DEFAULT_RULE,
                          normal_index: int = 0, negative_index: int = 1) -> np.ndarray:
    """NumPy twin of ``CascadeCombine``: ``[N, C1]``, ``[N, C2]`` -> ``[N, C1 - 1 + C2]``.

    ``rule`` "gate" and "soft" give the products of the module docstring; "pneumonia" gives the
    pneumonia route's distribution (``normal_index``: stage 1's normal class, never sent to
    stage 2; ``negative_index``: stage 2's class that keeps stage 1's call).
    """
    check_rule(rule)
    p1 = np.asarray(p1, dtype=np.float64)
    p2 = np.asarray(p2, dtype=np.float64)
    _check_shapes(p1.shape, p2.shape, refined_index)
    r = refined_index
    if rule != "pneumonia":
        refined = p1[:, r : r + 1]
        return np.concatenate([p1[:, :r], refined * p2, p1[:, r + 1 :]], axis=1)
    _check_route(p1.shape, p2.shape, r, normal_index, negative_index)
    negative = p2[:, negative_index : negative_index + 1]
    kept = np.where(np.arange(p1.shape[1]) == normal_index, p1, p1 * negative)
    escape = (1.0 - p1[:, normal_index : normal_index + 1]) * p2
    middle = np.where(np.arange(p2.shape[1]) == negative_index, p1[:, r : r + 1] * p2, escape)
    return np.concatenate([kept[:, :r], middle, kept[:, r + 1 :]], axis=1)


def cascade_decision(p1, p2, refined_index: int = 2, rule: str = DEFAULT_RULE,
                     normal_index: int = 0, negative_index: int = 1) -> np.ndarray:
    """NumPy twin of ``CascadeDecision``: int64 ``[N]`` class indices in ``cascade_class_names`` order.

    ``rule="gate"``: k1 = argmax p1; k1 itself below the refined index, ``refined_index + argmax p2``
    at it, ``k1 - 1 + C2`` above it. ``rule="soft"``: argmax of the products.
    ``rule="pneumonia"``: as the gate, and besides where k1 is neither the refined class nor
    ``normal_index`` while stage 2's argmax is not ``negative_index``, ``refined_index + argmax p2``
    (a film stage 1 calls bacterial that stage 2 calls COVID-19 becomes COVID-19).
    """
    check_rule(rule)
    p1 = np.asarray(p1, dtype=np.float64)
    p2 = np.asarray(p2, dtype=np.float64)
    _check_shapes(p1.shape, p2.shape, refined_index)
    return RULE_DECISIONS[rule](p1, p2, refined_index, normal_index, negative_index)


def _soft_decision(p1, p2, refined_index, normal_index, negative_index) -> np.ndarray:
    return combine_probabilities(p1, p2, refined_index).argmax(axis=1).astype(np.int64)


def _routed_decision(p1, p2, refined_index, escape) -> np.ndarray:
    """Stage 1's argmax, replaced by ``refined_index + argmax p2`` where stage 1 calls the refined
    class or `escape` (bool ``[N]``) holds."""
    k1 = p1.argmax(axis=1).astype(np.int64)
    k2 = p2.argmax(axis=1).astype(np.int64)
    shifted = np.where(k1 > refined_index, k1 - 1 + p2.shape[1], k1)
    to_stage2 = (k1 == refined_index) | escape(k1, k2)
    return np.where(to_stage2, refined_index + k2, shifted)


def _gate_decision(p1, p2, refined_index, normal_index, negative_index) -> np.ndarray:
    return _routed_decision(p1, p2, refined_index, lambda k1, k2: np.zeros(k1.shape, bool))


def _pneumonia_decision(p1, p2, refined_index, normal_index, negative_index) -> np.ndarray:
    _check_route(p1.shape, p2.shape, refined_index, normal_index, negative_index)
    return _routed_decision(
        p1, p2, refined_index, lambda k1, k2: (k1 != normal_index) & (k2 != negative_index)
    )


# The NumPy decision of each name in `registry.CASCADE_RULES` (a test checks both agree);
# ``CascadeDecision`` is their graph twin.
RULE_DECISIONS = {"gate": _gate_decision, "soft": _soft_decision, "pneumonia": _pneumonia_decision}


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


def _check_route(shape1, shape2, refined_index: int, normal_index: int, negative_index: int) -> None:
    """The pneumonia rule's indices: a normal class other than the refined one, a stage-2 class."""
    c1, c2 = shape1[-1], shape2[-1]
    if c1 is not None and (not 0 <= normal_index < c1 or normal_index == refined_index):
        raise ValueError(
            f"`normal_index` must index a stage-1 class other than the refined one ({refined_index}), "
            f"in [0, {c1}). Received: normal_index={normal_index}"
        )
    if c2 is not None and not 0 <= negative_index < c2:
        raise ValueError(
            f"`negative_index` must index a stage-2 class, in [0, {c2}). "
            f"Received: negative_index={negative_index}"
        )


def _check_index(name: str, value) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"`{name}` must be a non-negative int. Received: {name}={value!r}")
    return int(value)


class _TwoStageLayer(keras.layers.Layer):
    """Shared argument check and shape check of the layers reading ``[p1, p2]``."""

    def __init__(self, refined_index: int = 2, rule: str = DEFAULT_RULE, normal_index: int = 0,
                 negative_index: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.refined_index = _check_index("refined_index", refined_index)
        self.rule = check_rule(rule)
        self.normal_index = _check_index("normal_index", normal_index)
        self.negative_index = _check_index("negative_index", negative_index)

    def build(self, input_shape):
        shape1, shape2 = input_shape
        _check_shapes(shape1, shape2, self.refined_index)
        if self.rule == "pneumonia":
            _check_route(shape1, shape2, self.refined_index, self.normal_index, self.negative_index)

    def get_config(self):
        return {**super().get_config(), "refined_index": self.refined_index, "rule": self.rule,
                "normal_index": self.normal_index, "negative_index": self.negative_index}


def _products(p1, p2, r: int):
    """``[p1[:, :r], p1[:, r] * p2, p1[:, r+1:]]`` as one tensor (the cascade's scores)."""
    refined = p1[:, r : r + 1]
    return ops.concatenate([p1[:, :r], refined * ops.cast(p2, p1.dtype), p1[:, r + 1 :]], axis=-1)


def _pneumonia_products(p1, p2, r: int, normal: int, negative: int):
    """The pneumonia route's distribution (module docstring), ``combine_probabilities``' twin."""
    p2 = ops.cast(p2, p1.dtype)
    c1, c2 = ops.shape(p1)[-1], ops.shape(p2)[-1]
    negative_p = p2[:, negative : negative + 1]
    kept = ops.where(ops.equal(ops.arange(c1), normal)[None, :], p1, p1 * negative_p)
    escape = (1.0 - p1[:, normal : normal + 1]) * p2
    middle = ops.where(ops.equal(ops.arange(c2), negative)[None, :], p1[:, r : r + 1] * p2, escape)
    return ops.concatenate([kept[:, :r], middle, kept[:, r + 1 :]], axis=-1)


@keras.saving.register_keras_serializable(package="cxr_cascade")
class CascadeCombine(_TwoStageLayer):
    """Combines stage-1 and stage-2 probabilities into the cascade's distribution.

    Args:
        refined_index: index of the stage-1 class that stage 2 subdivides (2, "viral").
        rule: "gate" or "soft" (default: the products) or "pneumonia" (the pneumonia route's
            distribution, module docstring).
        normal_index: stage 1's normal class (rule "pneumonia" only).
        negative_index: stage 2's class that keeps stage 1's call (rule "pneumonia" only).

    Call arguments:
        inputs: ``[p1, p2]``, float ``[B, C1]`` and ``[B, C2]``.

    Returns:
        float ``[B, C1 - 1 + C2]``: ``p1[:, :r]``, ``p1[:, r] * p2``, ``p1[:, r+1:]`` (products),
        or the pneumonia route's distribution, rows summing to one.
    """

    def call(self, inputs):
        p1, p2 = inputs
        if self.rule == "pneumonia":
            return _pneumonia_products(p1, p2, self.refined_index, self.normal_index, self.negative_index)
        return _products(p1, p2, self.refined_index)

    def compute_output_shape(self, input_shape):
        shape1, shape2 = input_shape
        width = None if shape1[-1] is None or shape2[-1] is None else shape1[-1] - 1 + shape2[-1]
        return (shape1[0], width)


@keras.saving.register_keras_serializable(package="cxr_cascade")
class CascadeDecision(_TwoStageLayer):
    """The cascade's decision from both stages' probabilities, without Python control flow.

    Args:
        refined_index: index of the stage-1 class that stage 2 subdivides (2, "viral").
        rule: "gate" (default, the paper's section 3: stage 2 decides where stage 1's argmax is
            the refined class), "soft" (argmax of ``CascadeCombine``'s products) or "pneumonia"
            (stage 2 decides where stage 1's argmax is any class but ``normal_index``; its
            ``negative_index`` keeps stage 1's call).
        normal_index, negative_index: as ``CascadeCombine`` (rule "pneumonia" only).

    Call arguments:
        inputs: ``[p1, p2]``, float ``[B, C1]`` and ``[B, C2]``.

    Returns:
        int32 ``[B]``: class index in ``cascade_class_names`` order (``cascade_decision``'s twin).
    """

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
        to_stage2 = ops.equal(k1, r)
        if self.rule == "pneumonia":
            escape = ops.logical_and(ops.not_equal(k1, self.normal_index),
                                     ops.not_equal(k2, self.negative_index))
            to_stage2 = ops.logical_or(to_stage2, escape)
        return ops.where(to_stage2, k2 + r, shifted)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0],)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor((inputs[0].shape[0],), dtype="int32")
