"""The label vocabulary of cxr-cascade and the ieee8023 `finding` -> label table.

Every record in the project carries one of the labels below, spelled exactly so. The cascade of
Lv et al. (2020) uses `normal` / `bacterial` / `viral` in stage 1 and `covid19` / `viral` in stage 2;
the others keep information that a data set carries so that it is never silently relabelled.

- `normal`: no finding.
- `bacterial`: bacterial pneumonia (Kermany `*_bacteria_*`; ieee8023 Streptococcus, Klebsiella, ...).
- `viral`: viral pneumonia other than COVID-19 (Kermany `*_virus_*`; ieee8023 SARS, MERS, Varicella...).
- `covid19`: COVID-19 (SARS-CoV-2) pneumonia.
- `fungal`: fungal pneumonia (ieee8023 Pneumocystis, Aspergillosis, ...).
- `tuberculosis`: tuberculosis (Montgomery `*_1` images; ieee8023 Tuberculosis).
- `unknown`: the data set says nothing usable about the cause (ieee8023 "Pneumonia", "ARDS",
  "Lipoid"; lung-mask images whose file name does not tell).

The ieee8023 mapping ships as `ieee8023_findings.csv` next to this module (columns
`finding,label,note`) so that a user can read it and override any row with their own CSV
(`--findings-map`). Matching is exact after trimming blanks and ignoring case; a hierarchical
finding as written by later versions of the data set ("Pneumonia/Viral/COVID-19") is matched from
its most specific part backwards.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Mapping, Optional, Union

LABELS: tuple[str, ...] = (
    "normal",
    "bacterial",
    "viral",
    "covid19",
    "fungal",
    "tuberculosis",
    "unknown",
)

FINDINGS_TABLE = Path(__file__).with_name("ieee8023_findings.csv")


def check_label(label: str) -> str:
    """Returns `label` if it is one of `LABELS`, else raises a ValueError naming the allowed set."""
    if label not in LABELS:
        raise ValueError(
            f"Unknown label. Allowed: {', '.join(LABELS)}. Received: label={label!r}"
        )
    return label


def _key(finding: str) -> str:
    return " ".join(finding.strip().split()).lower()


def read_findings_map(path: Union[str, os.PathLike]) -> dict[str, str]:
    """Reads a `finding,label[,note]` CSV into {normalised finding: label}.

    Raises:
        ValueError: naming the file and row when a column is missing or a label is unknown.
    """
    path = Path(path)
    mapping: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"finding", "label"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"{path}: findings map needs columns finding,label; missing: "
                f"{', '.join(sorted(missing))}"
            )
        for row_number, row in enumerate(reader, start=2):
            finding = (row.get("finding") or "").strip()
            label = (row.get("label") or "").strip()
            if not finding:
                raise ValueError(f"{path}:{row_number}: empty finding")
            if label not in LABELS:
                raise ValueError(
                    f"{path}:{row_number}: unknown label for finding {finding!r}. "
                    f"Allowed: {', '.join(LABELS)}. Received: label={label!r}"
                )
            mapping[_key(finding)] = label
    return mapping


def findings_map(
    override: Optional[Union[str, os.PathLike, Mapping[str, str]]] = None,
) -> dict[str, str]:
    """The shipped finding -> label table, with `override` rows (a CSV path or a dict) on top."""
    mapping = read_findings_map(FINDINGS_TABLE)
    if override is None:
        return mapping
    if isinstance(override, Mapping):
        for finding, label in override.items():
            mapping[_key(finding)] = check_label(label)
    else:
        mapping.update(read_findings_map(override))
    return mapping


def label_for_finding(finding: str, mapping: Mapping[str, str]) -> Optional[str]:
    """The label of an ieee8023 `finding`, or None when neither it nor any part is in `mapping`.

    "Pneumonia/Viral/COVID-19" is tried whole, then as "COVID-19", "Viral", "Pneumonia".
    """
    key = _key(finding)
    if key in mapping:
        return mapping[key]
    parts = [part for part in (p.strip() for p in key.split("/")) if part]
    for part in reversed(parts):
        if part in mapping:
            return mapping[part]
    return None
