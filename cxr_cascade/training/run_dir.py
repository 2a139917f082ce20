"""The run directory: one folder per training run, every artifact written then renamed.

Layout (`RunDir.root`):

    config.json            the resolved ExperimentConfig (after --set overrides)
    command.txt            the command line that started (and resumed) the run
    environment.json       Python / TensorFlow / Keras / NumPy versions, devices, host
    splits.csv             the split manifest (one row per image: path, label, patient, split)
    splits.sha256          hash of the manifest; a resumed run refuses a different split
    state.json             resume state: last completed epoch, checkpoint file, history, best,
                           and the SHA-256 of every weights file it names (`checksums`)
    checkpoints/epoch-NNNN.weights.h5   the last two completed epochs (model + optimizer)
    best.weights.h5        model weights at the best validation metric (its own copy)
    model.keras            the trained network (architecture + best weights) when the run ends;
                           `cxr_cascade.runs.load_stage` loads it with config.json
    history.csv            per-epoch metrics (train and validation)
    curves.png             loss and accuracy (or mean IoU) per epoch, train and validation
    tensorboard/           TensorBoard event files
    results.json           test metrics, epochs, wall time, command (when the run ends)

Every file is written to a temporary name in the same directory and moved into place with
`os.replace`, which is atomic on POSIX: a run killed at any instant leaves each file either in its
previous complete state or its new complete state, never truncated.

Checkpoints are verified, not trusted: a new one is read back (every HDF5 dataset) and hashed before
`state.json` names it, and the previous one is deleted only after that. A checkpoint damaged later
(a full disk, a copy cut short, a bad sector) is found by `latest_good_checkpoint`, which falls back
to the newest intact one; `best.weights.h5` is a separate copy, so damage to one never takes both.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from cxr_cascade.checksums import sha256_file  # noqa: F401  (the runner's and tests' import)

# Every write goes through the one atomic-write helper (re-exported here for the runner).
from pipelines.atomic import (  # noqa: E402,F401
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    atomic_write_with,
)


THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")


def capture_environment() -> dict[str, Any]:
    """Versions and devices a result depends on (recorded once per run, again on resume)."""
    import numpy
    import keras

    info: dict[str, Any] = {
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "numpy": numpy.__version__,
        "cpu_count": os.cpu_count(),
        # thread limits a run was given (make train-release sets one TensorFlow thread per chain)
        "threads": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
    }
    if keras.backend.backend() != "tensorflow":
        info.update(_portable_devices(keras.backend.backend()))
        _optional_versions(info, (("scikit_learn", "sklearn"), ("pillow", "PIL")))
        return info
    import tensorflow as tf

    info.update({
        "tensorflow": tf.__version__,
        "devices": [
            {"name": d.name, "type": d.device_type} for d in tf.config.list_logical_devices()
        ],
        "gpus": [],
        "tf_config": os.environ.get("TF_CONFIG"),
    })
    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(Exception):
            details = tf.config.experimental.get_device_details(gpu)
            info["gpus"].append({"name": gpu.name, **{k: str(v) for k, v in details.items()}})
    build = tf.sysconfig.get_build_info()
    info["cuda"] = build.get("cuda_version")
    info["cudnn"] = build.get("cudnn_version")
    _optional_versions(info, (("opencv", "cv2"), ("scikit_learn", "sklearn")))
    return info


def _optional_versions(info: dict[str, Any], modules) -> None:
    for key, module in modules:
        try:
            info[key] = __import__(module).__version__
        except ImportError:
            pass


def _portable_devices(backend: str) -> dict[str, Any]:
    """Versions and devices of a JAX or PyTorch backend (no TensorFlow imported)."""
    if backend == "jax":
        import jax

        return {
            "jax": jax.__version__,
            "devices": [{"name": str(d), "type": d.platform.upper()} for d in jax.devices()],
            "gpus": [{"name": d.device_kind} for d in jax.devices() if d.platform == "gpu"],
        }
    if backend == "torch":
        import torch

        gpus = [{"name": torch.cuda.get_device_name(i)} for i in range(torch.cuda.device_count())]
        return {"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": gpus}
    return {}


class RunDir:
    """Paths and atomic writers of one run directory (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # --- paths
    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best_weights(self) -> Path:
        return self.root / "best.weights.h5"

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
    def splits(self) -> Path:
        return self.root / "splits.csv"

    @property
    def splits_hash(self) -> Path:
        return self.root / "splits.sha256"

    @property
    def environment(self) -> Path:
        return self.root / "environment.json"

    @property
    def command(self) -> Path:
        return self.root / "command.txt"

    def epoch_checkpoint(self, epoch: int) -> Path:
        """Checkpoint written after 1-based epoch `epoch` (model weights + optimizer state)."""
        return self.checkpoints / f"epoch-{epoch:04d}.weights.h5"

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
        for path in self.checkpoints.glob("epoch-*.weights.h5"):
            if path not in keep:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        for path in self.checkpoints.glob(".*.tmp*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def append_command(self, argv: list[str]) -> None:
        previous = self.command.read_text() if self.command.is_file() else ""
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        line = " ".join(_shell_quote(a) for a in argv)
        atomic_write_text(self.command, previous + f"# {stamp}\n{line}\n")


# ---------------------------------------------------------------------------- checkpoints
def weights_file_problem(path: str | Path, sha256: Optional[str] = None) -> Optional[str]:
    """None when `path` is a complete Keras weights file, else one line saying what is wrong.

    Complete means: it exists, is not empty, matches `sha256` when one is given, opens as HDF5 and
    every dataset in it reads back (a truncated file opens but fails on the first missing block).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as error:
        return f"cannot read it ({error.strerror or error})"
    if size == 0:
        return "empty (0 bytes)"
    if sha256 is not None:
        try:
            actual = sha256_file(path)
        except OSError as error:
            return f"cannot read it ({error.strerror or error})"
        if actual != sha256:
            return "content differs from the SHA-256 recorded when it was written (damaged)"
    try:
        import h5py

        with h5py.File(path, "r") as handle:
            datasets: list = []
            handle.visititems(lambda _, item: datasets.append(item) if isinstance(item, h5py.Dataset) else None)
            for dataset in datasets:
                dataset[()]
    except Exception as error:  # h5py raises OSError, KeyError, RuntimeError... for broken files
        text = str(error).strip().splitlines()
        return f"not a readable weights file ({text[0] if text else type(error).__name__})"
    if not datasets:
        return "holds no weights"
    return None


def checkpoint_epoch(path: str | Path) -> Optional[int]:
    """The epoch of `checkpoints/epoch-NNNN.weights.h5`, else None."""
    name = Path(path).name
    if name.startswith("epoch-") and name.endswith(".weights.h5"):
        digits = name[len("epoch-"):-len(".weights.h5")]
        if digits.isdigit():
            return int(digits)
    return None


def latest_good_checkpoint(run_dir: str | Path) -> tuple[Optional[Path], list[str]]:
    """The newest intact epoch checkpoint of a run, and one line per damaged one passed over.

    Candidates are the run's `checkpoints/epoch-NNNN.weights.h5` up to the epoch `state.json`
    records as completed (a later file may be half of an epoch the state never saw), newest first;
    each is checked with `weights_file_problem` against the checksum recorded in `state.json`.

    Returns:
        (path or None when no intact checkpoint is left, messages such as
        "RUN/checkpoints/epoch-0003.weights.h5: damaged checkpoint (...); using epoch-0002").
    """
    rd = RunDir(run_dir)
    try:
        state = rd.read_state() or {}
    except ValueError:
        state = {}
    checksums = state.get("checksums") or {}
    done = state.get("epochs_completed")
    candidates = []
    for path in rd.checkpoints.glob("epoch-*.weights.h5"):
        epoch = checkpoint_epoch(path)
        if epoch is not None and (done is None or epoch <= int(done)):
            candidates.append((epoch, path))
    named = state.get("checkpoint")
    if named and not (rd.root / named).exists():
        candidates.append((checkpoint_epoch(named) or 0, rd.root / named))
    notes: list[str] = []
    bad: list[str] = []
    for _, path in sorted(candidates, key=lambda item: -item[0]):
        relative = str(path.relative_to(rd.root))
        problem = weights_file_problem(path, checksums.get(relative))
        if problem is None:
            if bad:
                notes.append(f"{bad[-1]}; falling back to {relative}")
            return path, notes
        bad.append(f"{path}: damaged checkpoint: {problem}")
        if len(bad) > 1:
            notes.append(bad[-2])
    if bad:
        notes.append(bad[-1])
    return None, notes


def rewind_state(state: dict[str, Any], run_dir: str | Path, checkpoint: Path,
                 mode: str = "max") -> dict[str, Any]:
    """`state` as it was when `checkpoint` was the last one: later epochs' history dropped and the
    best (`mode` "max" or "min" of the monitored metric) recomputed from what is left; those
    epochs are trained again."""
    epoch = checkpoint_epoch(checkpoint)
    if epoch is None or epoch >= int(state.get("epochs_completed", 0)):
        return state
    state = dict(state)
    state["epochs_completed"] = epoch
    state["history"] = [row for row in state.get("history", []) if int(row["epoch"]) <= epoch]
    state["checkpoint"] = str(Path(checkpoint).relative_to(Path(run_dir)))
    state["finished"] = False
    best = dict(state.get("best") or {})
    if best.get("epoch") is not None and int(best["epoch"]) > epoch:
        monitor = best.get("monitor")
        values = [(float(row[monitor]), int(row["epoch"])) for row in state["history"]
                  if row.get(monitor) is not None]
        pick = (max if mode == "max" else min)(values) if values else (None, None)
        best.update(value=pick[0], epoch=pick[1])
    state["best"] = best
    return state


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


RUNS_ENV = "CXR_CASCADE_RUNS"


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
