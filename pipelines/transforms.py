"""Image transforms for the tf.data pipelines: resize, pad, CLAHE, lung masking, random affine.

All functions are TensorFlow graph ops on float32 images in ``[0, 1]`` of shape ``[H, W, 1]``
(one image) unless stated, so they run inside `tf.data.Dataset.map`, a `tf.function` and an
exported SavedModel alike.

Geometry conventions:

* Pixel ``(x, y)`` = (column, row) index, centre of the image at ``((W - 1) / 2, (H - 1) / 2)``,
  as in Keras' ``RandomRotation``.
* A positive angle rotates the content counter-clockwise as displayed (row 0 at the top), so
  ``+90`` degrees equals ``np.rot90(image, k=1)`` on a square image.
* Rotation is drawn uniformly in ``[-rotation_degrees, +rotation_degrees]``: the paper's "+-30
  degrees" is ``rotation_degrees=30``, i.e. Keras ``RandomRotation(factor=30 / 360)``.
* ``shift`` is a fraction of the image size (Keras ``RandomTranslation``); ``zoom`` draws a
  scale in ``[1 - zoom, 1 + zoom]`` where a scale above 1 enlarges the content (zooms in).
* Uncovered pixels are filled with a constant (0 = black, the X-ray background) by default.
"""

from __future__ import annotations

import functools

import math
import numbers
from typing import Callable, Optional, Sequence, Union

import cv2
import numpy as np
import tensorflow as tf

from pipelines.clahe import clahe
from pipelines.config import (  # noqa: F401  (re-exported: the TF-free home of these checks)
    FILL_MODES,
    RESIZE_MODES,
    check_fill_mode,
    check_resize_mode,
    normalize_image_size,
)
from pipelines.decode import to_unit_float

__all__ = [
    "RESIZE_MODES",
    "FILL_MODES",
    "normalize_image_size",
    "resize",
    "resize_mask",
    "to_uint8",
    "apply_clahe",
    "apply_clahe_batch",
    "apply_mask",
    "affine_matrix",
    "affine_transform",
    "random_affine_matrix",
]

CLAHE_BACKENDS = ("tf", "tf-xla", "cv2")

ImageSize = Union[int, Sequence[int]]


def resize(image: tf.Tensor, image_size: ImageSize, resize_mode: str = "stretch") -> tf.Tensor:
    """Resizes one image ``[H, W, C]`` to ``image_size``.

    Bilinear with an antialiasing (triangle) filter when shrinking, so that a 2,900 px original
    and a 224 px copy of it give nearly the same 224 px input.

    Args:
        image: float32 ``[H, W, C]``, H and W possibly unknown until run time.
        image_size: ``S`` or ``(height, width)`` of the output.
        resize_mode: "stretch" scales each axis on its own (the aspect ratio changes); "pad"
            scales both axes by the same factor so the longer side fits, then pads with zeros
            (black) to the output size, centred (the extra pixel of an odd margin at the
            bottom/right).

    Returns:
        float32 ``[height, width, C]`` (static shape), values clipped to ``[0, 1]``.
    """
    out_h, out_w = normalize_image_size(image_size)
    check_resize_mode(resize_mode)
    image = tf.convert_to_tensor(image, dtype=tf.float32)
    if resize_mode == "stretch":
        shape = tf.shape(image)
        same = tf.logical_and(tf.equal(shape[0], out_h), tf.equal(shape[1], out_w))
        # An image already at the output size is passed through untouched (exactly, and without
        # the cost of the antialiasing kernel, which runs even at scale 1).
        out = tf.cond(
            same,
            lambda: tf.identity(image),
            lambda: tf.image.resize(image, [out_h, out_w], method="bilinear", antialias=True),
        )
    else:
        shape = tf.shape(image)
        h = tf.cast(shape[0], tf.float64)
        w = tf.cast(shape[1], tf.float64)
        scale = tf.minimum(out_h / h, out_w / w)
        new_h = tf.clip_by_value(tf.cast(tf.round(h * scale), tf.int32), 1, out_h)
        new_w = tf.clip_by_value(tf.cast(tf.round(w * scale), tf.int32), 1, out_w)
        same = tf.logical_and(tf.equal(new_h, shape[0]), tf.equal(new_w, shape[1]))
        scaled = tf.cond(
            same,
            lambda: tf.identity(image),
            lambda: tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear", antialias=True),
        )
        top = (out_h - new_h) // 2
        left = (out_w - new_w) // 2
        out = tf.image.pad_to_bounding_box(scaled, top, left, out_h, out_w)
    out = tf.clip_by_value(out, 0.0, 1.0)
    out.set_shape([out_h, out_w, image.shape[-1]])
    return out


def resize_mask(mask: tf.Tensor, image_size: ImageSize, resize_mode: str = "stretch") -> tf.Tensor:
    """Resizes a {0, 1} mask ``[H, W, 1]`` with the geometry of `resize` and thresholds at 0.5."""
    resized = resize(tf.cast(mask, tf.float32), image_size, resize_mode)
    return tf.cast(resized > 0.5, tf.float32)


def to_uint8(image: tf.Tensor) -> tf.Tensor:
    """float ``[0, 1]`` -> uint8 ``round(255 * x)`` (half to even), saturated."""
    image = tf.clip_by_value(tf.convert_to_tensor(image, tf.float32), 0.0, 1.0)
    return tf.cast(tf.round(image * 255.0), tf.uint8)


def _cv2_clahe_numpy(image: np.ndarray, clip_limit: float, tile_grid_size) -> np.ndarray:
    op = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=tuple(int(t) for t in tile_grid_size))
    return op.apply(np.ascontiguousarray(image[..., 0]))[..., None]


@functools.lru_cache(maxsize=32)
def _xla_apply_clahe(clip_limit: float, tile_grid_size: tuple):
    """`apply_clahe(..., backend="tf-xla")` for static shapes: one XLA-compiled function."""
    def apply(image):
        enhanced = clahe(to_uint8(image), clip_limit=clip_limit, tile_grid_size=tile_grid_size)
        return to_unit_float(enhanced, 255)

    return tf.function(apply, jit_compile=True)


def apply_clahe(
    image: tf.Tensor,
    clip_limit: float = 2.0,
    tile_grid_size: Sequence[int] = (8, 8),
    backend: str = "tf",
) -> tf.Tensor:
    """CLAHE on a float image ``[H, W, 1]`` in ``[0, 1]``, returned as float ``v / 255``.

    The image is quantised to 8 bit (`to_uint8`) because CLAHE is defined, like OpenCV's, on
    256-bin histograms; 16-bit sources therefore lose their extra depth in enhanced copies.

    Args:
        backend: "tf" (`pipelines.clahe.clahe`, graph ops, exportable), "tf-xla"
            (the same ops compiled with XLA: identical output, several times faster on CPU;
            for tf.data, where images have one fixed size after resizing, not for exported
            graphs, which must not require XLA at serving time) or "cv2" (OpenCV through
            `tf.numpy_function`: same numbers, not exportable; for benchmarks).
    """
    if backend not in CLAHE_BACKENDS:
        raise ValueError(
            f"`clahe_backend` must be one of {CLAHE_BACKENDS}. Received: clahe_backend={backend!r}"
        )
    image = tf.convert_to_tensor(image, tf.float32)
    if backend == "tf-xla" and image.shape.is_fully_defined():
        # Quantisation, CLAHE and the way back as one XLA computation (the same ops and bits;
        # two fewer passes over the image and kernel launches per element in tf.data).
        return _xla_apply_clahe(float(clip_limit), tuple(int(t) for t in tile_grid_size))(image)
    quantised = to_uint8(image)
    if backend in ("tf", "tf-xla"):
        enhanced = clahe(
            quantised,
            clip_limit=clip_limit,
            tile_grid_size=tile_grid_size,
            jit_compile=backend == "tf-xla",
        )
    else:
        enhanced = tf.numpy_function(
            lambda x: _cv2_clahe_numpy(x, clip_limit, tile_grid_size),
            [quantised],
            tf.uint8,
            stateful=False,
        )
    enhanced = tf.reshape(enhanced, tf.shape(quantised))
    enhanced.set_shape(image.shape)
    return to_unit_float(enhanced, 255)


def apply_clahe_batch(
    images: tf.Tensor,
    clip_limit: float = 2.0,
    tile_grid_size: Sequence[int] = (8, 8),
) -> tf.Tensor:
    """`apply_clahe(..., backend="tf-xla")` of every image of a batch, as one XLA call.

    Each image is enhanced on its own (`pipelines.clahe` treats every plane separately), so the
    result is bit-identical to `apply_clahe` image by image; a batch runs about twice as fast per
    image as single images (`benchmarks/bench_clahe.py`: 0.7 vs 1.4 ms at 512 px on 2 cores).

    Inside a graph (e.g. a `tf.data.Dataset.map` after ``.batch()``) the compiled computation is
    dispatched through `tf.py_function`: run by tf.data's own function runtime, the same XLA
    computation measured 5-7 ms per 512 px image at batch 8 (slower than one image per call),
    dispatched eagerly 0.9 ms. So this needs a Python interpreter (the GIL only for the call
    itself) and does not belong in exported graphs; serving keeps `apply_clahe`.

    Args:
        images: float32 ``[N, H, W, 1]`` in ``[0, 1]``, H and W known statically (N may not be).
        clip_limit, tile_grid_size: CLAHE settings (OpenCV's).

    Returns:
        float32 ``[N, H, W, 1]``, values ``v / 255``.

    Raises:
        ValueError: `images` not of rank 4 with static height, width and one channel.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape.rank != 4 or not images.shape[1:].is_fully_defined() or images.shape[-1] != 1:
        raise ValueError(
            "`images` must have shape [N, H, W, 1] with static H and W. "
            f"Received: images.shape={images.shape}"
        )
    enhance = _xla_apply_clahe(float(clip_limit), tuple(int(t) for t in tile_grid_size))
    if tf.executing_eagerly():
        return enhance(images)
    out = tf.py_function(enhance, [images], tf.float32, name="clahe_batch")
    out.set_shape(images.shape)
    return out


def apply_mask(image: tf.Tensor, mask: tf.Tensor, threshold: float = 0.5) -> tf.Tensor:
    """Keeps the lung: ``image * (mask > threshold)``; everything outside becomes 0 (black).

    Args:
        image: float ``[H, W, C]`` (or batched ``[N, H, W, C]``).
        mask: float ``[H, W, 1]`` of the same size: a binary mask or a segmentation model's
            probabilities (thresholded here).
    """
    image = tf.convert_to_tensor(image, tf.float32)
    keep = tf.cast(tf.convert_to_tensor(mask, tf.float32) > threshold, tf.float32)
    return image * keep


def affine_matrix(
    height,
    width,
    angle_degrees=0.0,
    scale=1.0,
    shift_x=0.0,
    shift_y=0.0,
) -> tf.Tensor:
    """The 8-vector of `tf.raw_ops.ImageProjectiveTransformV3` for rotate + zoom + shift.

    The forward map sends an input pixel ``p`` to ``c + scale * R(angle) (p - c) + t`` (centre
    ``c``, shift ``t`` in pixels); the op needs the inverse (output pixel -> input pixel), which is
    what this returns: ``[a0, a1, a2, b0, b1, b2, 0, 0]`` with ``x_in = a0 x + a1 y + a2`` and
    ``y_in = b0 x + b1 y + b2``.

    Args:
        height, width: image size in pixels (Python numbers or scalar tensors).
        angle_degrees: counter-clockwise rotation as displayed.
        scale: content scale, > 1 zooms in.
        shift_x, shift_y: translation in pixels (right and down are positive).

    Returns:
        float32 ``[8]``.
    """
    f = lambda v: tf.cast(tf.convert_to_tensor(v), tf.float32)  # noqa: E731
    theta = f(angle_degrees) * (math.pi / 180.0)
    scale, tx, ty = f(scale), f(shift_x), f(shift_y)
    cx = (f(width) - 1.0) / 2.0
    cy = (f(height) - 1.0) / 2.0
    cos = tf.cos(theta) / scale
    sin = tf.sin(theta) / scale
    # Inverse rotation R(-angle) in (x right, y down) coordinates: [[cos, -sin], [sin, cos]].
    a0, a1 = cos, -sin
    b0, b1 = sin, cos
    ox, oy = cx + tx, cy + ty
    a2 = cx - (a0 * ox + a1 * oy)
    b2 = cy - (b0 * ox + b1 * oy)
    zero = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zero, zero])


def affine_transform(
    image: tf.Tensor,
    transform: tf.Tensor,
    *,
    interpolation: str = "bilinear",
    fill_mode: str = "constant",
    fill_value: float = 0.0,
) -> tf.Tensor:
    """Applies an `affine_matrix` to one image ``[H, W, C]`` (output size = input size).

    Args:
        interpolation: "bilinear" for images, "nearest" for masks (values stay in the input set,
            so a binary mask stays binary).
        fill_mode: "constant" (default, ``fill_value``), "reflect", "wrap" or "nearest", as in Keras.
    """
    if interpolation not in ("bilinear", "nearest"):
        raise ValueError(
            "`interpolation` must be 'bilinear' or 'nearest'. "
            f"Received: interpolation={interpolation!r}"
        )
    check_fill_mode(fill_mode)
    image = tf.convert_to_tensor(image)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=tf.reshape(tf.cast(transform, tf.float32), [1, 8]),
        output_shape=tf.shape(image)[:2],
        fill_value=tf.cast(fill_value, tf.float32),
        interpolation=interpolation.upper(),
        fill_mode=fill_mode.upper(),
    )[0]
    out.set_shape(image.shape)
    return out


def random_affine_matrix(
    uniforms: tf.Tensor,
    height,
    width,
    *,
    rotation_degrees: float = 0.0,
    shift: float = 0.0,
    zoom: float = 0.0,
) -> tf.Tensor:
    """`affine_matrix` from four uniforms in ``[0, 1)`` (angle, shift x, shift y, zoom).

    Taking the uniforms as input (drawn by the caller with a stateless op keyed by seed and element)
    keeps this function deterministic and lets an image and its mask share one transform.
    """
    u = tf.convert_to_tensor(uniforms, tf.float32)
    angle = (2.0 * u[0] - 1.0) * float(rotation_degrees)
    shift_x = (2.0 * u[1] - 1.0) * float(shift) * tf.cast(width, tf.float32)
    shift_y = (2.0 * u[2] - 1.0) * float(shift) * tf.cast(height, tf.float32)
    scale = 1.0 + (2.0 * u[3] - 1.0) * float(zoom)
    return affine_matrix(height, width, angle, scale, shift_x, shift_y)


def check_augmentation(rotation_degrees: float, shift: float, zoom: float) -> None:
    """ValueErrors for out-of-range augmentation settings."""
    for name, value, upper in (
        ("rotation_degrees", rotation_degrees, 180.0),
        ("shift", shift, 1.0),
        ("zoom", zoom, 0.999),
    ):
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value <= upper:
            raise ValueError(f"`{name}` must be a number in [0, {upper}]. Received: {name}={value!r}")


MaskFn = Optional[Callable[[tf.Tensor], tf.Tensor]]
