"""From a config and data-set paths to train / validation / test `tf.data` pipelines.

Steps (each one fails with one line naming the path and the problem):

1. Read every `--data` path with `pipelines.readers.read_dataset` (layout detected, or named as
   `FORMAT=PATH`); reader problems (unreadable rows, odd names) are reported, not fatal.
2. Select the task's images: stage 1 the Kermany classes normal / bacterial / viral; stage 2
   COVID-19 vs the configured negative class (`stage2_negative`, `registry.STAGE2_NEGATIVE_LABELS`);
   the U-Net every image with a mask. A class with no image is an error naming the class and what
   was found. Records keep their own label (splits.csv says "bacterial" for a Streptococcus film);
   the pipelines read `config.trained_label` (that film trains as stage 2's negative class).
3. Split by patient (`pipelines.splits.split_records`, official test splits kept, exact duplicate
   images kept in one split) unless the records already carry a complete split (a manifest from
   `cxr-cascade data split`). On `--resume` the split is re-read from the run's `splits.csv`
   and its hash checked, so a resumed run can never train on a different split.
4. Build the pipelines with `pipelines.datasets`; the training set is rebuilt for every epoch
   from `seed + epoch` so that epoch `e`'s order and augmentation do not depend on history.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

if TYPE_CHECKING:  # TensorFlow is imported lazily: the JAX/Torch path never loads it
    import tensorflow as tf

from cxr_cascade.config import ExperimentConfig
from cxr_cascade.artifacts import RunDir, load_unet_mask_fn
# Reading and selecting the records is shared with evaluation (`cxr_cascade.selection`); the
# names are read from here too.
from cxr_cascade.selection import (
    label_counts, missing_classes, read_sources, select_records, trained_records,
)
from cxr_cascade.training.arrays import build_bundle
from cxr_cascade.training.backend import is_tensorflow
from cxr_cascade.training.bundle import DataBundle
from cxr_cascade.training.seeds import epoch_seed
from pipelines.dedup import DEFAULT_THRESHOLD, find_duplicates
from pipelines.image_cache import ImageCache
from pipelines.records import read_manifest, write_manifest
from pipelines.splits import LeakageError, split_problems, split_records


# ---------------------------------------------------------------------------- splitting
def _cap_per_class(records: list, cap: int, seed: int) -> list:
    """Keeps the same fraction of each class in every split, `cap` images per class in train.

    Whole patients are kept or dropped (seeded order), so the cap never splits a patient.
    """
    rng = np.random.default_rng(seed)
    train_counts = Counter(r.label for r in records if r.split == "train")
    keep: list = []
    by_key: dict[tuple[str, str], list] = {}
    for record in records:
        by_key.setdefault((record.split, record.label), []).append(record)
    for (split, label), members in sorted(by_key.items()):
        fraction = min(1.0, cap / max(1, train_counts.get(label, len(members))))
        target = max(1, int(round(fraction * len(members))))
        patients: dict[str, list] = {}
        for record in members:
            patients.setdefault(record.patient_key, []).append(record)
        order = sorted(patients)
        rng.shuffle(order)
        taken: list = []
        for key in order:
            if len(taken) >= target:
                break
            taken.extend(patients[key])
        keep.extend(taken)
    chosen = {id(r) for r in keep}
    return [r for r in records if id(r) in chosen]


def split(config: ExperimentConfig, records: list) -> list:
    """Records with `split` set: kept when complete, else by `pipelines.splits.split_records`."""
    splits = {r.split for r in records}
    # Refuse what `data check` and `data split --verify` flag: a file listed twice, a patient
    # or a file in two splits (a given split manifest is trusted for nothing else).
    problems = split_problems(records)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise LeakageError(
            f"experiment {config.name!r}: refusing to train: {problems[0]}{more}; "
            "check the data with `cxr-cascade data check` and re-split with `cxr-cascade data split`"
        )
    if splits >= {"train", "val"} and "" not in splits:
        result = list(records)
    else:
        groups: list = []
        if config.dedup != "off":
            threshold = DEFAULT_THRESHOLD if config.dedup == "near" else None
            try:
                report = find_duplicates(records, threshold=threshold)
            except ImportError as error:  # no OpenCV (accelerators without TensorFlow)
                raise ValueError(
                    f"experiment {config.name!r}: dedup={config.dedup} decodes with OpenCV, which "
                    f"is missing ({error}); make the split where OpenCV is installed "
                    "(`cxr-cascade data split`) and pass its manifest as --data, or --set dedup=off"
                ) from None
            groups = [g.members for g in report.groups]
        has_test = any(r.split == "test" for r in records)
        result = split_records(
            records,
            val=config.val_fraction,
            test=config.test_fraction,
            seed=config.seed,
            keep_official_test=has_test,
            duplicate_groups=groups,
        ).records
    if config.max_per_class is not None:
        result = _cap_per_class(result, config.max_per_class, config.seed)
    for name in ("train", "val"):
        part = [r for r in result if r.split == name]
        if not part:
            raise ValueError(
                f"experiment {config.name!r}: the {name} split is empty "
                f"({len(result)} images in all); use more data or change val_fraction/test_fraction"
            )
        if config.is_classifier and name == "train":
            missing = missing_classes(config, part)
            if missing:
                raise ValueError(
                    f"experiment {config.name!r}: no training images of class "
                    f"{', '.join(map(repr, missing))} after the patient split (train: {label_counts(part)})"
                )
    return result


def write_split_manifest(rd: RunDir, records: list, resume: bool) -> None:
    """splits.csv + splits.sha256; on resume, verifies the stored hash instead."""
    if resume and rd.splits.is_file() and rd.splits_hash.is_file():
        rd.check_splits_hash()
        return
    write_manifest(records, rd.splits)
    rd.write_splits_hash()


def _read_resume_split(run_dir: Path) -> Optional[list]:
    rd = RunDir(run_dir)
    if not rd.splits.is_file():
        return None
    rd.check_splits_hash()
    return read_manifest(rd.splits)


# ---------------------------------------------------------------------------- pipelines
def prepare_data(
    config: ExperimentConfig,
    data_paths: Sequence[str],
    *,
    run_dir: Optional[Path] = None,
    resume: bool = False,
    unet_weights: Optional[str] = None,
    num_replicas: int = 1,
    skip_bad: bool = False,
    cache_dir: Optional[str] = None,
) -> DataBundle:
    """Reads, selects, splits and wraps the data for `config` (see the module docstring).

    `skip_bad` leaves out (with a warning naming them) images that cannot be used instead of
    refusing to train (`cxr-cascade train --skip-bad`).

    `cache_dir` (`cxr-cascade train --cache DIR`) keeps the decoded, resized images of every
    split in `pipelines.image_cache.ImageCache` files under that directory, keyed by the
    preprocessing settings and the files: epochs after the first (and later runs with the same
    settings and data) skip JPEG decoding. Augmentation comes after the cache, so it still
    changes every epoch. A training plan redrawn every epoch (``balance="oversample"`` or
    ``augment.clahe_mode="add"``) would give every epoch its own key; its training images are
    then not cached (a note says so) while validation and test still are.

    On Keras backends other than TensorFlow the split records go to `training.arrays.build_bundle`
    (in-memory NumPy batches) instead of `tf.data`.
    """
    records = None
    if resume and run_dir is not None:
        records = _read_resume_split(run_dir)
    if records is None:
        records = select_records(config, read_sources(data_paths), data_paths)
        records = split(config, records)
    trained = trained_records(config, records)
    train_records = [r for r in trained if r.split == "train"]
    val_records = [r for r in trained if r.split == "val"]
    test_records = [r for r in trained if r.split == "test"]
    batch = config.batch_size
    if batch % num_replicas:
        raise ValueError(
            f"experiment {config.name!r}: batch_size={batch} is not divisible by the "
            f"{num_replicas} replicas of the strategy"
        )
    if not is_tensorflow():
        mask_fn = None
        if config.is_classifier and config.augment.segmented_copies and unet_weights:
            mask_fn = load_unet_mask_fn(unet_weights, config.image_size)
        bundle = build_bundle(config, trained, mask_fn=mask_fn)
        bundle.records = records  # splits.csv keeps each film's own label
        return bundle
    # lazy: tf.data pipelines import TensorFlow, absent where JAX / PyTorch train
    from pipelines.datasets import build_dataset, build_segmentation_dataset

    drop = len(train_records) >= batch  # no ragged last batch for BatchNorm / MoEx pairing
    # The run's preprocessing and augmentation objects, passed through as they are (less the
    # random draws that `augment.placement="model"` moves into the network).
    pre, aug = config.preprocess, config.augment.for_host()
    train_cache: Any = False
    eval_cache: Any = True  # in memory: the evaluation sets are built once per run
    if cache_dir:
        eval_cache = ImageCache(cache_dir, name=f"{config.name}-eval")
        redrawn = config.balance == "oversample" or (aug.clahe_mode == "add" and aug.clahe_fraction > 0)
        if redrawn:
            print(
                f"note: --cache {cache_dir}: training images are decoded every epoch (the training "
                "plan is redrawn each epoch: balance=oversample or augment.clahe_mode=add); "
                "validation and test images are cached",
                file=sys.stderr, flush=True,
            )
        else:
            train_cache = ImageCache(cache_dir, name=f"{config.name}-train")

    if config.task == "unet":
        def build_train(epoch_seed: int, validate: bool) -> tf.data.Dataset:
            return build_segmentation_dataset(
                train_records, training=True, seed=epoch_seed, preprocess=pre, augment=aug,
                batch_size=batch, drop_remainder=drop, validate=validate, skip_bad=skip_bad,
                cache=train_cache,
            )

        def build_eval(part: list) -> tf.data.Dataset:
            return build_segmentation_dataset(
                part, training=False, seed=config.seed, cache=eval_cache, preprocess=pre, batch_size=batch,
                skip_bad=skip_bad,
            )

        class_names: tuple[str, ...] = ()
    else:
        class_names = tuple(config.classes)
        mask_fn = None
        if aug.segmented_copies or pre.segment:
            needs = "augment.segmented_copies" if aug.segmented_copies else "preprocess.segment"
            if unet_weights:
                mask_fn = load_unet_mask_fn(unet_weights, config.image_size)
            elif not all(r.mask_path for r in (records if pre.segment else train_records)):
                raise ValueError(
                    f"experiment {config.name!r}: {needs} needs lung masks: pass --unet "
                    "RUN_DIR (a U-Net trained with `cxr-cascade train unet_lungs`), give data whose "
                    f"records have masks, or --set {needs}=false"
                )
        common = dict(class_names=class_names, preprocess=pre, batch_size=batch, mask_fn=mask_fn,
                      skip_bad=skip_bad)

        def build_train(epoch_seed: int, validate: bool) -> tf.data.Dataset:
            return build_dataset(
                train_records, training=True, seed=epoch_seed, augment=aug,
                drop_remainder=drop, validate=validate, cache=train_cache,
                balance=config.balance,
                **common,
            )

        def build_eval(part: list) -> tf.data.Dataset:
            return build_dataset(part, training=False, seed=config.seed, cache=eval_cache, **common)

    validated = {"done": False}

    def make_train(epoch: int) -> tf.data.Dataset:
        # Files are decoded once for validation on the first build only.
        ds = build_train(epoch_seed(config.seed, epoch), validate=not validated["done"])
        validated["done"] = True
        return ds

    first = make_train(0)
    examples = int(getattr(first, "num_examples", 0)) or len(train_records)
    steps = examples // batch if drop else math.ceil(examples / batch)
    cache = {0: first}

    def make_train_cached(epoch: int) -> tf.data.Dataset:
        return cache.pop(epoch) if epoch in cache else make_train(epoch)

    return DataBundle(
        class_names=class_names,
        records=records,
        make_train=make_train_cached,
        val=build_eval(val_records),
        test=build_eval(test_records) if test_records else None,
        steps_per_epoch=max(1, steps),
    )


def describe(bundle: DataBundle) -> str:
    return json.dumps(bundle.split_counts(), sort_keys=True)
