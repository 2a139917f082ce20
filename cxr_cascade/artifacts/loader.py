"""One loader for every trained model on disk, as keras-hub's one preset loader: `load(path)`.

`path` is a run folder (`cxr-cascade train`), a `model.keras` / `.weights.h5` file inside one, or
a model folder of a release (``releases/v1/stage1``, sha256-verified float16 weights); the answer
is always a `Stage`. Evaluate, gradcam, audit, export, segment, release build and stage 2's
U-Net masking all load through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from cxr_cascade.artifacts.checksums import sha256_file
from cxr_cascade.artifacts.layout import MODEL_FILE
from cxr_cascade.artifacts.release import RELEASE_FILE, SUMS_FILE, WEIGHTS_FILE, is_release_model, load_release
from cxr_cascade.artifacts.stage import PathLike, Stage, load_run
from cxr_cascade.models.build import build_model
from cxr_cascade.models.unet import unet_mask_fn

__all__ = ["load", "load_unet_mask_fn"]


def load(path: PathLike, *, verbose: bool = True) -> Stage:
    """The trained model at `path` with its classes, preprocessing and task.

    Args:
        path: a run directory, a `.keras` / `.weights.h5` file inside one (that file is used), or
            a model folder of a release (`cxr_cascade.artifacts.release.load_release`).
        verbose: print the one-line note when an old run folder is rebuilt from weights.

    Returns:
        `Stage` with the model (uncompiled) and its `PreprocessConfig`.

    Raises:
        FileNotFoundError: no such folder, no config.json, or no model/weights (names the folder).
        ValueError: a config.json that does not validate; `ReleaseError` (a `ValueError`) for a
            missing, changed or truncated release file.
    """
    if is_release_model(path):
        return load_release(Path(path).parent, Path(path).name)
    if (Path(path) / WEIGHTS_FILE).is_file() and not (Path(path) / MODEL_FILE).is_file():
        raise FileNotFoundError(
            f"{path}: a release's model folder without its release ({RELEASE_FILE} and {SUMS_FILE} "
            "belong in the folder above it, which verifies the weights); copy or name the whole "
            "release folder, e.g. releases/v1/unet inside releases/v1")
    return load_run(path, verbose=verbose)


def load_unet_mask_fn(unet: PathLike, image_size: int) -> Callable:
    """`image [S, S, 1] -> lung probability [S, S, 1]` from a trained U-Net (anything `load`
    takes), at the classifier's size S.

    The fully convolutional U-Net is rebuilt at S with the trained weights, so no resize
    enters the mask (`cxr_cascade.models.unet_mask_fn` does the rest).

    Raises:
        FileNotFoundError: as `load`.
        ValueError: not a U-Net run, or S not divisible by the U-Net's ``2**depth``.
    """
    stage = load(unet)
    if stage.task != "unet":
        raise ValueError(f"--unet {unet}: {stage.source} is a {stage.task} run, not a U-Net run")
    config = stage.config
    factor = 2 ** (len(config.unet_filters) - 1)
    if image_size % factor:
        raise ValueError(
            f"--unet {unet}: the classifier's image_size={image_size} is not divisible by the "
            f"U-Net's 2**depth = {factor}"
        )
    model = stage.model
    if tuple(model.inputs[0].shape[1:3]) != (image_size, image_size):
        resized = build_model(config, image_size=image_size)
        resized.set_weights(model.get_weights())
        model = resized
    mask_fn = unet_mask_fn(model)
    # What an ImageCache (`train --cache`) keys masked images by: the U-Net's weights.
    # `stage.weights` is relative to the run folder (`model.keras`, `checkpoints/...`).
    weights = Path(stage.source) / stage.weights if stage.weights else None
    if weights is not None and weights.is_file():
        mask_fn.cache_key = f"unet-{sha256_file(weights)}-{image_size}"
    return mask_fn
