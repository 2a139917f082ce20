"""tf.data input pipelines: classifiers (`build_dataset`), U-Net (`build_segmentation_dataset`).

Both read image files named by records (`pipelines.records.Record`, or plain path lists), decode
and preprocess them with the shared function of `pipelines.preprocess`, and, when ``training``,
shuffle and augment them as Lv et al. (2020) did:

* Stage 1 (Sec. 4.1): CLAHE on a random 40 % of the training images:
  ``clahe_fraction=0.4, clahe_mode="replace"`` (each epoch each image is enhanced with
  probability 0.4; the data set keeps its length).
* Stage 2 (Sec. 4.2): every image as is and CLAHE-enhanced, both again lung-segmented:
  ``clahe_fraction=1.0, clahe_mode="add", segmented_copies=True`` (4 copies per image; with
  ``clahe_fraction=f < 1`` in "add" mode a fixed, seeded ``round(f * N)`` of the images get a
  CLAHE copy).
* Random rotation in +-``rotation_degrees`` (30 in the paper), optional shift and zoom (the
  paper's "affine transformation"), constant black fill; the U-Net's image and mask share one
  transform (mask by nearest neighbour, so it stays binary).

Determinism: with ``seed`` set, order and augmentation are a pure function of the seed (stateless
random ops keyed per element by `tf.data.Dataset.random`, ``Options.deterministic = True``), so
two builds give the same batches; later epochs reshuffle and redraw, again reproducibly.

Bad files: before the data set is built every file is decoded once (`validate_image_files`);
unreadable images raise a ValueError listing their paths, or, with ``skip_bad=True``, are left out
with a warning and listed in the returned data set's ``bad_files`` attribute.

Memory: ``cache=True`` keeps the decoded, resized (and deterministically enhanced) images in RAM,
``N * S * S * 4`` bytes (about 1 MiB per image at 512), and then shuffles them with a buffer of
``shuffle_buffer`` images; ``cache="path/prefix"`` caches to disk instead, and
``cache=ImageCache("dir")`` (`pipelines.image_cache`) to disk under a name keyed by the settings
and the files, so a changed setting never reuses stale images. Without cache the
file list is shuffled (cheap) and images are decoded every epoch.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Callable, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from pipelines import decode as D
from pipelines.balance import balanced_weights, oversample as _oversample
from pipelines import transforms as T
from pipelines.config import (
    BALANCE_MODES,
    NO_BALANCE,
    AugmentConfig,
    PreprocessConfig,
    _check_choice,
)
from pipelines.image_cache import ImageCache, resolve_cache
from pipelines.preprocess import preprocess_image
from pipelines.records import read_manifest

__all__ = [
    "LABEL_MODES",
    "build_dataset",
    "build_segmentation_dataset",
    "class_weights",
]

logger = logging.getLogger(__name__)

LABEL_MODES = ("int", "one_hot")
DEFAULT_SHUFFLE_BUFFER = 1024
AUTOTUNE = tf.data.AUTOTUNE

# Positions in the per-element uniform draw (one stateless_uniform per element).
_U_CLAHE, _U_ANGLE, _U_SHIFT_X, _U_SHIFT_Y, _U_ZOOM = range(5)


# ----------------------------------------------------------------------------------------------
# Inputs


def _as_table(records, what: str = "records"):
    """(paths, labels, mask_paths) from records, a manifest CSV or a (paths, labels[, masks])."""
    if isinstance(records, (str, os.PathLike)):
        records = read_manifest(records)
    if isinstance(records, tuple) and len(records) in (2, 3) and not hasattr(records, "path"):
        paths = [os.fspath(p) for p in records[0]]
        labels = list(records[1])
        if len(records) == 3:
            masks = [os.fspath(m) if m else "" for m in records[2]]
        else:
            masks = [""] * len(paths)
        if not len(paths) == len(labels) == len(masks):
            raise ValueError(
                f"`{what}` as (paths, labels[, mask_paths]) needs lists of equal length. "
                f"Received: lengths {len(paths)}, {len(labels)}, {len(masks)}"
            )
        return paths, labels, masks
    try:
        items = list(records)
    except TypeError:
        raise ValueError(
            f"`{what}` must be a list of records (with .path, .label, .mask_path) or a tuple "
            f"(paths, labels[, mask_paths]). Received: {what}={records!r}"
        ) from None
    paths, labels, masks = [], [], []
    for item in items:
        if not hasattr(item, "path"):
            raise ValueError(
                f"Each of `{what}` must have a `path` attribute (pipelines.records.Record). "
                f"Received: {item!r}"
            )
        paths.append(os.fspath(item.path))
        labels.append(getattr(item, "label", None))
        masks.append(os.fspath(getattr(item, "mask_path", "") or ""))
    return paths, labels, masks


def _label_indices(labels, paths, class_names) -> np.ndarray:
    if not class_names or len(set(class_names)) != len(class_names):
        raise ValueError(
            "`class_names` must be a non-empty list of distinct names. "
            f"Received: class_names={class_names!r}"
        )
    index = {name: i for i, name in enumerate(class_names)}
    out = np.empty(len(labels), np.int32)
    for i, (label, path) in enumerate(zip(labels, paths)):
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            if not 0 <= int(label) < len(class_names):
                raise ValueError(
                    f"Label index out of range for {len(class_names)} classes in {path}. "
                    f"Received: label={label!r}"
                )
            out[i] = int(label)
        elif label in index:
            out[i] = index[label]
        else:
            raise ValueError(
                f"Label of {path} is not one of class_names={list(class_names)}; filter the records "
                f"first. Received: label={label!r}"
            )
    return out


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}")


def _validate(paths, masks, skip_bad: bool, validate: bool):
    """Keeps the indices of good entries; raises (or warns with skip_bad) naming bad files."""
    if not validate:
        return list(range(len(paths))), []
    bad = D.validate_image_files(paths, masks)
    if bad and not skip_bad:
        raise ValueError(
            f"{len(bad)} of {len(paths)} image(s) cannot be used (`cxr-cascade train --skip-bad` or "
            f"skip_bad=True leaves them out):\n{D.format_bad_files(bad)}"
        )
    if bad:
        message = (
            f"Skipped {len(bad)} of {len(paths)} image(s) that cannot be used:\n"
            f"{D.format_bad_files(bad)}"
        )
        warnings.warn(message, stacklevel=3)
        logger.warning(message)
    bad_set = {(b.path) for b in bad}
    keep = [i for i, p in enumerate(paths) if p not in bad_set]
    return keep, bad


def _check_not_empty(paths) -> None:
    if not paths:
        raise ValueError("`records` is empty: nothing to build a data set from.")


def _usable(paths, masks, skip_bad: bool, validate: bool):
    """`_validate`, then a ValueError when no image is left: ``(keep list[int], bad)``."""
    keep, bad = _validate(paths, masks, skip_bad, validate)
    if not keep:
        raise ValueError(f"No usable images are left among {len(paths)}.")
    return keep, bad


def _resolve_seed(seed) -> int:
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1)[0] & 0x7FFFFFFF)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"`seed` must be an int or None. Received: seed={seed!r}")
    return int(seed)


def class_weights(records, class_names: Sequence[str]) -> dict[int, float]:
    """Weights ``N / (K * N_c)`` per class index (scikit-learn's "balanced").

    For ``Model.fit(class_weight=...)``; K counts the classes present.

    Classes absent from `records` get weight 0.
    """
    paths, labels, _ = _as_table(records)
    idx = _label_indices(labels, paths, class_names)
    weights = balanced_weights(idx, len(class_names))
    return {c: float(weights[c]) for c in range(len(class_names))}


def _options(deterministic: bool) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = deterministic
    # No autotuning model: destroying an iterator waits for tf.data's autotune thread, up to 4-10 s
    # per epoch on 2 CPU cores because the trainer builds one data set per epoch. AUTOTUNE map
    # parallelism then means one call per core; `make bench-pipeline` throughput is unchanged.
    options.autotune.enabled = False
    return options


def _cache(ds: tf.data.Dataset, cache: Union[bool, str, ImageCache]) -> tf.data.Dataset:
    if cache is True:
        return ds.cache()
    if isinstance(cache, (str, os.PathLike)) and os.fspath(cache):
        return ds.cache(os.fspath(cache))
    if cache is False or cache is None:
        return ds
    raise ValueError(f"`cache` must be a bool or a file path prefix. Received: cache={cache!r}")


def _attach(ds: tf.data.Dataset, **attributes) -> tf.data.Dataset:
    for name, value in attributes.items():
        setattr(ds, name, value)
    return ds


def _check_builder_arguments(preprocess: PreprocessConfig, augment: AugmentConfig, *, batch_size, choices=()):
    """Checks what the config objects do not (batch size, `choices`: (name, value, allowed)
    triples, CLAHE on every image and on a fraction at once).

    Returns:
        The normalised ``(height, width)`` image size.
    """
    image_size = T.normalize_image_size(preprocess.image_size)
    _check_batch_size(batch_size)
    for name, value, allowed in choices:
        _check_choice(name, value, allowed)
    if preprocess.clahe and augment.clahe_fraction > 0:
        raise ValueError(
            "`clahe=True` already enhances every image, so `clahe_fraction` must be 0. "
            f"Received: clahe=True, clahe_fraction={augment.clahe_fraction!r}"
        )
    return image_size


def _config_objects(preprocess, augment, *, segmentation: bool = False):
    """Checks the types of `preprocess` (required) and `augment` (None: no augmentation) and,
    for the U-Net data set, the settings it cannot honour; returns ``(preprocess, augment)``."""
    if not isinstance(preprocess, PreprocessConfig):
        raise ValueError(
            "`preprocess` must be a pipelines.config.PreprocessConfig. "
            f"Received: preprocess={preprocess!r}"
        )
    if augment is None:
        augment = AugmentConfig()
    elif not isinstance(augment, AugmentConfig):
        raise ValueError(
            f"`augment` must be a pipelines.config.AugmentConfig or None. Received: augment={augment!r}"
        )
    if segmentation:
        if preprocess.segment:
            raise ValueError(
                "The U-Net data set cannot lung-mask its inputs. Received: preprocess.segment=True"
            )
        for name in ("clahe_mode", "segmented_copies"):
            if getattr(augment, name) != AugmentConfig.__dataclass_fields__[name].default:
                raise ValueError(
                    "The U-Net data set draws CLAHE per image (clahe_mode='replace') and adds no "
                    f"segmented copies. Received: augment.{name}={getattr(augment, name)!r}"
                )
    return preprocess, augment


def _load_and_shuffle(ds, load, *, n, training, cache, shuffle_buffer, seed_value):
    """Maps `load` over the file table, caching and shuffling as the module docstring says.

    Without cache the (cheap) file table is shuffled before decoding; with cache the decoded
    images are shuffled after it, with a buffer of at most `shuffle_buffer`.
    """
    cached = cache not in (False, None)
    if training and not cached:
        ds = ds.shuffle(n, seed=seed_value, reshuffle_each_iteration=True)
    ds = ds.map(load, num_parallel_calls=AUTOTUNE)
    if cached:
        ds = _cache(ds, cache)
        if training:
            buffer = min(n, shuffle_buffer or DEFAULT_SHUFFLE_BUFFER)
            ds = ds.shuffle(buffer, seed=seed_value, reshuffle_each_iteration=True)
    return ds


def _element_uniform(seed_value: int, draw) -> tf.Tensor:
    """The element's five uniform draws (positions `_U_*`), keyed by the seed and its draw."""
    element_seed = tf.stack([tf.constant(seed_value, tf.int64), draw])
    return tf.random.stateless_uniform([5], seed=element_seed)


def _random_clahe(image, u, fraction, clip_limit, tile_grid_size, clahe_backend):
    """CLAHE-enhances `image` when the element's draw ``u[_U_CLAHE]`` is below `fraction`."""
    return tf.cond(
        u[_U_CLAHE] < fraction,
        lambda: T.apply_clahe(image, clip_limit, tile_grid_size, backend=clahe_backend),
        lambda: tf.identity(image),
    )


def _random_affine_matrix(u, image_size, rotation_degrees, shift, zoom):
    """The element's random rotation/shift/zoom matrix from its draws ``u[1:5]``."""
    return T.random_affine_matrix(
        u[1:5],
        image_size[0],
        image_size[1],
        rotation_degrees=rotation_degrees,
        shift=shift,
        zoom=zoom,
    )


def _map_with_draws(ds, augment, seed_value: int) -> tf.data.Dataset:
    """Maps ``augment(element, draw)`` with one seeded int64 draw per element (redrawn per epoch)."""
    draws = tf.data.Dataset.random(seed=seed_value, rerandomize_each_iteration=True)
    return tf.data.Dataset.zip((ds, draws)).map(augment, num_parallel_calls=AUTOTUNE)


def _batch_and_finish(ds, *, batch_size, drop_remainder, seed, training, per_batch=None, **attributes):
    """Batches, maps `per_batch` (if any) over the batches, prefetches, sets determinism and
    attaches `attributes` to the data set."""
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if per_batch is not None:
        ds = ds.map(per_batch, num_parallel_calls=AUTOTUNE)
    ds = ds.prefetch(AUTOTUNE)
    ds = ds.with_options(_options(deterministic=(seed is not None) or not training))
    return _attach(ds, **attributes)


def plan_copies(
    indices: np.ndarray,
    rng: np.random.Generator,
    *,
    add_clahe_fraction: float = 0.0,
    segmented_copies: bool = False,
    segment: bool = False,
    clahe: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The copies stage: which image each element reads and whether it is CLAHE'd / lung-masked.

    Args:
        indices: int ``[N]``, the images (after oversampling) in order.
        rng: draws the seeded ``round(add_clahe_fraction * N)`` images that get a CLAHE copy.
        add_clahe_fraction: "add" mode's fraction (0 = no CLAHE copies).
        segmented_copies: append a lung-masked copy of every element (paper, stage 2).
        segment: lung-mask every element; clahe: CLAHE every element.

    Returns:
        ``(entry int [M], with_clahe bool [M], with_seg bool [M])``: originals, then CLAHE
        copies (in image order), then, with `segmented_copies`, all of those again, masked.
    """
    entry, with_clahe, with_seg = [indices], [np.zeros(len(indices), bool)], [np.zeros(len(indices), bool)]
    if add_clahe_fraction > 0:
        chosen = rng.permutation(len(indices))[: int(round(add_clahe_fraction * len(indices)))]
        entry.append(indices[np.sort(chosen)])
        with_clahe.append(np.ones(len(chosen), bool))
        with_seg.append(np.zeros(len(chosen), bool))
    entry, with_clahe, with_seg = map(np.concatenate, (entry, with_clahe, with_seg))
    if segmented_copies:
        entry = np.concatenate([entry, entry])
        with_clahe = np.concatenate([with_clahe, with_clahe])
        with_seg = np.concatenate([with_seg, np.ones(len(with_seg), bool)])
    if segment:
        with_seg[:] = True
    with_clahe |= bool(clahe)
    return entry, with_clahe, with_seg


# ----------------------------------------------------------------------------------------------
# Classification: records -> copies -> decode -> augment -> batch, one function per stage


def _read_records(records, class_names, *, need_masks: bool, skip_bad: bool, validate: bool):
    """The records stage: the file table, label indices and the usable images.

    Args:
        records: as `build_dataset`.
        class_names: class order.
        need_masks: every image must name a lung mask (masks read from files).
        skip_bad, validate: as `build_dataset`.

    Returns:
        ``(paths, masks, label_idx int [N], keep list[int], bad list[BadFile])``.
    """
    paths, labels, masks = _as_table(records)
    _check_not_empty(paths)
    label_idx = _label_indices(labels, paths, class_names)
    if need_masks:
        missing = [p for p, m in zip(paths, masks) if not m]
        if missing:
            raise ValueError(
                f"`segment`/`segmented_copies` need a lung mask per image (record.mask_path) or a "
                f"`mask_fn`; {len(missing)} image(s) have none, e.g. {missing[0]}"
            )
    keep, bad = _usable(paths, masks if need_masks else None, skip_bad, validate)
    return paths, masks, label_idx, keep, bad


def _clahe_per_batch(
    augment: AugmentConfig,
    *,
    with_clahe: np.ndarray,
    with_seg: np.ndarray,
    cache,
    clahe_backend: str,
) -> bool:
    """True when CLAHE runs once per batch, after ``.batch()`` (`_enhance_batches`), exactly.

    Where every element is enhanced and nothing per element follows CLAHE, enhancing the batch
    gives the same bits as enhancing each image (`pipelines.transforms.apply_clahe_batch`), at
    about half the cost per image. Only with the "tf-xla" backend, and not when: some elements
    are not enhanced (a per-element choice would enhance the whole batch), elements are
    lung-masked (masking follows CLAHE), augmentation follows (random CLAHE, rotation, shift,
    zoom), or images are cached (the cache holds the enhanced images).

    Args:
        with_clahe, with_seg: bool ``[M]`` flags of every element (from `plan_copies`).
        cache: as `build_dataset` (after `resolve_cache`).
    """
    augmented = augment.replace_fraction > 0 or augment.geometric
    return (
        clahe_backend == "tf-xla"
        and bool(with_clahe.all())
        and not bool(with_seg.any())
        and not augmented
        and cache in (False, None)
    )


def _enhance_batches(preprocess: PreprocessConfig):
    """The per-batch map of `_clahe_per_batch`: ``(images, *rest) -> (CLAHE(images), *rest)``.

    Images: float32 ``[B, H, W, 1]`` in ``[0, 1]`` (the batch stage's static H and W).
    """

    def enhance(images, *rest):
        enhanced = T.apply_clahe_batch(images, preprocess.clip_limit, preprocess.tile_grid_size)
        return (enhanced, *rest)

    return enhance




def _decoder(
    preprocess: PreprocessConfig,
    *,
    with_clahe: np.ndarray,
    with_seg: np.ndarray,
    mask_fn,
    mask_for_augment: bool,
    clahe_backend: str,
):
    """The decode stage: ``load(row)`` reads one file-table row into a preprocessed image.

    Args:
        preprocess: sizes, resize mode and CLAHE settings (`pipelines.config.PreprocessConfig`).
        with_clahe, with_seg: bool ``[M]`` flags of every element (from `plan_copies`); a flag
            that is the same for all elements stays a Python bool (no `tf.cond` is built).
        mask_fn: segmentation model instead of the rows' mask files, or None.
        mask_for_augment: leave the image unmasked and return its lung mask (uint8
            ``[H, W, 1]``, key ``"mask"``) so that the augment stage masks after its random CLAHE.
        clahe_backend: as `build_dataset`.

    Returns:
        ``load(row) -> dict`` with ``image`` float32 ``[H, W, 1]`` in ``[0, 1]`` (exactly
        `pipelines.preprocess.preprocess_image`, what serving computes) and the row's other
        columns but ``path`` and ``mask_path``.
    """
    image_size = T.normalize_image_size(preprocess.image_size)
    pre = dict(preprocess.as_kwargs(), clahe_backend=clahe_backend)
    del pre["clahe"]  # per element, from `with_clahe`
    any_seg = bool(with_seg.any())

    def uniform_or_tensor(flags: np.ndarray, tensor):
        # A constant flag stays a Python bool, so no tf.cond (and no unused CLAHE branch) is built.
        return bool(flags[0]) if flags.all() or not flags.any() else tensor

    def load(row):
        image = D.read_image(row["path"])
        clahe_flag = uniform_or_tensor(with_clahe, row["clahe"])
        segment_flag = uniform_or_tensor(with_seg, row["segment"])
        out = dict(row)
        del out["path"], out["mask_path"]
        if not any_seg:
            out["image"] = preprocess_image(image, clahe=clahe_flag, **pre)
            return out
        mask = None
        if mask_fn is None:
            height, width = tf.shape(image)[0], tf.shape(image)[1]
            if segment_flag is True:
                mask = D.read_mask(row["mask_path"])
            else:
                mask = tf.cond(
                    row["segment"],
                    lambda: D.read_mask(row["mask_path"]),
                    lambda: tf.ones([height, width, 1], tf.float32),
                )
        if not mask_for_augment:
            # Exactly the shared function (what a serving graph with masks computes).
            out["image"] = preprocess_image(
                image, clahe=clahe_flag, mask=mask, mask_fn=mask_fn, segment=segment_flag, **pre
            )
            return out
        # Training with random CLAHE: the mask is applied after it, in the augment stage.
        out["image"] = preprocess_image(image, clahe=clahe_flag, **pre)
        if mask is not None:
            lung = T.resize_mask(mask, image_size, preprocess.resize_mode)
        else:
            probability = mask_fn(T.resize(image, image_size, preprocess.resize_mode))
            lung = tf.cast(tf.convert_to_tensor(probability, tf.float32) > 0.5, tf.float32)
        out["mask"] = tf.cast(tf.reshape(lung, [image_size[0], image_size[1], 1]), tf.uint8)
        return out

    return load


def _augment_stage(
    ds: tf.data.Dataset,
    augment: AugmentConfig,
    preprocess: PreprocessConfig,
    *,
    mask_after_clahe: bool,
    seed_value: int,
    clahe_backend: str,
) -> tf.data.Dataset:
    """The augment stage: random CLAHE ("replace" mode), late lung masking, rotation/shift/zoom.

    Args:
        ds: decoded elements (dicts with ``image`` and, with `mask_after_clahe`, ``mask`` and
            ``segment``).
        augment: the training augmentation (`pipelines.config.AugmentConfig`; pass
            ``AugmentConfig()`` for none); its CLAHE uses `preprocess`'s clip limit and tiles.
        mask_after_clahe: mask elements flagged ``segment`` after the random CLAHE (CLAHE, then
            segment, as in the paper).
        seed_value: keys the per-element draws (`_element_uniform`), redrawn each epoch.

    Returns:
        `ds` itself when nothing is random, else the augmented data set (same element structure).
    """
    image_size = T.normalize_image_size(preprocess.image_size)
    replace_fraction = augment.replace_fraction
    geometric = augment.geometric
    if not (replace_fraction > 0 or mask_after_clahe or geometric):
        return ds

    def apply(row, draw):
        u = _element_uniform(seed_value, draw)
        image = row["image"]
        if replace_fraction > 0:
            image = _random_clahe(
                image, u, replace_fraction, preprocess.clip_limit, preprocess.tile_grid_size, clahe_backend
            )
        if mask_after_clahe:
            lung = tf.cast(row["mask"], tf.float32)
            image = tf.cond(row["segment"], lambda: T.apply_mask(image, lung), lambda: tf.identity(image))
        if geometric:
            matrix = _random_affine_matrix(u, image_size, augment.rotation_degrees, augment.shift, augment.zoom)
            image = T.affine_transform(image, matrix, interpolation="bilinear", fill_mode=augment.fill_mode)
        out = dict(row)
        out["image"] = image
        return out

    return _map_with_draws(ds, apply, seed_value)


def _batch_stage(ds, *, image_size, num_classes: int, label_mode: str, batch_size: int, **finish):
    """The batch stage: elements -> ``(image, label[, weight])`` tuples, batched and prefetched.

    Args:
        image_size: ``(height, width)``; the images get this static shape.
        num_classes: length of the one-hot labels (``label_mode="one_hot"``).
        label_mode: "int" or "one_hot".
        finish: `_batch_and_finish`'s ``drop_remainder``, ``seed``, ``training``, ``per_batch``
            and attributes.
    """

    def to_pair(row):
        image = tf.ensure_shape(row["image"], [image_size[0], image_size[1], 1])
        label = row["label"]
        if label_mode == "one_hot":
            label = tf.one_hot(label, num_classes, dtype=tf.float32)
        if "weight" in row:
            return image, label, row["weight"]
        return image, label

    ds = ds.map(to_pair, num_parallel_calls=AUTOTUNE)
    return _batch_and_finish(ds, batch_size=batch_size, **finish)


def build_dataset(
    records,
    *,
    class_names: Sequence[str],
    preprocess: PreprocessConfig,
    augment: Optional[AugmentConfig] = None,
    batch_size: int,
    training: bool,
    seed: Optional[int] = None,
    mask_fn: Optional[Callable[[tf.Tensor], tf.Tensor]] = None,
    balance: str = NO_BALANCE,
    cache: Union[bool, str] = False,
    shuffle_buffer: Optional[int] = None,
    skip_bad: bool = False,
    validate: bool = True,
    label_mode: str = "int",
    drop_remainder: bool = False,
    clahe_backend: str = "tf-xla",
) -> tf.data.Dataset:
    """Builds a batched classification data set of ``(images, labels)``.

    Args:
        records: list of `pipelines.records.Record` (``path``, ``label``, ``mask_path`` are read),
            the path of a manifest CSV (`pipelines.records.read_manifest`), or a tuple
            ``(paths, labels)`` / ``(paths, labels, mask_paths)``; labels are names from
            `class_names` or class indices. Filter by split before (``r.split == "train"``).
        class_names: class order; label ``class_names[i]`` becomes index ``i``.
        preprocess: what makes a model input of every image, at training and evaluation
            (`pipelines.config.PreprocessConfig`: size, resize mode, CLAHE on every image, CLAHE
            clip limit and grid, lung masking of every image by its ``mask_path`` or `mask_fn`).
        augment: training only (`pipelines.config.AugmentConfig`): random CLAHE (paper: 40 % in
            stage 1) or CLAHE copies ("add" mode, stage 2), lung-masked copies (stage 2),
            rotation / shift / zoom; None: no augmentation. Ignored when `training` is False.
        batch_size: images per batch.
        training: shuffle, augment, add copies and balance (all of these are off when False).
        seed: makes order and augmentation reproducible (same seed, same batches); None = random.
        mask_fn: segmentation model used instead of the records' masks: float ``[S, S, 1]`` ->
            lung probability ``[S, S, 1]`` (see `pipelines.preprocess.preprocess_image`).
        balance: training only, one of `pipelines.config.BALANCE_MODES`: "off", "oversample"
            (repeat each class's images, seeded, up to the largest class) or "sample_weight"
            (yield ``(images, labels, weights)`` with `class_weights`).
        cache: True (memory), a path prefix (disk), a `pipelines.image_cache.ImageCache`
            (disk, keyed by settings and files) or False; see the module docstring.
        shuffle_buffer: buffer size of the post-cache shuffle (default min(N, 1024)).
        skip_bad: leave out unreadable images with a warning instead of raising.
        validate: decode every file once before building (required for a clear error; turn
            off only for trusted, already-checked data).
        label_mode: "int" (int32 ``[B]``) or "one_hot" (float32 ``[B, K]``).
        drop_remainder: drop the last incomplete batch.
        clahe_backend: "tf-xla" (default: graph ops compiled by XLA, bit-identical to "tf"), "tf" or "cv2" (benchmarks); see `pipelines.transforms.apply_clahe`.
            With "tf-xla", ``preprocess.clahe``, no lung masking, no augmentation and no cache, CLAHE
            runs once per batch after ``.batch()`` (`pipelines.transforms.apply_clahe_batch`:
            the same bits, faster; through `tf.py_function`, so iterate in Python).

    Returns:
        A `tf.data.Dataset` of ``(float32 [B, H, W, 1] in [0, 1], labels)`` (plus ``weights
        float32 [B]`` with ``balance="sample_weight"``). Attributes: ``bad_files`` (list of
        `BadFile` left out), ``num_examples`` (elements per epoch), ``class_names``.

    Raises:
        ValueError: bad arguments, labels outside `class_names`, missing masks, or unreadable
            files (named) when ``skip_bad`` is False.
    """
    preprocess, augment = _config_objects(preprocess, augment)
    image_size = _check_builder_arguments(
        preprocess, augment, batch_size=batch_size,
        choices=(("balance", balance, BALANCE_MODES), ("label_mode", label_mode, LABEL_MODES)),
    )
    if not training:  # augmentation, copies and balancing are training-only
        augment = AugmentConfig()
    seed_value = _resolve_seed(seed)
    rng = np.random.default_rng(seed_value)

    # Records: the file table and the usable images.
    copies = bool(augment.segmented_copies)
    paths, masks, label_idx, keep, bad = _read_records(
        records, class_names, need_masks=(preprocess.segment or copies) and mask_fn is None,
        skip_bad=skip_bad, validate=validate,
    )
    indices = np.asarray(keep, np.int64)
    if training and balance == "oversample":
        indices = _oversample(indices, label_idx, rng)

    # Copies: which image each element reads and whether it is CLAHE'd / lung-masked.
    entry, with_clahe, with_seg = plan_copies(
        indices, rng, add_clahe_fraction=augment.clahe_fraction if augment.clahe_mode == "add" else 0.0,
        segmented_copies=copies, segment=preprocess.segment, clahe=preprocess.clahe,
    )
    n = len(entry)
    columns = {
        "path": tf.constant([paths[i] for i in entry]),
        "mask_path": tf.constant([masks[i] for i in entry]),
        "label": tf.constant(label_idx[entry], tf.int32),
        "clahe": tf.constant(with_clahe),
        "segment": tf.constant(with_seg),
    }
    if training and balance == "sample_weight":
        kept = np.asarray(keep)
        weights = class_weights(([paths[i] for i in kept], label_idx[kept].tolist()), class_names)
        columns["weight"] = tf.constant(np.asarray([weights[int(c)] for c in label_idx[entry]], np.float32))
    ds = tf.data.Dataset.from_tensor_slices(columns)

    # Decode (cached and shuffled as the module docstring says), augment, batch.
    # The random CLAHE of "replace" mode comes before masking (CLAHE, then segment, as in the
    # paper), so then the mask travels with the image to the augment stage.
    mask_after_clahe = bool(with_seg.any()) and augment.replace_fraction > 0
    cache = resolve_cache(
        cache,
        dict(preprocess.to_dict(), any_seg=bool(with_seg.any()), mask_after_clahe=mask_after_clahe),
        columns,
        mask_fn,
    )
    # Where exact, CLAHE runs once per batch instead of in the decode stage (same bits, faster).
    per_batch = _clahe_per_batch(
        augment, with_clahe=with_clahe, with_seg=with_seg, cache=cache,
        clahe_backend=clahe_backend,
    )
    load = _decoder(
        preprocess, with_clahe=np.zeros_like(with_clahe) if per_batch else with_clahe,
        with_seg=with_seg, mask_fn=mask_fn, mask_for_augment=mask_after_clahe,
        clahe_backend=clahe_backend,
    )
    ds = _load_and_shuffle(
        ds, load, n=n, training=training, cache=cache, shuffle_buffer=shuffle_buffer, seed_value=seed_value
    )
    ds = _augment_stage(
        ds, augment, preprocess, mask_after_clahe=mask_after_clahe, seed_value=seed_value,
        clahe_backend=clahe_backend,
    )
    return _batch_stage(
        ds,
        image_size=image_size,
        num_classes=len(class_names),
        label_mode=label_mode,
        batch_size=batch_size,
        drop_remainder=drop_remainder,
        seed=seed,
        training=training,
        per_batch=_enhance_batches(preprocess) if per_batch else None,
        bad_files=bad,
        num_examples=n,
        class_names=list(class_names),
    )


# ----------------------------------------------------------------------------------------------
# Segmentation (U-Net)


def _segmentation_table(records):
    if isinstance(records, tuple) and len(records) == 2 and not hasattr(records, "path"):
        images = [os.fspath(p) for p in records[0]]
        masks = [os.fspath(m) if m else "" for m in records[1]]
        if len(images) != len(masks):
            raise ValueError(
                "`records` as (image_paths, mask_paths) needs lists of equal length. "
                f"Received: lengths {len(images)}, {len(masks)}"
            )
    else:
        images, _, masks = _as_table(records)
    missing = [p for p, m in zip(images, masks) if not m]
    if missing:
        raise ValueError(
            f"Segmentation training needs a mask per image (record.mask_path); {len(missing)} "
            f"image(s) have none, e.g. {missing[0]}"
        )
    return images, masks


def build_segmentation_dataset(
    records,
    *,
    preprocess: PreprocessConfig,
    augment: Optional[AugmentConfig] = None,
    batch_size: int,
    training: bool,
    seed: Optional[int] = None,
    cache: Union[bool, str] = False,
    shuffle_buffer: Optional[int] = None,
    skip_bad: bool = False,
    validate: bool = True,
    drop_remainder: bool = False,
    clahe_backend: str = "tf-xla",
) -> tf.data.Dataset:
    """Builds a batched U-Net data set of ``(images, masks)`` with joint augmentation.

    Args:
        records: records with ``mask_path`` (e.g. the lung-masks set; several masks joined by "|"
            are merged), or a tuple ``(image_paths, mask_paths)``. Mask pixels above 0.5 of full
            scale are lung (255 yes, V7's 127 "Ignore" no).
        preprocess: `pipelines.config.PreprocessConfig` with ``segment`` off.
        augment: `pipelines.config.AugmentConfig` (training only) with ``clahe_mode`` "replace"
            and no segmented copies: ``clahe_fraction`` is the probability, redrawn each epoch,
            that an image is CLAHE-enhanced (so the U-Net also segments enhanced images).
        Others: as `build_dataset`; rotation/shift/zoom move image and mask together (image
            bilinear, mask nearest neighbour).

    Returns:
        A `tf.data.Dataset` of ``(float32 [B, H, W, 1] in [0, 1], float32 [B, H, W, 1] in {0, 1})``
        with attributes ``bad_files`` and ``num_examples``.
    """
    preprocess, augment = _config_objects(preprocess, augment, segmentation=True)
    image_size = _check_builder_arguments(preprocess, augment, batch_size=batch_size)
    if not training:
        augment = AugmentConfig()
    images, masks = _segmentation_table(records)
    _check_not_empty(images)
    keep, bad = _usable(images, masks, skip_bad, validate)
    seed_value = _resolve_seed(seed)
    n = len(keep)
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "path": tf.constant([images[i] for i in keep]),
            "mask_path": tf.constant([masks[i] for i in keep]),
        }
    )

    pre = dict(preprocess.as_kwargs(), clahe=bool(preprocess.clahe), clahe_backend=clahe_backend)

    def load(row):
        image = preprocess_image(D.read_image(row["path"]), **pre)
        mask = T.resize_mask(D.read_mask(row["mask_path"]), image_size, preprocess.resize_mode)
        return image, mask

    cache = resolve_cache(
        cache,
        dict(preprocess.to_dict(), task="segmentation"),
        {"path": [images[i] for i in keep], "mask_path": [masks[i] for i in keep]},
    )
    ds = _load_and_shuffle(
        ds, load, n=n, training=training, cache=cache, shuffle_buffer=shuffle_buffer, seed_value=seed_value
    )

    fraction = float(augment.clahe_fraction)
    geometric = augment.geometric

    def apply(pair, draw):
        image, mask = pair
        u = _element_uniform(seed_value, draw)
        if fraction > 0:
            image = _random_clahe(
                image, u, fraction, preprocess.clip_limit, preprocess.tile_grid_size, clahe_backend
            )
        if geometric:
            matrix = _random_affine_matrix(u, image_size, augment.rotation_degrees, augment.shift, augment.zoom)
            image = T.affine_transform(image, matrix, interpolation="bilinear", fill_mode=augment.fill_mode)
            mask = T.affine_transform(mask, matrix, interpolation="nearest", fill_mode=augment.fill_mode)
        return image, mask

    if fraction > 0 or geometric:
        ds = _map_with_draws(ds, apply, seed_value)
    return _batch_and_finish(
        ds,
        batch_size=batch_size,
        drop_remainder=drop_remainder,
        seed=seed,
        training=training,
        bad_files=bad,
        num_examples=n,
    )
