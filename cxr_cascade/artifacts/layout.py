"""The run directory: one folder per training run, every file name of it defined here once.

Layout (`RunDir.root`):

    config.json            the resolved ExperimentConfig (after --set overrides)
    command.txt            the command line that started (and resumed) the run
    environment.json       Python / TensorFlow / Keras / NumPy versions, devices, host
    inputs.json            the --data paths and --unet run a resumed run reads again
    splits.csv             the split manifest (one row per image: path, label, patient, split)
    splits.sha256          hash of the manifest; a resumed run refuses a different split
    state.json             resume state: last completed epoch, checkpoint file, history, best,
                           and the SHA-256 of every weights file it names (`checksums`)
    checkpoints/epoch-NNNN.weights.h5              the last two completed epochs (model + optimizer)
    checkpoints/epoch-NNNN-step-SSSSSS.weights.h5  a partial epoch (time budget, SIGTERM)
    best.weights.h5        model weights at the best validation metric (its own copy)
    model.keras            the trained network (architecture + best weights) when the run ends;
                           `cxr_cascade.artifacts.load` loads it with config.json
    history.csv            per-epoch metrics (train and validation)
    curves.png             loss and accuracy (or mean IoU) per epoch, train and validation
    tensorboard/           TensorBoard event files
    results.json           test metrics, epochs, wall time, command (when the run ends)
    evaluation/            `cxr-cascade evaluate RUN` (`EvaluationDir`)
    evaluation-ood-SET/    `cxr-cascade evaluate RUN --ood SET` (`EvaluationDir`)
    audit/                 `cxr-cascade audit RUN` (`AuditDir`)

Every file is written to a temporary name in the same directory and moved into place with
`os.replace` (`pipelines.atomic`), which is atomic on POSIX: a run killed at any instant leaves
each file either in its previous complete state or its new complete state, never truncated.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cxr_cascade.artifacts.checksums import sha256_file
from pipelines.atomic import atomic_write_json, atomic_write_text

__all__ = [
    "AuditDir", "CHECKPOINT_GLOB", "EPOCH_PREFIX", "EvaluationDir", "MODEL_FILE", "RUNS_ENV",
    "RunDir", "WEIGHTS_SUFFIX", "default_run_dir", "default_runs_root",
]

MODEL_FILE = "model.keras"
WEIGHTS_SUFFIX = ".weights.h5"
EPOCH_PREFIX = "epoch-"
# Epoch and partial checkpoints alike (what pruning removes and resume looks through).
CHECKPOINT_GLOB = f"{EPOCH_PREFIX}*{WEIGHTS_SUFFIX}"
RUNS_ENV = "CXR_CASCADE_RUNS"


class EvaluationDir:
    """What `cxr-cascade evaluate` writes into its output folder (default `RUN/evaluation`)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.csv"

    @property
    def figures(self) -> Path:
        return self.root / "figures"


class AuditDir:
    """What `cxr-cascade audit` writes into its output folder (default `RUN/audit`)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def result(self) -> Path:
        return self.root / "audit.json"

    @property
    def report(self) -> Path:
        return self.root / "audit.md"

    @property
    def figures(self) -> Path:
        return self.root / "figures"


class RunDir:
    """Paths and atomic writers of one run directory (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # --- paths
    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def command(self) -> Path:
        return self.root / "command.txt"

    @property
    def environment(self) -> Path:
        return self.root / "environment.json"

    @property
    def inputs(self) -> Path:
        return self.root / "inputs.json"

    @property
    def splits(self) -> Path:
        return self.root / "splits.csv"

    @property
    def splits_hash(self) -> Path:
        return self.root / "splits.sha256"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best_weights(self) -> Path:
        return self.root / f"best{WEIGHTS_SUFFIX}"

    @property
    def model(self) -> Path:
        return self.root / MODEL_FILE

    @property
    def history_csv(self) -> Path:
        return self.root / "history.csv"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def evaluation(self) -> EvaluationDir:
        return EvaluationDir(self.root / "evaluation")

    def ood_evaluation(self, name: str) -> EvaluationDir:
        """`evaluate --ood name`'s output folder."""
        return EvaluationDir(self.root / f"evaluation-ood-{name}")

    @property
    def audit(self) -> AuditDir:
        return AuditDir(self.root / "audit")

    def epoch_checkpoint(self, epoch: int) -> Path:
        """Checkpoint written after 1-based epoch `epoch` (model weights + optimizer state)."""
        return self.checkpoints / f"{EPOCH_PREFIX}{epoch:04d}{WEIGHTS_SUFFIX}"

    def partial_checkpoint(self, epoch: int, step: int) -> Path:
        """Checkpoint written inside 1-based epoch `epoch` after `step` steps."""
        return self.checkpoints / f"{EPOCH_PREFIX}{epoch:04d}-step-{step:06d}{WEIGHTS_SUFFIX}"

    # --- state
    def exists(self) -> bool:
        return self.state.is_file()

    def read_state(self) -> dict[str, Any] | None:
        if not self.state.is_file():
            return None
        try:
            return json.loads(self.state.read_text())
        except json.JSONDecodeError as error:
            # Cannot happen through atomic_write_json; a hand-edited or foreign file can.
            raise ValueError(f"{self.state}: resume state is not valid JSON ({error})") from None

    def write_state(self, state: dict[str, Any]) -> None:
        atomic_write_json(self.state, state)

    def prune_checkpoints(self, keep: "Path | list[Path]") -> None:
        """Removes epoch checkpoints other than `keep` (called only after state.json names them)."""
        keep = [keep] if isinstance(keep, Path) else list(keep)
        for path in self.checkpoints.glob(CHECKPOINT_GLOB):
            if path not in keep:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        for path in self.checkpoints.glob(".*.tmp*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def append_command(self, argv: list[str]) -> None:
        previous = self.command.read_text() if self.command.is_file() else ""
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        line = " ".join(shlex.quote(a) for a in argv)
        atomic_write_text(self.command, previous + f"# {stamp}\n{line}\n")

    # --- split manifest hash
    def write_splits_hash(self) -> None:
        """splits.sha256 of the current splits.csv (`sha256sum` format)."""
        atomic_write_text(self.splits_hash, f"{sha256_file(self.splits)}  {self.splits.name}\n")

    def check_splits_hash(self) -> None:
        """ValueError when splits.csv differs from splits.sha256 (a resumed run must not train on
        another split); nothing when either file is absent."""
        if self.splits.is_file() and self.splits_hash.is_file():
            stored = self.splits_hash.read_text().split()[0]
            if sha256_file(self.splits) != stored:
                raise ValueError(
                    f"{self.splits}: split manifest does not match {self.splits_hash}; refusing to resume")


def default_runs_root() -> Path:
    """Where run directories go when none is named: `$CXR_CASCADE_RUNS`, else
    `$XDG_CACHE_HOME/cxr-cascade/runs` (`~/.cache/cxr-cascade/runs`). Outside any work tree, so a
    fresh checkout or `git clean` never takes a week of training with it, and later work on the
    same machine finds the runs."""
    if os.environ.get(RUNS_ENV):
        return Path(os.environ[RUNS_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "cxr-cascade" / "runs"


def default_run_dir(runs_root: str | Path, name: str) -> Path:
    """`runs/<experiment>-<UTC timestamp>`: a fresh directory for a new run."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path(runs_root) / f"{name}-{stamp}"
