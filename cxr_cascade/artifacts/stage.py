"""A trained run as one artifact: `load_run(path)` -> model, class names, preprocessing, task.

A run directory of `cxr-cascade train` (`cxr_cascade.artifacts.layout.RunDir`) holds

    config.json    the resolved `ExperimentConfig`, its `preprocess` section included
    model.keras    architecture + best-epoch weights (`write_model`, at the end of training)

so every consumer (evaluate, gradcam, audit, export, predict, stage 2's U-Net masking) loads a
run with `cxr_cascade.artifacts.load` (which hands run folders to `load_run`) and reads its
preprocessing from the same `pipelines.config.PreprocessConfig` the training pipelines used. Run
folders without `model.keras` (an earlier version's, or one still training) still load: the
network is rebuilt from `config.json` and the best (or last) weights file, with a one-line note on
stderr.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Optional, Union

import keras

import cxr_cascade.models  # noqa: F401  (registers the custom layers for deserialisation)
from cxr_cascade.artifacts.checkpoints import latest_good_checkpoint, weights_file_problem
from cxr_cascade.artifacts.layout import CHECKPOINT_GLOB, MODEL_FILE, WEIGHTS_SUFFIX, RunDir
from cxr_cascade.config import load_resolved
from cxr_cascade.models.build import build_model
from pipelines.atomic import atomic_path

__all__ = ["Stage", "load_run", "write_model"]

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


def _weights_file(rd: RunDir) -> tuple[Optional[Path], list[str]]:
    """best.weights.h5 when intact, else the newest intact checkpoint; plus one line per damaged
    or missing file passed over (`latest_good_checkpoint`)."""
    run, best = rd.root, rd.best_weights
    try:
        checksums = (rd.read_state() or {}).get("checksums") or {}
    except (ValueError, AttributeError, OSError):
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
    if path.is_file() and path.name.endswith((".keras", WEIGHTS_SUFFIX)):
        return path.parent, path
    if not path.exists():
        raise FileNotFoundError(f"{path}: run directory not found")
    raise FileNotFoundError(f"{path}: not a run directory, {MODEL_FILE} or {WEIGHTS_SUFFIX} file")


def load_run(path: PathLike, *, verbose: bool = True) -> Stage:
    """Loads a trained run: its model, classes, preprocessing and task.

    Args:
        path: a run directory, or a `.keras` / `.weights.h5` file inside one (that file is used).
            Release model folders go to `cxr_cascade.artifacts.load` (which takes both).
        verbose: print the one-line note when an old run folder is rebuilt from weights.

    Returns:
        `Stage` with the model (uncompiled) and the run's `PreprocessConfig`.

    Raises:
        FileNotFoundError: no such folder, no config.json, or no model/weights (names the folder).
        ValueError: a config.json that does not validate.
    """
    run, chosen = _run_dir(path)
    rd = RunDir(run)
    if not rd.config.is_file():
        raise FileNotFoundError(f"{run}: not a run directory (no {rd.config.name})")
    config = load_resolved(rd.config)
    model_file = chosen if chosen is not None and chosen.suffix == ".keras" else None
    if model_file is None and chosen is None and rd.model.is_file():
        model_file = rd.model
    model = None
    if model_file is not None:
        try:
            model = keras.saving.load_model(model_file, compile=False)
            weights_used = model_file.name
        except Exception as error:  # a truncated / overwritten zip: fall back to the weights
            if chosen is not None:
                raise ValueError(f"{model_file}: not a readable Keras model ({error})") from None
            print(f"warning: {model_file}: not a readable Keras model ({type(error).__name__}); "
                  f"rebuilt from {rd.config.name} + weights", file=sys.stderr, flush=True)
    if model is None:
        if chosen is not None:
            weights, notes = chosen, []
        else:
            weights, notes = _weights_file(rd)
        for note in notes:
            print(f"warning: {note}", file=sys.stderr, flush=True)
        if weights is None:
            raise FileNotFoundError(
                f"{run}: no intact trained model ({MODEL_FILE}, {rd.best_weights.name} or "
                f"{rd.checkpoints.name}/{CHECKPOINT_GLOB})"
                + (f": {notes[-1]}" if notes else "; has the run finished an epoch?")
            )
        if verbose and chosen is None and model_file is None:
            print(f"note: {run}: no {MODEL_FILE} (a run from an earlier version or still "
                  f"training); rebuilt from {rd.config.name} + {weights.name}", file=sys.stderr)
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
    target = RunDir(run_dir).model
    with atomic_path(target, suffix=".keras") as tmp:
        keras.saving.save_model(model, tmp)
    return target
