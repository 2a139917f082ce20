"""Writing SavedModels in TF Serving's layout, atomically.

TF Serving watches ``MODELS_DIR/<name>/`` and loads every numeric sub-folder as a version. A
half-written version folder could be picked up mid-write, so each SavedModel is written to a hidden
temporary folder next to its destination (same file system) and renamed into
``MODELS_DIR/<name>/<version>`` only once complete. An existing version is never overwritten unless
``force=True``; then the old folder is moved aside, the new one renamed in, and the old one deleted,
so a reader sees either the old or the new model, never a mixture.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

import keras
import tensorflow as tf

from cxr_cascade.export.serving import BYTES_ENDPOINT, Endpoint

__all__ = [
    "INFO_FILE",
    "existing_versions",
    "next_version",
    "StagedModel",
    "publish_savedmodel",
    "stage_savedmodel",
    "write_savedmodel",
]

PathLike = Union[str, os.PathLike]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


INFO_FILE = "assets.extra/cxr_cascade.json"


def write_savedmodel(
    path: PathLike,
    endpoints: Mapping[str, Endpoint],
    track: Sequence[keras.Model] = (),
    info: Optional[Mapping] = None,
) -> Path:
    """Writes one SavedModel with `keras.export.ExportArchive` (TensorFlow backend).

    Args:
        path: folder to create (must not exist).
        endpoints: {name: (function, input signature)}; `serving_default` is written first so that
            TF Serving's default signature is the bytes endpoint.
        track: the Keras models whose variables the endpoints use.
        info: JSON-able description (class names, preprocessing, sources) written to
            ``assets.extra/cxr_cascade.json``, the SavedModel folder TF Serving leaves alone.

    Returns:
        `path` as a Path.
    """
    if BYTES_ENDPOINT not in endpoints:
        raise ValueError(
            f"`endpoints` must include {BYTES_ENDPOINT!r}. Received: endpoints={sorted(endpoints)}"
        )
    archive = keras.export.ExportArchive()
    for model in track:
        archive.track(model)
    order = [BYTES_ENDPOINT] + sorted(name for name in endpoints if name != BYTES_ENDPOINT)
    for name in order:
        fn, signature = endpoints[name]
        archive.add_endpoint(name, tf.function(fn, autograph=False), input_signature=signature)
    archive.write_out(os.fspath(path), verbose=False)
    if info is not None:
        target = Path(path) / INFO_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    return Path(path)


def existing_versions(models_dir: PathLike, name: str) -> list[int]:
    """Numeric version folders of model `name`, ascending."""
    folder = Path(models_dir) / name
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(models_dir: PathLike, names: Iterable[str]) -> int:
    """One more than the highest version any of `names` has (1 for a new folder), so a
    multi-model export gets one version number for all its models."""
    highest = max((max(existing_versions(models_dir, n), default=0) for n in names), default=0)
    return highest + 1


def _check_destination(models_dir: PathLike, name: str, version: int, force: bool) -> Path:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            "`name` must be letters, digits, '_', '.' or '-' (TF Serving model name). "
            f"Received: name={name!r}"
        )
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive integer. Received: version={version!r}")
    final = Path(models_dir) / name / str(version)
    if final.exists() and not force:
        raise FileExistsError(
            f"{final} already exists; choose another --version or pass --force to replace it"
        )
    return final


class StagedModel:
    """A SavedModel written to a hidden temporary folder beside its destination, not yet visible.

    `commit()` renames it into place; `discard()` deletes it. Exporting several models stages all
    of them first, so that a failure in the last leaves none of them half-published.
    """

    def __init__(self, tmp: Path, final: Path, force: bool):
        self.tmp, self.final, self.force = tmp, final, force

    def commit(self) -> Path:
        staged = self.tmp / "model"
        final, parent = self.final, self.final.parent
        try:
            if final.exists():
                if not self.force:
                    raise FileExistsError(
                        f"{final} already exists; choose another --version or pass --force to "
                        "replace it"
                    )
                old = parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
                os.rename(final, old)
                try:
                    os.rename(staged, final)
                except BaseException:
                    os.rename(old, final)
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(staged, final)
        finally:
            self.discard()
        return final

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def stage_savedmodel(
    models_dir: PathLike,
    name: str,
    version: int,
    endpoints: Mapping[str, Endpoint],
    track: Sequence[keras.Model] = (),
    force: bool = False,
    info: Optional[Mapping] = None,
) -> StagedModel:
    """Writes the SavedModel for ``models_dir/name/version`` into a temporary folder next to it."""
    final = _check_destination(models_dir, name, version, force)
    final.parent.mkdir(parents=True, exist_ok=True)
    # A dot-prefixed, non-numeric name: TF Serving never mistakes it for a version.
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=final.parent))
    try:
        write_savedmodel(tmp / "model", endpoints, track, info)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return StagedModel(tmp, final, force)


def publish_savedmodel(
    models_dir: PathLike,
    name: str,
    version: int,
    endpoints: Mapping[str, Endpoint],
    track: Sequence[keras.Model] = (),
    force: bool = False,
) -> Path:
    """Writes ``models_dir/name/version`` atomically (temporary folder, then rename).

    Args:
        models_dir: TF Serving's base folder.
        name: model name (letters, digits, ``_.-``).
        version: positive integer.
        endpoints, track: as in `write_savedmodel`.
        force: replace an existing version instead of refusing.

    Returns:
        The version folder.

    Raises:
        FileExistsError: the version exists and `force` is False (nothing is written).
        ValueError: bad `name` or `version`.
    """
    return stage_savedmodel(models_dir, name, version, endpoints, track, force).commit()
