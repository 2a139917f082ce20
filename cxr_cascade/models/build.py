"""The network of an experiment: `build_model(config)` (classifier or U-Net), uncompiled.

Lives with the models so that training, evaluation, export and run loading
(`cxr_cascade.runs`) all build networks the same way without importing each other.
"""

from __future__ import annotations

import keras

from cxr_cascade.models.composer import build_classifier
from cxr_cascade.models.moex import MoEx
from cxr_cascade.models.unet import build_unet

__all__ = ["build_model"]


def build_model(config, image_size: int | None = None) -> keras.Model:
    """The paper's network for an `ExperimentConfig`, uncompiled.

    Args:
        config: the validated experiment (task, backbone, head, SE, MoEx, U-Net widths, seed).
        image_size: input size S (default `config.image_size`); the U-Net is fully convolutional
            and runs at another size with the same weights.

    Returns:
        A functional Keras model taking float32 ``[N, S, S, 1]``.
    """
    size = int(image_size or config.image_size)
    shape = (size, size, 1)
    if config.task == "unet":
        return build_unet(input_shape=shape, filters=config.unet_filters)
    moex = None
    if config.moex is not None:
        moex = MoEx(
            prob=config.moex.prob,
            lam=config.moex.lam,
            epsilon=config.moex.epsilon,
            position=None if config.moex.position == "stem" else config.moex.position,
            seed=config.seed,
        )
    return build_classifier(
        config.backbone,
        num_classes=len(config.classes),
        input_shape=shape,
        head=config.head,
        se_reduction=config.se_reduction,
        moex=moex,
    )
