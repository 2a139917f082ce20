"""Checkpoints are verified, not trusted: which weights files of a run are intact.

A new checkpoint is read back (every HDF5 dataset) and hashed before `state.json` names it
(`cxr_cascade.training.checkpoint.Checkpointer`, the one writer), and the previous one is deleted
only after that. A checkpoint damaged later (a full disk, a copy cut short, a bad sector) is found
by `latest_good_checkpoint`, which falls back to the newest intact one; `best.weights.h5` is a
separate copy, so damage to one never takes both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from cxr_cascade.artifacts.checksums import sha256_file
from cxr_cascade.artifacts.layout import CHECKPOINT_GLOB, EPOCH_PREFIX, WEIGHTS_SUFFIX, RunDir

__all__ = ["checkpoint_epoch", "latest_good_checkpoint", "rewind_state", "weights_file_problem"]


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
        import h5py  # lazy: only a weights file to check needs it

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
    """The epoch of `checkpoints/epoch-NNNN.weights.h5`, else None (partial checkpoints too)."""
    name = Path(path).name
    if name.startswith(EPOCH_PREFIX) and name.endswith(WEIGHTS_SUFFIX):
        digits = name[len(EPOCH_PREFIX):-len(WEIGHTS_SUFFIX)]
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
    for path in rd.checkpoints.glob(CHECKPOINT_GLOB):
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
