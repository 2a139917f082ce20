"""DenseNet169 (Huang et al. 2017) with the layer names and weight shapes of keras.applications.

Spec table: dense layers per block ``(6, 12, 32, 32)``, growth rate 32, compression 0.5.
keras.applications leaves the two stem ZeroPadding2D layers unnamed; here they are
``conv1_pad`` and ``pool1_pad`` (no weights, so loading by name is unaffected).

SE placement (Lv et al. 2020, Fig. 6(c) shows SE on DenseNet without fixing the point; this is
our reading): ``"dense_block"`` (default) gates each dense block's concatenated output before
the transition (``conv{n}_se_*``); ``"conv_block"`` gates each dense layer's ``growth_rate`` new
feature maps before they are concatenated (``conv{n}_block{i}_se_*``).
"""

from __future__ import annotations

import keras
from keras import layers

from cxr_cascade.models._common import BN_EPSILON, KERNEL_INIT
from cxr_cascade.models.se import apply_squeeze_excite
from cxr_cascade.models.spec import BackboneSpec, BlockOptions

DENSENET169_BLOCKS: tuple[int, ...] = (6, 12, 32, 32)
GROWTH_RATE = 32
COMPRESSION = 0.5


def _bn_relu(x, name):
    x = layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def apply_densenet_stem(x: keras.KerasTensor, options: BlockOptions) -> keras.KerasTensor:
    """7x7/2 convolution (no bias), BN, ReLU, 3x3/2 max-pool: ``(H, W, C) -> (H/4, W/4, 64)``."""
    del options
    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(x)
    x = layers.Conv2D(64, 7, strides=2, use_bias=False, kernel_initializer=KERNEL_INIT, name="conv1_conv")(x)
    x = _bn_relu(x, "conv1")
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name="pool1")(x)


def apply_dense_layer(x: keras.KerasTensor, name: str, options: BlockOptions) -> keras.KerasTensor:
    """BN-ReLU-1x1 (4k) -> BN-ReLU-3x3 (k) [-> SE], concatenated to the input: ``C -> C + k``."""
    y = _bn_relu(x, f"{name}_0")
    y = layers.Conv2D(4 * GROWTH_RATE, 1, use_bias=False, kernel_initializer=KERNEL_INIT, name=f"{name}_1_conv")(y)
    y = _bn_relu(y, f"{name}_1")
    y = layers.Conv2D(
        GROWTH_RATE, 3, padding="same", use_bias=False, kernel_initializer=KERNEL_INIT, name=f"{name}_2_conv"
    )(y)
    if options.se_reduction is not None and options.se_placement == "conv_block":
        y = apply_squeeze_excite(y, options.se_reduction, name)
    return layers.Concatenate(axis=-1, name=f"{name}_concat")([x, y])


def apply_transition(x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    """BN-ReLU-1x1 conv halving the channels, then 2x2/2 average pooling."""
    x = _bn_relu(x, name)
    x = layers.Conv2D(
        int(int(x.shape[-1]) * COMPRESSION), 1, use_bias=False, kernel_initializer=KERNEL_INIT, name=f"{name}_conv"
    )(x)
    return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def apply_densenet_stage(x: keras.KerasTensor, blocks: int, index: int, options: BlockOptions) -> keras.KerasTensor:
    """Dense block ``conv{index + 2}`` [-> SE] and, except after the last block, transition ``pool{index + 2}``."""
    prefix = f"conv{index + 2}"
    for i in range(1, blocks + 1):
        x = apply_dense_layer(x, f"{prefix}_block{i}", options)
    if options.se_reduction is not None and options.se_placement == "dense_block":
        x = apply_squeeze_excite(x, options.se_reduction, prefix)
    if index < len(DENSENET169_BLOCKS) - 1:
        x = apply_transition(x, f"pool{index + 2}")
    return x


def apply_densenet_finish(x: keras.KerasTensor, options: BlockOptions) -> keras.KerasTensor:
    """Final BN-ReLU (``bn``, ``relu``) of the pre-activation dense network."""
    del options
    x = layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, name="bn")(x)
    return layers.Activation("relu", name="relu")(x)


DENSENET169 = BackboneSpec(
    name="densenet169",
    stages=DENSENET169_BLOCKS,
    apply_stem=apply_densenet_stem,
    apply_stage=apply_densenet_stage,
    apply_finish=apply_densenet_finish,
    tap_names=("pool1",)
    + tuple(f"pool{i + 2}_pool" for i in range(len(DENSENET169_BLOCKS) - 1))
    + (f"conv5_block{DENSENET169_BLOCKS[-1]}_concat",),
    se_placements=("dense_block", "conv_block"),
)
