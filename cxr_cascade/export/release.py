"""A release as TF Serving models: `export_release` (its verified models through `export_models`)
and `release_models_dir` (that export, written once into a cache folder and reused)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from cxr_cascade.artifacts.checksums import sha256_file
from cxr_cascade.artifacts.release import SUMS_FILE, cascade_rule, load_release, read_release, verify_release
from cxr_cascade.export.exporter import SERVING_NAMES, export_models

__all__ = ["export_release", "release_models_dir"]

PathLike = Union[str, os.PathLike]


def release_models_dir(release: PathLike, cache: Optional[PathLike] = None) -> Path:
    """The TF Serving export of a release, written once into a cache folder and reused.

    The release is verified as a whole first (`verify_release`: a changed file is refused,
    whether or not an export of it is cached), and the cache folder (``$CXR_CASCADE_CACHE`` or
    ``~/.cache/cxr-cascade``) is keyed by the sha256 of its SHA256SUMS, i.e. by the digests of
    every file: a rebuilt release is exported afresh, never answered from an older export.
    """
    verify_release(release)
    folder, _ = read_release(release)
    key = sha256_file(folder / SUMS_FILE)[:16]
    base = Path(cache or os.environ.get("CXR_CASCADE_CACHE") or Path.home() / ".cache" / "cxr-cascade")
    target = base / f"release-{key}"
    if not (target / "models.config").is_file():
        export_release(folder, target)
    return target


def export_release(release: PathLike, models_dir: PathLike, **kwargs) -> dict:
    """`export_models` on the release's verified models (its chance-level marks and its cascade
    rule travel along; ``rule=`` overrides the rule)."""
    folder, data = read_release(release, checked=True)
    present = data.get("models") or {}
    stages = {name: load_release(folder, role) for role, name in SERVING_NAMES.items() if role in present}
    kwargs.setdefault("chance_level", {role: m.get("chance_level") for role, m in present.items()})
    if kwargs.get("rule") is None:
        kwargs["rule"] = cascade_rule(data)
    return export_models(models_dir, **stages, **kwargs)
