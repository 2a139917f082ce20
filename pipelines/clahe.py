"""Contrast enhancement as TensorFlow graph ops: OpenCV-exact CLAHE and histogram equalisation.

The paper (Lv et al. 2020, Sec. 3.2.1 and Figure 7) enhances every radiograph with CLAHE before
training and compares it with plain histogram equalisation (HE). To let the *same* code run in
`tf.data`, in a Keras model, under XLA and in an exported SavedModel (TF Serving), both are written
here with TensorFlow ops only, which is why this module, unlike the model code, uses `tensorflow`
directly.

Both functions reproduce OpenCV bit for bit (`cv2.createCLAHE(clipLimit, tileGridSize).apply` and
`cv2.equalizeHist`, OpenCV 4.x/5.x `modules/imgproc/src/clahe.cpp` and `histogram.cpp`):

* CLAHE: tile histograms of the image padded at the bottom and right with BORDER_REFLECT_101 when
  its size is not a multiple of the grid (padding both axes, by a whole tile where one axis is
  already divisible, as OpenCV does); an integer clip limit ``max(int(clip * tile_area / bins), 1)``
  (``clip == 0`` disables clipping); clipped counts returned as an integer batch to every bin plus a
  strided residual; LUT ``saturate_cast(cdf * (float32(bins - 1) / tile_area))``; bilinear blending
  of the four neighbouring tile LUTs with clamped tile indices, in float32 with OpenCV's operation
  order and roundings (no fused multiply-adds), rounded half to even.
* HE: LUT from the cumulative histogram counted from the first non-empty bin, scale
  ``float32(255) / (total - hist[first])``; an image of one grey level is returned unchanged.

Memory: histograms are one `bincount` over ``(image * tiles + tile) * bins + value`` keys and the
LUT lookup is one gather per pixel (the four neighbouring tile LUTs packed into one word), so no
tensor of ``H * W * bins`` elements is ever built (Keras 3's own CLAHE layer builds one-hot
histograms, ~268 MB per 512x512 image, and is not OpenCV's algorithm).

Speed: with static sizes the per-pixel offsets are constants and the per-pixel work (histogram
keys and counts, LUT gather and blend) is cut into up to four bands of rows, independent ops that
XLA and the TF executor run on several cores, and under XLA a batch is computed as up to eight
groups of whole images (`_plane_groups`: one image's histogram and LUT table fit in L2).
`clahe(..., jit_compile=True)` (or any XLA-compiled caller, e.g. `tf.data.Dataset.map` after a
fixed-size resize) then takes about 1-2x OpenCV's time per image on CPU; the plain graph
(SavedModels, eager) about 4-7x (many full-image elementwise ops). Measured by
benchmarks/bench_clahe.py (ratios to OpenCV in the same process).

Shapes: ``[H, W]``, ``[H, W, C]`` or ``[N, H, W, C]``; each channel of each image is processed on
its own (as OpenCV would process each plane), so grey images use ``C = 1``. Height and width may
be unknown until run time.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

try:  # TensorFlow's XLA-context flag lives in an internal module
    from tensorflow.python.ops import control_flow_util
except ImportError:  # pragma: no cover - a TensorFlow without the internal helper
    control_flow_util = None

from pipelines.config import check_clip_limit, check_tile_grid_size

__all__ = ["clahe", "equalize_hist", "CLAHE"]


# ----------------------------------------------------------------------------------------------
# Argument checks (Keras-style errors; clip limit and tile grid: `pipelines.config`)


def _bins_for(dtype: tf.DType, name: str) -> int:
    if dtype == tf.uint8:
        return 256
    if dtype == tf.uint16:
        return 65536
    raise ValueError(
        f"`{name}` must be uint8 (or uint16 for CLAHE, 12-16 bit radiographs). "
        f"Received: {name}.dtype={dtype.name}"
    )


# ----------------------------------------------------------------------------------------------
# Shape handling: everything is computed on a stack of single-channel planes [B, H, W].


def _to_planes(image: tf.Tensor, name: str):
    """Reshape [H, W] / [H, W, C] / [N, H, W, C] to planes [B, H, W] and return the inverse."""
    rank = image.shape.rank
    if rank not in (2, 3, 4):
        raise ValueError(
            f"`{name}` must have shape [H, W], [H, W, C] or [N, H, W, C]. "
            f"Received: {name}.shape={image.shape}"
        )
    if rank == 2:
        return image[tf.newaxis], lambda planes: planes[0]
    channels = image.shape[-1]
    if channels == 1:
        if rank == 3:
            return image[tf.newaxis, :, :, 0], lambda planes: planes[0, :, :, tf.newaxis]
        return image[..., 0], lambda planes: planes[..., tf.newaxis]
    # Several (or statically unknown) channels: channel-major planes, one per image and channel.
    if rank == 3:
        return tf.transpose(image, [2, 0, 1]), lambda planes: tf.transpose(planes, [1, 2, 0])
    shape = tf.shape(image)
    planes = tf.reshape(tf.transpose(image, [0, 3, 1, 2]), [-1, shape[1], shape[2]])

    def restore(out):
        return tf.transpose(tf.reshape(out, [shape[0], shape[3], shape[1], shape[2]]), [0, 2, 3, 1])

    return planes, restore


def _reflect_101(index: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Source index of `index` (>= 0) under cv::BORDER_REFLECT_101 (``dcb|abcd|cba``).

    Folds repeatedly, as cv::borderInterpolate does, so pads wider than the image also work
    (a 9-pixel-high image with an 8-tile grid on an undivisible width is padded by 8 rows).
    """
    period = tf.maximum(2 * (size - 1), 1)
    folded = index % period
    return tf.where(folded >= size, period - folded, folded)


def _dims(planes: tf.Tensor):
    """(batch, height, width) of planes [B, H, W]: Python ints where static, else scalars."""
    dynamic = tf.shape(planes)
    return tuple(
        static if static is not None else dynamic[i] for i, static in enumerate(planes.shape)
    )


def _is_static(*values) -> bool:
    return all(isinstance(v, int) for v in values)


def _equal(a, b):
    return a == b if _is_static(a, b) else tf.equal(a, b)


def _logical_and(a, b):
    if isinstance(a, bool) and isinstance(b, bool):
        return a and b
    return tf.logical_and(a, b)


def _bincount(keys: tf.Tensor, size) -> tf.Tensor:
    """int32 counts of the values of `keys` (all in [0, size)).

    The raw op takes `size` as given; `tf.math.bincount` derives it from the data, which XLA
    cannot compile.
    """
    return tf.raw_ops.DenseBincount(
        input=tf.reshape(keys, [-1]), size=size, weights=tf.zeros([0], tf.int32), binary_output=False
    )


def _where(cond, a, b):
    return (a if cond else b) if isinstance(cond, bool) else tf.where(cond, a, b)


# ----------------------------------------------------------------------------------------------
# CLAHE


@functools.lru_cache(maxsize=64)
def _packing_matrix(tiles_x: int, tiles_y: int) -> np.ndarray:
    """float64 [cells, tiles]: row (jy, jx) holds 1, 2^8, 2^16, 2^24 at the cell's upper-left,
    upper-right, lower-left and lower-right tiles (indices clamped, so weights may add up)."""
    rows = np.clip(np.arange(-1, tiles_y), 0, tiles_y - 1)
    cols = np.clip(np.arange(-1, tiles_x), 0, tiles_x - 1)
    matrix = np.zeros(((tiles_y + 1) * (tiles_x + 1), tiles_y * tiles_x), np.float64)
    for jy in range(tiles_y + 1):
        for jx in range(tiles_x + 1):
            r1, r2 = rows[jy], rows[min(jy + 1, tiles_y)]
            c1, c2 = cols[jx], cols[min(jx + 1, tiles_x)]
            cell = jy * (tiles_x + 1) + jx
            for (r, c), weight in zip(((r1, c1), (r1, c2), (r2, c1), (r2, c2)), (1, 2**8, 2**16, 2**24)):
                matrix[cell, r * tiles_x + c] += weight
    return matrix


def _static_axis_weights(length: int, tile: int):
    """NumPy version of `_axis_weights` for static sizes (float32 ops round each step)."""
    inv = np.float32(1.0) / np.float32(tile)
    pos = np.arange(length, dtype=np.float32) * inv - np.float32(0.5)
    first = np.floor(pos)
    frac = pos - first
    return first.astype(np.int32) + 1, frac, np.float32(1.0) - frac


def _axis_weights(length, tile):
    """Cell indices and weights of OpenCV's CLAHE interpolation along one axis.

    OpenCV places pixel i at ``pos = float32(i) * float32(1 / tile) - 0.5`` (float32 throughout)
    between the centres of tiles ``floor(pos)`` and ``floor(pos) + 1`` (each clamped to the grid).
    Returns the cell ``floor(pos) + 1`` (int32, 0..tiles) and the float32 weights
    ``pos - floor(pos)`` and ``1 - that``. With static sizes NumPy computes
    them (its float32 ops round each step, as OpenCV's do); unknown sizes use TF ops with the
    product rounded explicitly, so that no fused multiply-add can change it.
    """
    if _is_static(length, tile):
        return tuple(tf.constant(a) for a in _static_axis_weights(length, tile))
    inv = tf.constant(1.0, tf.float32) / tf.cast(tile, tf.float32)
    pos = tf.cast(tf.cast(tf.range(length), tf.float64) * tf.cast(inv, tf.float64), tf.float32) - 0.5
    first = tf.floor(pos)
    frac = pos - first
    frac1 = 1.0 - frac
    return tf.cast(first, tf.int32) + 1, frac, frac1


# Pixels per band of rows (see `_bands`); at most `_MAX_BANDS` bands.
_BAND_PIXELS = 1 << 17
_MAX_BANDS = 4


def _bands(batch, height, width) -> list:
    """Row ranges ``[(r0, r1), ...]`` splitting planes [B, H, W] into independent pieces of work.

    XLA on CPU runs independent operations concurrently (as the TF graph executor does), while
    its per-pixel loops (scatter, gather, elementwise fusions) each run on one core; cutting the
    per-pixel work into bands of rows lets a single image use several cores. One band (``(None,
    None)``) when sizes are unknown or the image is small.
    """
    if not _is_static(batch, height, width):
        return [(None, None)]
    count = min(_MAX_BANDS, height, max(1, (batch * height * width) // _BAND_PIXELS))
    if count <= 1:
        return [(None, None)]
    edges = [height * i // count for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


# Most groups of planes `_plane_groups` cuts a batch into.
_MAX_GROUPS = 8


def _in_xla() -> bool:
    """True while tracing for XLA (``jit_compile=True``, also inside `tf.data` maps).

    Reads TensorFlow's own XLA-context flag (`control_flow_util`, an internal module); where
    that is unavailable the answer is True, which only costs the plain graph some speed.
    """
    if control_flow_util is None:  # pragma: no cover - a TensorFlow without the internal helper
        return True
    try:
        return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    except Exception:  # pragma: no cover - a TensorFlow without the internal helper
        return True


def _plane_groups(batch, height, width) -> list:
    """Plane ranges ``[(b0, b1), ...]`` computed as separate CLAHE problems.

    A batch computed as one problem has one histogram and one packed LUT table for all its
    images (``batch`` times larger than one image's, 0.5-0.7 MB at batch 8, which no longer fits
    a core's L2 cache; every pixel's gather and count then misses it), and per-image work is
    the same either way; so with static sizes large batches are cut into up to `_MAX_GROUPS`
    groups of whole images, independent ops that XLA runs
    concurrently. Under XLA only: each op of the plain graph already uses every core, and cut
    batches measured no faster there.
    """
    if (
        not _is_static(batch, height, width)
        or batch <= 1
        or height * width * 2 < _BAND_PIXELS
        or not _in_xla()
    ):
        return [(None, None)]
    count = min(batch, _MAX_GROUPS)
    edges = [batch * i // count for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _clahe_planes(planes: tf.Tensor, clip_limit: float, tiles_x: int, tiles_y: int) -> tf.Tensor:
    """CLAHE of planes [B, H, W] (uint8 or uint16), OpenCV semantics; returns the same dtype."""
    bins = _bins_for(planes.dtype, "image")
    n_tiles = tiles_x * tiles_y
    batch, height, width = _dims(planes)
    groups = _plane_groups(batch, height, width)
    if len(groups) > 1:
        # Independent images as independent pieces of work (see `_plane_groups`).
        return tf.concat(
            [_clahe_planes(planes[b0:b1], clip_limit, tiles_x, tiles_y) for b0, b1 in groups], axis=0
        )

    # OpenCV pads both axes (bottom and right) as soon as either is not a multiple of the grid.
    # Static sizes keep every shape a Python int (needed by XLA); unknown ones become tensors.
    divisible = _logical_and(_equal(height % tiles_y, 0), _equal(width % tiles_x, 0))
    pad_h = _where(divisible, 0, tiles_y - height % tiles_y)
    pad_w = _where(divisible, 0, tiles_x - width % tiles_x)
    tile_h = (height + pad_h) // tiles_y
    tile_w = (width + pad_w) // tiles_x
    tile_area = tile_h * tile_w

    # Histograms of the padded image: one bincount over (plane, tile, value) keys.
    rows_p = tf.range(height + pad_h)
    cols_p = tf.range(width + pad_w)
    pix = tf.cast(planes, tf.int32)
    values = pix

    def padded():
        rows = _reflect_101(rows_p, height)
        cols = _reflect_101(cols_p, width)
        return tf.gather(tf.gather(values, rows, axis=1), cols, axis=2)

    if isinstance(divisible, bool):
        values = values if divisible else padded()
    else:
        values = tf.cond(divisible, lambda: values, padded)
    # Offsets are built on [H, W] and [B, 1, 1] so that only two ops touch every pixel; with
    # static sizes the [H, W] offsets are a constant (no per-pixel division at run time).
    if _is_static(height, width, pad_h, pad_w):
        tile_key = tf.constant(
            (np.arange(height + pad_h) // tile_h * (tiles_x * bins))[:, np.newaxis]
            + (np.arange(width + pad_w) // tile_w * bins)[np.newaxis, :],
            tf.int32,
        )
    else:
        tile_key = (rows_p // tile_h * (tiles_x * bins))[:, tf.newaxis] + (
            cols_p // tile_w * bins
        )[tf.newaxis, :]
    plane_key = tf.range(batch)[:, tf.newaxis, tf.newaxis] * (n_tiles * bins)
    n_keys = batch * n_tiles * bins
    # Bands of rows are counted separately and their histograms added: independent ops that
    # XLA (and the TF executor) run on several cores at once.
    hist = tf.add_n(
        [
            _bincount((values[:, r0:r1] + tile_key[tf.newaxis, r0:r1]) + plane_key, n_keys)
            for r0, r1 in _bands(batch, height + pad_h, width + pad_w)
        ]
    )
    hist = tf.reshape(hist, [-1, bins])  # [B * tiles, bins]

    if clip_limit > 0.0:
        # cv: static_cast<int>(clipLimit * tileSizeTotal / histSize), at least 1; in double.
        limit = tf.cast(clip_limit * tf.cast(tile_area, tf.float64) / bins, tf.int32)
        limit = tf.maximum(limit, 1)
        clipped = tf.reduce_sum(tf.maximum(hist - limit, 0), axis=1, keepdims=True)
        hist = tf.minimum(hist, limit)
        batch_add = clipped // bins
        residual = clipped - batch_add * bins
        # One extra count to bins 0, step, 2 step, ... while the residual lasts.
        step = tf.maximum(bins // tf.maximum(residual, 1), 1)
        bin_index = tf.range(bins)[tf.newaxis, :]
        extra = tf.logical_and(bin_index % step == 0, bin_index // step < residual)
        hist = hist + batch_add + tf.cast(extra, tf.int32)

    cdf = tf.cumsum(hist, axis=1)
    if isinstance(tile_area, int):
        lut_scale = tf.constant(np.float32(bins - 1) / np.float32(tile_area))
    else:
        lut_scale = tf.constant(bins - 1, tf.float32) / tf.cast(tile_area, tf.float32)
    # cdf <= tile_area, so cdf * lut_scale < bins - 0.5 and saturate_cast never saturates.
    lut = tf.cast(tf.round(tf.cast(cdf, tf.float32) * lut_scale), planes.dtype)

    # Bilinear blending between tile centres, with the tile size of the padded image. A pixel
    # whose position falls in "cell" (jy, jx) between tile centres (0..tiles, edges clamped)
    # reads the same four tile LUTs at its grey value, so for 8-bit images the four LUTs of
    # every cell are packed into one integer per grey level, l11 + l12 << 8 + l21 << 16 +
    # l22 << 24, by one float64 matmul (exact: < 2^32) with a constant cell-by-tile matrix:
    # one gather per pixel instead of four. The matmul also keeps XLA from fusing the LUT
    # computation into the per-pixel gather (which then recomputes it for every pixel).
    jy, ya, ya1 = _axis_weights(height, tile_h)
    jx, xa, xa1 = _axis_weights(width, tile_w)
    cell = jy[:, tf.newaxis] * (tiles_x + 1) + jx[tf.newaxis, :]  # [H, W]
    if _is_static(height, width, tile_h, tile_w):
        # A constant: no per-pixel index arithmetic at run time.
        jy_np, jx_np = _static_axis_weights(height, tile_h)[0], _static_axis_weights(width, tile_w)[0]
        cell = tf.constant(jy_np[:, np.newaxis] * (tiles_x + 1) + jx_np[np.newaxis, :])
    plane = tf.range(batch)[:, tf.newaxis, tf.newaxis]
    if bins == 256:
        lut = tf.reshape(tf.cast(lut, tf.float64), [-1, n_tiles, bins])
        packed = tf.matmul(tf.constant(_packing_matrix(tiles_x, tiles_y))[tf.newaxis], lut)
        packed = tf.reshape(tf.cast(packed, tf.uint32), [-1])
        cells = (tiles_y + 1) * (tiles_x + 1)

        def corners(r0, r1):
            index = (pix[:, r0:r1] + (cell[r0:r1] * bins)[tf.newaxis]) + plane * (cells * bins)
            words = tf.gather(packed, index)
            return [
                tf.cast(tf.bitwise.bitwise_and(tf.bitwise.right_shift(words, shift), 255), tf.float32)
                for shift in (0, 8, 16, 24)
            ]

    else:
        # 65536 bins: four 16-bit values do not fit a float64; gather four times.
        flat = tf.reshape(lut, [-1])
        row_of_cell = tf.constant(np.repeat(np.arange(tiles_y + 1), tiles_x + 1), tf.int32)
        col_of_cell = tf.constant(np.tile(np.arange(tiles_x + 1), tiles_y + 1), tf.int32)

        def corners(r0, r1):
            def corner(dy, dx):
                band = cell[r0:r1]
                row = tf.clip_by_value(tf.gather(row_of_cell, band) + dy, 0, tiles_y - 1)
                col = tf.clip_by_value(tf.gather(col_of_cell, band) + dx, 0, tiles_x - 1)
                tile_offset = ((row * tiles_x + col) * bins)[tf.newaxis]
                index = (pix[:, r0:r1] + tile_offset) + plane * (n_tiles * bins)
                return tf.cast(tf.gather(flat, index), tf.float32)

            return [corner(-1, -1), corner(-1, 0), corner(0, -1), corner(0, 0)]

    # OpenCV computes (l11 * xa1 + l12 * xa) * ya1 + (l21 * xa1 + l22 * xa) * ya in float32,
    # rounding every product and sum. XLA on CPU contracts a * b + c into a fused multiply-add
    # (one rounding instead of two), which moves a few pixels by one grey level; every product
    # therefore goes through `maximum(product, 0)` (an identity here: all factors are >= 0),
    # which no multiply-add can be fused across, and stays in float32 (a float64 detour, exact
    # but twice the memory traffic, was 20-30 % slower).
    # The plain graph runs every op as its own kernel (nothing is contracted): the barrier, six
    # more passes over the image, is only needed under XLA.
    if _in_xla():
        def product(a, b):
            return tf.maximum(a * b, 0.0)
    else:
        def product(a, b):
            return a * b

    xa = xa[tf.newaxis, tf.newaxis, :]
    xa1 = xa1[tf.newaxis, tf.newaxis, :]

    def blend(r0, r1):
        top_left, top_right, bottom_left, bottom_right = corners(r0, r1)
        top = product(top_left, xa1) + product(top_right, xa)
        bottom = product(bottom_left, xa1) + product(bottom_right, xa)
        res = product(top, ya1[tf.newaxis, r0:r1, tf.newaxis]) + product(
            bottom, ya[tf.newaxis, r0:r1, tf.newaxis]
        )
        # A convex blend of LUT values stays within [0, bins - 1] up to rounding: no saturation.
        return tf.cast(tf.round(res), planes.dtype)

    bands = _bands(batch, height, width)
    if len(bands) == 1:
        return blend(None, None)
    return tf.concat([blend(r0, r1) for r0, r1 in bands], axis=1)


def clahe(
    image,
    clip_limit: float = 2.0,
    tile_grid_size: Sequence[int] = (8, 8),
    *,
    jit_compile: bool = False,
) -> tf.Tensor:
    """Contrast Limited Adaptive Histogram Equalisation, identical to OpenCV's.

    Reproduces ``cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=tile_grid_size).apply``
    (Zuiderveld 1994 as implemented in OpenCV ``imgproc/src/clahe.cpp``) with TensorFlow ops, so it
    runs eagerly, in `tf.function` (also ``jit_compile=True``), in `tf.data.Dataset.map` and in a
    SavedModel. Used by the paper (Lv et al. 2020) to enhance every radiograph.

    Args:
        image: uint8 tensor (or uint16 for 12-16 bit radiographs, OpenCV's 65536-bin CV_16U
            semantics) of shape ``[H, W]``, ``[H, W, C]`` or ``[N, H, W, C]``; any H and W >= 1,
            possibly unknown until run time. Channels are equalised independently.
        clip_limit: OpenCV's ``clipLimit``: the histogram clip as a multiple of the mean bin count
            (the integer limit is ``max(int(clip_limit * tile_area / bins), 1)``); 0 means no
            clipping (plain adaptive HE); `pipelines.config.check_clip_limit` checks it.
        tile_grid_size: OpenCV's ``tileGridSize``: ``(tiles along width, tiles along height)``.
        jit_compile: run the ops as one XLA-compiled function (the result is identical). About
            3-4x faster on CPU, also inside `tf.data.Dataset.map` (e.g. after resizing to a fixed
            size), but compiled again for every new image shape; leave it off for graphs meant
            for a TF Serving build without XLA.

    Returns:
        Tensor of the same shape and dtype as `image`.

    Raises:
        ValueError: bad rank, dtype, `clip_limit`, `tile_grid_size` or `jit_compile`.
    """
    clip_limit = check_clip_limit(clip_limit)
    tiles_x, tiles_y = check_tile_grid_size(tile_grid_size)
    image = tf.convert_to_tensor(image)
    _bins_for(image.dtype, "image")
    if image.shape.rank not in (2, 3, 4):
        _to_planes(image, "image")  # raises the shape error
    if not isinstance(jit_compile, bool):
        raise ValueError(f"`jit_compile` must be a bool. Received: jit_compile={jit_compile!r}")
    if jit_compile:
        return _xla_clahe(clip_limit, tiles_x, tiles_y)(image)
    if tf.executing_eagerly():
        return _eager_clahe(clip_limit, tiles_x, tiles_y, _eager_spec(image))(image)
    return _clahe_image(image, clip_limit, tiles_x, tiles_y)


def _clahe_image(image: tf.Tensor, clip_limit: float, tiles_x: int, tiles_y: int) -> tf.Tensor:
    planes, restore = _to_planes(image, "image")
    return restore(_clahe_planes(planes, clip_limit, tiles_x, tiles_y))


@functools.lru_cache(maxsize=32)
def _xla_clahe(clip_limit: float, tiles_x: int, tiles_y: int):
    """XLA-compiled CLAHE; XLA needs static shapes, so it is traced once per input shape."""
    return tf.function(
        lambda image: _clahe_image(image, clip_limit, tiles_x, tiles_y), jit_compile=True
    )


def _eager_spec(image: tf.Tensor) -> tf.TensorSpec:
    """Signature for eager calls: any batch and size, the same rank, dtype and channels."""
    shape = [None] * image.shape.rank
    if image.shape.rank > 2:
        shape[-1] = image.shape[-1]
    return tf.TensorSpec(shape, image.dtype)


@functools.lru_cache(maxsize=32)
def _eager_clahe(clip_limit: float, tiles_x: int, tiles_y: int, spec: tf.TensorSpec):
    """One traced graph of the same ops for eager calls (op-by-op dispatch costs ~10x more)."""
    return tf.function(
        lambda image: _clahe_image(image, clip_limit, tiles_x, tiles_y), input_signature=[spec]
    )


# ----------------------------------------------------------------------------------------------
# Histogram equalisation


def _equalize_planes(planes: tf.Tensor) -> tf.Tensor:
    """cv2.equalizeHist of uint8 planes [B, H, W]."""
    batch, height, width = _dims(planes)
    total = height * width
    values = tf.cast(planes, tf.int32)
    keys = tf.range(batch)[:, tf.newaxis, tf.newaxis] * 256 + values
    hist = tf.reshape(_bincount(keys, batch * 256), [-1, 256])
    first = tf.argmax(tf.cast(hist > 0, tf.int32), axis=1, output_type=tf.int32)  # first non-empty
    first_count = tf.gather(hist, first, batch_dims=1)
    # cv: scale = (256 - 1.f) / (total - hist[first]) in float32; lut[first] = 0 and, above it,
    # saturate_cast<uchar>(sum * scale) with sum counting from the bin after `first`.
    denom = tf.maximum(total - first_count, 1)  # 0 only for one-level images, handled below
    scale = tf.constant(255.0, tf.float32) / tf.cast(denom, tf.float32)
    partial = tf.cumsum(hist, axis=1) - first_count[:, tf.newaxis]
    lut = tf.clip_by_value(tf.round(tf.cast(partial, tf.float32) * scale[:, tf.newaxis]), 0.0, 255.0)
    lut = tf.cast(lut, tf.uint8)
    out = tf.gather(tf.reshape(lut, [-1]), keys)
    single_level = tf.equal(first_count, total)[:, tf.newaxis, tf.newaxis]
    return tf.where(single_level, planes, out)


def equalize_hist(image) -> tf.Tensor:
    """Global histogram equalisation, identical to ``cv2.equalizeHist``.

    The HE baseline of the paper's Figure 7 (Lv et al. 2020). Each image (and channel) is
    equalised with its own histogram; an image of a single grey level is returned unchanged,
    as OpenCV does.

    Args:
        image: uint8 tensor of shape ``[H, W]``, ``[H, W, C]`` or ``[N, H, W, C]``.

    Returns:
        uint8 tensor of the same shape.

    Raises:
        ValueError: bad rank or dtype.
    """
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        raise ValueError(f"`image` must be uint8. Received: image.dtype={image.dtype.name}")
    if image.shape.rank not in (2, 3, 4):
        _to_planes(image, "image")
    if tf.executing_eagerly():
        return _eager_equalize(_eager_spec(image))(image)
    return _equalize_image(image)


def _equalize_image(image: tf.Tensor) -> tf.Tensor:
    planes, restore = _to_planes(image, "image")
    return restore(_equalize_planes(planes))


@functools.lru_cache(maxsize=32)
def _eager_equalize(spec: tf.TensorSpec):
    return tf.function(_equalize_image, input_signature=[spec])


# ----------------------------------------------------------------------------------------------
# Keras layer


@keras.saving.register_keras_serializable(package="cxr_cascade")
class CLAHE(keras.layers.Layer):
    """CLAHE as a Keras preprocessing layer (TensorFlow backend), the same code as `clahe`.

    Putting this layer at the front of an exported model makes the serving graph enhance images
    exactly as the `tf.data` training pipeline (which calls `clahe`) and as OpenCV do.

    Input dtypes:
        * uint8 (or uint16): passed to `clahe`; the output has the input dtype.
        * float: read as intensities in [0, 1]; quantised to uint8 with ``round(clip(x, 0, 1) *
          255)``, equalised, and returned as float in [0, 1] (``/ 255``) in the layer's compute
          dtype. Use ``input_scale=255.0`` for float images in [0, 255] (then returned in [0, 255]).

    The layer runs TensorFlow ops (it is a preprocessing layer for the TensorFlow backend, like
    Keras' own `tf.data`-compatible layers) and is not trainable.

    Args:
        clip_limit: see `clahe`.
        tile_grid_size: see `clahe`.
        apply_in_inference: when False, the layer is the identity for ``training=False`` (e.g.
            when images are already enhanced by the `tf.data` pipeline). Default True: enhance
            always, which is what a serving model needs.
        input_scale: the value of white for float inputs (1.0 or 255.0); ignored for integers.
        jit_compile: run the CLAHE ops as an XLA-compiled function (see `clahe`); off by
            default so that exported graphs need no XLA at serving time.
        **kwargs: `keras.layers.Layer` arguments (name, dtype, ...).

    Input shape: ``[N, H, W, C]`` (or ``[H, W, C]`` / ``[H, W]`` when called directly).
    Output shape: the same.
    """

    def __init__(
        self,
        clip_limit: float = 2.0,
        tile_grid_size: Sequence[int] = (8, 8),
        apply_in_inference: bool = True,
        input_scale: float = 1.0,
        jit_compile: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.clip_limit = check_clip_limit(clip_limit)
        self.tile_grid_size = check_tile_grid_size(tile_grid_size)
        if not isinstance(apply_in_inference, bool):
            raise ValueError(
                "`apply_in_inference` must be a bool. "
                f"Received: apply_in_inference={apply_in_inference!r}"
            )
        self.apply_in_inference = apply_in_inference
        if (
            isinstance(input_scale, bool)
            or not isinstance(input_scale, numbers.Real)
            or not input_scale > 0
            or not math.isfinite(input_scale)
        ):
            raise ValueError(
                "`input_scale` must be a positive number (1.0 for floats in [0, 1], 255.0 for "
                f"floats in [0, 255]). Received: input_scale={input_scale!r}"
            )
        self.input_scale = float(input_scale)
        if not isinstance(jit_compile, bool):
            raise ValueError(f"`jit_compile` must be a bool. Received: jit_compile={jit_compile!r}")
        self.jit_compile = jit_compile
        self.supports_masking = False
        self.trainable = False

    def call(self, inputs, training: Optional[bool] = None):
        if not self.apply_in_inference and not training:
            return inputs
        inputs = tf.convert_to_tensor(inputs)
        if inputs.dtype in (tf.uint8, tf.uint16):
            return clahe(inputs, self.clip_limit, self.tile_grid_size, jit_compile=self.jit_compile)
        if not inputs.dtype.is_floating:
            raise ValueError(
                "CLAHE layer inputs must be uint8, uint16 or float. "
                f"Received: inputs.dtype={inputs.dtype.name}"
            )
        scaled = tf.cast(inputs, tf.float32) / self.input_scale
        quantised = tf.cast(tf.round(tf.clip_by_value(scaled, 0.0, 1.0) * 255.0), tf.uint8)
        enhanced = clahe(quantised, self.clip_limit, self.tile_grid_size, jit_compile=self.jit_compile)
        out = tf.cast(enhanced, tf.float32) * (self.input_scale / 255.0)
        return tf.cast(out, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "clip_limit": self.clip_limit,
                "tile_grid_size": list(self.tile_grid_size),
                "apply_in_inference": self.apply_in_inference,
                "input_scale": self.input_scale,
                "jit_compile": self.jit_compile,
            }
        )
        return config
