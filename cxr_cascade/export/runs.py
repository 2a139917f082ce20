"""Reading a training run directory into what export needs: model, classes, evaluation preprocessing.

A run directory (`cxr_cascade.training.run_dir.RunDir`) holds ``config.json`` (the resolved
`ExperimentConfig`) and ``best.weights.h5`` (or the last ``checkpoints/epoch-NNNN.weights.h5``); a
``model.keras`` file, when present, is used instead of rebuilding the network from the config.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional, Union

import keras

__all__ = ["ExportStage", "evaluation_preprocess_config", "load_run"]

PathLike = Union[str, os.PathLike]


@dataclasses.dataclass
class ExportStage:
    """One trained model and how its input is made at evaluation.

    Attributes:
        task: "stage1", "stage2" or "unet".
        model: the Keras model (functional).
        class_names: the classes in output order (classifiers), else ().
        preprocess: `pipelines.preprocess.PreprocessConfig` of the evaluation pipeline.
        segment: the evaluation pipeline lung-masks every image (needs the U-Net at export).
        source: where it came from (a run directory), for messages.
        weights: the file of `source` whose weights were loaded (recorded in the export).
    """

    task: str
    model: keras.Model
    class_names: tuple = ()
    preprocess: Any = None
    segment: bool = False
    source: str = ""
    weights: str = ""


def evaluation_preprocess_config(config) -> tuple[Any, bool]:
    """The evaluation pipeline's `PreprocessConfig` and lung-masking flag for an experiment.

    At evaluation `pipelines.datasets.build_dataset(training=False)` reads each image as is: the
    CLAHE copies (`clahe_fraction`) and lung-segmented copies (`segmented_copies`) of the paper are
    training-time additions, so the exported model sees what the test split saw: decode, grayscale,
    resize to `image_size` (stretch), and CLAHE / lung masking only where the experiment asks for
    them on *every* image (fields `clahe` / `segment`, when the config has them).
    """
    from pipelines.preprocess import PreprocessConfig

    get = (lambda k, d=None: config.get(k, d)) if isinstance(config, dict) else (
        lambda k, d=None: getattr(config, k, d)
    )
    pre = PreprocessConfig(
        image_size=int(get("image_size", 512)),
        resize_mode=str(get("resize_mode", "stretch") or "stretch"),
        clahe=bool(get("clahe", False)),
        clip_limit=float(get("clip_limit", 2.0)),
        tile_grid_size=tuple(get("tile_grid_size", (8, 8))),
    )
    return pre, bool(get("segment", False))


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


def load_run(run_dir: PathLike) -> ExportStage:
    """Loads a run directory's trained model and evaluation settings.

    Raises:
        FileNotFoundError: no config.json, or no model/weights file (message names the folder).
        ValueError: a config that does not validate.
    """
    run = Path(run_dir)
    config_path = run / "config.json"
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: run directory not found")
    if not config_path.is_file():
        raise FileNotFoundError(f"{run}: not a run directory (no config.json)")
    from cxr_cascade.config import load_resolved

    config = load_resolved(config_path)
    raw = json.loads(config_path.read_text(encoding="utf-8"))
    keras_files = sorted(run.glob("*.keras"))
    if keras_files:
        model = keras.saving.load_model(keras_files[0], compile=False)
        weights_used = keras_files[0].name
    else:
        weights, notes = _weights_file(run)
        for note in notes:
            print(f"warning: {note}", file=sys.stderr, flush=True)
        if weights is None:
            raise FileNotFoundError(
                f"{run}: no intact trained weights (best.weights.h5, checkpoints/epoch-*.weights.h5 "
                "or *.keras)" + (f": {notes[-1]}" if notes else "; has the run finished an epoch?")
            )
        from cxr_cascade.training.runner import build_model

        model = build_model(config)
        # Checkpoints also hold optimizer slots; an uncompiled model loads the layers only.
        model.load_weights(weights)
        weights_used = str(weights.relative_to(run))
    pre, segment = evaluation_preprocess_config(raw)
    pre = dataclasses.replace(pre, image_size=config.image_size)
    return ExportStage(
        task=config.task,
        model=model,
        class_names=tuple(config.classes) if config.is_classifier else (),
        preprocess=pre,
        segment=segment,
        source=str(run),
        weights=weights_used,
    )
