"""Writing, verifying and pruning a run's checkpoints, and naming them in `state.json`.

Two kinds of checkpoint, both `.weights.h5` files holding the model's weights and the optimizer's
state (slots, iteration count, hence the learning-rate schedule's position):

- **epoch** checkpoints, `checkpoints/epoch-NNNN.weights.h5`, written after every epoch; the last
  one is `state["checkpoint"]`, the one before stays as the fallback, the best epoch's weights are
  copied to `best.weights.h5`;
- **partial** checkpoints, `checkpoints/epoch-NNNN-step-SSSSSS.weights.h5`, written inside epoch
  NNNN after SSSSSS steps (at a time budget, on SIGTERM, or periodically); `state["partial"]`
  names the newest, with what the weights file cannot hold: the in-model seed generators' states
  and the running metric sums of the epoch, so that the resumed epoch ends with the same weights
  *and* the same logged metrics as one run straight through.

Order of writes, so that a kill at any instant leaves a consistent run: the weights file is
written atomically, read back and hashed; only then does `state.json` (atomically) name it with
its SHA-256; only then are older files removed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Optional

import keras
import numpy as np

from cxr_cascade.artifacts.checkpoints import weights_file_problem
from cxr_cascade.artifacts.checksums import sha256_file
from cxr_cascade.artifacts.layout import WEIGHTS_SUFFIX, RunDir
from pipelines.atomic import atomic_write_with

SEED_STATE_SUFFIX = "seed_generator_state"


def seed_generator_variables(model: keras.Model) -> list:
    """The model's Keras seed-generator states (MoEx pairing, dropout, random augmentation layers),
    in `model.variables` order. `save_weights` does not store them."""
    return [v for v in model.variables if v.path.endswith(SEED_STATE_SUFFIX)]


def _values(variables) -> list:
    return [keras.ops.convert_to_numpy(v).tolist() for v in variables]


def _assign(variables, values, what: str) -> None:
    if len(variables) != len(values):
        raise ValueError(f"partial checkpoint: {len(values)} {what} saved, the model has {len(variables)}")
    for variable, value in zip(variables, values):
        variable.assign(np.asarray(value, dtype=variable.dtype))


class Checkpointer:
    """The one writer of a run's checkpoints (see the module docstring for the two kinds).

    Args:
        rd: the run directory.
    """

    def __init__(self, rd: RunDir):
        self.rd = rd

    def _write_verified(self, model: keras.Model, path: Path) -> str:
        atomic_write_with(path, model.save_weights, suffix=WEIGHTS_SUFFIX)
        digest = sha256_file(path)
        problem = weights_file_problem(path)
        if problem:
            raise OSError(f"{path}: the checkpoint just written does not read back: {problem}")
        return digest

    def partial_path(self, epoch: int, step: int) -> Path:
        """Checkpoint inside 1-based epoch `epoch` after `step` steps."""
        return self.rd.partial_checkpoint(epoch, step)

    # ------------------------------------------------------------------ epoch ends
    def save_epoch(self, model: keras.Model, state: dict[str, Any], epoch: int,
                   improved: bool) -> Path:
        """Writes the checkpoint after 1-based `epoch`, names it in `state` (written to disk),
        copies it to `best.weights.h5` when `improved`, and prunes what is no longer needed."""
        rd = self.rd
        checkpoint = rd.epoch_checkpoint(epoch)
        previous = rd.root / state["checkpoint"] if state.get("checkpoint") else None
        digest = self._write_verified(model, checkpoint)
        relative = str(checkpoint.relative_to(rd.root))
        keep_sums = {str(previous.relative_to(rd.root)), rd.best_weights.name} if previous else set()
        checksums = {k: v for k, v in (state.get("checksums") or {}).items() if k in keep_sums}
        checksums[relative] = digest
        if improved:
            # The best weights get their own copy: damage to the last checkpoint never takes them.
            atomic_write_with(rd.best_weights, lambda tmp: shutil.copyfile(checkpoint, tmp))
            checksums[rd.best_weights.name] = digest
        state["checkpoint"] = relative
        state["checksums"] = checksums
        state.pop("partial", None)
        rd.write_state(state)
        rd.prune_checkpoints(keep=[checkpoint] + ([previous] if previous else []))
        return checkpoint

    # ------------------------------------------------------------------ inside an epoch
    def save_partial(self, model: keras.Model, state: dict[str, Any], epoch: int, step: int,
                     seconds: float) -> Path:
        """Writes a step-exact checkpoint inside 1-based `epoch` after `step` steps and names it
        in `state["partial"]` (written to disk); `seconds`: training time spent in this epoch."""
        rd = self.rd
        path = self.partial_path(epoch, step)
        digest = self._write_verified(model, path)
        state["partial"] = {
            "epoch": epoch,
            "step": step,
            "checkpoint": str(path.relative_to(rd.root)),
            "sha256": digest,
            "seed_states": _values(seed_generator_variables(model)),
            "metrics": _values(model.metrics_variables),
            "seconds": round(float(seconds), 3),
        }
        rd.write_state(state)
        keep = [path] + [rd.root / name for name in (state.get("checksums") or {})
                         if name.startswith(rd.checkpoints.name + "/")]
        rd.prune_checkpoints(keep=keep)
        return path

    def load_partial(self, model: keras.Model, state: dict[str, Any]) -> Optional[dict[str, Any]]:
        """Loads the partial checkpoint `state` names into `model` (weights and optimizer) when
        it continues the last completed epoch and is intact; returns its record, else None (and
        drops it from `state`, with one warning line when it was damaged)."""
        partial = state.get("partial")
        if not partial:
            return None
        if int(partial["epoch"]) != int(state.get("epochs_completed", 0)) + 1:
            state.pop("partial")
            return None
        path = self.rd.root / partial["checkpoint"]
        problem = weights_file_problem(path, partial.get("sha256"))
        if problem:
            print(f"warning: {path}: damaged checkpoint: {problem}; resuming from the start of "
                  f"epoch {partial['epoch']}", file=sys.stderr, flush=True)
            state.pop("partial")
            return None
        model.load_weights(path)
        return partial

    @staticmethod
    def restore_seed_states(model: keras.Model, partial: dict[str, Any]) -> None:
        _assign(seed_generator_variables(model), partial["seed_states"], "seed-generator states")

    @staticmethod
    def restore_metrics(model: keras.Model, partial: dict[str, Any]) -> None:
        _assign(model.metrics_variables, partial["metrics"], "metric variables")
