"""Training callbacks and per-epoch artifacts: divergence guard, ETA line, CSV log, curves PNG.

The runner trains one epoch per `model.fit` call (so that every epoch's data order is a function
of `seed + epoch` alone, see `runner.py`); these helpers therefore keep no state that a resumed run
would lose: the history lives in the run's `state.json` and the CSV and PNG are rewritten from it,
atomically, after every epoch.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import keras
import numpy as np

from pipelines.atomic import atomic_write_text, atomic_write_with


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or grew past the divergence limit; the run stopped."""


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite batch loss.

    Keras's own `TerminateOnNaN` stops silently; this one records where it happened so that the
    runner can refuse to checkpoint the poisoned weights and print one clear message.
    """

    def __init__(self):
        super().__init__()
        self.problem: Optional[str] = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.problem = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if not math.isfinite(loss):
            self.problem = f"loss became {loss} at epoch {self.epoch + 1}, batch {batch + 1}"
            self.model.stop_training = True


def check_epoch_divergence(
    logs: dict[str, float], history: Sequence[dict[str, Any]], factor: Optional[float]
) -> Optional[str]:
    """A message when an epoch's losses are non-finite or `factor` x above the first epoch's.

    Args:
        logs: this epoch's metrics (`loss`, `val_loss`, ...).
        history: the completed epochs before this one.
        factor: divergence limit relative to the first epoch's training loss; None = NaN/inf only.
    """
    for key in ("loss", "val_loss"):
        value = logs.get(key)
        if value is not None and not math.isfinite(float(value)):
            return f"{key} is {value}"
    if factor is not None and history and "loss" in logs:
        reference = float(history[0].get("loss", math.nan))
        if math.isfinite(reference) and reference > 0 and float(logs["loss"]) > factor * reference:
            return (
                f"training loss {float(logs['loss']):.4g} exceeds divergence_factor={factor:g} x "
                f"the first epoch's {reference:.4g}"
            )
    return None


class RunProgress(keras.callbacks.ProgbarLogger):
    """Keras's progress bar (with ETA), numbered against the whole run.

    The runner calls `fit` once per epoch, so Keras alone would print "Epoch 4/4"; this bar
    prints "Epoch 4/80".
    """

    def __init__(self, total_epochs: int):
        super().__init__()
        self.total_epochs = total_epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs


class EpochTimer:
    """Wall time per epoch and an ETA for the whole run (printed under Keras's per-epoch bar).

    The ETA uses the median of the last five epochs, leaving out the run's first epoch when there
    are others (it also pays for graph tracing).
    """

    def __init__(self, total_epochs: int, first_epoch: int = 0):
        self.total = total_epochs
        self.first = first_epoch
        self.durations: list[float] = []
        self._epoch_start = time.monotonic()

    def start_epoch(self) -> None:
        self._epoch_start = time.monotonic()

    def end_epoch(self, epoch: int) -> tuple[float, str]:
        """Returns (seconds this epoch, a one-line progress summary). `epoch` is 0-based."""
        seconds = time.monotonic() - self._epoch_start
        self.durations.append(seconds)
        recent = self.durations[1:] if len(self.durations) > 1 else self.durations
        per_epoch = float(np.median(recent[-5:]))
        remaining = per_epoch * (self.total - epoch - 1)
        line = (
            f"epoch {epoch + 1}/{self.total} done in {_hms(seconds)}; "
            f"run ETA {_hms(remaining)} ({_hms(per_epoch)}/epoch)"
        )
        return seconds, line


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:d}:{secs:02d}"


def write_history_csv(path: str | Path, history: Sequence[dict[str, Any]]) -> None:
    """Rewrites the whole CSV log atomically (one row per completed epoch, `epoch` 1-based)."""
    keys: list[str] = []
    for row in history:
        for key in row:
            if key not in keys:
                keys.append(key)
    if "epoch" in keys:
        keys.remove("epoch")
    keys.insert(0, "epoch")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k, "") for k in keys})
    atomic_write_text(path, buffer.getvalue())


def plot_curves(
    path: str | Path,
    history: Sequence[dict[str, Any]],
    title: str = "",
    metric: str = "accuracy",
) -> None:
    """Loss and `metric` per epoch, train and validation, as a two-panel PNG (matplotlib Agg).

    The layout follows the paper's Figures 10, 15a and 16: x = epoch, one line per split.
    """
    try:
        # lazy: matplotlib is optional (a bare accelerator image lacks it), only for this figure
        from matplotlib.figure import Figure  # object API: no pyplot state, no GUI backend
        from matplotlib.ticker import MaxNLocator
    except ImportError:  # a bare accelerator image: history.csv holds the same numbers
        return

    epochs = [int(row["epoch"]) for row in history]
    figure = Figure(figsize=(10, 4), dpi=100)
    for index, (name, label) in enumerate((("loss", "loss"), (metric, metric.replace("_", " ")))):
        axis = figure.add_subplot(1, 2, index + 1)
        for prefix, style, split in (("", "-", "train"), ("val_", "--", "validation")):
            values = [row.get(prefix + name) for row in history]
            points = [(e, float(v)) for e, v in zip(epochs, values) if v not in (None, "")]
            if points:
                axis.plot(*zip(*points), style, marker="o", markersize=3, label=split)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
        if name != "loss":
            axis.set_ylim(0.0, 1.0)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    atomic_write_with(path, lambda tmp: figure.savefig(tmp, format="png"))


class ScalarLog:
    """Per-epoch scalars as TensorBoard event files, written with TensorFlow's core summary op.

    Keras's `TensorBoard` callback needs the `tensorboard` package for `tf.summary.scalar`; the
    project does not depend on it, so the scalars are written with `tf.summary.write` and the
    "scalars" plugin metadata, which TensorBoard reads the same way. Layout as Keras writes it:
    `train/` and `validation/`, tags `epoch_<metric>`.
    """

    def __init__(self, log_dir: str | Path):
        self._tf, self._writers = None, {}
        if keras.backend.backend() != "tensorflow":
            # The event writer is TensorFlow's; on JAX / PyTorch the same numbers are in
            # history.csv and curves.png.
            return
        # lazy: TensorFlow only on its own backend (absent where JAX / PyTorch train)
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        self._tf = tf
        self._metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        ).SerializeToString()
        root = Path(log_dir)
        self._writers = {
            "train": tf.summary.create_file_writer(str(root / "train")),
            "validation": tf.summary.create_file_writer(str(root / "validation")),
        }

    def write(self, epoch: int, logs: dict[str, float]) -> None:
        """Writes `logs` for 1-based `epoch` (keys `val_*` go to validation/)."""
        tf = self._tf
        if tf is None:
            return
        for key, value in logs.items():
            split, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writers[split].as_default():
                tf.summary.write(
                    f"epoch_{name}", tf.constant(float(value), tf.float32), step=epoch,
                    metadata=self._metadata,
                )
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
