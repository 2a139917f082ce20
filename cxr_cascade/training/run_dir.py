"""The run directory: one folder per training run, every artifact written then renamed.

Layout (`RunDir.root`):

    config.json            the resolved ExperimentConfig (after --set overrides)
    command.txt            the command line that started (and resumed) the run
    environment.json       Python / TensorFlow / Keras / NumPy versions, devices, host
    splits.csv             the split manifest (one row per image: path, label, patient, split)
    splits.sha256          hash of the manifest; a resumed run refuses a different split
    state.json             resume state: last completed epoch, checkpoint file, history, best
    checkpoints/epoch-NNNN.weights.h5   last completed epoch (model + optimizer)
    best.weights.h5        model weights at the best validation metric
    model.keras            the trained network (architecture + best weights) when the run ends;
                           `cxr_cascade.runs.load_stage` loads it with config.json
    history.csv            per-epoch metrics (train and validation)
    curves.png             loss and accuracy (or mean IoU) per epoch, train and validation
    tensorboard/           TensorBoard event files
    results.json           test metrics, epochs, wall time, command (when the run ends)

Every file is written to a temporary name in the same directory and moved into place with
`os.replace`, which is atomic on POSIX: a run killed at any instant leaves each file either in its
previous complete state or its new complete state, never truncated.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


# Every write goes through the one atomic-write helper (re-exported here for the runner).
from pipelines.atomic import (  # noqa: E402,F401
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    atomic_write_with,
)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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

    def prune_checkpoints(self, keep: Path) -> None:
        """Removes epoch checkpoints other than `keep` (called only after state.json names it)."""
        for path in self.checkpoints.glob("epoch-*.weights.h5"):
            if path != keep:
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


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def default_run_dir(runs_root: str | Path, name: str) -> Path:
    """`runs/<experiment>-<UTC timestamp>`: a fresh directory for a new run."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path(runs_root) / f"{name}-{stamp}"
