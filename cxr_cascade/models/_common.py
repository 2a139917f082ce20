"""Shared conventions of the model builders: initialiser, BatchNorm epsilon, argument checks.

He-uniform (He et al. 2015) on every convolution and dense kernel is the paper's choice
(Lv et al. 2020, section 4: ``W ~ U(-sqrt(6/n_in), sqrt(6/n_in))``); keras.applications
uses Glorot-uniform, so this is the one deliberate difference from those builders.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

KERNEL_INIT = "he_uniform"
# keras.applications ResNet and DenseNet use 1.001e-5 so their ported Caffe/Torch weights load.
BN_EPSILON = 1.001e-5


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise ValueError in Keras' style."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}"
        )
    return value


def check_input_shape(
    input_shape: Any, min_size: int, owner: str, allow_none: bool = True
) -> tuple[Optional[int], Optional[int], int]:
    """Validate a channels-last ``(height, width, channels)`` shape.

    Args:
        input_shape: the shape to check.
        min_size: smallest height and width the network can reduce without running out of pixels.
        owner: what the shape is for, used in the message (e.g. ``"backbone='resnet50'"``).
        allow_none: whether height/width may be ``None`` (any size at run time).

    Returns:
        The shape as a tuple.
    """
    msg = (
        f"`input_shape` must be (height, width, channels) with height and width >= {min_size} "
        f"and channels >= 1 for {owner}"
    )
    if not isinstance(input_shape, Sequence) or isinstance(input_shape, str) or len(input_shape) != 3:
        raise ValueError(f"{msg}. Received: input_shape={input_shape!r}")
    height, width, channels = input_shape
    for dim in (height, width):
        if dim is None and allow_none:
            continue
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < min_size:
            raise ValueError(f"{msg}. Received: input_shape={tuple(input_shape)!r}")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"{msg}. Received: input_shape={tuple(input_shape)!r}")
    return height, width, channels
