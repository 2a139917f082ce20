"""Which records an experiment reads and trains on, for the trainer and evaluation alike.

- `read_sources`: every record of the `--data` paths (`PATH` or `FORMAT=PATH`, `parse_data_arg`),
  read with `pipelines.readers.read_dataset`; reader problems are reported, not fatal.
- `select_records`: the images `config.task` trains on (stage 1 the Kermany classes, stage 2
  COVID-19 vs the configured negative class, `registry.STAGE2_NEGATIVE_LABELS`; the U-Net every
  image with a mask); a class with no image is an error naming the class and what was found.
- `trained_records`: the records labelled as they train (`ExperimentConfig.trained_label`).
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

from cxr_cascade.config import ExperimentConfig
from cxr_cascade.registry import STAGE2_NEGATIVE_LABELS
# The data-set layouts `--data FORMAT=PATH` may name: the reader registry's (pipelines.readers).
from pipelines.readers import FORMATS as FORMAT_NAMES
from pipelines.readers import read_dataset


def parse_data_arg(text: str) -> tuple[Optional[str], str]:
    """`PATH` or `FORMAT=PATH` -> (format or None, path)."""
    name, sep, path = text.partition("=")
    if sep and name in FORMAT_NAMES:
        return name, path
    return None, text


def read_sources(data_paths: Sequence[str]) -> list:
    """All records of all `data_paths`, reader problems printed (first few) to stderr."""
    if not data_paths:
        raise ValueError(
            "no data: pass --data PATH (a Kermany chest_xray/ folder, an ieee8023 "
            "covid-chestxray-dataset/ folder, a lung-masks/ folder or a manifest .csv)"
        )
    records: list = []
    for text in data_paths:
        fmt, path = parse_data_arg(text)
        if not Path(path).exists():
            raise FileNotFoundError(f"--data {path}: no such file or folder")
        table = read_dataset(path, fmt)
        errors = [p for p in getattr(table, "problems", []) if getattr(p, "severity", "error") == "error"]
        if errors:
            print(
                f"warning: {path}: {len(errors)} file(s) or row(s) left out, e.g. {errors[0]}",
                file=sys.stderr,
            )
        if not table:
            raise ValueError(f"--data {path}: no usable images found")
        records.extend(table)
    return records


def label_counts(records) -> str:
    """`records`' labels and their counts, e.g. "bacterial 3, normal 5" (for messages)."""
    counts = Counter(r.label for r in records)
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no images"


def missing_classes(config: ExperimentConfig, records: Sequence) -> list:
    """The experiment's classes that none of `records` is trained as, in the config's order."""
    found = Counter(config.trained_label(r.label) for r in records)
    return [c for c in config.classes if not found.get(c)]


def select_records(config: ExperimentConfig, records: list, data_paths: Sequence[str]) -> list:
    """The images `config.task` trains on, or a clear error when a class is missing."""
    where = ", ".join(data_paths)
    if config.task == "unet":
        chosen = [r for r in records if r.mask_path]
        if not chosen:
            raise ValueError(
                f"--data {where}: no image has a lung mask; the U-Net needs a lung-masks folder "
                "(images/ + masks/) or a manifest with a mask_path column"
            )
        return chosen
    classes = set(config.classes)
    if config.task == "stage2":
        negative = set(STAGE2_NEGATIVE_LABELS[config.stage2_negative]) - classes
        kermany_viral = [r for r in records if r.source == "kermany" and r.label in classes]
        others = [r for r in records if r.source != "kermany" and r.label in classes
                  or r.dataset == "ieee8023" and r.label in negative]
        if config.stage2_negative == "ieee8023_plus_kermany_viral":
            if not kermany_viral:
                raise ValueError(
                    f"--data {where}: stage2_negative=ieee8023_plus_kermany_viral needs the Kermany "
                    "set too: add --data /path/to/chest_xray"
                )
            chosen = others + [r for r in kermany_viral if r.label == "viral"]
        else:
            chosen = others
    else:
        chosen = [r for r in records if r.label in classes]
    missing = missing_classes(config, chosen)
    if missing:
        raise ValueError(
            f"--data {where}: no images of class {', '.join(repr(m) for m in missing)} "
            f"(found: {label_counts(records)}); experiment {config.name!r} needs classes "
            f"{', '.join(config.classes)}"
        )
    return chosen


def trained_records(config: ExperimentConfig, records: list) -> list:
    """`records` with the label each trains as (`ExperimentConfig.trained_label`), for the pipelines."""
    return [r if config.trained_label(r.label) == r.label
            else dataclasses.replace(r, label=config.trained_label(r.label)) for r in records]
