"""Compatibility aliases, all in one place: the flat config keys of earlier versions.

`image_size`, `clahe_fraction`, `clahe_mode`, `segmented_copies` and `rotation_degrees` were
top-level fields of an experiment before the `preprocess` and `augment` sections held them. They
are still read (in a mapping given to `cxr_cascade.config.from_dict`, a `config.json`, an
experiment file, or as `--set image_size=...`), each use with a `DeprecationWarning` naming the
dotted key to write instead. Plain Python: `cxr_cascade.config` imports it, never the reverse.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

__all__ = ["FLAT_KEYS", "migrate_flat_keys", "resolve_key"]

# Flat key of earlier versions -> its dotted key in a section.
FLAT_KEYS = {
    "image_size": "preprocess.image_size",
    "clahe_fraction": "augment.clahe_fraction",
    "clahe_mode": "augment.clahe_mode",
    "segmented_copies": "augment.segmented_copies",
    "rotation_degrees": "augment.rotation_degrees",
}


def _warn(flat: str, where: str) -> None:
    warnings.warn(
        f"{where}: `{flat}` is a deprecated alias of `{FLAT_KEYS[flat]}`; write `{FLAT_KEYS[flat]}`",
        DeprecationWarning,
        stacklevel=4,
    )


def resolve_key(key: str, where: str) -> str:
    """`key` itself, or the dotted key a deprecated flat `key` stands for (with a warning)."""
    if key in FLAT_KEYS:
        _warn(key, where)
        return FLAT_KEYS[key]
    return key


def _section_dict(value: Any) -> Any:
    if value is None:
        return {}
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return dict(value) if isinstance(value, dict) else value


def migrate_flat_keys(data: dict, where: str) -> dict:
    """Moves the deprecated flat keys of `data` into their sections, in place, with a warning each.

    A flat key overrides its section's value, as a later key of `experiments.base.derive` does
    (`derive(STAGE1, image_size=64)` means 64). A section that is not a mapping is left for the
    config's type check to report.

    Returns:
        `data`.
    """
    for flat, dotted in FLAT_KEYS.items():
        if flat not in data:
            continue
        section, sub = dotted.split(".")
        part = _section_dict(data.get(section))
        if not isinstance(part, dict):
            continue
        _warn(flat, where)
        part[sub] = data.pop(flat)
        data[section] = part
    return data
