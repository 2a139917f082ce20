"""CLAHE in NumPy with OpenCV's semantics, for machines without TensorFlow or OpenCV.

The graph-op implementation in `pipelines.clahe` is the one the pipelines and the
exported SavedModels use. This NumPy twin exists for two reasons: it lets the trainer run where
only JAX or PyTorch is installed (`cxr-cascade train --backend jax`, `training.arrays`), and it
is a second, independent reading of OpenCV's algorithm that the tests compare with both `cv2` and the TF ops.

Semantics follow `cv::CLAHE::apply` for 8-bit images (OpenCV `modules/imgproc/src/clahe.cpp`):

* when the tile grid does not divide the image, both axes are padded at the bottom and right
  with BORDER_REFLECT_101 by `tiles - size % tiles` (a whole extra tile on an axis that did
  divide); histograms and LUTs come from the padded image, interpolation runs over the
  original;
* the clip limit is an integer, `max(int(clip_limit * tile_area / 256), 1)`, and 0 means none;
* the clipped excess goes back as `excess // 256` on every bin plus one count on the bins
  `0, step, 2 * step, ...` (`step = max(256 // residual, 1)`) until the residual is spent;
* LUT = round-half-even(cdf * float32(255 / tile_area)), computed in float32;
* each pixel blends the LUTs of its four nearest tile centres bilinearly (float32), indices
  clamped at the edges.
"""

from __future__ import annotations

import numpy as np

from pipelines.config import check_clip_limit

_BINS = 256


def _validate(image: np.ndarray, clip_limit: float, tile_grid_size: tuple[int, int]) -> None:
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(
            "`image` must be a 2-D uint8 array. "
            f"Received: image with dtype={image.dtype} and shape={image.shape}"
        )
    check_clip_limit(clip_limit)
    if len(tile_grid_size) != 2 or min(tile_grid_size) < 1:
        raise ValueError(
            "`tile_grid_size` must be two positive integers (rows, cols). "
            f"Received: tile_grid_size={tile_grid_size}"
        )


def _tile_luts(padded: np.ndarray, grid: tuple[int, int], clip_limit: float) -> np.ndarray:
    """LUTs of every tile, uint8 [tiles_y, tiles_x, 256], from the padded image."""
    tiles_y, tiles_x = grid
    tile_h, tile_w = padded.shape[0] // tiles_y, padded.shape[1] // tiles_x
    tile_area = tile_h * tile_w
    tiles = padded.reshape(tiles_y, tile_h, tiles_x, tile_w).transpose(0, 2, 1, 3)
    tiles = tiles.reshape(tiles_y * tiles_x, tile_area).astype(np.int64)
    offsets = np.arange(tiles_y * tiles_x, dtype=np.int64)[:, None] * _BINS
    hist = np.bincount((tiles + offsets).ravel(), minlength=tiles_y * tiles_x * _BINS)
    hist = hist.reshape(tiles_y * tiles_x, _BINS)

    limit = 0
    if clip_limit > 0:
        limit = max(int(clip_limit * tile_area / _BINS), 1)
    if limit > 0:
        excess = np.maximum(hist - limit, 0).sum(axis=1)
        hist = np.minimum(hist, limit) + (excess // _BINS)[:, None]
        residual = excess % _BINS
        # One extra count on bins 0, step, 2*step, ... while the residual lasts.
        step = np.maximum(_BINS // np.maximum(residual, 1), 1)
        bins = np.arange(_BINS)[None, :]
        hit = (bins % step[:, None] == 0) & (bins // step[:, None] < residual[:, None])
        hist = hist + hit

    lut_scale = np.float32(255.0) / np.float32(tile_area)
    cdf = np.cumsum(hist, axis=1).astype(np.float32)
    lut = np.clip(np.rint(cdf * lut_scale), 0, 255).astype(np.uint8)
    return lut.reshape(tiles_y, tiles_x, _BINS)


def _axis_weights(length: int, tile: int, tiles: int):
    """Tile indices (low, high) and float32 weight of `high` for each position on an axis."""
    inv = np.float32(1.0) / np.float32(tile)
    pos = np.arange(length, dtype=np.float32) * inv - np.float32(0.5)
    low = np.floor(pos).astype(np.int64)
    frac = (pos - low.astype(np.float32)).astype(np.float32)
    high = np.minimum(low + 1, tiles - 1)
    return np.maximum(low, 0), high, frac


def clahe_numpy(
    image: np.ndarray, clip_limit: float = 2.0, tile_grid_size: tuple[int, int] = (8, 8)
) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation, as `cv2.createCLAHE(...).apply`.

    Args:
        image: uint8 array [H, W].
        clip_limit: OpenCV's `clipLimit`; 0 disables clipping (plain tiled equalisation).
        tile_grid_size: `(rows, cols)` of the tile grid. Note that OpenCV's `tileGridSize`
            is `(cols, rows)`; this function takes rows first like array shapes.

    Returns:
        uint8 array [H, W].
    """
    _validate(image, clip_limit, tile_grid_size)
    tiles_y, tiles_x = int(tile_grid_size[0]), int(tile_grid_size[1])
    height, width = image.shape
    padded = image
    if height % tiles_y or width % tiles_x:
        # OpenCV pads both axes by `tiles - size % tiles` as soon as either axis does not
        # divide, so a divisible axis then gains one whole extra tile row or column.
        pad_y = tiles_y - height % tiles_y
        pad_x = tiles_x - width % tiles_x
        padded = np.pad(image, ((0, pad_y), (0, pad_x)), mode="reflect")
    lut = _tile_luts(padded, (tiles_y, tiles_x), clip_limit)
    tile_h, tile_w = padded.shape[0] // tiles_y, padded.shape[1] // tiles_x

    y1, y2, ya = _axis_weights(height, tile_h, tiles_y)
    x1, x2, xa = _axis_weights(width, tile_w, tiles_x)
    value = image.astype(np.int64)
    lut = lut.astype(np.float32)

    def tap(ty: np.ndarray, tx: np.ndarray) -> np.ndarray:
        return lut[ty[:, None], tx[None, :], value]

    xa_ = xa[None, :]
    xb_ = (np.float32(1.0) - xa)[None, :]
    ya_ = ya[:, None]
    yb_ = (np.float32(1.0) - ya)[:, None]
    top = tap(y1, x1) * xb_ + tap(y1, x2) * xa_
    bottom = tap(y2, x1) * xb_ + tap(y2, x2) * xa_
    result = top * yb_ + bottom * ya_
    return np.clip(np.rint(result), 0, 255).astype(np.uint8)
