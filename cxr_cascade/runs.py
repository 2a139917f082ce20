"""A trained run as one artifact: `load_stage(path)` -> model, class names, preprocessing, task.

A run directory of `cxr-cascade train` (`cxr_cascade.training.run_dir.RunDir`) holds

    config.json    the resolved `ExperimentConfig`, its `preprocess` section included
    model.keras    architecture + best-epoch weights (`write_model`, at the end of training)

so every consumer (evaluate, gradcam, audit, export, predict, stage 2's U-Net masking) loads a run with this one function and reads its preprocessing from the same
`pipelines.config.PreprocessConfig` the training pipelines used. Run folders from before
`model.keras` existed still load: the network is rebuilt from `config.json` and the best (or
last) weights file, with a one-line note on stderr.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Union

import keras

__all__ = ["MODEL_FILE", "Stage", "load_stage", "load_unet_mask_fn", "write_model"]

MODEL_FILE = "model.keras"
PathLike = Union[str, os.PathLike]


@dataclasses.dataclass
class Stage:
    """One trained model and how its input is made.

    Attributes:
        task: "stage1", "stage2" or "unet".
        model: the Keras model (functional, uncompiled).
        class_names: the classes in output order (classifiers), else ().
        preprocess: `pipelines.config.PreprocessConfig` of the run (evaluation and serving).
        segment: the model reads lung-masked images (`preprocess.segment`; needs a U-Net or
            mask files).
        source: where it came from (a run directory), for messages.
        config: the run's resolved `ExperimentConfig` (None for a stage built in code).
        weights: the file of `source` the model came from (`model.keras`, `best.weights.h5` or
            a checkpoint), recorded by export.
    """

    task: str
    model: keras.Model
    class_names: tuple = ()
    preprocess: Any = None
    segment: bool = False
    source: str = ""
    config: Any = None
    weights: str = ""

    @classmethod
    def of_run(cls, config, model: keras.Model, source: str, weights: str) -> "Stage":
        """The stage of a trained `config` (an `ExperimentConfig`) and its loaded `model`."""
        return cls(
            task=config.task,
            model=model,
            class_names=tuple(config.classes) if config.is_classifier else (),
            preprocess=config.preprocess,
            segment=bool(config.preprocess.segment),
            source=source,
            config=config,
            weights=weights,
        )


def _weights_file(run: Path) -> tuple[Optional[Path], list[str]]:
    """best.weights.h5 when intact, else the newest intact checkpoint; plus one line per damaged
    or missing file passed over (`cxr_cascade.training.run_dir.latest_good_checkpoint`)."""
    from cxr_cascade.training.run_dir import latest_good_checkpoint, weights_file_problem

    best = run / "best.weights.h5"
    checksums: dict = {}
    state = run / "state.json"
    if state.is_file():
        try:
            checksums = json.loads(state.read_text()).get("checksums") or {}
        except (json.JSONDecodeError, AttributeError, OSError):
            checksums = {}
    problem = weights_file_problem(best, checksums.get(best.name))
    if problem is None:
        return best, []
    checkpoint, notes = latest_good_checkpoint(run)
    if checkpoint is not None:
        notes.append(f"{best}: {problem}; using {checkpoint.relative_to(run)} (the last checkpoint, "
                     "not the best epoch)")
    elif best.exists():
        notes.append(f"{best}: {problem}")
    return checkpoint, notes


def _run_dir(path: PathLike) -> tuple[Path, Optional[Path]]:
    """(run directory, explicit weights/model file or None) of a folder or a file inside one."""
    path = Path(path)
    if path.is_dir():
        return path, None
    if path.is_file() and path.name.endswith((".keras", ".weights.h5")):
        return path.parent, path
    if not path.exists():
        raise FileNotFoundError(f"{path}: run directory not found")
    raise FileNotFoundError(f"{path}: not a run directory, model.keras or .weights.h5 file")


def load_stage(path: PathLike, *, verbose: bool = True) -> Stage:
    """Loads a trained run: its model, classes, preprocessing and task.

    Args:
        path: a run directory, or a `.keras` / `.weights.h5` file inside one (that file is used),
            or a model folder of a release (`cxr_cascade.release.load_release`).
        verbose: print the one-line note when an old run folder is rebuilt from weights.

    Returns:
        `Stage` with the model (uncompiled) and the run's `PreprocessConfig`.

    Raises:
        FileNotFoundError: no such folder, no config.json, or no model/weights (names the folder).
        ValueError: a config.json that does not validate.
    """
    from cxr_cascade.config import load_resolved
    from cxr_cascade.release import is_release_model, load_release

    if is_release_model(path):  # releases/v1/stage1: sha256-verified float16 weights
        return load_release(Path(path).parent, Path(path).name)
    run, chosen = _run_dir(path)
    config_path = run / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run}: not a run directory (no config.json)")
    config = load_resolved(config_path)
    model_file = chosen if chosen is not None and chosen.suffix == ".keras" else None
    if model_file is None and chosen is None and (run / MODEL_FILE).is_file():
        model_file = run / MODEL_FILE
    model = None
    if model_file is not None:
        import cxr_cascade.models  # noqa: F401  (registers the custom layers for deserialisation)

        try:
            model = keras.saving.load_model(model_file, compile=False)
            weights_used = model_file.name
        except Exception as error:  # a truncated / overwritten zip: fall back to the weights
            if chosen is not None:
                raise ValueError(f"{model_file}: not a readable Keras model ({error})") from None
            print(f"warning: {model_file}: not a readable Keras model ({type(error).__name__}); "
                  "rebuilt from config.json + weights", file=sys.stderr, flush=True)
    if model is None:
        if chosen is not None:
            weights, notes = chosen, []
        else:
            weights, notes = _weights_file(run)
        for note in notes:
            print(f"warning: {note}", file=sys.stderr, flush=True)
        if weights is None:
            raise FileNotFoundError(
                f"{run}: no intact trained model ({MODEL_FILE}, best.weights.h5 or "
                "checkpoints/epoch-*.weights.h5)"
                + (f": {notes[-1]}" if notes else "; has the run finished an epoch?")
            )
        from cxr_cascade.models.build import build_model

        if verbose and chosen is None and model_file is None:
            print(f"note: {run}: no {MODEL_FILE} (a run from an earlier version or still "
                  f"training); rebuilt from config.json + {weights.name}", file=sys.stderr)
        model = build_model(config)
        # Checkpoints also hold optimizer slots; an uncompiled model loads the layers only.
        model.load_weights(weights)
        weights_used = str(weights.relative_to(run)) if weights.is_relative_to(run) else str(weights)
    return Stage.of_run(config, model, str(run), weights_used)


def write_model(model: keras.Model, run_dir: PathLike) -> Path:
    """Saves `model` (architecture + weights, no optimizer) as the run's `model.keras`, atomically.

    Returns:
        The path written.
    """
    from pipelines.atomic import atomic_path

    target = Path(run_dir) / MODEL_FILE
    with atomic_path(target, suffix=".keras") as tmp:
        keras.saving.save_model(model, tmp)
    return target


def load_unet_mask_fn(unet: PathLike, image_size: int) -> Callable:
    """`image [S, S, 1] -> lung probability [S, S, 1]` from a trained U-Net run (or a model /
    weights file inside one), at the classifier's size S.

    The fully convolutional U-Net is rebuilt at S with the trained weights, so no resize
    enters the mask (`cxr_cascade.models.unet_mask_fn` does the rest).

    Raises:
        FileNotFoundError: as `load_stage`.
        ValueError: not a U-Net run, or S not divisible by the U-Net's ``2**depth``.
    """
    from cxr_cascade.models.build import build_model
    from cxr_cascade.models.unet import unet_mask_fn

    stage = load_stage(unet)
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
    if stage.weights and Path(stage.weights).is_file():
        from cxr_cascade.training.run_dir import sha256_file

        mask_fn.cache_key = f"unet-{sha256_file(stage.weights)}-{image_size}"
    return mask_fn
