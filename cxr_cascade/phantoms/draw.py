"""Drawing of one synthetic chest radiograph phantom (`render_phantom`, `render_lateral`).

Grey-level cartoons of a frontal chest film (body outline, lung fields, ribs, clavicles, spine,
mediastinum and trachea, heart, diaphragm domes, vessels, noise, burned-in text) with a lesion
pattern per class and an optional planted shortcut; see the package docstring of
`cxr_cascade.phantoms`. Pure NumPy + OpenCV; no files are read or written here.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterable, Optional, Sequence

import cv2
import numpy as np

from cxr_cascade.registry import PHANTOM_SHORTCUTS

LABELS: tuple[str, ...] = ("normal", "bacterial", "viral", "covid19")
SHORTCUTS: tuple[str, ...] = PHANTOM_SHORTCUTS

# Planted-shortcut geometry: one slot per label along the bottom edge (below the diaphragm, so a
# lung mask removes it) for "marker"; one token word per label for "text".
_MARKER_SLOTS_X = {"normal": 0.14, "bacterial": 0.38, "viral": 0.62, "covid19": 0.86}
_SHORTCUT_TOKENS = {"normal": "OPD", "bacterial": "WARD", "viral": "PEDS", "covid19": "PORT"}

_HOSPITALS = ("PHANTOM GEN HOSP", "ST NOWHERE", "CXR SIM CENTRE", "DEMO MEDICAL", "SYNTH RAD")


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
