"""VGG19 (Simonyan & Zisserman 2015) with the layer names and weight shapes of keras.applications.

Spec table: ``(filters, convolutions)`` per block; each block ends with a 2x2/2 max-pool.
Block 1 is the "stem" for the composer, so MoEx defaults to ``block1_pool``. The paper adds no
SE to VGG (section 3.1.2: it has no merge layer), so SE is not offered for this backbone.
"""

from __future__ import annotations

import keras
from keras import layers

from cxr_cascade.models._common import KERNEL_INIT
from cxr_cascade.models.spec import BackboneSpec, BlockOptions

VGG19_BLOCKS: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


def apply_vgg_block(x: keras.KerasTensor, filters: int, convs: int, name: str) -> keras.KerasTensor:
    """``convs`` 3x3 same-padded ReLU convolutions, then 2x2/2 max-pool ``{name}_pool``."""
    for i in range(1, convs + 1):
        x = layers.Conv2D(
            filters, 3, padding="same", activation="relu", kernel_initializer=KERNEL_INIT, name=f"{name}_conv{i}"
        )(x)
    return layers.MaxPooling2D(2, strides=2, name=f"{name}_pool")(x)


def apply_vgg_stem(x: keras.KerasTensor, options: BlockOptions) -> keras.KerasTensor:
    """Block 1: ``(H, W, C) -> (H/2, W/2, 64)``."""
    del options
    return apply_vgg_block(x, *VGG19_BLOCKS[0], name="block1")


def apply_vgg_stage(x: keras.KerasTensor, row: tuple[int, int], index: int, options: BlockOptions) -> keras.KerasTensor:
    """Block ``index + 2`` (blocks 2-5 are the composer's stages)."""
    del options
    return apply_vgg_block(x, *row, name=f"block{index + 2}")


VGG19 = BackboneSpec(
    name="vgg19",
    stages=VGG19_BLOCKS[1:],
    apply_stem=apply_vgg_stem,
    apply_stage=apply_vgg_stage,
    apply_finish=None,
    tap_names=tuple(f"block{i + 1}_pool" for i in range(len(VGG19_BLOCKS))),
    fc_units=(4096, 4096),
)
