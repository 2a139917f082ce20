"""CLAHE and random rotation as Keras layers in `keras.ops`: preprocessing inside the model.

The tf.data pipelines (`pipelines.clahe`, `pipelines.transforms`) run on the host's CPU cores,
which at 512 px feed a GPU about a tenth of what it trains on. The layers here put the
same two steps inside the model, so they run on the accelerator under any Keras backend
(TensorFlow, JAX, PyTorch):

* `clahe` / `AdaptiveEqualization`: contrast-limited adaptive histogram equalisation with
  OpenCV's semantics (`cv2.createCLAHE(clip, (cols, rows)).apply`), bit-exact on CPU under
  TensorFlow and JAX (tests compare with OpenCV). The algorithm is the one described in
  `cxr_cascade.numpy_clahe`, expressed as whole-tensor ops: one scatter-add histogram over
  ``(plane, tile, value)`` keys, clip and redistribution on ``[planes, tiles, 256]``, LUTs by a
  cumulative sum, and per pixel four gathers and OpenCV's float32 bilinear blend.
* `affine_matrices` / `affine_transform` / `RandomAffine`: the pipelines' rotation
  (+-``rotation_degrees``), shift and zoom about the image centre, sampled as TensorFlow's
  `ImageProjectiveTransformV3` samples (bilinear or nearest, constant fill), within 1e-5 of the
  tf.data augmentation on every backend and device. It does not use
  `keras.ops.image.affine_transform`: under JAX that maps the pixel grid with an einsum, which a
  GPU computes at its default (TF32-like) matmul precision, and on an H200 the rotated images then
  differed from the CPU's by up to 0.24 (of 1) at 1024 px; here coordinates are elementwise float32.

Image sizes must be static (they are, inside a model built for one input size).
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence

import keras
import numpy as np
from keras import ops

from cxr_cascade.numpy_clahe import _axis_weights
from pipelines.config import check_clip_limit, check_tile_grid_size

__all__ = ["clahe", "affine_matrices", "affine_transform", "AdaptiveEqualization", "RandomAffine"]

_BINS = 256


def _reflect_101(length: int, padded_length: int) -> np.ndarray:
    """Source indices of ``0 .. padded_length - 1`` under cv::BORDER_REFLECT_101 (``dcb|abcd|cba``).

    Padding is at the end only; NumPy's "reflect" is REFLECT_101 and, like OpenCV's
    `borderInterpolate`, folds again while an index is still outside (a pad wider than the image).
    """
    return np.pad(np.arange(length, dtype=np.int32), (0, padded_length - length), mode="reflect")


class _Plan:
    """Static index tables of CLAHE for one ``(height, width, grid)`` (NumPy, built once per trace)."""

    def __init__(self, height: int, width: int, tiles_y: int, tiles_x: int):
        padded = height % tiles_y != 0 or width % tiles_x != 0
        # OpenCV pads both axes by `tiles - size % tiles` as soon as either does not divide.
        pad_h = height + (tiles_y - height % tiles_y if padded else 0)
        pad_w = width + (tiles_x - width % tiles_x if padded else 0)
        self.rows = _reflect_101(height, pad_h) if padded else None
        self.cols = _reflect_101(width, pad_w) if padded else None
        tile_h, tile_w = pad_h // tiles_y, pad_w // tiles_x
        self.tiles = tiles_y * tiles_x
        self.tile_area = tile_h * tile_w
        # Key offset of every padded pixel's tile: tile * 256.
        tile_of = (np.arange(pad_h) // tile_h)[:, None] * tiles_x + (np.arange(pad_w) // tile_w)[None, :]
        self.tile_keys = (tile_of * _BINS).astype(np.int32)
        y1, y2, ya = _axis_weights(height, tile_h, tiles_y)
        x1, x2, xa = _axis_weights(width, tile_w, tiles_x)
        # LUT offsets of the four neighbouring tiles of every pixel, [4, H, W]: (y1, x1), (y1, x2),
        # (y2, x1), (y2, x2).
        self.corners = np.stack(
            [(ty[:, None] * tiles_x + tx[None, :]) * _BINS for ty in (y1, y2) for tx in (x1, x2)]
        ).astype(np.int32)
        self.xa = xa[None, :]
        self.xb = (np.float32(1.0) - xa)[None, :]
        self.ya = ya[:, None]
        self.yb = (np.float32(1.0) - ya)[:, None]


def _product(a, b):
    """``a * b`` rounded to float32 on its own (both >= 0).

    The `maximum` (an identity for these non-negative products) keeps XLA and LLVM from
    contracting the product and the following sum into one fused multiply-add, which rounds once
    instead of twice and would differ from OpenCV in the last bit.
    """
    return ops.maximum(ops.multiply(a, b), 0.0)


def _clahe_planes(planes, clip_limit: float, tiles_y: int, tiles_x: int):
    """CLAHE of int32 planes ``[P, H, W]`` (values 0..255) -> int32 ``[P, H, W]``."""
    height, width = planes.shape[1], planes.shape[2]
    plan = _Plan(height, width, tiles_y, tiles_x)
    count = ops.shape(planes)[0]
    table = plan.tiles * _BINS
    offsets = ops.reshape(ops.arange(count, dtype="int32") * table, (-1, 1, 1))

    padded = planes
    if plan.rows is not None:
        padded = ops.take(ops.take(planes, plan.rows, axis=1), plan.cols, axis=2)
    keys = ops.reshape(padded + plan.tile_keys + offsets, (-1,))
    hist = ops.segment_sum(ops.ones_like(keys), keys, num_segments=count * table)
    hist = ops.reshape(hist, (-1, plan.tiles, _BINS))

    if clip_limit > 0:
        limit = max(int(clip_limit * plan.tile_area / _BINS), 1)
        excess = ops.sum(ops.maximum(hist - limit, 0), axis=-1, keepdims=True)
        hist = ops.minimum(hist, limit) + excess // _BINS
        residual = excess % _BINS
        # One more count on bins 0, step, 2 * step, ... while the residual lasts.
        step = ops.maximum(_BINS // ops.maximum(residual, 1), 1)
        bins = ops.arange(_BINS, dtype="int32")
        hit = ops.logical_and(bins % step == 0, bins // step < residual)
        hist = hist + ops.cast(hit, "int32")

    scale = np.float32(_BINS - 1) / np.float32(plan.tile_area)
    cdf = ops.cast(ops.cumsum(hist, axis=-1), "float32")
    lut = ops.clip(ops.round(cdf * scale), 0.0, 255.0)
    lut = ops.reshape(lut, (-1,))

    pixel = planes + offsets
    l11, l12, l21, l22 = (ops.take(lut, pixel + plan.corners[i]) for i in range(4))
    top = _product(l11, plan.xb) + _product(l12, plan.xa)
    bottom = _product(l21, plan.xb) + _product(l22, plan.xa)
    blended = _product(top, plan.yb) + _product(bottom, plan.ya)
    return ops.cast(ops.clip(ops.round(blended), 0.0, 255.0), "int32")


def clahe(images, clip_limit: float = 2.0, tile_grid_size: Sequence[int] = (8, 8)):
    """Contrast-limited adaptive histogram equalisation as `cv2.createCLAHE(...).apply`, in keras.ops.

    Args:
        images: uint8, or int32 in 0..255 (others are clipped), ``[H, W]``, ``[H, W, C]`` or ``[N, H, W, C]``
            (channels last; each image and channel is equalised on its own). H and W must be
            static; N may be unknown.
        clip_limit: OpenCV's `clipLimit` (the clip is ``max(int(clip_limit * tile_area / 256),
            1)`` counts); 0 disables clipping.
        tile_grid_size: OpenCV's ``tileGridSize``: ``(tiles along width, tiles along height)``,
            as `pipelines.clahe.clahe` and `PreprocessConfig.tile_grid_size`.

    Returns:
        The enhanced images, same shape, uint8 for uint8 input, else int32.

    Reference: Zuiderveld, "Contrast limited adaptive histogram equalization", Graphics Gems IV
    (1994); OpenCV `modules/imgproc/src/clahe.cpp`.
    """
    clip_limit = check_clip_limit(clip_limit)
    tiles_x, tiles_y = check_tile_grid_size(tile_grid_size)
    images = ops.convert_to_tensor(images)
    dtype = keras.backend.standardize_dtype(images.dtype)
    if dtype not in ("uint8", "int32") or len(images.shape) not in (2, 3, 4):
        raise ValueError(
            "`images` must be 8-bit intensities (uint8 or int32 in 0..255) of shape [H, W], "
            f"[H, W, C] or [N, H, W, C]. Received: images with dtype={dtype} and shape={images.shape}"
        )
    shape = images.shape
    rank = len(shape)
    if any(not isinstance(d, int) for d in (shape if rank == 2 else shape[-3:-1])):
        raise ValueError(f"`images` must have a static height and width. Received: images.shape={shape}")
    # int32 intensities outside 0..255 are clipped (they would address another tile's bins).
    values = ops.cast(images, "int32") if dtype == "uint8" else ops.clip(images, 0, 255)
    if rank == 2:
        out = _clahe_planes(values[None], clip_limit, tiles_y, tiles_x)[0]
    else:
        batched = values[None] if rank == 3 else values
        height, width, channels = batched.shape[1:]
        planes = ops.reshape(ops.transpose(batched, (0, 3, 1, 2)), (-1, height, width))
        out = _clahe_planes(planes, clip_limit, tiles_y, tiles_x)
        out = ops.transpose(ops.reshape(out, (-1, channels, height, width)), (0, 2, 3, 1))
        out = out[0] if rank == 3 else out
    return ops.cast(out, "uint8") if dtype == "uint8" else out


def affine_matrices(height: int, width: int, angle_degrees, scale=1.0, shift_x=0.0, shift_y=0.0):
    """Inverse affine maps ``[N, 8]`` for `keras.ops.image.affine_transform`, one per image.

    The same map as `pipelines.transforms.affine_matrix`, batched: content rotated
    counter-clockwise by ``angle_degrees`` about the centre ``((W - 1) / 2, (H - 1) / 2)``,
    scaled by ``scale`` (> 1 zooms in) and shifted by ``(shift_x, shift_y)`` pixels.

    Args:
        height, width: image size (Python ints).
        angle_degrees, scale, shift_x, shift_y: float ``[N]`` tensors (or scalars broadcast to them).

    Returns:
        float32 ``[N, 8]``: ``[a0, a1, a2, b0, b1, b2, 0, 0]`` with output pixel ``(x, y)`` read
        from input ``(a0 x + a1 y + a2, b0 x + b1 y + b2)``.
    """
    f = lambda v: ops.cast(ops.convert_to_tensor(v), "float32")  # noqa: E731
    theta = f(angle_degrees) * (math.pi / 180.0)
    scale, tx, ty = f(scale), f(shift_x), f(shift_y)
    cx = (float(width) - 1.0) / 2.0
    cy = (float(height) - 1.0) / 2.0
    cos = ops.cos(theta) / scale
    sin = ops.sin(theta) / scale
    a0, a1, b0, b1 = cos, -sin, sin, cos
    ox, oy = cx + tx, cy + ty
    a2 = cx - (a0 * ox + a1 * oy)
    b2 = cy - (b0 * ox + b1 * oy)
    zero = ops.zeros_like(a0 + a2)
    rows = [ops.broadcast_to(v, ops.shape(zero)) for v in (a0, a1, a2, b0, b1, b2)]
    return ops.stack(rows + [zero, zero], axis=-1)


def _round_half_away(x):
    """C's `round` (half away from zero), which TensorFlow's nearest sampling uses."""
    return ops.where(x < 0, -ops.floor(0.5 - x), ops.floor(x + 0.5))


def affine_transform(images, matrices, interpolation: str = "bilinear", fill_value: float = 0.0):
    """Resamples float ``[N, H, W, C]`` images through inverse maps ``[N, 8]`` (`affine_matrices`).

    Output pixel ``(x, y)`` reads the input at ``(a0 x + a1 y + a2, b0 x + b1 y + b2)``:
    "bilinear" blends the four neighbours as ``(x1 - x) f(x0) + (x - x0) f(x1)`` along x, then
    along y, each neighbour outside the image counting as `fill_value`; "nearest" reads the
    neighbour at C's `round`. This is the arithmetic of TensorFlow's
    `ImageProjectiveTransformV3` with ``fill_mode="constant"``, in elementwise float32 ops (no
    matrix product, whose precision an accelerator may lower).

    Returns:
        float32 ``[N, H, W, C]``.
    """
    if interpolation not in ("bilinear", "nearest"):
        raise ValueError(
            f"`interpolation` must be 'bilinear' or 'nearest'. Received: interpolation={interpolation!r}"
        )
    images = ops.cast(images, "float32")
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    m = ops.cast(matrices, "float32")
    coef = [ops.reshape(m[:, i], (-1, 1, 1)) for i in range(6)]
    xs = ops.reshape(ops.arange(width, dtype="float32"), (1, 1, width))
    ys = ops.reshape(ops.arange(height, dtype="float32"), (1, height, 1))
    x = coef[0] * xs + coef[1] * ys + coef[2]  # [N, H, W]
    y = coef[3] * xs + coef[4] * ys + coef[5]
    flat = ops.reshape(images, (-1, channels))
    base = ops.reshape(ops.arange(ops.shape(images)[0], dtype="int32") * (height * width), (-1, 1, 1))

    def read(yi, xi):
        """Input pixels at integer float coordinates, `fill_value` outside: [N, H, W, C]."""
        inside = (yi >= 0) & (yi <= height - 1) & (xi >= 0) & (xi <= width - 1)
        row = ops.cast(ops.clip(yi, 0, height - 1), "int32")
        col = ops.cast(ops.clip(xi, 0, width - 1), "int32")
        values = ops.take(flat, base + row * width + col, axis=0)
        return ops.where(inside[..., None], values, ops.cast(fill_value, "float32"))

    if interpolation == "nearest":
        return read(_round_half_away(y), _round_half_away(x))
    x0, y0 = ops.floor(x), ops.floor(y)
    x1, y1 = x0 + 1.0, y0 + 1.0
    wx0, wx1 = (x1 - x)[..., None], (x - x0)[..., None]
    wy0, wy1 = (y1 - y)[..., None], (y - y0)[..., None]
    top = wx0 * read(y0, x0) + wx1 * read(y0, x1)
    bottom = wx0 * read(y1, x0) + wx1 * read(y1, x1)
    return wy0 * top + wy1 * bottom


@keras.saving.register_keras_serializable(package="cxr_cascade.models")
class AdaptiveEqualization(keras.layers.Layer):
    """CLAHE (`clahe`) as a layer in keras.ops: runs inside the model, on the model's device.

    Float inputs are intensities in ``[0, 1]``: quantised to ``round(clip(x, 0, 1) * 255)``
    (half to even), equalised and returned as ``v * float32(1 / 255)`` in float32 -- the same
    bits as the tf.data pipeline's `pipelines.transforms.apply_clahe`. uint8 inputs give uint8.

    Args:
        clip_limit: see `clahe`.
        tile_grid_size: see `clahe` (OpenCV's order: tiles along width, along height).
        fraction: None (default): every image, in training and inference (a serving model's
            enhancement). A number in [0, 1]: in training each image is enhanced with this
            probability and left as it is otherwise; in inference the layer is the identity (the
            paper's stage-1 augmentation, `augment.clahe_fraction`, inside the model).
        seed: seed of the draws for `fraction`.

    Input shape: ``[N, H, W, C]``, H and W static. Output: the same shape.
    """

    def __init__(
        self,
        clip_limit: float = 2.0,
        tile_grid_size: Sequence[int] = (8, 8),
        fraction: Optional[float] = None,
        seed: Optional[int] = None,
        **kwargs,
    ):
        # Inputs stay in their dtype under a mixed-precision policy: bfloat16 would move
        # intensities by up to half a grey level before CLAHE's quantisation.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.clip_limit = check_clip_limit(clip_limit)
        self.tile_grid_size = check_tile_grid_size(tile_grid_size)
        if fraction is not None and (
            isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 <= fraction <= 1
        ):
            raise ValueError(f"`fraction` must be None or a number in [0, 1]. Received: fraction={fraction!r}")
        self.fraction = None if fraction is None else float(fraction)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if fraction is not None else None
        self.trainable = False
        self.supports_jit = True

    @property
    def training_only(self) -> bool:
        """True with a `fraction` (the identity in inference; exports leave the layer out)."""
        return self.fraction is not None

    def _enhance(self, inputs):
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        if dtype == "uint8":
            return clahe(inputs, self.clip_limit, self.tile_grid_size)
        if "float" not in dtype:
            raise ValueError(
                f"AdaptiveEqualization inputs must be uint8 or float. Received: inputs.dtype={dtype}"
            )
        x = ops.cast(inputs, "float32")
        quantised = ops.cast(ops.round(ops.clip(x, 0.0, 1.0) * 255.0), "int32")
        out = ops.cast(clahe(quantised, self.clip_limit, self.tile_grid_size), "float32")
        return ops.cast(out * np.float32(1.0 / 255.0), dtype)

    def call(self, inputs, training: Optional[bool] = None):
        if self.fraction is None:
            return self._enhance(inputs)
        if not training or self.fraction == 0:
            return inputs
        draw = keras.random.uniform((ops.shape(inputs)[0], 1, 1, 1), seed=self.seed_generator)
        return ops.where(draw < self.fraction, self._enhance(inputs), inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            clip_limit=self.clip_limit,
            tile_grid_size=list(self.tile_grid_size),
            fraction=self.fraction,
            seed=self.seed,
        )
        return config


@keras.saving.register_keras_serializable(package="cxr_cascade.models")
class RandomAffine(keras.layers.Layer):
    """The pipelines' random rotation (and shift, zoom) as a layer in keras.ops; training only.

    Each image gets its own draw: angle uniform in ``[-rotation_degrees, rotation_degrees]``
    (the paper's +-30 degrees is ``rotation_degrees=30``), shift uniform in ``[-shift, shift]``
    of the width / height, scale uniform in ``[1 - zoom, 1 + zoom]``; uncovered pixels get
    ``fill_value`` (0 = black). The map is `affine_matrices`, the one of
    `pipelines.transforms.random_affine_matrix`, sampled by `affine_transform`. In inference the
    layer is the identity.

    Args:
        rotation_degrees: in [0, 180].
        shift: in [0, 1].
        zoom: in [0, 0.999].
        interpolation: "bilinear" (images) or "nearest" (masks stay binary).
        fill_value: value of uncovered pixels.
        seed: seed of the draws.

    Input shape: ``[N, H, W, C]``, float, H and W static. Output: the same.
    """

    def __init__(
        self,
        rotation_degrees: float = 30.0,
        shift: float = 0.0,
        zoom: float = 0.0,
        interpolation: str = "bilinear",
        fill_value: float = 0.0,
        seed: Optional[int] = None,
        **kwargs,
    ):
        # Inputs stay in their dtype under a mixed-precision policy: bfloat16 would move
        # intensities by up to half a grey level before CLAHE's quantisation.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        for name, value, upper in (("rotation_degrees", rotation_degrees, 180.0), ("shift", shift, 1.0), ("zoom", zoom, 0.999)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= upper:
                raise ValueError(f"`{name}` must be a number in [0, {upper}]. Received: {name}={value!r}")
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(
                f"`interpolation` must be 'bilinear' or 'nearest'. Received: interpolation={interpolation!r}"
            )
        self.rotation_degrees = float(rotation_degrees)
        self.shift = float(shift)
        self.zoom = float(zoom)
        self.interpolation = interpolation
        self.fill_value = float(fill_value)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trainable = False

    training_only = True  # the identity in inference; exports leave the layer out

    def transform(self, images, uniforms):
        """`images` ``[N, H, W, C]`` moved by the maps drawn from `uniforms` ``[N, 4]`` in [0, 1)
        (angle, shift x, shift y, zoom), as `pipelines.transforms.random_affine_matrix` reads them."""
        height, width = images.shape[1], images.shape[2]
        u = ops.cast(uniforms, "float32")
        angle = (2.0 * u[:, 0] - 1.0) * self.rotation_degrees
        shift_x = (2.0 * u[:, 1] - 1.0) * self.shift * float(width)
        shift_y = (2.0 * u[:, 2] - 1.0) * self.shift * float(height)
        scale = 1.0 + (2.0 * u[:, 3] - 1.0) * self.zoom
        matrices = affine_matrices(height, width, angle, scale, shift_x, shift_y)
        return affine_transform(images, matrices, self.interpolation, self.fill_value)

    def call(self, inputs, training: Optional[bool] = None):
        if not training or (self.rotation_degrees == 0 and self.shift == 0 and self.zoom == 0):
            return inputs
        uniforms = keras.random.uniform((ops.shape(inputs)[0], 4), seed=self.seed_generator)
        return ops.cast(self.transform(ops.cast(inputs, "float32"), uniforms), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            rotation_degrees=self.rotation_degrees,
            shift=self.shift,
            zoom=self.zoom,
            interpolation=self.interpolation,
            fill_value=self.fill_value,
            seed=self.seed,
        )
        return config
