"""A disk cache of decoded, preprocessed images, keyed by what produced them.

`tf.data.Dataset.cache(filename)` reuses whatever it finds under ``filename``: after a change of
image size, CLAHE settings or file list it would silently serve the old images. `ImageCache`
names the cache files by a hash of everything the cached elements depend on, so a cache is only
ever reused for identical inputs and settings, and epochs after the first skip JPEG decoding and
resizing (the slow part of the input pipeline, see benchmarks/bench_pipeline.py).

    ds = build_dataset(records, ..., cache=ImageCache("build/cache"))

The key covers: `CACHE_VERSION` (bump it when decoding or preprocessing code changes its
output), the preprocessing settings, every element's columns in order (paths, labels, flags) and
each file's size and modification time (an edited image invalidates the cache). A segmentation
model (`mask_fn`) cannot be hashed: it must carry a ``cache_key`` attribute (e.g. the hash of its
weights file), else the cache refuses it.

A cache is complete once one epoch has been read to the end (TensorFlow writes
``<prefix>.index`` last and discards a partial one); until then every epoch decodes. Old caches
are never deleted automatically: remove the directory to reclaim disk space
(``N * S * S * 4`` bytes per cache, about 1 MiB per image at 512 px).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

__all__ = ["CACHE_VERSION", "ImageCache", "cache_key", "resolve_cache"]

# Part of every key: bump when pipelines.decode / pipelines.preprocess change their output.
CACHE_VERSION = 1


def _file_stamp(path: str) -> list:
    try:
        stat = os.stat(path)
    except OSError:
        return [path, None, None]
    return [path, stat.st_size, stat.st_mtime_ns]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [v.decode() if isinstance(v, bytes) else str(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (np.generic,)):
        return value.item()
    return value


def cache_key(settings: Mapping[str, Any], columns: Mapping[str, Any], file_columns=("path", "mask_path")) -> str:
    """Hex SHA-256 (first 20 digits) of settings, element columns and the files' sizes and times.

    Args:
        settings: JSON-serialisable preprocessing settings (image size, CLAHE, ...).
        columns: per-element columns (NumPy arrays or lists, equal length): what each cached
            element is made from, in order.
        file_columns: the columns holding file paths ("" = none) whose size and modification
            time join the key.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": CACHE_VERSION, "settings": _jsonable(settings)}, sort_keys=True).encode())
    for name in sorted(columns):
        values = _jsonable(np.asarray(columns[name]))
        digest.update(json.dumps([name, values]).encode())
        if name in file_columns:
            # Several masks of one image are joined by "|" (pipelines.records).
            stamps = [_file_stamp(f) for p in sorted(set(values)) if p for f in p.split("|")]
            digest.update(json.dumps(stamps).encode())
    return digest.hexdigest()[:20]


@dataclass(frozen=True)
class ImageCache:
    """A directory of keyed tf.data cache files (see the module docstring).

    Attributes:
        directory: where the cache files go (created when needed).
        name: file name stem, e.g. "train" (the key is appended).
    """

    directory: str
    name: str = "images"

    def __post_init__(self):
        if not isinstance(self.directory, (str, os.PathLike)) or not os.fspath(self.directory):
            raise ValueError(f"`directory` must be a non-empty path. Received: directory={self.directory!r}")

    def prefix(self, settings: Mapping[str, Any], columns: Mapping[str, Any]) -> str:
        """The `Dataset.cache` file prefix for these settings and elements."""
        directory = os.fspath(self.directory)
        os.makedirs(directory, exist_ok=True)
        return os.path.join(directory, f"{self.name}-{cache_key(settings, columns)}")

    @staticmethod
    def is_complete(prefix: str) -> bool:
        """True when a full epoch has been written under `prefix`."""
        return os.path.exists(prefix + ".index")


def resolve_cache(cache, settings: Mapping[str, Any], columns: Mapping[str, Any], mask_fn: Optional[Any] = None):
    """`cache` as `Dataset.cache` wants it: an `ImageCache` becomes its keyed file prefix.

    True / False / None / a plain path prefix are returned unchanged (the caller's responsibility).

    Raises:
        ValueError: an `ImageCache` with a `mask_fn` that has no ``cache_key`` attribute.
    """
    if not isinstance(cache, ImageCache):
        return cache
    settings = dict(settings)
    if mask_fn is not None:
        key = getattr(mask_fn, "cache_key", None)
        if not key:
            raise ValueError(
                "An ImageCache cannot key images masked by a `mask_fn` without a `cache_key` "
                "attribute (a string identifying the model's weights). "
                f"Received: mask_fn={mask_fn!r}"
            )
        settings["mask_fn"] = str(key)
    return cache.prefix(settings, columns)
