"""ResNet50 v1 (He et al. 2016) with the layer names and weight shapes of keras.applications.

Spec table: ``(filters, blocks, first_stride)`` per stage; blocks are bottlenecks with
``4 * filters`` outputs. Optional SE (Hu et al. 2018, Fig. 3 SE-ResNet) sits on the residual
branch after the last BatchNorm and before the addition, named ``conv{n}_block{i}_se_*``.
"""

from __future__ import annotations

import keras
from keras import layers

from cxr_cascade.models._common import BN_EPSILON, KERNEL_INIT
from cxr_cascade.models.se import apply_squeeze_excite
from cxr_cascade.models.spec import BackboneSpec, BlockOptions

RESNET50_STAGES: tuple[tuple[int, int, int], ...] = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))


def _conv_bn(x, filters, kernel, stride, name, relu=True, padding="valid"):
    x = layers.Conv2D(
        filters, kernel, strides=stride, padding=padding, kernel_initializer=KERNEL_INIT, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    if relu:
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def apply_resnet_stem(x: keras.KerasTensor, options: BlockOptions) -> keras.KerasTensor:
    """7x7/2 convolution, BN, ReLU, 3x3/2 max-pool: ``(H, W, C) -> (H/4, W/4, 64)``."""
    del options
    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(x)
    x = _conv_bn(x, 64, 7, 2, "conv1")
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def apply_bottleneck_block(
    x: keras.KerasTensor,
    filters: int,
    stride: int,
    conv_shortcut: bool,
    name: str,
    options: BlockOptions,
) -> keras.KerasTensor:
    """One v1 bottleneck: 1x1 (stride) -> 3x3 -> 1x1 (4x filters) [-> SE] + shortcut -> ReLU."""
    if conv_shortcut:
        shortcut = layers.Conv2D(
            4 * filters, 1, strides=stride, kernel_initializer=KERNEL_INIT, name=f"{name}_0_conv"
        )(x)
        shortcut = layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, name=f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = _conv_bn(x, filters, 1, stride, f"{name}_1")
    x = _conv_bn(x, filters, 3, 1, f"{name}_2", padding="same")
    x = _conv_bn(x, 4 * filters, 1, 1, f"{name}_3", relu=False)
    if options.se_reduction is not None:
        x = apply_squeeze_excite(x, options.se_reduction, name)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def apply_resnet_stage(
    x: keras.KerasTensor, row: tuple[int, int, int], index: int, options: BlockOptions
) -> keras.KerasTensor:
    """Stage ``conv{index + 2}``: one projection block then identity blocks."""
    filters, blocks, stride = row
    prefix = f"conv{index + 2}"
    x = apply_bottleneck_block(x, filters, stride, True, f"{prefix}_block1", options)
    for i in range(2, blocks + 1):
        x = apply_bottleneck_block(x, filters, 1, False, f"{prefix}_block{i}", options)
    return x


RESNET50 = BackboneSpec(
    name="resnet50",
    stages=RESNET50_STAGES,
    apply_stem=apply_resnet_stem,
    apply_stage=apply_resnet_stage,
    apply_finish=None,
    tap_names=("pool1_pool",)
    + tuple(f"conv{i + 2}_block{blocks}_out" for i, (_, blocks, _) in enumerate(RESNET50_STAGES)),
    se_placements=("residual",),
)
