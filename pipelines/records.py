"""Records: one row per image, the table every data step of cxr-cascade reads and writes.

A manifest is a CSV file with the columns of `MANIFEST_COLUMNS` (extra columns such as `license`
are kept). Paths inside a manifest may be absolute or relative to the manifest's folder; records in
memory always hold absolute paths. `mask_path` holds one mask file, or several joined with
`MASK_SEPARATOR` (Montgomery's left and right lung masks), which `load_mask` merges.

Readers return a `RecordTable`: a list of `Record` that also carries the `problems` met while
reading (a missing file, a name that does not parse) so that the caller reports them instead of
the reader crashing or silently dropping rows.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

from pipelines.atomic import atomic_path
from pipelines.labels import LABELS

PathLike = Union[str, os.PathLike]

MANIFEST_COLUMNS: tuple[str, ...] = ("path", "label", "patient_id", "source", "split", "mask_path")
OPTIONAL_COLUMNS: tuple[str, ...] = ("license",)
REQUIRED_COLUMNS: tuple[str, ...] = ("path", "label", "patient_id", "source")
SPLITS: tuple[str, ...] = ("train", "val", "test")
MASK_SEPARATOR = "|"


def source_dataset(source: str) -> str:
    """The data set part of a `Record.source`: "ieee8023/eurorad.org" -> "ieee8023"."""
    return str(source).split("/", 1)[0]


@dataclass(frozen=True)
class Record:
    """One image.

    Attributes:
        path: absolute path of the image file.
        label: one of `pipelines.labels.LABELS`.
        patient_id: patient identifier *within its source* (see `patient_key`).
        source: data set name, e.g. "kermany", "ieee8023", "lung-masks", optionally followed by
            "/" and the publishing origin inside that data set (the ieee8023 reader writes
            "ieee8023/radiopaedia.org"); `dataset` is the part before the "/".
        split: "train", "val", "test" or "" when not assigned.
        mask_path: lung mask file(s), `MASK_SEPARATOR`-joined, or "".
        license: per-image licence when the data set states one.
    """

    path: str
    label: str
    patient_id: str
    source: str
    split: str = ""
    mask_path: str = ""
    license: str = ""

    @property
    def dataset(self) -> str:
        """The data set of `source` (its part before "/"): "ieee8023" for "ieee8023/eurorad.org"."""
        return source_dataset(self.source)

    @property
    def patient_key(self) -> str:
        """`dataset:patient_id`: two data sets' `person1` are different patients, while one
        ieee8023 patient whose films come from two publications stays one patient."""
        return f"{self.dataset}:{self.patient_id}"

    def replace(self, **changes) -> "Record":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, printed as one line naming the file.

    `severity` is "error" (the file or row cannot be used as it stands) or "warning" (usable, but
    worth knowing: a 16-bit or RGBA image, a duplicate inside one split).
    """

    path: str
    message: str
    row: Optional[int] = None
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.path}:{self.row}" if self.row is not None else self.path
        return f"{where}: {self.severity}: {self.message}"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class RecordTable(list):
    """A list of `Record` with the `problems` met while building it and a `skipped` count.

    `skipped` counts rows left out on purpose (a CT row, a lateral view) by reason; they are not
    problems.
    """

    def __init__(
        self,
        records: Iterable[Record] = (),
        problems: Iterable[Problem] = (),
        skipped: Optional[Counter] = None,
    ):
        super().__init__(records)
        self.problems: list[Problem] = list(problems)
        self.skipped: Counter = Counter(skipped or {})

    def extend_table(self, other: "RecordTable") -> None:
        self.extend(other)
        self.problems.extend(getattr(other, "problems", ()))
        self.skipped.update(getattr(other, "skipped", {}))


def _resolve(value: str, base: Path) -> str:
    if not value:
        return ""
    parts = []
    for part in value.split(MASK_SEPARATOR):
        part = part.strip()
        if not part:
            continue
        candidate = Path(part).expanduser()
        if not candidate.is_absolute():
            candidate = base / candidate
        parts.append(os.path.normpath(str(candidate)))
    return MASK_SEPARATOR.join(parts)


def scan_manifest(path: PathLike) -> RecordTable:
    """Reads a manifest leniently: every bad row becomes a `Problem`, good rows become records.

    Used by `cxr-cascade data check`, which must report everything instead of stopping at the
    first error. Rows with an unknown label are kept (label as written) and reported, so that the
    check can count them; `read_manifest` refuses them.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file is not a CSV with the required columns (nothing can be read).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    base = path.resolve().parent
    table = RecordTable()
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as error:
        raise ValueError(f"{path}: cannot open manifest: {error}") from error
    with handle:
        try:
            reader = csv.DictReader(handle)
            fieldnames = [name.strip() for name in (reader.fieldnames or [])]
        except (csv.Error, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: not a readable CSV manifest: {error}") from error
        missing = [column for column in REQUIRED_COLUMNS if column not in fieldnames]
        if missing:
            raise ValueError(
                f"{path}: manifest lacks required column(s) {', '.join(missing)}; "
                f"expected columns {','.join(MANIFEST_COLUMNS)}. Received: columns={fieldnames}"
            )
        reader.fieldnames = fieldnames
        row_number = 1
        try:
            for row_number, row in enumerate(reader, start=2):
                if None in row:
                    table.problems.append(
                        Problem(str(path), "more fields than the header names", row_number)
                    )
                    continue
                values = {key: (value or "").strip() for key, value in row.items()}
                if not any(values.values()):
                    continue  # blank line
                if all(values.get(column) == column for column in fieldnames):
                    table.problems.append(Problem(
                        str(path), "repeats the header line (two files concatenated?); row skipped",
                        row_number))
                    continue
                empty = [column for column in REQUIRED_COLUMNS if not values.get(column)]
                if empty:
                    table.problems.append(
                        Problem(str(path), f"empty {', '.join(empty)}", row_number)
                    )
                    continue
                split = values.get("split", "")
                if split and split not in SPLITS:
                    table.problems.append(
                        Problem(
                            str(path),
                            f"unknown split {split!r}; allowed: {', '.join(SPLITS)} or empty",
                            row_number,
                        )
                    )
                    continue
                if values["label"] not in LABELS:
                    table.problems.append(
                        Problem(
                            str(path),
                            f"unknown label {values['label']!r}; allowed: {', '.join(LABELS)}",
                            row_number,
                        )
                    )
                table.append(
                    Record(
                        path=_resolve(values["path"], base),
                        label=values["label"],
                        patient_id=values["patient_id"],
                        source=values["source"],
                        split=split,
                        mask_path=_resolve(values.get("mask_path", ""), base),
                        license=values.get("license", ""),
                    )
                )
        except (csv.Error, UnicodeDecodeError) as error:
            table.problems.append(
                Problem(str(path), f"unreadable CSV after this row: {error}", row_number)
            )
    return table


def read_manifest(path: PathLike) -> list[Record]:
    """Reads and validates a manifest written by `write_manifest` (or by hand).

    Checks: the required columns exist; path, label, patient_id and source are non-empty; the label
    is one of `pipelines.labels.LABELS`; split is empty or train/val/test. Relative paths are
    resolved against the manifest's folder.

    Returns:
        The records, in file order, with absolute paths.

    Raises:
        FileNotFoundError: if the manifest does not exist.
        ValueError: naming the file, the row number and the problem (all bad rows, up to 10).
    """
    table = scan_manifest(path)
    if table.problems:
        lines = [str(problem) for problem in table.problems[:10]]
        more = len(table.problems) - len(lines)
        if more > 0:
            lines.append(f"... and {more} more")
        raise ValueError("invalid manifest:\n  " + "\n  ".join(lines))
    return list(table)


def _relative(value: str, base: Optional[Path]) -> str:
    if not value or base is None:
        return value
    return MASK_SEPARATOR.join(
        os.path.relpath(part, base) for part in value.split(MASK_SEPARATOR)
    )


def write_manifest(
    records: Iterable[Record], path: PathLike, *, relative: bool = False
) -> Path:
    """Writes `records` as a manifest CSV, atomically (temporary file in the same folder, then rename).

    Args:
        records: the records; `license` is written as an extra column when any record has one.
        path: the CSV to write; its folder is created if needed.
        relative: write paths relative to the manifest's folder (portable manifests).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = list(records)
    for index, record in enumerate(records):
        if not isinstance(record, Record):
            raise ValueError(
                f"write_manifest expects Record objects. Received: records[{index}]={record!r}"
            )
    columns = list(MANIFEST_COLUMNS)
    if any(record.license for record in records):
        columns.append("license")
    base = path.resolve().parent if relative else None
    with atomic_path(path) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for record in records:
                row = dataclasses.asdict(record)
                row["path"] = _relative(record.path, base)
                row["mask_path"] = _relative(record.mask_path, base)
                writer.writerow([row[column] for column in columns])
    return path


def count_by(records: Iterable[Record], *fields: str) -> Counter:
    """Counter of records keyed by the tuple of `fields` (one field: the bare value)."""
    counter: Counter = Counter()
    for record in records:
        key = tuple(getattr(record, field) for field in fields)
        counter[key[0] if len(fields) == 1 else key] += 1
    return counter
