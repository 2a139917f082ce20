"""Classifier heads. Both start at ``cam_features`` and end in ``logits`` -> ``probabilities``.

``cam_features`` is an Identity layer on the last feature map so Grad-CAM finds it by name;
``logits`` (Dense, no activation) is what Grad-CAM differentiates. ``logits`` and
``probabilities`` compute in float32 so mixed-precision training keeps a stable softmax.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
from keras import layers

from cxr_cascade.models._common import KERNEL_INIT
from cxr_cascade.registry import HEADS


def _gap(x: keras.KerasTensor, fc_units: Sequence[int]) -> keras.KerasTensor:
    """``avg_pool``: global average pooling (Lv et al. 2020 section 3.1.1); no hidden layers."""
    return layers.GlobalAveragePooling2D(name="avg_pool")(x)


def _flatten(x: keras.KerasTensor, fc_units: Sequence[int]) -> keras.KerasTensor:
    """``flatten`` -> ``fc1``.. (ReLU Dense of ``fc_units``): the original fixed-size heads."""
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(fc_units, start=1):
        x = layers.Dense(units, activation="relu", kernel_initializer=KERNEL_INIT, name=f"fc{i}")(x)
    return x


# The implementation of each name in `registry.HEADS` (a test checks both agree): the layers
# between ``cam_features`` and ``logits``.
HEAD_BUILDERS: dict[str, Callable[[keras.KerasTensor, Sequence[int]], keras.KerasTensor]] = {
    "gap": _gap,
    "flatten": _flatten,
}


def apply_head(x: keras.KerasTensor, num_classes: int, head: str, fc_units: Sequence[int] = ()) -> keras.KerasTensor:
    """Attach a classifier head.

    Args:
        x: last feature map ``(batch, h, w, c)``.
        num_classes: width of ``logits``.
        head: ``"gap"``: ``avg_pool`` (global average pooling, Lv et al. 2020 section 3.1.1) ->
            ``logits``; ``"flatten"``: ``flatten`` -> ``fc1``.. (ReLU Dense, ``fc_units``) ->
            ``logits``, the original fixed-size heads (VGG19's fc1/fc2 of 4096).
        fc_units: hidden widths for the flatten head.

    Returns:
        ``probabilities``, float32 ``(batch, num_classes)``.
    """
    if head not in HEADS:
        raise ValueError(f"`head` must be one of {list(HEADS)}. Received: head={head!r}")
    x = layers.Identity(name="cam_features")(x)
    x = HEAD_BUILDERS[head](x, fc_units)
    x = layers.Dense(num_classes, kernel_initializer=KERNEL_INIT, dtype="float32", name="logits")(x)
    return layers.Activation("softmax", dtype="float32", name="probabilities")(x)
