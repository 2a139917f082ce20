"""Data-set plans of the phantom generator: which images, file names, patients and splits.

The three publishers' layouts (Kermany ``chest_xray/``, ieee8023 ``covid-chestxray-dataset/``, V7
``lung-masks/``) are planned here as lists of `_Item` (no pixels yet); `write` renders and writes
them. Each patient and image gets its own generator, ``SeedSequence(seed, spawn_key=key)``.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from cxr_cascade.registry import PHANTOM_FORMATS

GENERATOR_VERSION = "1.0"

FORMATS: tuple[str, ...] = PHANTOM_FORMATS

# Where each layout lives under `out` (the publishers' folder names).
LAYOUT_DIRS = {
    "kermany": "chest_xray",
    "ieee8023": "covid-chestxray-dataset",
    "lung-masks": "lung-masks",
}

# The header of ieee8023/covid-chestxray-dataset metadata.csv as published (2020-06-27 snapshot),
# including the empty 29th column that its trailing comma creates.
IEEE8023_COLUMNS: tuple[str, ...] = (
    "patientid", "offset", "sex", "age", "finding", "survival", "intubated",
    "intubation_present", "went_icu", "in_icu", "needed_supplemental_O2", "extubated",
    "temperature", "pO2_saturation", "leukocyte_count", "neutrophil_count", "lymphocyte_count",
    "view", "modality", "date", "location", "folder", "filename", "doi", "url", "license",
    "clinical_notes", "other_notes", "",
)

# Findings written to metadata.csv for each phantom class (ieee8023 spelling).
_IEEE_FINDINGS = {
    "covid19": (("COVID-19", 0.95), ("COVID-19, ARDS", 0.05)),
    "viral": (("SARS", 0.6), ("Influenza", 0.2), ("Varicella", 0.2)),
    "bacterial": (("Streptococcus", 0.4), ("Klebsiella", 0.2), ("Legionella", 0.15),
                  ("E.Coli", 0.1), ("Mycoplasma Bacterial Pneumonia", 0.15)),
    "normal": (("No Finding", 1.0),),
}
_KERMANY_CLASS_P = {"normal": 0.3, "bacterial": 0.4, "viral": 0.3}
_IEEE_CLASS_P = {"covid19": 0.65, "viral": 0.15, "bacterial": 0.1, "normal": 0.1}

_FAKE_LOCATIONS = ("Phantom General Hospital, Nowhere", "St. Nowhere Clinic, Synthland",
                   "Simulated Radiology Centre, Nullcity")

# spawn_key prefixes: keep them fixed, they define the stream of every image.
_KEY_KERMANY, _KEY_IEEE, _KEY_MASKS = 1, 2, 3


def _check_formats(formats) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = tuple(f.strip() for f in formats.split(",") if f.strip())
    formats = tuple(formats)
    if not formats or any(f not in FORMATS for f in formats) or len(set(formats)) != len(formats):
        raise ValueError(f"`formats` must be a non-empty list of distinct names from {FORMATS}. "
                         f"Received: formats={formats!r}")
    return formats


# --------------------------------------------------------------------------------------------
# Dataset plans: which images, names, patients and splits (no pixels yet)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Item:
    layout: str
    relpath: str  # under the layout folder
    label: str
    patient_id: str
    split: str
    view: str
    key: tuple[int, ...]  # spawn key of the image generator
    patient_key: tuple[int, ...]  # spawn key of the patient generator (anatomy)
    mode: str = "RGB"  # written colour mode: RGB (R=G=B), L, RGBA, tint
    out_hw: Optional[tuple[int, int]] = None  # ieee8023 images are not square
    write_file: bool = True
    in_lung_masks: bool = False
    row: Optional[dict] = None  # ieee8023 metadata row


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


def _choice(rng: np.random.Generator, weights: dict):
    names = list(weights)
    p = np.array([weights[k] for k in names], float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _plan_kermany(n: int, seed: int) -> list[_Item]:
    items: list[_Item] = []
    counters = {split: dict(person=0, im=0, normal2=0, bacteria=0, virus=0)
                for split in ("train", "test")}
    i = 0
    while len(items) < n:
        prng = _rng(seed, _KEY_KERMANY, i)
        label = _choice(prng, _KERMANY_CLASS_P)
        split = "test" if prng.random() < 0.2 else "train"
        n_img = 1 + min(int(prng.geometric(0.5)) - 1, 5)
        c = counters[split]
        if label == "normal":
            prefix = "NORMAL2-IM" if prng.random() < 0.5 else "IM"
            counter = "normal2" if prefix == "NORMAL2-IM" else "im"
            c[counter] += int(prng.integers(1, 3))
            pid = f"{prefix}-{c[counter]:04d}"
            names = [f"{pid}-0001.jpeg"] + [f"{pid}-0001-{j:04d}.jpeg" for j in range(1, n_img)]
            folder = "NORMAL"
        else:
            c["person"] += int(prng.integers(1, 3))
            pid = f"person{c['person']}"
            kind = "bacteria" if label == "bacterial" else "virus"
            names = []
            for _ in range(n_img):
                c[kind] += int(prng.integers(1, 3))
                names.append(f"{pid}_{kind}_{c[kind]}.jpeg")
            folder = "PNEUMONIA"
        for j, name in enumerate(names[: n - len(items)]):
            irng = _rng(seed, _KEY_MASKS, i, j)
            items.append(_Item(
                layout="kermany", relpath=f"{split}/{folder}/{name}", label=label,
                patient_id=f"kermany/{split}/{pid}", split=split, view="PA",
                key=(_KEY_KERMANY, i, j), patient_key=(_KEY_KERMANY, i),
                # V7 drew masks for most, not all, Kermany train images.
                in_lung_masks=split == "train" and irng.random() >= 0.1))
        i += 1
    return items


def _ieee_row(**values) -> dict:
    row = {c: "" for c in IEEE8023_COLUMNS}
    row.update(values)
    return row


def _plan_ieee(n: int, seed: int, size: int, missing_files: bool = False) -> list[_Item]:
    """ieee8023 rows; `n` counts the frontal X-ray images with a file."""
    items: list[_Item] = []
    n_frontal = 0
    i = 0
    months = ("January", "February", "March", "April", "May", "June")
    while n_frontal < n:
        prng = _rng(seed, _KEY_IEEE, i)
        label = _choice(prng, _IEEE_CLASS_P)
        finding = _choice(prng, dict(_IEEE_FINDINGS[label]))
        pid = str(i + 1)
        sex = _choice(prng, {"M": 0.55, "F": 0.35, "": 0.1})
        age = "" if prng.random() < 0.2 else str(int(prng.integers(20, 90)))
        yn = lambda: _choice(prng, {"Y": 0.3, "N": 0.3, "": 0.4})  # noqa: E731
        clinical = dict(survival=yn(), intubated=yn(), went_icu=yn(),
                        needed_supplemental_O2=yn())
        location = _FAKE_LOCATIONS[int(prng.integers(len(_FAKE_LOCATIONS)))]
        n_img = 1 + min(int(prng.geometric(0.55)) - 1, 4)
        offset = int(prng.integers(0, 5))
        month = months[int(prng.integers(len(months)))]
        common = dict(patientid=pid, sex=sex, age=age, finding=finding, location=location,
                      doi="", url="synthetic://cxr-cascade/phantom", license="CC0 (synthetic)",
                      clinical_notes="Synthetic phantom: not a patient, means nothing medically.",
                      other_notes=f"cxr-cascade phantom generator {GENERATOR_VERSION}",
                      **clinical)
        for j in range(n_img):
            if n_frontal >= n:
                break
            irng = _rng(seed, _KEY_IEEE, i, j, 0)
            ext = _choice(irng, {"jpg": 0.5, "jpeg": 0.18, "png": 0.3, "PNG": 0.01, "JPG": 0.01})
            if ext.lower() == "png":
                mode = _choice(irng, {"RGB": 0.35, "L": 0.3, "RGBA": 0.3, "tint": 0.05})
            else:
                mode = _choice(irng, {"RGB": 0.6, "L": 0.3, "tint": 0.1})
            aspect = float(irng.uniform(0.8, 1.25))
            hw = (size, max(16, round(size / aspect))) if aspect > 1 else (
                max(16, round(size * aspect)), size)
            view = _choice(irng, {"PA": 0.45, "AP": 0.3, "AP Supine": 0.25})
            name = f"{i + 1:06d}-{j + 1}.{ext}"
            row = _ieee_row(offset=str(offset), view=view, modality="X-ray",
                            date=f"{month} {int(prng.integers(1, 28))}, 2020", folder="images",
                            filename=name, **common)
            items.append(_Item(
                layout="ieee8023", relpath=f"images/{name}", label=label,
                patient_id=f"ieee8023/{pid}", split="", view=view, key=(_KEY_IEEE, i, j),
                patient_key=(_KEY_IEEE, i), mode=mode, out_hw=hw, row=row,
                in_lung_masks=True))
            n_frontal += 1
            if irng.random() < 0.08:  # a lateral film taken the same day
                lname = f"{i + 1:06d}-{j + 1}-L.jpg"
                items.append(_Item(
                    layout="ieee8023", relpath=f"images/{lname}", label=label,
                    patient_id=f"ieee8023/{pid}", split="", view="L", key=(_KEY_IEEE, i, j, 1),
                    patient_key=(_KEY_IEEE, i), mode="L", out_hw=(size, size),
                    row=dict(row, view="L", filename=lname)))
            gap = irng.random()  # drawn either way, so the option leaves the images unchanged
            if missing_files and (i == 2 and j == 0 or gap < 0.01):  # listed, file absent
                mname = f"{i + 1:06d}-{j + 1}-missing.jpg"
                items.append(_Item(
                    layout="ieee8023", relpath=f"images/{mname}", label=label,
                    patient_id=f"ieee8023/{pid}", split="", view=view, key=(_KEY_IEEE, i, j, 2),
                    patient_key=(_KEY_IEEE, i), write_file=False,
                    row=dict(row, filename=mname)))
            offset += int(irng.integers(1, 6))
        if i % 10 == 1:  # CT rows: a volume, and an axial slice whose file is not in images/
            for k, (folder, fname, view) in enumerate((
                    ("volumes", f"{i + 1:06d}-ct.nii.gz", "Axial"),
                    ("images", f"{i + 1:06d}-ct-axial.jpg", "Axial"))):
                items.append(_Item(
                    layout="ieee8023", relpath=f"{folder}/{fname}", label=label,
                    patient_id=f"ieee8023/{pid}", split="", view=view,
                    key=(_KEY_IEEE, i, 99, k), patient_key=(_KEY_IEEE, i), write_file=False,
                    row=_ieee_row(offset=str(offset), view=view, modality="CT",
                                  date=f"{month} 28, 2020", folder=folder, filename=fname,
                                  **common)))
        i += 1
    return items
