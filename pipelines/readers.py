"""Readers for the public chest X-ray data sets, each in its publisher's own layout.

Every reader returns a `RecordTable` (a list of `Record`, with `.problems` and `.skipped`), never
crashes on a bad row and never labels a file it cannot understand: such files become problems.

Layouts (see /work/shared/data/README.md and the project README for where to download them):

- `kermany`: Kermany et al. 2018 pediatric pneumonia, Kaggle layout
  `chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/`. Label from folder and file name
  (`person1_bacteria_1.jpeg` bacterial, `person1_virus_6.jpeg` viral, `IM-0001-0001.jpeg` and
  `NORMAL2-IM-0012-0001.jpeg` normal). Patient numbers restart in each split, so patient ids are
  scoped by split: `train/person1`, `test/IM-0011`, `train/NORMAL2-IM-0012`.
- `ieee8023`: Cohen et al. covid-chestxray-dataset, `metadata.csv` + `images/`. X-ray frontal views
  by default; `finding` mapped by `pipelines/ieee8023_findings.csv` (overridable); patient id =
  `patientid`; licence kept.
- `lung-masks`: Kaggle "chest X-ray masks and labels" layout, `images/<stem>.<ext>` +
  `masks/<stem>_mask.png` (V7 Labs lung polygons in the project's data). Labels and patients come
  from Kermany-, Montgomery- or Shenzhen-style names, or from an ieee8023 `metadata.csv` when given;
  otherwise `unknown` with the stem as patient id.
- `montgomery`: NLM Montgomery County set, `CXR_png/MCUCXR_0001_0.png` with
  `ManualMask/leftMask/` and `ManualMask/rightMask/`; `_0` normal, `_1` tuberculosis.
- `manifest`: a CSV with columns path,label,patient_id,source[,split][,mask_path].
"""

from __future__ import annotations

import csv
import os
import re
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from pipelines.labels import findings_map, label_for_finding
from pipelines.records import (
    MASK_SEPARATOR,
    PathLike,
    Problem,
    Record,
    RecordTable,
    scan_manifest,
)

FORMATS: tuple[str, ...] = ("kermany", "ieee8023", "lung-masks", "montgomery", "manifest")
IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
DEFAULT_VIEWS: tuple[str, ...] = ("PA", "AP", "AP Supine")
DEFAULT_MODALITIES: tuple[str, ...] = ("X-ray",)

KERMANY_SPLITS = ("train", "val", "test")
KERMANY_CLASSES = ("NORMAL", "PNEUMONIA")
# person1_bacteria_1.jpeg, person1_virus_6.jpeg, person1_virus_6_2.jpeg (one such name in train)
_KERMANY_PNEUMONIA = re.compile(r"^(person\d+)_(bacteria|virus)_\d+(?:_\d+)*$", re.IGNORECASE)
# IM-0001-0001.jpeg, IM-0011-0001-0002.jpeg, NORMAL2-IM-0012-0001.jpeg
_KERMANY_NORMAL = re.compile(r"^((?:NORMAL\d*-)?IM-\d+)(?:-\d+)+$", re.IGNORECASE)
# MCUCXR_0001_0 (Montgomery), CHNCXR_0001_1 (Shenzhen): _0 normal, _1 tuberculosis
_NLM_TB = re.compile(r"^((?:MCU|CHN)CXR_\d+)_([01])$", re.IGNORECASE)


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__MACOSX") or name in ("Thumbs.db",)


def _visible_entries(folder: Path) -> list[os.DirEntry]:
    """The folder's entries sorted by name, hidden ones (see `_is_hidden`) left out."""
    return [e for e in sorted(os.scandir(folder), key=lambda e: e.name) if not _is_hidden(e.name)]


def parse_kermany_name(stem: str) -> Optional[tuple[str, str]]:
    """(label, patient) from a Kermany file stem, or None when the name does not follow the scheme.

    >>> parse_kermany_name("person1_bacteria_1")
    ('bacterial', 'person1')
    >>> parse_kermany_name("NORMAL2-IM-0012-0001")
    ('normal', 'NORMAL2-IM-0012')
    """
    match = _KERMANY_PNEUMONIA.match(stem)
    if match:
        kind = match.group(2).lower()
        return ("bacterial" if kind == "bacteria" else "viral"), match.group(1)
    match = _KERMANY_NORMAL.match(stem)
    if match:
        return "normal", match.group(1)
    return None


def _kermany_root(root: Path) -> Path:
    """The folder that holds train/test/val, allowing Kaggle's nested chest_xray/chest_xray/."""
    for candidate in (root, root / "chest_xray", root / "chest_xray" / "chest_xray"):
        if any((candidate / split).is_dir() for split in KERMANY_SPLITS):
            return candidate
    raise ValueError(
        f"{root}: not a Kermany chest_xray folder: expected sub-folders "
        f"{'/'.join(KERMANY_SPLITS)} each holding {' and '.join(KERMANY_CLASSES)}"
    )


def read_kermany(root: PathLike, *, source: str = "kermany") -> RecordTable:
    """Reads the Kermany pediatric pneumonia set in its Kaggle layout.

    Args:
        root: the `chest_xray` folder (or its parent, or Kaggle's nested `chest_xray/chest_xray`).
        source: source name written into each record.

    Returns:
        One record per image, `split` = the official split folder. Files whose name does not
        follow the scheme, that sit in the wrong class folder, or are not image files become
        problems and are left out.
    """
    root = _kermany_root(Path(root))
    table = RecordTable()
    for split in KERMANY_SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        for entry in _visible_entries(split_dir):
            if not entry.is_dir() or entry.name not in KERMANY_CLASSES:
                table.problems.append(
                    Problem(
                        entry.path,
                        f"unexpected {'folder' if entry.is_dir() else 'file'} in {split}/; "
                        f"expected only {', '.join(KERMANY_CLASSES)}",
                        severity="warning",
                    )
                )
        for class_name in KERMANY_CLASSES:
            class_dir = split_dir / class_name
            if not class_dir.is_dir():
                continue
            for entry in _visible_entries(class_dir):
                path = os.path.abspath(entry.path)
                if entry.is_dir():
                    table.problems.append(
                        Problem(path, "unexpected folder inside a class folder", severity="warning")
                    )
                    continue
                stem, extension = os.path.splitext(entry.name)
                if extension.lower() not in IMAGE_EXTENSIONS:
                    table.problems.append(
                        Problem(path, f"not an image file name (extension {extension!r})")
                    )
                    continue
                parsed = parse_kermany_name(stem)
                if parsed is None:
                    table.problems.append(
                        Problem(
                            path,
                            "file name does not follow the Kermany scheme "
                            "(personN_bacteria_M, personN_virus_M, IM-NNNN-NNNN, "
                            "NORMAL2-IM-NNNN-NNNN); label unknown, left out",
                        )
                    )
                    continue
                label, patient = parsed
                if (label == "normal") != (class_name == "NORMAL"):
                    table.problems.append(
                        Problem(
                            path,
                            f"file name says {label} but the folder is {class_name}; left out",
                        )
                    )
                    continue
                table.append(
                    Record(
                        path=path,
                        label=label,
                        patient_id=f"{split}/{patient}",
                        source=source,
                        split=split,
                        license="CC BY 4.0",
                    )
                )
    if not table and not table.problems:
        table.problems.append(Problem(str(root), "no images found"))
    return table


_IEEE8023_COLUMNS = ("patientid", "finding", "view", "modality", "folder", "filename")


def _read_metadata(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = [name.strip() for name in (reader.fieldnames or []) if name is not None]
            missing = [column for column in _IEEE8023_COLUMNS if column not in fields]
            if missing:
                raise ValueError(
                    f"{path}: metadata.csv lacks column(s) {', '.join(missing)}; "
                    f"needs {', '.join(_IEEE8023_COLUMNS)}"
                )
            return [
                {key.strip(): (value or "").strip() for key, value in row.items()
                 if key is not None and not isinstance(value, list)}
                for row in reader
            ]
    except (csv.Error, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: unreadable metadata.csv: {error}") from error


def publishing_origin(row: Mapping[str, str]) -> str:
    """Where an ieee8023 film was published, from its metadata row.

    The origin is the host of the `url` column, lower-cased, without "www." and port
    ("https://www.eurorad.org/case/16624" -> "eurorad.org"): the site or journal publisher the
    film was taken from, which fixes its scanner, post-processing, burned-in text and figure
    style. Without a url it is the DOI's registrant prefix ("doi-10.1148"), then the `location`
    ("loc-Italy"), then "unknown". On the 2020-06-27 snapshot every row has a url (38 hosts over
    the 673 rows: radiopaedia.org, eurorad.org, github.com (Hannover Medical School), sirm.org, ...).
    """
    url = (row.get("url") or "").strip()
    if url:
        host = urllib.parse.urlsplit(url if "//" in url else f"//{url}").hostname or ""
        host = host.lower().rstrip(".")
        if host.startswith("www."):
            host = host[4:]
        if host:
            return host
    doi = (row.get("doi") or "").strip().lower()
    for prefix in ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "doi:"):
        if doi.startswith(prefix):
            doi = doi[len(prefix):]
    if doi.startswith("10."):
        return "doi-" + doi.split("/", 1)[0]
    location = " ".join((row.get("location") or "").split())
    if location:
        return "loc-" + location.replace("/", "-")
    return "unknown"


def read_ieee8023(
    root: PathLike,
    *,
    views: Optional[Sequence[str]] = DEFAULT_VIEWS,
    modalities: Optional[Sequence[str]] = DEFAULT_MODALITIES,
    findings: Optional[Union[PathLike, Mapping[str, str]]] = None,
    source: str = "ieee8023",
    by_origin: bool = True,
) -> RecordTable:
    """Reads the ieee8023 covid-chestxray-dataset (`metadata.csv` + `images/`).

    Args:
        root: the folder holding `metadata.csv`.
        views: `view` values to keep (PA, AP, AP Supine by default: frontal X-rays); None keeps all.
        modalities: `modality` values to keep (X-ray); None keeps all.
        findings: override rows for the finding -> label table (a CSV path or a dict).
        source: data set name written into each record.
        by_origin: write `source` as "<source>/<publishing origin>" (`publishing_origin`, e.g.
            "ieee8023/radiopaedia.org"), so that splits (`data split --group-by source`), the
            source probe and per-source figures see where each film came from. Patients stay
            keyed by data set (`Record.patient_key`). False writes the bare data set name.

    Returns:
        Records with patient id = `patientid` and the row's licence. Rows filtered out by modality
        or view are counted in `.skipped`. Kept rows whose file is missing, whose file another row
        already claimed, or whose finding is not in the table are `.problems` (a finding not in the
        table is kept with label `unknown`, as a warning).

    Raises:
        FileNotFoundError: no metadata.csv. ValueError: it lacks the needed columns.
    """
    root = Path(root)
    metadata = root / "metadata.csv"
    if not metadata.is_file():
        raise FileNotFoundError(f"{root}: no metadata.csv (not an ieee8023 covid-chestxray-dataset folder)")
    mapping = findings_map(findings)
    keep_views = None if views is None else {v.strip().lower() for v in views}
    keep_modalities = None if modalities is None else {m.strip().lower() for m in modalities}
    table = RecordTable()
    claimed: dict[str, tuple[int, str]] = {}
    unmapped: Counter = Counter()
    for row_number, row in enumerate(_read_metadata(metadata), start=2):
        modality, view = row.get("modality", ""), row.get("view", "")
        if keep_modalities is not None and modality.lower() not in keep_modalities:
            table.skipped[f"modality {modality or '(empty)'}"] += 1
            continue
        if keep_views is not None and view.lower() not in keep_views:
            table.skipped[f"view {view or '(empty)'}"] += 1
            continue
        patient, filename = row.get("patientid", ""), row.get("filename", "")
        if not patient or not filename:
            table.problems.append(
                Problem(str(metadata), "empty patientid or filename", row_number)
            )
            continue
        path = os.path.abspath(root / (row.get("folder") or "images") / filename)
        if not os.path.isfile(path):
            table.problems.append(
                Problem(str(metadata), f"file not found: {path}", row_number)
            )
            continue
        if path in claimed:
            first_row, first_patient = claimed[path]
            table.problems.append(
                Problem(
                    str(metadata),
                    f"{filename} already listed in row {first_row} (patient {first_patient}) and "
                    f"again for patient {patient}; this row left out",
                    row_number,
                    severity="warning",
                )
            )
            continue
        claimed[path] = (row_number, patient)
        finding = row.get("finding", "")
        label = label_for_finding(finding, mapping)
        if label is None:
            unmapped[finding] += 1
            table.problems.append(
                Problem(
                    str(metadata),
                    f"finding {finding!r} not in the findings table; labelled unknown "
                    f"(add it with --findings-map)",
                    row_number,
                    severity="warning",
                )
            )
            label = "unknown"
        table.append(
            Record(
                path=path,
                label=label,
                patient_id=patient,
                source=f"{source}/{publishing_origin(row)}" if by_origin else source,
                license=row.get("license", ""),
            )
        )
    return table


def _ieee8023_lookup(metadata: PathLike) -> dict[str, tuple[str, str]]:
    """{file stem: (label, patientid)} from an ieee8023 metadata.csv."""
    mapping = findings_map()
    lookup: dict[str, tuple[str, str]] = {}
    for row in _read_metadata(Path(metadata)):
        stem = os.path.splitext(row.get("filename", ""))[0]
        if stem and stem not in lookup:
            label = label_for_finding(row.get("finding", ""), mapping) or "unknown"
            lookup[stem] = (label, row.get("patientid", "") or stem)
    return lookup


def _label_from_name(stem: str, kermany_split: str) -> Optional[tuple[str, str]]:
    parsed = parse_kermany_name(stem)
    if parsed is not None:
        return parsed[0], f"{kermany_split}/{parsed[1]}"
    match = _NLM_TB.match(stem)
    if match:
        return ("normal" if match.group(2) == "0" else "tuberculosis"), match.group(1).upper()
    return None


def read_lung_masks(
    root: PathLike,
    *,
    ieee8023_metadata: Optional[PathLike] = None,
    kermany_split: str = "train",
    source: str = "lung-masks",
) -> RecordTable:
    """Reads image/mask pairs in the Kaggle "chest X-ray masks and labels" layout.

    `images/<stem>.<ext>` pairs with `masks/<stem>_mask.png` (or `masks/<stem>.png`). Images
    without a mask and masks without an image are problems.

    Args:
        root: the folder holding `images/` and `masks/`.
        ieee8023_metadata: optional ieee8023 metadata.csv to label ieee8023 images and give their
            patient ids (without it they are `unknown`, one patient per image).
        kermany_split: the Kermany split that Kermany-named images come from (the V7 set annotates
            Kermany *train* images), used to scope their patient ids like `read_kermany` does.
        source: source name written into each record.
    """
    root = Path(root)
    image_dir, mask_dir = root / "images", root / "masks"
    if not image_dir.is_dir() or not mask_dir.is_dir():
        raise ValueError(f"{root}: not a lung-mask folder: expected images/ and masks/ sub-folders")
    lookup = _ieee8023_lookup(ieee8023_metadata) if ieee8023_metadata else {}
    masks: dict[str, str] = {}
    table = RecordTable()
    for entry in os.scandir(mask_dir):
        if _is_hidden(entry.name) or not entry.is_file():
            continue
        stem, extension = os.path.splitext(entry.name)
        if extension.lower() not in IMAGE_EXTENSIONS:
            table.problems.append(Problem(os.path.abspath(entry.path), "not an image file name"))
            continue
        key = stem[: -len("_mask")] if stem.endswith("_mask") else stem
        masks[key] = os.path.abspath(entry.path)
    used: set[str] = set()
    for entry in _visible_entries(image_dir):
        if not entry.is_file():
            continue
        path = os.path.abspath(entry.path)
        stem, extension = os.path.splitext(entry.name)
        if extension.lower() not in IMAGE_EXTENSIONS:
            table.problems.append(Problem(path, "not an image file name"))
            continue
        mask = masks.get(stem)
        if mask is None:
            table.problems.append(Problem(path, f"no mask masks/{stem}_mask.png"))
            continue
        used.add(stem)
        named = _label_from_name(stem, kermany_split)
        if named is None:
            named = lookup.get(stem, ("unknown", stem))
        table.append(
            Record(path=path, label=named[0], patient_id=named[1], source=source, mask_path=mask)
        )
    for stem in sorted(set(masks) - used):
        table.problems.append(Problem(masks[stem], "mask without an image in images/"))
    return table


def read_montgomery(root: PathLike, *, source: str = "montgomery") -> RecordTable:
    """Reads the NLM Montgomery County set: `CXR_png/` + `ManualMask/{leftMask,rightMask}/`.

    The record's `mask_path` joins the left and right masks with `MASK_SEPARATOR`; `load_mask`
    merges them. `_0` images are normal, `_1` tuberculosis; patient id `MCUCXR_0001`.
    """
    root = Path(root)
    image_dir = root / "CXR_png"
    left_dir, right_dir = root / "ManualMask" / "leftMask", root / "ManualMask" / "rightMask"
    if not image_dir.is_dir():
        raise ValueError(f"{root}: not a Montgomery folder: expected CXR_png/ and ManualMask/")
    table = RecordTable()
    for entry in _visible_entries(image_dir):
        if not entry.is_file():
            continue
        path = os.path.abspath(entry.path)
        stem, extension = os.path.splitext(entry.name)
        if extension.lower() not in IMAGE_EXTENSIONS:
            table.problems.append(Problem(path, "not an image file name", severity="warning"))
            continue
        match = _NLM_TB.match(stem)
        if match is None:
            table.problems.append(
                Problem(path, "file name is not MCUCXR_NNNN_0/1; label unknown, left out")
            )
            continue
        halves = [str((folder / entry.name).absolute()) for folder in (left_dir, right_dir)]
        missing = [half for half in halves if not os.path.isfile(half)]
        if missing:
            table.problems.append(Problem(path, f"lung mask missing: {', '.join(missing)}"))
        table.append(
            Record(
                path=path,
                label="normal" if match.group(2) == "0" else "tuberculosis",
                patient_id=match.group(1).upper(),
                source=source,
                mask_path="" if missing else MASK_SEPARATOR.join(halves),
            )
        )
    return table


def read_manifest_table(path: PathLike) -> RecordTable:
    """The generic CSV manifest reader, lenient: bad rows become problems (see `scan_manifest`)."""
    return scan_manifest(path)


def detect_format(path: PathLike) -> str:
    """Guesses the layout of `path`: one of `FORMATS`.

    Raises:
        FileNotFoundError: `path` does not exist. ValueError: no layout matches.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "manifest"
        raise ValueError(f"{path}: a file that is not a CSV manifest; expected a folder or a .csv")
    if (path / "metadata.csv").is_file():
        return "ieee8023"
    if (path / "images").is_dir() and (path / "masks").is_dir():
        return "lung-masks"
    if (path / "CXR_png").is_dir():
        return "montgomery"
    try:
        _kermany_root(path)
        return "kermany"
    except ValueError:
        pass
    raise ValueError(
        f"{path}: cannot tell the data set layout; pass --format. Allowed: {', '.join(FORMATS)}"
    )


def read_dataset(
    path: PathLike,
    format: Optional[str] = None,
    **options,
) -> RecordTable:
    """Reads `path` with the reader for `format` (detected when None); `options` go to the reader."""
    format = format or detect_format(path)
    readers = {
        "kermany": read_kermany,
        "ieee8023": read_ieee8023,
        "lung-masks": read_lung_masks,
        "montgomery": read_montgomery,
        "manifest": read_manifest_table,
    }
    if format not in readers:
        raise ValueError(f"Unknown data set format. Allowed: {', '.join(FORMATS)}. Received: format={format!r}")
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return readers[format](path, **options)


def binarise_mask(mask: np.ndarray) -> np.ndarray:
    """Lung = 255, everything else 0, as uint8, from one decoded mask.

    Rules: a mask whose largest value is 1 marks lung with 1; otherwise lung is 255 (the full
    8-bit value; for a 16-bit mask holding values above 255, 65535). Other values, like V7's 127
    "ignore" class (a device over the lung), are not lung. Colour masks use their largest colour
    channel; an alpha channel is dropped.
    """
    mask = np.asarray(mask)
    if mask.ndim == 3:
        channels = mask.shape[2]
        mask = mask[..., : 3 if channels >= 3 else 1].max(axis=2)
    if mask.ndim != 2:
        raise ValueError(f"A mask must be 2-D (or 2-D with channels). Received: shape={mask.shape}")
    peak = int(mask.max()) if mask.size else 0
    if peak <= 1:
        lung_value = 1
    elif peak <= 255:
        lung_value = 255
    else:
        lung_value = int(np.iinfo(mask.dtype).max) if np.issubdtype(mask.dtype, np.integer) else peak
    return np.where(mask == lung_value, 255, 0).astype(np.uint8)


def load_mask(mask_path: Union[PathLike, Sequence[PathLike]]) -> np.ndarray:
    """Loads a lung mask as a uint8 array of shape (H, W) holding 0 (background) and 255 (lung).

    Args:
        mask_path: one mask file, several joined with `MASK_SEPARATOR` (Montgomery's left and right
            masks), or a sequence of files; several masks are merged with a logical OR.

    Raises:
        FileNotFoundError / ValueError: naming the file that is missing, unreadable or whose size
            differs from the others.
    """
    import cv2  # lazy: OpenCV is absent on the accelerator image

    if isinstance(mask_path, (str, os.PathLike)):
        parts = [p for p in str(mask_path).split(MASK_SEPARATOR) if p]
    else:
        parts = [str(p) for p in mask_path]
    if not parts:
        raise ValueError(f"No mask file given. Received: mask_path={mask_path!r}")
    merged: Optional[np.ndarray] = None
    for part in parts:
        if not os.path.isfile(part):
            raise FileNotFoundError(f"{part}: mask file not found")
        decoded = cv2.imread(part, cv2.IMREAD_UNCHANGED)
        if decoded is None:
            raise ValueError(f"{part}: cannot decode the mask image")
        lung = binarise_mask(decoded)
        if merged is None:
            merged = lung
        elif lung.shape != merged.shape:
            raise ValueError(
                f"{part}: mask size {lung.shape[::-1]} differs from {parts[0]} {merged.shape[::-1]}"
            )
        else:
            merged = np.maximum(merged, lung)
    return merged
