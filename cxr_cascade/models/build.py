"""The network of an experiment: `build_model(config)` (classifier or U-Net), uncompiled.

Lives with the models so that training, evaluation, export and run loading
(`cxr_cascade.artifacts`) all build networks the same way without importing each other.
"""

from __future__ import annotations

import keras

from cxr_cascade.models.composer import build_classifier
from cxr_cascade.models.moex import MoEx
from cxr_cascade.models.preprocessing import AdaptiveEqualization, RandomAffine
from cxr_cascade.models.unet import build_unet

__all__ = ["TASK_BUILDERS", "augmentation_layers", "build_model"]


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
    return TASK_BUILDERS[config.task](config, (size, size, 1))


def _build_unet(config, shape: tuple[int, int, int]) -> keras.Model:
    return build_unet(input_shape=shape, filters=config.unet_filters)


def _build_classifier(config, shape: tuple[int, int, int]) -> keras.Model:
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
        preprocessing=augmentation_layers(config),
    )


# The network of each name in `registry.TASKS` (a test checks both agree).
TASK_BUILDERS = {"stage1": _build_classifier, "stage2": _build_classifier, "unet": _build_unet}


def augmentation_layers(config) -> list:
    """The layers of ``augment.placement="model"``: the random draws the pipeline leaves out.

    "replace"-mode CLAHE (`AdaptiveEqualization` with ``fraction``, the config's clip limit and
    grid) then rotation / shift / zoom (`RandomAffine`), the pipeline's order; both are the
    identity in inference. Empty for ``placement="pipeline"``.
    """
    aug = config.augment
    if not aug.in_model:
        return []
    layers = []
    if aug.replace_fraction > 0:
        layers.append(
            AdaptiveEqualization(
                clip_limit=config.preprocess.clip_limit,
                tile_grid_size=tuple(config.preprocess.tile_grid_size),  # OpenCV's order, as the layer's
                fraction=aug.clahe_fraction,
                seed=config.seed,
                name="augment_clahe",
            )
        )
    if aug.geometric:
        layers.append(
            RandomAffine(aug.rotation_degrees, aug.shift, aug.zoom, seed=config.seed, name="augment_affine")
        )
    return layers
