"""Squeeze-and-excitation block (Hu et al. 2018), as used by Lv et al. 2020, section 3.1.2.

``s = sigmoid(W2 relu(W1 GAP(U)))``, ``W1: C -> C/r``, ``W2: C/r -> C``, output ``U * s``.
Both projections are Dense layers with biases, as in the SENet reference, so SE-ResNet50
(r = 16) at 224x224x3 with 1000 classes has 28,167,704 parameters.
"""

from __future__ import annotations

import keras
from keras import layers

from cxr_cascade.models._common import KERNEL_INIT


def apply_squeeze_excite(x: keras.KerasTensor, reduction: int, name: str) -> keras.KerasTensor:
    """Rescale the channels of ``x`` by a learned, globally pooled gate.

    Args:
        x: feature map ``(batch, height, width, channels)``.
        reduction: the ratio ``r``; the bottleneck has ``max(1, channels // r)`` units.
        name: prefix; layers are ``{name}_se_squeeze``, ``_se_reduce``, ``_se_expand``, ``_se_excite``.

    Returns:
        Tensor of the same shape and dtype as ``x``.
    """
    channels = int(x.shape[-1])
    hidden = max(1, channels // reduction)
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_squeeze")(x)
    s = layers.Dense(hidden, activation="relu", kernel_initializer=KERNEL_INIT, name=f"{name}_se_reduce")(s)
    s = layers.Dense(channels, activation="sigmoid", kernel_initializer=KERNEL_INIT, name=f"{name}_se_expand")(s)
    return layers.Multiply(name=f"{name}_se_excite")([x, s])
