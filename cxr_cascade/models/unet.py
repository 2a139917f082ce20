"""U-Net (Ronneberger et al. 2015) for lung-field segmentation (Lv et al. 2020, section 3.3).

Encoder ``enc{i}`` (two 3x3 conv + ReLU, then 2x2 max-pool ``enc{i}_pool``), ``bottleneck``,
decoder ``dec{i}`` (2x2/2 transposed conv ``dec{i}_upconv``, concatenation with ``enc{i}``
``dec{i}_concat``, two 3x3 conv + ReLU), 1x1 conv ``mask_logits`` and sigmoid ``mask``.
Convolutions are "same"-padded (the original crops "valid" maps; padding keeps mask and image
aligned pixel for pixel), He-uniform as in the paper. Optional BatchNorm after each conv.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from cxr_cascade.models._common import KERNEL_INIT, check_input_shape, check_positive_int

UNET_FILTERS: tuple[int, ...] = (64, 128, 256, 512, 1024)


def apply_double_conv(x: keras.KerasTensor, filters: int, name: str, batch_norm: bool) -> keras.KerasTensor:
    """Two 3x3 same convolutions, each [BN ->] ReLU: ``{name}_conv{j}``, ``{name}_bn{j}``, ``{name}_relu{j}``."""
    for j in (1, 2):
        x = layers.Conv2D(
            filters, 3, padding="same", use_bias=not batch_norm, kernel_initializer=KERNEL_INIT, name=f"{name}_conv{j}"
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn{j}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{j}")(x)
    return x


def build_unet(
    input_shape: Sequence[int] = (512, 512, 1),
    filters: Sequence[int] = UNET_FILTERS,
    batch_norm: bool = False,
    name: str = "unet",
) -> keras.Model:
    """Build the U-Net.

    Args:
        input_shape: ``(height, width, channels)``; height and width must be divisible by
            ``2 ** depth`` with ``depth = len(filters) - 1`` (the number of poolings).
        filters: widths from the first encoder level down to the bottleneck; default the
            original ``(64, 128, 256, 512, 1024)``.
        batch_norm: BatchNorm after every convolution (not in the original).
        name: model name.

    Returns:
        ``keras.Model`` mapping float ``(batch, H, W, C)`` to the lung probability mask, float32
        ``(batch, H, W, 1)`` (layer ``mask``; ``mask_logits`` before the sigmoid).
    """
    if isinstance(filters, (str, bytes)) or not isinstance(filters, Sequence) or len(filters) < 2:
        raise ValueError(f"`filters` must be a sequence of >= 2 positive ints. Received: filters={filters!r}")
    filters = tuple(check_positive_int("filters", f) for f in filters)
    depth = len(filters) - 1
    factor = 2**depth
    height, width, channels = check_input_shape(input_shape, factor, "the U-Net", allow_none=False)
    if height % factor or width % factor:
        raise ValueError(
            f"`input_shape` height and width must be divisible by 2**depth = {factor} "
            f"(depth = len(filters) - 1 = {depth}). Received: input_shape={tuple(input_shape)!r}"
        )

    inputs = keras.Input(shape=(height, width, channels), name="image")
    x = inputs
    skips = []
    for i, f in enumerate(filters[:-1], start=1):
        x = apply_double_conv(x, f, f"enc{i}", batch_norm)
        skips.append(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"enc{i}_pool")(x)
    x = apply_double_conv(x, filters[-1], "bottleneck", batch_norm)
    for i in range(depth, 0, -1):
        f = filters[i - 1]
        x = layers.Conv2DTranspose(f, 2, strides=2, kernel_initializer=KERNEL_INIT, name=f"dec{i}_upconv")(x)
        x = layers.Concatenate(axis=-1, name=f"dec{i}_concat")([skips[i - 1], x])
        x = apply_double_conv(x, f, f"dec{i}", batch_norm)
    x = layers.Conv2D(1, 1, kernel_initializer=KERNEL_INIT, dtype="float32", name="mask_logits")(x)
    outputs = layers.Activation("sigmoid", dtype="float32", name="mask")(x)
    return keras.Model(inputs, outputs, name=name)


def unet_mask_fn(unet: keras.Model):
    """A lung U-Net as a ``mask_fn`` of `pipelines.preprocess.preprocess_image`.

    The one place a U-Net becomes a mask function (training's segmented copies, evaluation,
    serving): one resized image float32 ``[S, S, 1]`` (before CLAHE) -> the U-Net's lung
    probability float32 ``[S, S, 1]`` (thresholded at 0.5 by the caller). The U-Net must take
    ``[N, S, S, 1]`` inputs; `cxr_cascade.artifacts.load_unet_mask_fn` rebuilds it at S.
    """

    def mask_fn(image):
        batch = keras.ops.expand_dims(image, 0)
        return keras.ops.cast(unet(batch, training=False), "float32")[0]

    return mask_fn
