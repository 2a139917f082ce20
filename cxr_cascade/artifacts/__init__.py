"""The one place that reads and writes a trained model on disk.

    checksums      `sha256_file` (standard library only)
    layout         `RunDir`: every file name of a run folder, defined once; `default_run_dir`
    checkpoints    which weights files of a run are intact (`latest_good_checkpoint`)
    stage          `Stage`, `load_run` (a run folder), `write_model` (its model.keras)
    release        a release: read, verify, load (`load_release`), find, seal (SHA256SUMS)
    model_card     a release's MODEL_CARD.md from its release.json
    release_build  `build_release` from trained runs; `record_evaluation` of the release itself
    loader         `load(path)`: a run folder, a model file in one, or a release model folder

Layers: config, pipelines, models -> artifacts -> training, evaluation, explain, audit, export,
predict -> commands -> cli; nothing here imports a layer above it.
"""

import importlib

from cxr_cascade.artifacts.checksums import sha256_file
from cxr_cascade.artifacts.layout import AuditDir, EvaluationDir, RunDir, default_run_dir, default_runs_root

# The Keras half loads on first use (deliberately lazy): the run layout and checksums serve code
# that must not import Keras yet (`train --backend` sets Keras' backend first; the device step's
# orchestration runs without TensorFlow).
_LAZY = {
    "Stage": "stage", "load_run": "stage", "write_model": "stage",
    "load": "loader", "load_unet_mask_fn": "loader",
    "NO_RELEASE": "release", "ReleaseError": "release", "find_release": "release",
    "load_release": "release", "read_release": "release", "verify_release": "release",
    "write_checksums": "release", "cascade_rule": "release",
    "build_release": "release_build", "record_evaluation": "release_build",
    "render_model_card": "model_card",
}

__all__ = ["AuditDir", "EvaluationDir", "RunDir", "default_run_dir", "default_runs_root",
           "sha256_file", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))
