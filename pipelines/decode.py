"""Decode encoded image bytes (PNG, JPEG) to one-channel float32 in graph mode.

Conventions (shared by training, evaluation and serving, see `pipelines.preprocess`):

* Output: float32 ``[H, W, 1]`` in ``[0, 1]``: an 8-bit sample ``v`` becomes
  ``v * float32(1 / 255)`` and a 16-bit PNG sample ``v * float32(1 / (2**b - 1))`` with b its
  real bit depth (``sBIT``, else the largest sample's bit length rounded up to even: the rule of
  `pipelines.image_policy.png_sample_bits`; b = 16 for full-range data), the same bits whichever
  container (JPEG, PNG) holds an 8-bit image.
* Colour: gray is kept; RGB becomes ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` computed in
  float32 (the weights of OpenCV's ``COLOR_RGB2GRAY`` and PIL's ``convert("L")``, which sum to 1 so
  that an RGB file with R = G = B keeps its gray value; no rounding to 8 bit). Palette PNGs are
  expanded to RGB(A) by the decoder first.
* Alpha: dropped, never composited (the colour channels are used as stored). Chest X-rays in the
  public sets that carry alpha are opaque; compositing on black would darken any translucent border.

`validate_image_files` is the cheap Python-side check that runs before a data set is built, so that
a broken file is reported by its path instead of by a TensorFlow stack trace mid-epoch.

The decode policy (PNG/JPEG only, no CMYK, sides >= 2 px, at most 50 megapixels or
`CXR_CASCADE_MAX_PIXELS`) is `pipelines.image_policy`; `check_header` is its graph form, run by
`decode_image` before anything is decoded, so training, evaluation and the SavedModel apply it too.
"""

from __future__ import annotations

import concurrent.futures
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np
import tensorflow as tf

from pipelines.image_policy import (
    _JPEG_MAGIC,
    _PNG_MAGIC,
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_ENV,
    MIN_SIDE,
    _sniff_format,
    exif_orientation,
    image_bytes_problem,
    png_chunk,
    max_pixels,
    read_header,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "LUMA_WEIGHTS",
    "MAX_PIXELS_ENV",
    "MIN_SIDE",
    "BadFile",
    "check_header",
    "image_bytes_problem",
    "max_pixels",
    "png16_bits",
    "read_header",
    "decode_image",
    "decode_mask",
    "format_bad_files",
    "read_image",
    "read_mask",
    "to_grayscale",
    "to_unit_float",
    "upright_bytes",
    "validate_image_files",
]

#: ITU-R BT.601 luma weights for R, G, B.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)



def _be_uint32(image_bytes: tf.Tensor, offset: int) -> tf.Tensor:
    # Padded: `substr` raises ("pos 16 out of range") past the end; short input reads as 0,
    # which the size check refuses.
    padded = tf.strings.join([image_bytes, tf.constant(b"\0" * (offset + 4))])
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, offset, 4), tf.uint8), tf.int64)
    return raw[0] * 16777216 + raw[1] * 65536 + raw[2] * 256 + raw[3]


def check_header(image_bytes: tf.Tensor, cap: Optional[int] = None) -> tf.Operation:
    """Graph form of `image_bytes_problem` for PNG/JPEG bytes: an op that raises
    InvalidArgumentError for a GIF/BMP/unknown signature, a CMYK JPEG, a side under `MIN_SIDE` or
    more than `cap` pixels (default `max_pixels()`, read when the graph is traced), before
    anything is decoded. Short or garbage input is left to the decoder's own error."""
    cap = max_pixels() if cap is None else int(cap)
    image_bytes = tf.convert_to_tensor(image_bytes, dtype=tf.string)
    is_png = tf.equal(tf.strings.substr(image_bytes, 0, len(_PNG_MAGIC)), _PNG_MAGIC)
    is_jpeg = tf.equal(tf.strings.substr(image_bytes, 0, len(_JPEG_MAGIC)), _JPEG_MAGIC)

    def png_shape():
        return tf.stack([_be_uint32(image_bytes, 20), _be_uint32(image_bytes, 16), tf.constant(0, tf.int64)])

    def jpeg_shape():
        return tf.cast(tf.io.extract_jpeg_shape(image_bytes), tf.int64)

    def no_shape():
        return tf.constant([-1, -1, -1], tf.int64)

    shape = tf.cond(is_png, png_shape, lambda: tf.cond(is_jpeg, jpeg_shape, no_shape))
    height, width, channels = shape[0], shape[1], shape[2]
    known = tf.logical_or(is_png, is_jpeg)
    return tf.group(
        tf.debugging.Assert(known, ["not a PNG or JPEG file (GIF, BMP and others: convert to PNG)"]),
        tf.debugging.Assert(
            tf.logical_or(tf.logical_not(is_jpeg), tf.not_equal(channels, 4)),
            ["CMYK JPEG: not supported; convert it to grayscale"],
        ),
        tf.debugging.Assert(
            tf.logical_or(tf.logical_not(known), tf.minimum(height, width) >= MIN_SIDE),
            ["image too small (HxW):", height, width, f"each side must be at least {MIN_SIDE}"],
        ),
        tf.debugging.Assert(
            tf.logical_or(tf.logical_not(known), height * width <= cap),
            ["image over the pixel cap (HxW):", height, width,
             f"cap {cap} pixels, raise it with {MAX_PIXELS_ENV}=N"],
        ),
    )


def to_unit_float(image: tf.Tensor, max_value: int) -> tf.Tensor:
    """Integer image -> float32 ``v * float32(1 / max_value)`` (within one ulp of ``v / max_value``).

    Written as an explicit multiplication: a graph optimiser may rewrite a division by a constant
    into a multiplication by its reciprocal in some graphs and not in others (Grappler did, and a
    tf.data pipeline and a serving tf.function then differed by one ulp); a multiplication is left
    alone, so every path computes the same bits.
    """
    return tf.cast(image, tf.float32) * tf.constant(1.0 / float(max_value), tf.float32)


# float32(1 / (2**b - 1)) for b = 0..16 (b = 0 unused): a multiplication, as `to_unit_float`.
_RECIPROCALS = tf.constant([0.0] + [1.0 / float((1 << b) - 1) for b in range(1, 17)], tf.float32)


def _png_sbit(image_bytes: tf.Tensor) -> tf.Tensor:
    """Graph form of `pipelines.image_policy.png_sbit`: int32 scalar, 0 when there is none."""
    size = tf.strings.length(image_bytes)
    padded = tf.strings.join([image_bytes, tf.constant(b"\0" * 12)])

    def kind(pos):
        return tf.strings.substr(padded, pos + 4, 4)

    def keep_walking(pos, steps):
        return tf.logical_and(
            tf.logical_and(pos + 8 <= size, steps < 256),
            tf.logical_not(tf.reduce_any(tf.equal(kind(pos), [b"sBIT", b"IDAT", b"IEND"]))),
        )

    def next_chunk(pos, steps):
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, pos, 4), tf.uint8), tf.int64)
        length = raw[0] * 16777216 + raw[1] * 65536 + raw[2] * 256 + raw[3]
        # A corrupt length past the end stops the walk (pos > size) instead of overflowing.
        return tf.cast(tf.minimum(tf.cast(pos, tf.int64) + 12 + length, tf.cast(size, tf.int64) + 1), tf.int32), steps + 1

    pos, _ = tf.while_loop(keep_walking, next_chunk, [tf.constant(8), tf.constant(0)])
    found = tf.logical_and(pos + 8 <= size, tf.equal(kind(pos), b"sBIT"))
    values = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, pos + 8, 3), tf.uint8), tf.int32)
    colour_type = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 25, 1), tf.uint8)[0], tf.int32)
    colour = tf.logical_or(tf.equal(colour_type, 2), tf.equal(colour_type, 6))
    sbit = tf.where(colour, tf.reduce_max(values), values[0])
    return tf.where(found, sbit, 0)


def png16_bits(image_bytes: tf.Tensor, raw: tf.Tensor) -> tf.Tensor:
    """The bit depth b (int32 scalar) a 16-bit PNG's samples `raw` (uint16 ``[H, W, C]``) are read
    with, by `pipelines.image_policy.png_sample_bits`'s rule, in the graph."""
    channels = tf.shape(raw)[-1]
    colour = raw[..., : tf.where(channels >= 3, 3, 1)]
    largest = tf.cast(tf.reduce_max(colour), tf.int32)
    length = tf.reduce_sum(tf.cast(largest >= tf.constant([1 << k for k in range(16)]), tf.int32))
    by_max = tf.minimum(16, tf.maximum(8, length + length % 2))
    sbit = _png_sbit(image_bytes)
    by_sbit = tf.where(
        tf.logical_and(sbit < 16, largest < tf.bitwise.left_shift(1, tf.minimum(sbit, 16))), sbit, 16
    )
    return tf.where(sbit > 0, by_sbit, by_max)


def to_grayscale(image: tf.Tensor) -> tf.Tensor:
    """Converts a float image ``[H, W, C]`` with C in {1, 2, 3, 4} to ``[H, W, 1]``.

    C = 1 (gray) is returned as is, C = 2 (gray + alpha) keeps channel 0, C = 3 (RGB) and
    C = 4 (RGBA) become BT.601 luma of the first three channels; alpha is dropped.
    The channel count may be unknown until run time (``decode_png(channels=0)`` in a graph).
    """
    image = tf.convert_to_tensor(image)
    channels = tf.shape(image)[-1]
    weights = tf.constant(LUMA_WEIGHTS, dtype=image.dtype)

    def luma():
        rgb = image[..., :3]
        return (
            rgb[..., 0:1] * weights[0] + rgb[..., 1:2] * weights[1] + rgb[..., 2:3] * weights[2]
        )

    gray = tf.cond(channels >= 3, luma, lambda: image[..., :1])
    gray.set_shape(image.shape[:-1].concatenate([1]))
    return gray


def decode_image(image_bytes: tf.Tensor) -> tf.Tensor:
    """Decodes one encoded image to float32 ``[H, W, 1]`` in ``[0, 1]`` (graph-safe).

    Args:
        image_bytes: scalar tf.string, the file's contents (JPEG, PNG 8/16 bit).

    Returns:
        float32 ``[H, W, 1]``; see the module docstring for range, colour and alpha rules.

    Raises:
        tf.errors.InvalidArgumentError at run time for bytes the decode policy refuses
        (`check_header`) or no decoder accepts; data sets avoid this by running
        `validate_image_files` first.
    """
    image_bytes = tf.convert_to_tensor(image_bytes, dtype=tf.string)
    # The decode policy (format, CMYK, size, pixel cap) from the header, before any decoding.
    with tf.control_dependencies([check_header(image_bytes)]):
        image_bytes = tf.identity(image_bytes)
    is_png = tf.equal(tf.strings.substr(image_bytes, 0, len(_PNG_MAGIC)), _PNG_MAGIC)

    # IHDR's bit depth byte: 8-byte signature, chunk length, "IHDR", width, height, then depth.
    is_png16 = tf.logical_and(is_png, tf.equal(tf.strings.substr(image_bytes, 24, 1), b"\x10"))

    def png16():
        raw = tf.io.decode_png(image_bytes, channels=0, dtype=tf.uint16)
        return tf.cast(raw, tf.float32) * tf.gather(_RECIPROCALS, png16_bits(image_bytes, raw))

    def png8():
        # 1, 2 and 4-bit grey are scaled to 8 bit by libpng; palettes are expanded to RGB(A).
        return to_unit_float(tf.io.decode_png(image_bytes, channels=0, dtype=tf.uint8), 255)

    def png():
        return tf.cond(is_png16, png16, png8)

    def jpeg():
        # The accurate integer IDCT (libjpeg's JDCT_ISLOW), as OpenCV and PIL decode by default;
        # TensorFlow's default fast IDCT is off by up to 4 grey levels.
        raw = tf.io.decode_jpeg(image_bytes, channels=0, dct_method="INTEGER_ACCURATE")
        return to_unit_float(raw, 255)

    # check_header has refused everything that is neither PNG nor JPEG.
    image = tf.cond(is_png, png, jpeg)
    image.set_shape([None, None, None])
    return to_grayscale(image)


# EXIF orientation -> the stored pixels [H, W, C] as a viewer shows them (PIL's exif_transpose).
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def upright_bytes(data: bytes) -> tuple[bytes, int]:
    """The image turned as its EXIF orientation says (what every viewer displays), as PNG bytes
    that `decode_image` reads to exactly the turned pixels of the original's decode; and the
    orientation (1 = none: `data` is returned as is).

    The SavedModel reads the stored pixels (its graph does not parse EXIF): `predict` and
    `segment` call this before handing bytes to it, and a TF Serving client must send upright
    images. A 16-bit PNG keeps its ``sBIT`` chunk, so its bit depth is read as before.

    Raises:
        tf.errors.InvalidArgumentError: bytes that do not decode.
    """
    orientation = exif_orientation(data)
    if orientation == 1:
        return data, 1
    image_bytes = tf.constant(data)
    if data.startswith(_PNG_MAGIC):
        depth = tf.uint16 if data[24:25] == b"\x10" else tf.uint8
        raw = tf.io.decode_png(image_bytes, channels=0, dtype=depth).numpy()
    else:
        raw = tf.io.decode_jpeg(image_bytes, channels=0, dct_method="INTEGER_ACCURATE").numpy()
    encoded = tf.io.encode_png(np.ascontiguousarray(_UPRIGHT[orientation](raw))).numpy()
    sbit = png_chunk(data, b"sBIT", before=(b"IDAT", b"IEND")) if raw.dtype == np.uint16 else None
    if sbit is not None:  # right after IHDR (8-byte signature + 25-byte IHDR chunk)
        chunk = struct.pack(">I", len(sbit)) + b"sBIT" + sbit
        encoded = encoded[:33] + chunk + struct.pack(">I", zlib.crc32(b"sBIT" + sbit)) + encoded[33:]
    return encoded, orientation


def read_image(path: tf.Tensor) -> tf.Tensor:
    """Reads and decodes the image at ``path`` (scalar tf.string) to float32 ``[H, W, 1]``."""
    return decode_image(tf.io.read_file(path))


def decode_mask(mask_bytes: tf.Tensor, threshold: float = 0.5) -> tf.Tensor:
    """Decodes a lung mask to float32 ``[H, W, 1]`` with values in {0, 1}.

    A pixel is lung when its decoded gray value exceeds ``threshold`` (0.5 by default), so in the
    V7 lung masks 255 (lung) is kept and 127 (V7's "Ignore", a device over the lung) is not.
    """
    gray = decode_image(mask_bytes)
    return tf.cast(gray > threshold, tf.float32)


#: Separator of several mask files in one `Record.mask_path` (left and right lung).
MASK_SEPARATOR = "|"


def read_mask(mask_path: tf.Tensor, threshold: float = 0.5) -> tf.Tensor:
    """Reads a mask, or the union of several masks joined with ``"|"``, as {0, 1} ``[H, W, 1]``."""
    mask_path = tf.convert_to_tensor(mask_path, tf.string)
    parts = tf.strings.split(mask_path, MASK_SEPARATOR)

    def union():
        masks = tf.map_fn(
            lambda p: decode_mask(tf.io.read_file(tf.strings.strip(p)), threshold),
            parts,
            fn_output_signature=tf.TensorSpec([None, None, 1], tf.float32),
        )
        return tf.reduce_max(masks, axis=0)

    mask = tf.cond(
        tf.size(parts) > 1, union, lambda: decode_mask(tf.io.read_file(mask_path), threshold)
    )
    mask.set_shape([None, None, 1])
    return mask


@dataclass(frozen=True)
class BadFile:
    """One file that failed validation: its path and a one-line reason."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


# Validation results keyed by (path, size, mtime): building train/val/test sets, or several
# experiments, in one process decodes each file once.
_VALIDATION_CACHE: dict[tuple[str, int, int, int], tuple[Optional[str], Optional[tuple[int, int]]]] = {}


def _check_one(path: str) -> tuple[Optional[str], Optional[tuple[int, int]]]:
    """Returns (reason or None, (height, width) or None) for one file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "file not found", None
    except OSError as err:
        return f"cannot stat file ({err.strerror or err})", None
    key = (path, st.st_size, st.st_mtime_ns, max_pixels())
    cached = _VALIDATION_CACHE.get(key)
    if cached is not None:
        return cached
    if st.st_size == 0:
        result: tuple[Optional[str], Optional[tuple[int, int]]] = ("empty file (0 bytes)", None)
    else:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as err:
            result = (f"cannot read file ({err.strerror or err})", None)
        else:
            fmt = _sniff_format(data[:8])
            problem = image_bytes_problem(data)
            if problem is not None:
                result = (problem, None)
            else:
                try:
                    image = decode_image(tf.constant(data))
                    shape = (int(image.shape[0]), int(image.shape[1]))
                    result = (None, shape) if min(shape) > 0 else (f"{fmt} image has size 0", None)
                except (tf.errors.OpError, ValueError) as err:
                    message = getattr(err, "message", str(err)).strip().splitlines()
                    detail = message[0] if message else type(err).__name__
                    result = (f"corrupt or truncated {fmt} image ({detail})", None)
    _VALIDATION_CACHE[key] = result
    return result


def validate_image_files(
    paths: Sequence[str],
    mask_paths: Optional[Sequence[str]] = None,
    *,
    num_workers: Optional[int] = None,
) -> list[BadFile]:
    """Decodes every file once (eagerly, with the graph decoder) and lists those that fail.

    Args:
        paths: image files.
        mask_paths: optional masks, one per image ("" = none). A mask must decode and have its
            image's pixel size; otherwise the image's entry is reported as bad.
        num_workers: decoding threads (TensorFlow releases the GIL); default ``os.cpu_count()``.

    Returns:
        The bad files, in input order; one entry per image (the reason names the mask when the mask
        is at fault). Empty when everything decodes.
    """
    paths = [os.fspath(p) for p in paths]
    masks = [os.fspath(m) if m else "" for m in (mask_paths or [""] * len(paths))]
    if len(masks) != len(paths):
        raise ValueError(
            "`mask_paths` must have one entry per image. "
            f"Received: len(paths)={len(paths)}, len(mask_paths)={len(masks)}"
        )
    mask_parts = {m: [p.strip() for p in m.split(MASK_SEPARATOR) if p.strip()] for m in masks if m}
    unique = sorted(set(paths) | {p for parts in mask_parts.values() for p in parts})
    workers = num_workers or min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results = dict(zip(unique, pool.map(_check_one, unique)))
    bad = []
    for path, mask in zip(paths, masks):
        reason, shape = results[path]
        if reason is not None:
            bad.append(BadFile(path, reason))
            continue
        for part in mask_parts.get(mask, []):
            mask_reason, mask_shape = results[part]
            if mask_reason is not None:
                bad.append(BadFile(path, f"its mask {part}: {mask_reason}"))
                break
            if mask_shape != shape:
                bad.append(
                    BadFile(
                        path,
                        f"its mask {part} is {mask_shape[0]}x{mask_shape[1]} (HxW) but the image "
                        f"is {shape[0]}x{shape[1]}",
                    )
                )
                break
    return bad


def format_bad_files(bad: Iterable[BadFile], limit: int = 10) -> str:
    """One line per bad file (at most ``limit``, then a count of the rest)."""
    bad = list(bad)
    lines = [f"  {b}" for b in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more")
    return "\n".join(lines)
