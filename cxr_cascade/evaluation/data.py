"""From a run directory (``cxr-cascade train``) to test arrays: records, labels, images, masks.

The model and its evaluation preprocessing come from ``cxr_cascade.artifacts.load`` (the one
loader, which the exporter uses too), the test images from the run's split manifest ``splits.csv``
(``split == "test"``) or from ``--data`` paths, and every image goes through
``pipelines.preprocess.preprocess_image_bytes``, the one function shared by training, evaluation
and serving. A file that cannot be read raises one ``ValueError`` naming it.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from cxr_cascade.artifacts import RunDir, Stage, sha256_file
from cxr_cascade.config import load_resolved
from cxr_cascade.selection import read_sources, select_records, trained_records
from pipelines.decode import read_mask
from pipelines.image_policy import image_bytes_problem
from pipelines.preprocess import preprocess_image_bytes
from pipelines.records import read_manifest
from pipelines.transforms import resize_mask


def require_classifier(stage: Stage, source) -> Stage:
    """``stage`` when it is a classifier (class scores to evaluate), else a ``ValueError`` naming
    ``source`` (the path it was loaded from)."""
    if not stage.class_names:
        raise ValueError(f"{source}: a {stage.task} run is not a classifier; evaluate needs stage1 or stage2")
    return stage


def run_config(run_dir):
    return load_resolved(RunDir(run_dir).config)


def manifest_records(run_dir) -> list:
    """Every record of the run's split manifest ``splits.csv``."""
    path = RunDir(run_dir).splits
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no split manifest ({path.name}); pass --data")
    return read_manifest(path)


def data_records(run_dir, data_paths: Sequence[str]) -> list:
    """Records read from ``--data`` paths and selected for the run's task and classes."""
    return select_records(run_config(run_dir), read_sources(list(data_paths)), list(data_paths))


def test_records(records: list, split: str = "test") -> list:
    """Records of ``split``, and every record without a split (an external test set, e.g. an
    ieee8023 folder beside a manifest), in order.

    Raises:
        ValueError: no record is in ``split`` or without a split (names the splits found).
    """
    chosen = [r for r in records if not r.split or r.split == split]
    if not chosen:
        found = ", ".join(f"{k or '-'} {v}" for k, v in sorted(Counter(r.split for r in records).items()))
        raise ValueError(f"no images in split {split!r} (found: {found})")
    return chosen


def _film_key(path: str) -> str:
    return os.path.realpath(path)


def unseen_records(records: list, runs: Sequence, split: str = "test") -> tuple[list, dict]:
    """``records`` once each (by file), without the films any of ``runs`` used for another split.

    A film may be evaluated as ``split`` only if every run whose split manifest (``splits.csv``)
    knows it put it in ``split``: a film one run trained or validated on is never a test film of
    a cascade that contains that run, and a test film of one run never enters a validation set
    (rules and recipes are chosen on validation, tested once). Runs without a manifest know
    no film.

    Args:
        records: candidate records (e.g. `test_records` of ``--data`` or of the runs' manifests).
        runs: run directories or release model folders.
        split: the split being evaluated.

    Returns:
        (records kept, {"duplicates": n, "used_by_a_run": n}): what was left out and why.
    """
    other = set()
    for run in runs:
        if run is not None and RunDir(run).splits.is_file():
            other.update(_film_key(r.path) for r in manifest_records(run) if r.split != split)
    kept, seen, duplicates, used = [], set(), 0, 0
    for r in records:
        key = _film_key(r.path)
        if key in seen:
            duplicates += 1
        elif key in other:
            used += 1
        else:
            seen.add(key)
            kept.append(r)
    return kept, {"duplicates": duplicates, "used_by_a_run": used}


def as_trained(run_dir, records: list) -> list:
    """``records`` labelled as the run trained them (``ExperimentConfig.trained_label``: a stage 2
    with ``stage2_negative="ieee8023_other_pneumonia"`` reads its bacterial films as its negative
    class); unchanged when the run has no config.json."""
    if not RunDir(run_dir).config.is_file():
        return list(records)
    return trained_records(run_config(run_dir), records)


def keep_classes(records: list, class_names: Sequence[str]) -> tuple[list, int]:
    """Records whose label is one of ``class_names`` and how many were dropped."""
    kept = [r for r in records if r.label in class_names]
    return kept, len(records) - len(kept)


def label_indices(records: list, class_names: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(class_names)}
    return np.array([index[r.label] for r in records], dtype=np.int64)


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"{path}: cannot read the image ({error.strerror or error})") from None


def load_image(path: str, preprocess, segment: bool = False, mask_path: str = "",
               mask_fn: Optional[Callable] = None) -> np.ndarray:
    """One file through ``preprocess_image_bytes``: float32 ``[S, S, 1]`` in [0, 1].

    Lung masking (``segment``) uses the record's mask file when it has one, else ``mask_fn``
    (a U-Net), else it is an error naming the file.
    """
    data = _read_bytes(path)
    problem = image_bytes_problem(data)  # the shared decode policy (format, size, pixel cap)
    if problem is not None:
        raise ValueError(f"{path}: {problem}")
    kwargs = dict(preprocess.as_kwargs()) if hasattr(preprocess, "as_kwargs") else dict(preprocess)
    if segment:
        if mask_path:
            kwargs["mask"] = read_mask(tf.constant(mask_path))
        elif mask_fn is not None:
            kwargs["mask_fn"] = mask_fn
        else:
            raise ValueError(
                f"{path}: the model reads lung-masked images but the image has no mask; pass --unet RUN_DIR"
            )
    try:
        image = preprocess_image_bytes(tf.constant(data), **kwargs)
    except (tf.errors.InvalidArgumentError, ValueError) as error:
        message = getattr(error, "message", str(error)).splitlines()[0]
        raise ValueError(f"{path}: cannot decode the image ({message})") from None
    return image.numpy().astype(np.float32)


def load_images(records: list, preprocess, segment: bool = False,
                mask_fn: Optional[Callable] = None) -> np.ndarray:
    """``[N, S, S, 1]`` float32 of the records' images, in order."""
    return np.stack([
        load_image(r.path, preprocess, segment, getattr(r, "mask_path", ""), mask_fn) for r in records
    ])


def load_lung_masks(records: list, preprocess, mask_fn: Optional[Callable] = None,
                    images: Optional[np.ndarray] = None) -> np.ndarray:
    """Lung masks ``[N, S, S]`` bool with the images' geometry: the record's mask file, else
    ``mask_fn`` applied to the preprocessed image, else a ``ValueError`` naming the file."""
    size = preprocess.image_size
    mode = preprocess.resize_mode
    masks = []
    for i, record in enumerate(records):
        if record.mask_path:
            try:
                mask = resize_mask(read_mask(tf.constant(record.mask_path)), size, mode)
            except tf.errors.OpError as error:
                raise ValueError(f"{record.mask_path}: cannot read the lung mask ({error.message})") from None
            masks.append(mask.numpy()[..., 0] > 0.5)
        elif mask_fn is not None and images is not None:
            masks.append(np.asarray(mask_fn(tf.constant(images[i])))[..., 0] > 0.5)
        else:
            raise ValueError(f"{record.path}: no lung mask (records carry none); pass --unet RUN_DIR")
    return np.stack(masks)


def duplicate_images_across_splits(records: list) -> int:
    """Number of byte-identical images whose copies sit in different splits (0 when clean)."""
    by_hash: dict[str, set] = {}
    for record in records:
        try:
            digest = sha256_file(record.path)
        except OSError:
            continue
        by_hash.setdefault(digest, set()).add(record.split)
    return sum(1 for splits in by_hash.values() if len(splits) > 1)
