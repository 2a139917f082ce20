"""In-memory training data for Keras backends other than TensorFlow (Pillow + NumPy only).

`training.data.prepare_data` selects and splits the records the same way for every backend (same
readers, same patient split, same `splits.csv`); on JAX or PyTorch it then calls `build_bundle`
here instead of building `tf.data` pipelines. Every image is decoded and resized once into a
float32 array, so an epoch only gathers batches.

The numbers follow `pipelines` (checked by tests/test_portable_training.py):

- decoding as `pipelines.decode`: 8-bit samples ``v * float32(1 / 255)``, 16-bit PNG
  ``v * float32(1 / 65535)``, RGB(A) to BT.601 luma in float32, alpha dropped, first GIF frame;
- resizing as `pipelines.transforms.resize`: bilinear with an antialiasing triangle filter when
  shrinking (Pillow's float "F" mode resampling, the same filter), "stretch" or "pad";
- CLAHE as `pipelines.transforms.apply_clahe`: on `round(255 x)` (half to even), OpenCV's
  algorithm through `cxr_cascade.numpy_clahe`, back to ``v * float32(1 / 255)``;
- rotation as `pipelines.transforms.affine_transform` (same matrix, bilinear, black fill).

The recipe per epoch is that of `pipelines.datasets.build_dataset`: the epoch's entries (balance
by oversampling, CLAHE copies in "add" mode) come from `numpy.random.default_rng(epoch seed)` with
the same calls in the same order, so an epoch holds the same images on both engines; the order
and the per-image draws (CLAHE in "replace" mode, rotation angle) come from that NumPy generator
here and from TensorFlow's stateless ops there, so they differ between engines but are, on each,
a pure function of `(seed, epoch)`.

Stage 2's segmented copies (`augment.segmented_copies`) follow `pipelines.datasets.plan_copies`:
every element (original and "add"-mode CLAHE copy) is repeated once, lung-masked
(``image * (lung > 0.5)``, after its CLAHE, as `pipelines.preprocess.preprocess_image`), the lung
from the records' mask files or from a U-Net (`mask_fn`, run once per training image on the
resized image before CLAHE, as the TF pipeline does).
"""

from __future__ import annotations

import concurrent.futures
import math
import os
from typing import Optional, Sequence

import keras
import numpy as np
from PIL import Image, UnidentifiedImageError

from cxr_cascade.numpy_clahe import clahe_numpy
from cxr_cascade.training.bundle import DataBundle
from cxr_cascade.training.seeds import epoch_seed
from pipelines.balance import balanced_weights, oversample
from pipelines.config import NO_BALANCE
from pipelines.image_policy import image_bytes_problem, png_sample_bits, png_sbit

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # pipelines.decode.LUMA_WEIGHTS (ITU-R BT.601)
MASK_SEPARATOR = "|"  # pipelines.decode.MASK_SEPARATOR
_INV255 = np.float32(1.0 / 255.0)


# ---------------------------------------------------------------------------- decode + resize
def decode_image_file(path: str) -> np.ndarray:
    """One image file -> float32 ``[H, W]`` in ``[0, 1]``, as `pipelines.decode.read_image`.

    The decode policy (`pipelines.image_policy`: PNG / JPEG only, no CMYK, the pixel cap) is
    checked on the file's bytes first, as every other reader does.

    Raises:
        ValueError: naming the file, for a file the policy refuses or Pillow cannot decode.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
            problem = image_bytes_problem(data)
    except OSError as error:
        raise ValueError(f"{path}: cannot read image ({error.strerror or error})") from None
    if problem is not None:
        raise ValueError(f"{path}: {problem}")
    try:
        with Image.open(path) as image:
            if image.mode in ("I;16", "I;16B", "I;16L", "I") and image.format == "PNG":
                # read by its real bit depth, as `pipelines.decode.decode_image` does
                samples = np.asarray(image)
                bits = png_sample_bits(int(samples.max()), png_sbit(data))
                return samples.astype(np.float32) * np.float32(1.0 / float((1 << bits) - 1))
            if image.mode in ("P", "PA"):
                has_alpha = image.mode == "PA" or "transparency" in image.info
                image = image.convert("RGBA" if has_alpha else "RGB")
            elif image.mode == "1":
                image = image.convert("L")
            elif image.mode not in ("L", "LA", "RGB", "RGBA"):
                image = image.convert("RGB")
            pixels = np.asarray(image)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ValueError(f"{path}: cannot decode image ({error})") from None
    unit = pixels.astype(np.float32) * _INV255
    if unit.ndim == 2:
        return unit
    if unit.shape[-1] < 3:
        return unit[..., 0]  # grey + alpha: the grey channel
    w = [np.float32(v) for v in LUMA_WEIGHTS]
    return unit[..., 0] * w[0] + unit[..., 1] * w[1] + unit[..., 2] * w[2]


def _resample(image: np.ndarray, height: int, width: int) -> np.ndarray:
    resized = Image.fromarray(np.ascontiguousarray(image, np.float32)).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    return np.asarray(resized, dtype=np.float32)


def resize(image: np.ndarray, image_size: int | tuple[int, int], resize_mode: str = "stretch") -> np.ndarray:
    """float32 ``[H, W]`` -> ``[height, width]`` clipped to ``[0, 1]``, as `pipelines.transforms.resize`."""
    out_h, out_w = (image_size, image_size) if isinstance(image_size, int) else image_size
    h, w = image.shape
    if resize_mode == "stretch":
        out = image if (h, w) == (out_h, out_w) else _resample(image, out_h, out_w)
    elif resize_mode == "pad":
        scale = min(out_h / h, out_w / w)
        new_h = int(np.clip(np.round(h * scale), 1, out_h))
        new_w = int(np.clip(np.round(w * scale), 1, out_w))
        scaled = image if (new_h, new_w) == (h, w) else _resample(image, new_h, new_w)
        out = np.zeros((out_h, out_w), np.float32)
        top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
        out[top : top + new_h, left : left + new_w] = scaled
    else:
        raise ValueError(
            f"`resize_mode` must be one of ('stretch', 'pad'). Received: resize_mode={resize_mode!r}"
        )
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def load_image(path: str, image_size, resize_mode: str = "stretch") -> np.ndarray:
    """Decode + resize: float32 ``[height, width]``, the pipelines' model input before CLAHE."""
    return resize(decode_image_file(path), image_size, resize_mode)


def load_mask(mask_path: str, image_size, resize_mode: str = "stretch") -> np.ndarray:
    """{0, 1} float32 ``[height, width]``: grey > 0.5 (union of "|"-joined files), resized, > 0.5."""
    parts = [p.strip() for p in mask_path.split(MASK_SEPARATOR) if p.strip()]
    lung = None
    for part in parts:
        mask = (decode_image_file(part) > 0.5).astype(np.float32)
        lung = mask if lung is None else np.maximum(lung, mask)
    if lung is None:
        raise ValueError(f"no mask file in mask_path={mask_path!r}")
    return (resize(lung, image_size, resize_mode) > 0.5).astype(np.float32)


def clahe(image: np.ndarray, clip_limit: float = 2.0, tile_grid_size: Sequence[int] = (8, 8)) -> np.ndarray:
    """CLAHE of a float image in ``[0, 1]``, as `pipelines.transforms.apply_clahe`.

    `tile_grid_size` is OpenCV's (tiles along the width, tiles along the height).
    """
    quantised = np.round(np.clip(image, 0.0, 1.0).astype(np.float32) * np.float32(255.0)).astype(np.uint8)
    enhanced = clahe_numpy(quantised, clip_limit, (int(tile_grid_size[1]), int(tile_grid_size[0])))
    return enhanced.astype(np.float32) * _INV255


def rotation_matrix(height: int, width: int, angle_degrees: float) -> np.ndarray:
    """`pipelines.transforms.affine_matrix` for a rotation only: output pixel -> input pixel."""
    theta = np.float32(angle_degrees) * np.float32(math.pi / 180.0)
    cos, sin = np.cos(theta, dtype=np.float32), np.sin(theta, dtype=np.float32)
    cx, cy = np.float32((width - 1) / 2.0), np.float32((height - 1) / 2.0)
    a0, a1, b0, b1 = cos, -sin, sin, cos
    return np.array([a0, a1, cx - (a0 * cx + a1 * cy), b0, b1, cy - (b0 * cx + b1 * cy)], np.float32)


def affine_transform(image: np.ndarray, matrix: np.ndarray, interpolation: str = "bilinear") -> np.ndarray:
    """`pipelines.transforms.affine_transform` with a constant black fill, for ``[H, W]``."""
    h, w = image.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    a0, a1, a2, b0, b1, b2 = matrix[:6]
    x_in = a0 * xs + a1 * ys + a2
    y_in = b0 * xs + b1 * ys + b2

    def read(yi: np.ndarray, xi: np.ndarray) -> np.ndarray:
        inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
        return np.where(inside, image[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)], 0.0)

    if interpolation == "nearest":
        # Half away from zero, as std::round in TensorFlow's kernel.
        rx = (np.sign(x_in) * np.floor(np.abs(x_in) + 0.5)).astype(np.int64)
        ry = (np.sign(y_in) * np.floor(np.abs(y_in) + 0.5)).astype(np.int64)
        return read(ry, rx).astype(np.float32)
    x0, y0 = np.floor(x_in), np.floor(y_in)
    fx, fy = x_in - x0, y_in - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    top = (1 - fx) * read(y0, x0) + fx * read(y0, x0 + 1)
    bottom = (1 - fx) * read(y0 + 1, x0) + fx * read(y0 + 1, x0 + 1)
    out = (1 - fy) * top + fy * bottom
    outside = (x_in < -1) | (x_in > w) | (y_in < -1) | (y_in > h)
    return np.where(outside, 0.0, out).astype(np.float32)


# ---------------------------------------------------------------------------- loading many
def load_images(paths: Sequence[str], image_size, resize_mode: str = "stretch",
                workers: Optional[int] = None) -> np.ndarray:
    """float32 ``[N, height, width]``; a ValueError lists every file that cannot be decoded."""
    out_h, out_w = (image_size, image_size) if isinstance(image_size, int) else image_size
    out = np.empty((len(paths), out_h, out_w), np.float32)
    bad: list[str] = []

    def one(index: int) -> None:
        try:
            out[index] = load_image(paths[index], image_size, resize_mode)
        except (ValueError, FileNotFoundError) as error:
            bad.append(str(error) if str(paths[index]) in str(error) else f"{paths[index]}: {error}")

    workers = workers or min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(len(paths))))
    if bad:
        shown = "\n".join(f"  {b}" for b in sorted(bad)[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise ValueError(f"{len(bad)} of {len(paths)} image(s) cannot be used:\n{shown}{more}")
    return out


# ---------------------------------------------------------------------------- batches
class ArrayDataset(keras.utils.PyDataset):
    """Batches of ``(images [B, H, W, 1], targets[, sample weights])`` from in-memory arrays.

    Args:
        images: float32 ``[N, H, W]``; `enhanced`: their CLAHE versions (or None).
        targets: int32 labels ``[N]`` or {0, 1} masks ``[N, H, W]``.
        entries: the epoch's element -> image index; `use_clahe`, `angles`, `weights` per element.
    """

    def __init__(self, images, targets, *, batch_size: int, entries=None, enhanced=None,
                 use_clahe=None, angles=None, weights=None, drop_remainder: bool = False,
                 lungs=None, use_lung=None):
        super().__init__(workers=1, use_multiprocessing=False)
        self.images, self.targets, self.enhanced = images, targets, enhanced
        # lungs: {0, 1} float32 [N, H, W] per image; use_lung: bool per element (segmented copy).
        self.lungs, self.use_lung = lungs, use_lung
        self.entries = np.arange(len(images)) if entries is None else np.asarray(entries)
        self.use_clahe, self.angles, self.weights = use_clahe, angles, weights
        self.batch_size = int(batch_size)
        self.drop_remainder = drop_remainder
        n = len(self.entries)
        self.batches = n // self.batch_size if drop_remainder else math.ceil(n / self.batch_size)

    def __len__(self) -> int:
        return self.batches

    @property
    def num_batches(self) -> int:
        return self.batches

    def __getitem__(self, index: int):
        if not 0 <= index < self.batches:
            raise IndexError(index)
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        rows = self.entries[part]
        x = self.images[rows]
        if self.use_clahe is not None:
            x = np.where(self.use_clahe[part][:, None, None], self.enhanced[rows], x)
        if self.use_lung is not None:  # CLAHE, then the lung mask (the paper's order)
            x = np.where(self.use_lung[part][:, None, None], x * self.lungs[rows], x)
        y = self.targets[rows]
        if self.angles is not None:
            h, w = x.shape[1:]
            x = x.copy()
            y = y.copy() if y.ndim == 3 else y
            for i, angle in enumerate(self.angles[part]):
                if angle:
                    matrix = rotation_matrix(h, w, float(angle))
                    x[i] = affine_transform(x[i], matrix)
                    if y.ndim == 3:
                        y[i] = affine_transform(y[i], matrix, interpolation="nearest")
        x = x[..., None]
        y = y[..., None] if y.ndim == 3 else y
        if self.weights is not None:
            return x, y, self.weights[part]
        return x, y

    def __iter__(self):
        for index in range(self.batches):
            yield self[index]

    def skip(self, count: int) -> "ArrayDataset":
        """The same epoch without its first `count` batches (as `tf.data.Dataset.skip`): a run
        resumed inside an epoch trains on exactly the batches it had not reached."""
        if not 0 <= count <= self.batches:
            raise ValueError(f"`count` must be in [0, {self.batches}]. Received: count={count}")
        start = count * self.batch_size

        def tail(values):
            return None if values is None else values[start:]

        return ArrayDataset(self.images, self.targets, batch_size=self.batch_size,
                            entries=self.entries[start:], enhanced=self.enhanced,
                            use_clahe=tail(self.use_clahe), angles=tail(self.angles),
                            weights=tail(self.weights),
                            drop_remainder=self.drop_remainder)


# ---------------------------------------------------------------------------- the bundle
def _training_lungs(part: list, images: np.ndarray, mask_fn, size, resize_mode: str,
                    name: str) -> np.ndarray:
    """{0, 1} float32 ``[N, H, W]`` lungs of the training images: the U-Net's probability > 0.5
    on each resized image (before CLAHE), or the records' mask files when `mask_fn` is None."""
    if mask_fn is not None:
        out = np.empty_like(images)
        for i, image in enumerate(images):
            probability = keras.ops.convert_to_numpy(mask_fn(image[..., None]))
            out[i] = (np.asarray(probability, np.float32).reshape(image.shape) > 0.5)
        return out
    missing = [r.path for r in part if not r.mask_path]
    if missing:
        raise ValueError(
            f"experiment {name!r}: augment.segmented_copies needs lung masks: pass --unet RUN_DIR "
            f"or give data whose records have masks; {len(missing)} training image(s) have none, "
            f"e.g. {missing[0]}. Received: augment.segmented_copies=True"
        )
    return np.stack([load_mask(r.mask_path, size, resize_mode) for r in part])


def build_bundle(config, records: list, mask_fn=None):
    """`training.bundle.DataBundle` of `ArrayDataset`s for split `records` (see the module docstring).

    Preprocessing and augmentation come from the run's `config.preprocess` / `config.augment`
    (resize mode, CLAHE clip limit and tile grid, CLAHE fraction and mode, rotation, segmented
    copies); settings this NumPy path does not implement are refused with one `ValueError`
    naming them.

    Args:
        mask_fn: ``image float32 [S, S, 1] -> lung probability [S, S, 1]`` (a U-Net,
            `cxr_cascade.artifacts.load_unet_mask_fn`) for the segmented copies; None: the training
            records' mask files.
    """
    # Less the random draws that `augment.placement="model"` moves into the network.
    pre, aug = config.preprocess, config.augment.for_host()
    unsupported = {
        "augment.shift": aug.shift,
        "augment.zoom": aug.zoom,
        "preprocess.clahe": pre.clahe,
        "preprocess.segment": pre.segment,
    }
    unsupported = {key: value for key, value in unsupported.items() if value}
    if unsupported:
        listed = ", ".join(f"{key}={value!r}" for key, value in unsupported.items())
        raise ValueError(
            f"experiment {config.name!r}: {listed} is built by the TensorFlow pipeline only; train "
            "it with --backend tensorflow or turn it off with --set. Received: " + listed
        )
    clip_limit, tile_grid_size, resize_mode = pre.clip_limit, pre.tile_grid_size, pre.resize_mode
    size = pre.image_size
    parts = {name: [r for r in records if r.split == name] for name in ("train", "val", "test")}
    unet = config.task == "unet"
    class_names: tuple[str, ...] = () if unet else tuple(config.classes)
    index = {name: i for i, name in enumerate(class_names)}

    def arrays(part: list):
        images = load_images([r.path for r in part], size, resize_mode)
        if unet:
            targets = np.stack([load_mask(r.mask_path, size, resize_mode) for r in part])
        else:
            targets = np.array([index[r.label] for r in part], np.int32)
        return images, targets

    train_x, train_y = arrays(parts["train"])
    evaluation = {name: arrays(part) for name, part in parts.items() if name != "train" and part}
    batch = config.batch_size
    drop = len(train_x) >= batch  # as the TF path: no ragged last batch for BatchNorm / MoEx
    fraction = float(aug.clahe_fraction)
    mode = "replace" if unet else aug.clahe_mode
    enhanced = None
    if fraction > 0:
        enhanced = np.stack([clahe(im, clip_limit, tile_grid_size) for im in train_x])
    lungs = None
    if aug.segmented_copies and not unet:
        lungs = _training_lungs(parts["train"], train_x, mask_fn, size, resize_mode, config.name)
    balance = NO_BALANCE if unet else config.balance
    class_w = None
    if balance == "sample_weight":
        class_w = balanced_weights(train_y, len(class_names)).astype(np.float32)

    def make_train(epoch: int) -> ArrayDataset:
        rng = np.random.default_rng(epoch_seed(config.seed, epoch))
        entries = np.arange(len(train_x))
        if balance == "oversample":
            entries = oversample(entries, train_y, rng)
        flags = np.zeros(len(entries), bool)
        if fraction > 0 and mode == "add":
            chosen = rng.permutation(len(entries))[: int(round(fraction * len(entries)))]
            entries = np.concatenate([entries, entries[np.sort(chosen)]])
            flags = np.concatenate([flags, np.ones(len(chosen), bool)])
        seg = np.zeros(len(entries), bool)
        if lungs is not None:  # pipelines.datasets.plan_copies: every element again, masked
            entries, flags = np.concatenate([entries, entries]), np.concatenate([flags, flags])
            seg = np.concatenate([seg, np.ones(len(seg), bool)])
        order = rng.permutation(len(entries))
        entries, flags, seg = entries[order], flags[order], seg[order]
        if fraction > 0 and mode == "replace":
            flags = rng.random(len(entries)) < fraction
        angles = None
        if aug.rotation_degrees > 0:
            angles = ((2.0 * rng.random(len(entries)) - 1.0) * aug.rotation_degrees).astype(np.float32)
        weights = class_w[train_y[entries]] if class_w is not None else None
        return ArrayDataset(
            train_x, train_y, batch_size=batch, entries=entries, enhanced=enhanced,
            use_clahe=flags if fraction > 0 else None, angles=angles, weights=weights,
            drop_remainder=drop, lungs=lungs, use_lung=seg if lungs is not None else None,
        )

    first = make_train(0)
    cache = {0: first}

    def make_train_cached(epoch: int) -> ArrayDataset:
        return cache.pop(epoch) if epoch in cache else make_train(epoch)

    def evaluation_set(name: str) -> Optional[ArrayDataset]:
        if name not in evaluation:
            return None
        images, targets = evaluation[name]
        return ArrayDataset(images, targets, batch_size=batch)

    return DataBundle(
        class_names=class_names,
        records=records,
        make_train=make_train_cached,
        val=evaluation_set("val"),
        test=evaluation_set("test"),
        steps_per_epoch=max(1, len(first)),
    )
