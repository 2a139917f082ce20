"""Synthetic chest radiograph phantoms in the three real data layouts.

The phantoms exist so that every part of the project (readers, splits, tf.data pipelines, U-Net,
classifiers, Grad-CAM, shortcut audits) can be built and tested without patient data. They are
drawn, not simulated: grey-level cartoons of a frontal chest film (body outline, lung fields, ribs,
clavicles, spine, mediastinum and trachea, heart, diaphragm domes, vessels, noise, burned-in text)
on which each class gets a lesion pattern that mimics the textbook description of the disease:

* ``normal``: clear lungs.
* ``bacterial``: dense lobar consolidation, usually in one lower zone (side fixed per patient).
* ``viral``: diffuse bilateral reticular / interstitial streaks, perihilar predominance.
* ``covid19``: bilateral, peripheral, lower-zone ground-glass haze.

**Phantoms are synthetic and mean nothing medically.** A model that reads them well shows that the
machinery works, never that it diagnoses anything.

Every image comes with its ground truth: a lung mask (255 = lung, including the lung behind the
heart down to the diaphragm, as the V7 masks draw it) and a lesion mask (255 = lesion, always inside
the lung mask, empty for ``normal``). An optional *planted shortcut* (a bright square or a token
word burned in outside the lungs whose position or text follows the label with a chosen strength)
lets later checks prove that they catch shortcut learning (DeGrave et al., Nat. Mach. Intell. 2021).

Layouts written by :func:`write_phantom_dataset` under ``out``, imitating the publishers' layouts
described in ``shared/data/README.md``:

* ``chest_xray/{train,test}/{NORMAL,PNEUMONIA}/...jpeg`` (Kermany et al. 2018 names: ``IM-0001-0001``,
  ``NORMAL2-IM-0012-0001``, ``person12_bacteria_45``, ``person12_virus_46``; RGB JPEG with R=G=B).
* ``covid-chestxray-dataset/metadata.csv`` + ``images/`` (ieee8023 / Cohen et al.: the published
  29-column header, lateral and CT rows, a missing file; JPEG and PNG, RGB / L / RGBA).
* ``lung-masks/images/<stem>.jpeg`` + ``lung-masks/masks/<stem>_mask.png`` (V7 Labs / Kaggle layout,
  made of the Kermany train images and the ieee8023 frontal images, as the real set is).
* ``ground_truth/`` (lung and lesion masks of every image), ``phantoms.csv`` (one row per image file,
  readable as a project manifest: path,label,patient_id,source,split,mask_path plus the ground
  truth) and ``README.txt``.

Determinism: each patient and each image draws from its own ``numpy.random.Generator`` seeded by
``SeedSequence(seed, spawn_key=(layout, patient[, image]))``, so the same seed gives byte-identical
files and a larger ``n`` leaves the earlier images unchanged.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import os
import shutil
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence

import cv2
import numpy as np

GENERATOR_VERSION = "1.0"

LABELS: tuple[str, ...] = ("normal", "bacterial", "viral", "covid19")
FORMATS: tuple[str, ...] = ("kermany", "ieee8023", "lung-masks")
SHORTCUTS: tuple[str, ...] = ("marker", "text")

# Where each layout lives under `out` (the publishers' folder names).
LAYOUT_DIRS = {
    "kermany": "chest_xray",
    "ieee8023": "covid-chestxray-dataset",
    "lung-masks": "lung-masks",
}
GROUND_TRUTH_DIR = "ground_truth"
TABLE_NAME = "phantoms.csv"
README_NAME = "README.txt"
README_FIRST_LINE = "cxr-cascade synthetic chest X-ray phantoms"

# The header of ieee8023/covid-chestxray-dataset metadata.csv as published (2020-06-27 snapshot),
# including the empty 29th column that its trailing comma creates.
IEEE8023_COLUMNS: tuple[str, ...] = (
    "patientid", "offset", "sex", "age", "finding", "survival", "intubated",
    "intubation_present", "went_icu", "in_icu", "needed_supplemental_O2", "extubated",
    "temperature", "pO2_saturation", "leukocyte_count", "neutrophil_count", "lymphocyte_count",
    "view", "modality", "date", "location", "folder", "filename", "doi", "url", "license",
    "clinical_notes", "other_notes", "",
)

TABLE_COLUMNS: tuple[str, ...] = (
    "path", "label", "patient_id", "source", "split", "view", "width", "height",
    "mask_path", "lung_mask_path", "lesion_mask_path", "lesion_fraction", "laterality",
    "shortcut", "shortcut_label", "shortcut_agrees",
    "shortcut_x0", "shortcut_y0", "shortcut_x1", "shortcut_y1",
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

# Planted-shortcut geometry: one slot per label along the bottom edge (below the diaphragm, so a
# lung mask removes it) for "marker"; one token word per label for "text".
_MARKER_SLOTS_X = {"normal": 0.14, "bacterial": 0.38, "viral": 0.62, "covid19": 0.86}
_SHORTCUT_TOKENS = {"normal": "OPD", "bacterial": "WARD", "viral": "PEDS", "covid19": "PORT"}

_HOSPITALS = ("PHANTOM GEN HOSP", "ST NOWHERE", "CXR SIM CENTRE", "DEMO MEDICAL", "SYNTH RAD")
_FAKE_LOCATIONS = ("Phantom General Hospital, Nowhere", "St. Nowhere Clinic, Synthland",
                   "Simulated Radiology Centre, Nullcity")

# spawn_key prefixes: keep them fixed, they define the stream of every image.
_KEY_KERMANY, _KEY_IEEE, _KEY_MASKS = 1, 2, 3


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _check_int(name: str, value, minimum: int, maximum: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"`{name}` must be an integer. Received: {name}={value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"`{name}` must be {allowed}. Received: {name}={value!r}")
    return int(value)


def _check_label(label) -> str:
    if label not in LABELS:
        raise ValueError(f"`label` must be one of {LABELS}. Received: label={label!r}")
    return label


def _check_shortcut(shortcut, shortcut_strength) -> None:
    if shortcut is not None and shortcut not in SHORTCUTS:
        raise ValueError(
            f"`shortcut` must be None or one of {SHORTCUTS}. Received: shortcut={shortcut!r}")
    if isinstance(shortcut_strength, bool) or not isinstance(
            shortcut_strength, (int, float, np.floating)) or not 0.0 <= shortcut_strength <= 1.0:
        raise ValueError("`shortcut_strength` must be a number between 0 and 1. "
                         f"Received: shortcut_strength={shortcut_strength!r}")


def _check_formats(formats) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = tuple(f.strip() for f in formats.split(",") if f.strip())
    formats = tuple(formats)
    if not formats or any(f not in FORMATS for f in formats) or len(set(formats)) != len(formats):
        raise ValueError(f"`formats` must be a non-empty list of distinct names from {FORMATS}. "
                         f"Received: formats={formats!r}")
    return formats


# --------------------------------------------------------------------------------------------
# Anatomy and rendering
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Anatomy:
    """Patient-level body habitus in normalised image coordinates (x right, y down, 0..1).

    All images of one patient share it, so that images of a patient look alike and a split that
    is not grouped by patient leaks (as it does on real data).
    """

    body_cx: float
    body_half_width: float
    lung_top: float
    lung_bottom: float
    lung_half_gap: float
    lung_width_right: float  # patient's right lung, on the image left
    lung_width_left: float
    dome_height: float
    heart_cx: float
    heart_cy: float
    heart_rx: float
    heart_ry: float
    heart_angle: float
    rib_phase: float
    tissue_level: float
    air_contrast: float
    bone_gain: float
    lesion_side: int  # -1: image left (patient right), +1: image right; used by `bacterial`


@dataclasses.dataclass(frozen=True)
class Phantom:
    """One rendered phantom.

    Attributes:
        image: uint8 array [S, S], the radiograph (dark air, bright bone).
        lung_mask: uint8 array [S, S] with values {0, 255}; 255 = lung (behind heart included).
        lesion_mask: uint8 array [S, S] with values {0, 255}; 255 = lesion, inside `lung_mask`,
            all zero for `normal`.
        meta: dict with `label`, `laterality`, the shortcut fields, the per-image jitter drawn.
    """

    image: np.ndarray
    lung_mask: np.ndarray
    lesion_mask: np.ndarray
    meta: dict


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draws a patient's habitus; see :class:`Anatomy`."""
    u = rng.uniform
    lung_top = u(0.11, 0.17)
    return Anatomy(
        body_cx=u(0.47, 0.53),
        body_half_width=u(0.40, 0.47),
        lung_top=lung_top,
        lung_bottom=lung_top + u(0.58, 0.66),
        lung_half_gap=u(0.045, 0.07),
        lung_width_right=u(0.30, 0.36),
        lung_width_left=u(0.28, 0.34),
        dome_height=u(0.05, 0.09),
        heart_cx=u(0.55, 0.60),
        heart_cy=u(0.66, 0.71),
        heart_rx=u(0.16, 0.20),
        heart_ry=u(0.12, 0.15),
        heart_angle=u(-30.0, -10.0),
        rib_phase=u(-0.3, 0.3),
        tissue_level=u(135.0, 165.0),
        air_contrast=u(95.0, 115.0),
        bone_gain=u(0.8, 1.2),
        lesion_side=int(rng.choice((-1, 1))),
    )


_GRIDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}
_T6 = np.linspace(0.0, 1.0, 6, dtype=np.float32)
_T24 = np.linspace(0.0, 1.0, 24, dtype=np.float32)
_U16 = np.linspace(0.0, 1.0, 16, dtype=np.float32)[1:-1]
_APEX = np.linspace(1.0, 0.0, 5, dtype=np.float32)
_APEX_ARC = np.sin(np.linspace(0.0, np.pi, 5, dtype=np.float32))


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised pixel-centre coordinates x [1, S] and y [S, 1], float32 (cached)."""
    if size not in _GRIDS:
        c = ((np.arange(size, dtype=np.float32) + 0.5) / size)
        _GRIDS[size] = (c[None, :], c[:, None])
    return _GRIDS[size]


def _poly(points: np.ndarray, size: int) -> np.ndarray:
    """Normalised (x, y) points -> int32 fixed-point pixel coordinates for cv2 (shift=4)."""
    return np.round(points * size * 16.0).astype(np.int32).reshape(-1, 1, 2)


def _blur(a: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur; wide kernels run on a 4x smaller copy (the result is smooth anyway)."""
    if sigma_px <= 0.3:
        return a
    h, w = a.shape
    if sigma_px >= 3.5 and h >= 64 and w >= 64:
        small = cv2.resize(a, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma_px / 4, borderType=cv2.BORDER_REPLICATE)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(a, (0, 0), sigma_px, borderType=cv2.BORDER_REPLICATE)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1], float32 [S, S]: a cells x cells grid upsampled bicubically."""
    small = rng.random((cells, cells), dtype=np.float32)
    return np.clip(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _lung_outline(a: Anatomy, side: int, inspiration: float) -> tuple[np.ndarray, dict]:
    """Outline of one lung (side -1 = image left) as normalised points, plus its frame."""
    cx = a.body_cx
    x_med = cx + side * a.lung_half_gap
    width = a.lung_width_right if side < 0 else a.lung_width_left
    top = a.lung_top + (0.0 if side < 0 else 0.01)
    # The right hemidiaphragm (image left) sits higher than the left one.
    bottom = a.lung_top + (a.lung_bottom - a.lung_top) * inspiration + (0.0 if side < 0 else 0.025)
    t = _T24
    ys = top + t * (bottom - top)
    lateral = x_med + side * width * (0.1 + 0.9 * np.sin(np.minimum(t * 1.7, 1.0) * np.pi / 2) ** 0.7)
    # Medial border: straight along the mediastinum; on the heart side it moves out (cardiac notch).
    notch = 0.0 if side < 0 else 0.05
    medial = x_med + side * (0.01 * (1 - t) + notch * np.clip((t - 0.45) / 0.4, 0, 1) ** 2)
    # Diaphragm dome from the costophrenic angle (lateral, lowest) to the medial end (higher).
    u = _U16
    x_cp, x_cm = lateral[-1], medial[-1]
    dome_x = x_cp + (x_cm - x_cp) * u
    dome_y = bottom - 0.03 * u - a.dome_height * np.sin(np.pi * np.clip(u * 0.9 + 0.1, 0, 1)) ** 0.7
    apex = np.stack([x_med + side * width * 0.1 * _APEX, top - 0.008 * _APEX_ARC], axis=1)
    pts = np.concatenate([
        np.stack([lateral, ys], axis=1),
        np.stack([dome_x, dome_y], axis=1),
        np.stack([medial[::-1], ys[::-1]], axis=1),
        apex,
    ]).astype(np.float32)
    frame = dict(x_med=float(x_med), width=float(width), top=float(top), bottom=float(bottom),
                 side=side)
    return pts, frame


def _lung_frame_coords(frame: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-lung coordinates: lateral fraction u (0 medial .. 1 lateral) and height v (0 apex .. 1 base)."""
    x, y = _grid(size)
    u = (x - frame["x_med"]) * frame["side"] / frame["width"]
    v = (y - frame["top"]) / (frame["bottom"] - frame["top"])
    return u, v


def _draw_lines(layer: np.ndarray, lines: Iterable[np.ndarray], size: int, thickness: int,
                value: float) -> None:
    if isinstance(lines, np.ndarray):  # [n_lines, n_points, 2]: one conversion for all
        polys = list(np.round(lines * size * 16.0).astype(np.int32))
    else:
        polys = [_poly(p, size) for p in lines]
    if len(polys):
        cv2.polylines(layer, polys, False, float(value), thickness=max(1, thickness),
                      lineType=cv2.LINE_AA, shift=4)


def _lesion_density(label: str, a: Anatomy, frames: Sequence[dict], lung: np.ndarray,
                    rng: np.random.Generator, size: int) -> np.ndarray:
    """Lesion opacity in [0, 1] (fraction of lung air replaced), float32 [S, S]."""
    s = size
    if label == "normal":
        return np.zeros((s, s), np.float32)
    if label == "bacterial":
        # Lobar consolidation: a few overlapping ellipses in one lower zone, mostly one side.
        side = a.lesion_side if rng.random() < 0.85 else -a.lesion_side
        frame = frames[0] if side < 0 else frames[1]
        blob = np.zeros((s, s), np.float32)
        cu, cv = rng.uniform(0.35, 0.65), rng.uniform(0.55, 0.75)
        for _ in range(int(rng.integers(3, 6))):
            uu = cu + rng.normal(0, 0.12)
            vv = cv + rng.normal(0, 0.07)
            px = frame["x_med"] + frame["side"] * uu * frame["width"]
            py = frame["top"] + vv * (frame["bottom"] - frame["top"])
            ax = rng.uniform(0.2, 0.35) * frame["width"]
            ay = rng.uniform(0.12, 0.2) * (frame["bottom"] - frame["top"])
            cv2.ellipse(blob, (int(px * s * 16), int(py * s * 16)),
                        (int(ax * s * 16), int(ay * s * 16)), float(rng.uniform(-40, 40)),
                        0, 360, 1.0, -1, cv2.LINE_AA, 4)
        texture = 0.8 + 0.2 * _smooth_noise(rng, s, 12)
        density = _blur(blob, s / 60) * texture * rng.uniform(0.75, 0.95)
        return density * lung
    if label == "viral":
        # Interstitial pattern: many short, thin, randomly oriented streaks in both lungs, denser
        # towards the hila, over a faint diffuse haze.
        layer = np.zeros((s, s), np.float32)
        lines = []
        for frame in frames:
            k = int(rng.integers(90, 130))
            uu = np.abs(rng.normal(0.0, 0.55, k)).clip(0.05, 0.95)
            vv = rng.uniform(0.1, 0.95, k)
            ang = rng.uniform(0, np.pi, k)
            ln = rng.uniform(0.03, 0.07, k)
            px = frame["x_med"] + frame["side"] * uu * frame["width"]
            py = frame["top"] + vv * (frame["bottom"] - frame["top"])
            dx, dy = np.cos(ang) * ln / 2, np.sin(ang) * ln / 2
            mx = px + rng.normal(0, 0.01, k)
            my = py + rng.normal(0, 0.01, k)
            lines.append(np.stack([np.stack([px - dx, py - dy], -1), np.stack([mx, my], -1),
                                   np.stack([px + dx, py + dy], -1)], axis=1))
        _draw_lines(layer, np.concatenate(lines).astype(np.float32), s, max(1, round(s / 200)), 1.0)
        streaks = _blur(layer, s / 300)
        haze = _blur(layer, s / 25)
        haze = haze / (haze.max() + 1e-6)
        density = np.clip(streaks * rng.uniform(0.3, 0.4) + haze * rng.uniform(0.2, 0.3), 0, 1)
        return density * lung
    # covid19: bilateral peripheral lower-zone ground glass, patchy.
    density = np.zeros((s, s), np.float32)
    patches = _smooth_noise(rng, s, 7)
    for frame in frames:
        u, v = _lung_frame_coords(frame, s)
        periph = np.clip((u - rng.uniform(0.3, 0.45)) / 0.3, 0, 1)
        lower = np.clip((v - rng.uniform(0.3, 0.45)) / 0.3, 0, 1)
        density = np.maximum(density, periph * lower)
    patchy = np.clip((patches - 0.25) / 0.5, 0, 1)
    density = _blur(density * (0.5 + 0.5 * patchy), s / 40) * rng.uniform(0.65, 0.8)
    return density * lung



@functools.lru_cache(maxsize=2)
def _static_layers(a: Anatomy, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patient-level layers (no randomness): soft tissue with spine and trachea, bones, heart.

    Cached because the images of one patient share them. Returned arrays are read-only.
    """
    x, y = _grid(s)
    sc = s / 256.0
    bw, cx = a.body_half_width, a.body_cx
    body_pts = np.array([
        [cx - 0.09, -0.05], [cx - 0.10, 0.08], [cx - bw, 0.17], [cx - bw - 0.03, 0.35],
        [cx - bw + 0.01, 1.05], [cx + bw - 0.01, 1.05], [cx + bw + 0.03, 0.35], [cx + bw, 0.17],
        [cx + 0.10, 0.08], [cx + 0.09, -0.05]], np.float32)
    body = np.zeros((s, s), np.float32)
    cv2.fillPoly(body, [_poly(body_pts, s)], 1.0, cv2.LINE_AA, 4)
    body = _blur(body, s / 150)
    col = np.clip(1.0 - ((x - cx) / (bw + 0.08)) ** 2, 0, 1) ** 0.5  # thicker in the middle
    tissue = a.tissue_level * (0.78 + 0.22 * col) + 18.0 * np.clip((y - a.lung_bottom) * 6, 0, 1)
    base = 12.0 + body * (tissue - 12.0)

    spine = np.zeros((s, s), np.float32)
    step = 0.045
    for k in range(int(1.1 / step)):
        yk = -0.02 + k * step + a.rib_phase * 0.02
        cv2.rectangle(spine, (int((cx - 0.035) * s * 16), int(yk * s * 16)),
                      (int((cx + 0.035) * s * 16), int((yk + step * 0.78) * s * 16)),
                      1.0, -1, cv2.LINE_AA, 4)
    base += _blur(spine, 1.2 * sc) * np.float32(24.0 * a.bone_gain)
    trachea = np.exp(-((x - cx) / 0.014) ** 2) * np.clip((a.lung_top + 0.2 - y) * 12, 0, 1)
    base -= trachea * 28.0

    bones = np.zeros((s, s), np.float32)
    span = a.lung_bottom - a.lung_top
    # Posterior ribs rise a little from the spine, then sweep down laterally; anterior ribs
    # (fainter) run down and inwards from the lateral chest wall.
    uu = np.linspace(0.0, 1.0, 14, dtype=np.float32)[None, :]
    level = (np.arange(10, dtype=np.float32)[:, None] + a.rib_phase)
    y0 = a.lung_top - 0.035 + level * span / 9.0 * (1.0 + 0.02 * level)
    ribs_post, ribs_ant = [], []
    for side in (-1, 1):
        reach = (a.lung_width_right if side < 0 else a.lung_width_left) + 0.05
        xs = np.broadcast_to(cx + side * (0.035 + uu * reach), (10, 14))
        ys = y0 - 0.05 * np.sin(np.pi * uu * 0.9) + 0.2 * uu ** 2.2
        ribs_post.append(np.stack([xs, ys], axis=-1))
        xa = np.broadcast_to(cx + side * (reach + 0.02 - uu * (reach - 0.07)), (6, 14))
        ya = y0[:6] + 0.11 + 0.12 * uu ** 1.4
        ribs_ant.append(np.stack([xa, ya], axis=-1))
    ribs_post = np.concatenate(ribs_post).astype(np.float32)
    ribs_ant = np.concatenate(ribs_ant).astype(np.float32)
    _draw_lines(bones, ribs_ant, s, round(5 * sc), 0.35)
    _draw_lines(bones, ribs_post, s, round(6 * sc), 1.0)
    # A darker medulla, so that ribs read as bands with bright cortices.
    _draw_lines(bones, ribs_post, s, round(2 * sc), 0.6)
    clav = [np.array([[cx + side * 0.03, a.lung_top + 0.045], [cx + side * 0.16, a.lung_top + 0.01],
                      [cx + side * 0.33, a.lung_top - 0.045]], np.float32) for side in (-1, 1)]
    _draw_lines(bones, clav, s, round(9 * sc), 1.5)
    bones = _blur(bones, 1.2 * sc) * np.float32(a.bone_gain)

    heart = np.zeros((s, s), np.float32)
    cv2.ellipse(heart, (int(a.heart_cx * s * 16), int(a.heart_cy * s * 16)),
                (int(a.heart_rx * s * 16), int(a.heart_ry * s * 16)), a.heart_angle, 0, 360,
                1.0, -1, cv2.LINE_AA, 4)
    heart = _blur(heart, s / 60)
    for arr in (base, bones, heart):
        arr.flags.writeable = False
    return base, bones, heart


def _put_text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, thickness: int,
              value: int) -> tuple[int, int, int, int]:
    """Burns `text` with its baseline-left at `org`; returns its pixel box (x0, y0, x1, y1)."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (w, h), base = cv2.getTextSize(text, font, scale, thickness)
    cv2.putText(img, text, org, font, scale, int(value), thickness, cv2.LINE_AA)
    rows, cols = img.shape[:2]
    return (max(0, org[0]), max(0, org[1] - h), min(cols, org[0] + w), min(rows, org[1] + base))


def render_phantom(
    label: str,
    size: int = 256,
    rng: Optional[np.random.Generator] = None,
    *,
    anatomy: Optional[Anatomy] = None,
    shortcut: Optional[str] = None,
    shortcut_label: Optional[str] = None,
    text: bool = True,
    source: str = "kermany",
) -> Phantom:
    """Renders one frontal chest radiograph phantom.

    Args:
        label: one of `LABELS` ("normal", "bacterial", "viral", "covid19").
        size: image side S in pixels (32..4096).
        rng: the image's random generator (a fresh unseeded one when None).
        anatomy: the patient's habitus; drawn from `rng` when None.
        shortcut: None (no planted shortcut), "marker" (a bright square in the slot of
            `shortcut_label` along the bottom edge) or "text" (the token word of `shortcut_label`
            burned in at the top centre). Both lie outside the lungs.
        shortcut_label: the label the shortcut encodes (defaults to `label`, i.e. a perfect
            shortcut); the dataset writer picks it to set the shortcut's strength.
        text: burn in the laterality marker and the hospital/date string (label independent).
        source: "kermany" or "ieee8023": text style only (ieee8023 images are often figures with
            panel letters and arrows).

    Returns:
        A `Phantom`: image uint8 [S, S], lung_mask and lesion_mask uint8 {0, 255} [S, S], meta.
    """
    label = _check_label(label)
    size = _check_int("size", size, 32, 4096)
    if shortcut is not None and shortcut not in SHORTCUTS:
        raise ValueError(
            f"`shortcut` must be None or one of {SHORTCUTS}. Received: shortcut={shortcut!r}")
    if shortcut_label is None:
        shortcut_label = label
    elif shortcut_label not in LABELS:
        raise ValueError(f"`shortcut_label` must be one of {LABELS}. "
                         f"Received: shortcut_label={shortcut_label!r}")
    if source not in ("kermany", "ieee8023"):
        raise ValueError(f"`source` must be 'kermany' or 'ieee8023'. Received: source={source!r}")
    if rng is None:
        rng = np.random.default_rng()
    a = anatomy if anatomy is not None else sample_anatomy(rng)
    s = size
    sc = s / 256.0

    base, bones, heart = _static_layers(a, s)

    # --- Lungs --------------------------------------------------------------------------------
    inspiration = rng.uniform(0.93, 1.04)
    outlines, frames = zip(*(_lung_outline(a, side, inspiration) for side in (-1, 1)))
    lung_hard = np.zeros((s, s), np.uint8)
    cv2.fillPoly(lung_hard, [_poly(p, s) for p in outlines], 255, cv2.LINE_8, 4)
    lung01 = lung_hard.astype(np.float32) * np.float32(1 / 255)
    lung = _blur(lung01, s / 90)
    lesion = _lesion_density(label, a, frames, lung01, rng, s)
    # Heart and mediastinum lie in front of the lung and replace its air; so does a lesion.
    air = lung * (1.0 - 0.85 * heart) * (1.0 - lesion)
    air *= 0.92 + 0.08 * _smooth_noise(rng, s, 5)
    img = base - a.air_contrast * air
    img += bones * (8.0 + 14.0 * lung)

    # Vessels fan out from each hilum: 9 gently bent branches per lung, drawn in one call.
    vessels = []
    tt = _T6[None, :]
    for frame in frames:
        hx = frame["x_med"] + frame["side"] * 0.03
        hy = frame["top"] + 0.45 * (frame["bottom"] - frame["top"])
        ang = rng.uniform(-0.4 * np.pi, 0.5 * np.pi, (9, 1))
        ln = rng.uniform(0.12, 0.25, (9, 1))
        bend = rng.normal(0, 0.03, (9, 1))
        px = hx + frame["side"] * (np.cos(ang) * ln * tt + bend * tt ** 2)
        py = hy + np.sin(ang) * ln * tt * 0.9
        vessels.append(np.stack([px, py], axis=-1))
    vessels = np.concatenate(vessels).astype(np.float32)
    vlayer = np.zeros((s, s), np.float32)
    _draw_lines(vlayer, vessels, s, round(2 * sc), 1.0)
    img += _blur(vlayer, 1.0 * sc) * 14.0 * lung

    # --- Acquisition: pose, exposure, blur, noise ---------------------------------------------
    angle = rng.uniform(-4.0, 4.0)
    scale = rng.uniform(0.94, 1.05)
    shift = rng.uniform(-0.03, 0.03, 2) * s
    m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, scale)
    m[:, 2] += shift
    img = cv2.warpAffine(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    lung_mask = cv2.warpAffine(lung_hard, m, (s, s), flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    lesion_hard = np.where(lesion > 0.12, np.uint8(255), np.uint8(0))
    lesion_mask = cv2.warpAffine(lesion_hard, m, (s, s), flags=cv2.INTER_NEAREST,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    lesion_mask &= lung_mask

    img *= 0.92 + 0.16 * _smooth_noise(rng, s, 4)
    img = _blur(img, rng.uniform(0.3, 0.7) * sc)
    gamma = rng.uniform(0.9, 1.25)
    contrast = rng.uniform(0.9, 1.1)
    brightness = rng.uniform(-8.0, 8.0)
    # Exposure curve through a 256-entry table (cv2.LUT maps uint8 to float32 in one pass); the
    # quantisation before it is hidden by the noise added after it.
    levels = np.arange(256, dtype=np.float32)
    curve = ((255.0 * (levels / 255.0) ** gamma - 128.0) * contrast + 128.0 + brightness)
    img = cv2.LUT(np.clip(img, 0, 255).astype(np.uint8), curve.astype(np.float32))
    noise_sigma = rng.uniform(2.0, 6.0)
    img += rng.standard_normal((s, s), dtype=np.float32) * np.float32(noise_sigma)
    image = np.clip(img + 0.5, 0, 255).astype(np.uint8)

    # --- Burned-in text and planted shortcut --------------------------------------------------
    meta: dict = dict(label=label, size=s, angle=float(angle), scale=float(scale),
                      gamma=float(gamma), noise_sigma=float(noise_sigma),
                      laterality="", shortcut=shortcut or "", shortcut_label="",
                      shortcut_box=None)
    thick = max(1, round(1.6 * sc))
    if text:
        side_r = rng.random() < 0.75
        letter = "R" if rng.random() < 0.8 else "L"
        pos_x = int(0.06 * s) if side_r else int(0.88 * s)
        _put_text(image, letter, (pos_x, int(0.1 * s)), max(0.3, 0.6 * sc), thick, int(rng.integers(215, 256)))
        meta["laterality"] = letter
        if rng.random() < 0.6:
            words = f"{_HOSPITALS[int(rng.integers(len(_HOSPITALS)))]} " \
                    f"{int(rng.integers(2017, 2021))}-{int(rng.integers(1, 13)):02d}-" \
                    f"{int(rng.integers(1, 29)):02d}"
            row = int((0.97 if rng.random() < 0.5 else 0.045) * s)
            _put_text(image, words, (int(0.03 * s), row), 0.3 * sc, max(1, round(sc)),
                      int(rng.integers(180, 256)))
        if source == "ieee8023" and rng.random() < 0.3:
            _put_text(image, "ABCD"[int(rng.integers(4))], (int(0.03 * s), int(0.2 * s)),
                      0.8 * sc, thick + 1, 255)
        if source == "ieee8023" and rng.random() < 0.15:
            p0 = (int(rng.uniform(0.2, 0.8) * s), int(rng.uniform(0.3, 0.7) * s))
            p1 = (p0[0] + int(0.08 * s), p0[1] - int(0.06 * s))
            cv2.arrowedLine(image, p1, p0, 255, thick, cv2.LINE_AA, 0, 0.3)
    if shortcut == "marker":
        half = max(2, round(0.025 * s))
        mx, my = int(_MARKER_SLOTS_X[shortcut_label] * s), int(0.93 * s)
        box = (mx - half, my - half, mx + half, my + half)
        cv2.rectangle(image, box[:2], (box[2] - 1, box[3] - 1), 250, -1)
        meta["shortcut_box"] = box
        meta["shortcut_label"] = shortcut_label
    elif shortcut == "text":
        token = _SHORTCUT_TOKENS[shortcut_label]
        scale_t = max(0.3, 0.45 * sc)  # still legible on small images
        (w, h), _ = cv2.getTextSize(token, cv2.FONT_HERSHEY_SIMPLEX, scale_t, thick)
        box = _put_text(image, token, (s // 2 - w // 2, max(int(0.075 * s), h + 1)), scale_t,
                        thick, 245)
        meta["shortcut_box"] = tuple(int(v) for v in box)
        meta["shortcut_label"] = shortcut_label
    return Phantom(image=image, lung_mask=lung_mask, lesion_mask=lesion_mask, meta=meta)


def render_lateral(label: str, size: int, rng: np.random.Generator) -> Phantom:
    """A crude lateral view (ieee8023 has `view == "L"` rows): one lung field, spine behind.

    Only there so that readers meet lateral rows with files; its lesion mask is empty.
    """
    _check_label(label)
    s = size
    img = np.full((s, s), 12.0, np.float32)
    body = np.zeros((s, s), np.float32)
    cv2.ellipse(body, (s // 2, int(0.55 * s)), (int(0.42 * s), int(0.6 * s)), 0, 0, 360, 1.0, -1)
    body = _blur(body, s / 40)
    img += body * rng.uniform(130, 160)
    lung_hard = np.zeros((s, s), np.uint8)
    cv2.ellipse(lung_hard, (int(0.5 * s), int(0.48 * s)), (int(0.28 * s), int(0.3 * s)),
                float(rng.uniform(-10, 10)), 0, 360, 255, -1)
    lung = _blur(lung_hard.astype(np.float32) / 255.0, s / 60)
    img -= lung * rng.uniform(70, 95)
    spine = np.zeros((s, s), np.float32)
    cv2.rectangle(spine, (int(0.74 * s), 0), (int(0.82 * s), s), 1.0, -1)
    img += _blur(spine, s / 100) * 35.0
    img += rng.standard_normal((s, s), dtype=np.float32) * rng.uniform(2, 6)
    image = np.clip(_blur(img, 0.8 * s / 256), 0, 255).astype(np.uint8)
    _put_text(image, "LAT", (int(0.05 * s), int(0.1 * s)), 0.5 * s / 256, max(1, round(1.5 * s / 256)), 240)
    return Phantom(image=image, lung_mask=lung_hard, lesion_mask=np.zeros_like(lung_hard),
                   meta=dict(label=label, size=s, laterality="", shortcut="", shortcut_label="",
                             shortcut_box=None))


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


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PhantomSummary:
    """What `write_phantom_dataset` wrote.

    Attributes:
        out: the output directory.
        counts: {layout: {label: number of image files}}.
        n_images: image files written (all layouts; lung-masks pairs count once).
        n_files: all files written (images, masks, tables, README).
        seconds: wall time.
    """

    out: Path
    counts: dict
    n_images: int
    n_files: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else float("inf")

    def line(self) -> str:
        parts = ", ".join(f"{layout} {sum(c.values())}" for layout, c in self.counts.items())
        return (f"wrote {self.n_images} phantom images ({parts}) and {self.n_files} files in all "
                f"to {self.out} in {self.seconds:.1f} s ({self.images_per_second:.0f} images/s)")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _encode(image: np.ndarray, ext: str, mode: str, rng: Optional[np.random.Generator]) -> bytes:
    """Encodes a grey image as the file's format and colour mode (R=G=B for RGB)."""
    ext = ext.lower()
    if mode == "L":
        arr = image
    elif mode == "RGBA":
        arr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGRA)
    elif mode == "tint":  # paper figures: a colour cast, label independent
        gains = (np.array([1.0, 0.95, 0.85]) if rng is None else rng.uniform(0.85, 1.0, 3))
        arr = np.clip(image[..., None] * gains[None, None, :], 0, 255).astype(np.uint8)
    else:
        arr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if ext in ("jpg", "jpeg"):
        ok, buf = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    else:
        ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - cv2 only fails on impossible inputs
        raise RuntimeError(f"cv2 could not encode an image as {ext}")
    return buf.tobytes()


def _encode_mask(mask: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", mask, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return buf.tobytes()


def _csv_bytes(columns: Sequence[str], rows: Iterable[dict]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")


def _is_phantom_set(out: Path) -> bool:
    readme = out / README_NAME
    try:
        return readme.is_file() and readme.read_text(errors="replace").startswith(README_FIRST_LINE)
    except OSError:
        return False


def _prepare_out(out: Path, overwrite: bool, readme: str) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"`out` must be a directory. Received: out={str(out)!r} (a file)")
    if out.is_dir() and any(out.iterdir()):
        if not _is_phantom_set(out):
            raise ValueError(f"`out` is not empty and holds no phantom set ({README_NAME} missing); "
                             f"refusing to write into it. Received: out={str(out)!r}")
        same = (out / README_NAME).read_text(errors="replace") == readme
        if not overwrite and not same:
            raise ValueError(f"`out` already holds a phantom set made with other options; pass "
                             f"overwrite=True (--overwrite) to replace it. Received: out={str(out)!r}")
        # Only what this generator writes is removed, so that a smaller n leaves no stale files.
        for name in (*LAYOUT_DIRS.values(), GROUND_TRUTH_DIR):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        for name in (TABLE_NAME, README_NAME):
            if (out / name).is_file():
                (out / name).unlink()
    out.mkdir(parents=True, exist_ok=True)


def _pick_shortcut_label(label: str, labels: Sequence[str], strength: float,
                         rng: np.random.Generator) -> str:
    """With probability `strength` the true label, otherwise one drawn uniformly (may agree)."""
    if rng.random() < strength:
        return label
    return labels[int(rng.integers(len(labels)))]


def readme_text(n: int, size: int, seed: int, formats: Sequence[str], shortcut: Optional[str],
                shortcut_strength: float, text: bool, missing_files: bool = False) -> str:
    """The README.txt of a phantom set (it also records the options, see `_prepare_out`)."""
    return (
        f"{README_FIRST_LINE}\n\n"
        "These images are SYNTHETIC PHANTOMS drawn by a program. They are not radiographs of any\n"
        "person and mean nothing medically: their 'diseases' are cartoons of textbook patterns\n"
        "(bacterial: lobar consolidation; viral: bilateral interstitial streaks; COVID-19:\n"
        "bilateral peripheral lower-zone ground glass). A model that classifies them well shows\n"
        "that the software works, never that it can diagnose anything.\n\n"
        f"generator: cxr_cascade.phantoms {GENERATOR_VERSION}\n"
        f"n: {n}\nsize: {size}\nseed: {seed}\nformats: {','.join(formats)}\n"
        f"shortcut: {shortcut or 'none'}\nshortcut_strength: {shortcut_strength}\n"
        f"text: {'yes' if text else 'no'}\nmissing_files: {'yes' if missing_files else 'no'}\n\n"
        "Layouts imitate Kermany et al. 2018 (chest_xray/), ieee8023 covid-chestxray-dataset\n"
        "(metadata.csv + images/) and the V7 Labs lung masks (lung-masks/). Ground truth for every\n"
        f"image (lung and lesion masks, planted shortcut boxes) is in {TABLE_NAME} and "
        f"{GROUND_TRUTH_DIR}/.\n"
    )


def write_phantom_dataset(
    out,
    n: int,
    size: int = 256,
    seed: int = 0,
    *,
    formats: Sequence[str] | str = FORMATS,
    shortcut: Optional[str] = None,
    shortcut_strength: float = 1.0,
    text: bool = True,
    missing_files: bool = False,
    overwrite: bool = False,
) -> PhantomSummary:
    """Writes a phantom data set in the real layouts under `out`.

    Args:
        out: output directory; must be absent, empty, or (with `overwrite`) an earlier phantom set.
        n: frontal images in each of the Kermany and ieee8023 layouts. lung-masks gets the Kermany
            train images (about 90 % of them) plus the ieee8023 frontal images, as the real set.
        size: image side in pixels (ieee8023 images get a random aspect ratio, longest side = size).
        seed: the seed; the same seed gives byte-identical files.
        formats: which layouts to write, from `FORMATS` (a list or a comma-separated string).
        shortcut: None, "marker" or "text": plant a label-correlated mark (see `render_phantom`).
        shortcut_strength: probability that the mark encodes the true label; otherwise it encodes
            a label drawn uniformly, so 0 means no correlation and 1 a perfect one.
        text: burn in laterality markers and hospital/date strings (label independent).
        missing_files: also list ieee8023 X-ray rows whose file is absent, as upstream has
            (readers must report them; `data check --strict` then fails, as on the real set).
            CT rows without files are always listed.
        overwrite: replace an earlier phantom set in `out`. Writing the very same set again
            (same options, recorded in README.txt) needs no `overwrite`: the bytes are the same.

    Returns:
        A `PhantomSummary`.
    """
    n = _check_int("n", n, 1, 10_000_000)
    size = _check_int("size", size, 32, 4096)
    seed = _check_int("seed", seed, 0, 2**63 - 1)
    formats = _check_formats(formats)
    _check_shortcut(shortcut, shortcut_strength)
    out = Path(out)
    start = time.perf_counter()
    readme = readme_text(n, size, seed, formats, shortcut, float(shortcut_strength), bool(text),
                         bool(missing_files))
    _prepare_out(out, bool(overwrite), readme)
    # Small images: OpenCV's worker threads cost more than they save (measured 2x slower).
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        summary = _write(out, n, size, seed, formats, shortcut, float(shortcut_strength),
                         bool(text), bool(missing_files), readme)
    finally:
        cv2.setNumThreads(threads)
    return dataclasses.replace(summary, seconds=time.perf_counter() - start)


def _write(out: Path, n: int, size: int, seed: int, formats: tuple[str, ...],
           shortcut: Optional[str], shortcut_strength: float, text: bool, missing_files: bool,
           readme: str) -> PhantomSummary:
    # README.txt first: a run killed midway can be rerun with the same options (see _prepare_out);
    # phantoms.csv, written last, marks a complete set.
    _atomic_write(out / README_NAME, readme.encode("utf-8"))
    want_kermany = "kermany" in formats or "lung-masks" in formats
    want_ieee = "ieee8023" in formats or "lung-masks" in formats
    items = (_plan_kermany(n, seed) if want_kermany else []) + (
        _plan_ieee(n, seed, size, missing_files) if want_ieee else [])

    table: list[dict] = []
    counts: dict = {f: {} for f in formats}
    n_images = n_files = 0
    anatomies: dict[tuple, Anatomy] = {}
    for item in items:
        layout_requested = item.layout in formats
        to_masks = "lung-masks" in formats and item.in_lung_masks
        if not item.write_file or not (layout_requested or to_masks):
            continue
        if item.patient_key not in anatomies:
            anatomies.clear()  # items are grouped by patient
            anatomies[item.patient_key] = sample_anatomy(_rng(seed, *item.patient_key, 10**6))
        rng = _rng(seed, *item.key)
        source = item.layout
        labels = list(_KERMANY_CLASS_P) if source == "kermany" else list(LABELS)
        # The shortcut draws from its own stream: with and without it, an image differs only
        # inside the shortcut's box (paired images for shortcut audits).
        sc_label = (_pick_shortcut_label(item.label, labels, shortcut_strength,
                                         _rng(seed, *item.key, 7)) if shortcut else None)
        if item.view == "L":
            ph = render_lateral(item.label, size, rng)
        else:
            ph = render_phantom(item.label, size, rng, anatomy=anatomies[item.patient_key],
                                shortcut=shortcut, shortcut_label=sc_label, text=text,
                                source=source)
        image, lung_m, lesion_m, box = ph.image, ph.lung_mask, ph.lesion_mask, ph.meta["shortcut_box"]
        if item.out_hw is not None and item.out_hw != (size, size):
            h, w = item.out_hw
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            lung_m = cv2.resize(lung_m, (w, h), interpolation=cv2.INTER_NEAREST)
            lesion_m = cv2.resize(lesion_m, (w, h), interpolation=cv2.INTER_NEAREST)
            if box is not None:
                box = (round(box[0] * w / size), round(box[1] * h / size),
                       round(box[2] * w / size), round(box[3] * h / size))
        h, w = image.shape
        layout_dir = LAYOUT_DIRS[item.layout]
        stem, ext = item.relpath.rsplit(".", 1)
        gt_stem = f"{GROUND_TRUTH_DIR}/{layout_dir}/{stem}"
        lung_path, lesion_path = f"{gt_stem}_lung.png", f"{gt_stem}_lesion.png"
        lung_png = _encode_mask(lung_m)
        _atomic_write(out / lung_path, lung_png)
        _atomic_write(out / lesion_path, _encode_mask(lesion_m))
        n_files += 2
        lung_px = int(np.count_nonzero(lung_m))
        base_row = dict(
            label=item.label, patient_id=item.patient_id, split=item.split, view=item.view,
            width=w, height=h, mask_path=lung_path, lung_mask_path=lung_path, lesion_mask_path=lesion_path,
            lesion_fraction=f"{np.count_nonzero(lesion_m) / max(lung_px, 1):.4f}",
            laterality=ph.meta["laterality"], shortcut=ph.meta["shortcut"],
            shortcut_label=ph.meta["shortcut_label"],
            shortcut_agrees=("" if not ph.meta["shortcut"] else
                             str(int(ph.meta["shortcut_label"] == item.label))),
            shortcut_x0="" if box is None else box[0], shortcut_y0="" if box is None else box[1],
            shortcut_x1="" if box is None else box[2], shortcut_y1="" if box is None else box[3])
        encoded = None
        if layout_requested:
            encoded = _encode(image, ext, item.mode, rng)
            path = f"{layout_dir}/{item.relpath}"
            _atomic_write(out / path, encoded)
            n_files += 1
            n_images += 1
            table.append(dict(base_row, path=path, source=item.layout))
            counts[item.layout][item.label] = counts[item.layout].get(item.label, 0) + 1
        if to_masks:
            mstem = Path(item.relpath).stem
            if item.layout == "ieee8023" and max(h, w) > 512:  # V7 ieee8023 images: <= 512 px
                f = 512 / max(h, w)
                mh, mw = max(1, round(h * f)), max(1, round(w * f))
                m_img = cv2.resize(image, (mw, mh), interpolation=cv2.INTER_AREA)
                m_png = _encode_mask(cv2.resize(lung_m, (mw, mh), interpolation=cv2.INTER_NEAREST))
            else:
                m_img, m_png = image, lung_png
            # Kermany images are the very same RGB JPEGs (R=G=B) as in chest_xray/, as in the
            # real set; ieee8023 ones are grey.
            if item.layout == "kermany" and encoded is not None:
                m_bytes = encoded
            else:
                m_bytes = _encode(m_img, "jpeg", "RGB" if item.layout == "kermany" else "L", None)
            path = f"{LAYOUT_DIRS['lung-masks']}/images/{mstem}.jpeg"
            _atomic_write(out / path, m_bytes)
            m_path = f"{LAYOUT_DIRS['lung-masks']}/masks/{mstem}_mask.png"
            _atomic_write(out / m_path, m_png)
            n_files += 2
            n_images += 1
            mh, mw = m_img.shape
            row = dict(base_row, path=path, source="lung-masks", width=mw, height=mh,
                       mask_path=m_path)
            if (mh, mw) != (h, w):  # the ground truth at the image's own size lives elsewhere
                row.update(lung_mask_path="", lesion_mask_path="")
            table.append(row)
            counts["lung-masks"][item.label] = counts["lung-masks"].get(item.label, 0) + 1

    if "ieee8023" in formats:
        rows = [item.row for item in items if item.layout == "ieee8023"]
        _atomic_write(out / LAYOUT_DIRS["ieee8023"] / "metadata.csv",
                      _csv_bytes(IEEE8023_COLUMNS, rows))
        n_files += 1
    _atomic_write(out / TABLE_NAME, _csv_bytes(TABLE_COLUMNS, table))
    n_files += 2
    counts = {k: dict(sorted(v.items(), key=lambda kv: LABELS.index(kv[0])))
              for k, v in counts.items()}
    return PhantomSummary(out=out, counts=counts, n_images=n_images, n_files=n_files, seconds=0.0)
