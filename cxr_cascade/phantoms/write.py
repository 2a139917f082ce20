"""Writing a phantom data set to disk (`write_phantom_dataset`): images, masks, tables, README.

Every file is written atomically with `pipelines.atomic` (the project's one write-then-rename
helper), README.txt first and ``phantoms.csv`` last, so a set with its table is complete.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import shutil
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence

import cv2
import numpy as np

from cxr_cascade.phantoms.draw import (
    LABELS,
    Anatomy,
    _check_int,
    _check_shortcut,
    render_lateral,
    render_phantom,
    sample_anatomy,
)
from cxr_cascade.phantoms.layouts import (
    FORMATS,
    GENERATOR_VERSION,
    IEEE8023_COLUMNS,
    LAYOUT_DIRS,
    _KERMANY_CLASS_P,
    _check_formats,
    _plan_ieee,
    _plan_kermany,
    _rng,
)
from pipelines.atomic import atomic_write_bytes

GROUND_TRUTH_DIR = "ground_truth"
TABLE_NAME = "phantoms.csv"
README_NAME = "README.txt"
README_FIRST_LINE = "cxr-cascade synthetic chest X-ray phantoms"

TABLE_COLUMNS: tuple[str, ...] = (
    "path", "label", "patient_id", "source", "split", "view", "width", "height",
    "mask_path", "lung_mask_path", "lesion_mask_path", "lesion_fraction", "laterality",
    "shortcut", "shortcut_label", "shortcut_agrees",
    "shortcut_x0", "shortcut_y0", "shortcut_x1", "shortcut_y1",
)


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
    """`pipelines.atomic` without the disk flushes: each file still appears whole or not at all,
    and a set is regenerable (README.txt first, phantoms.csv last), so durability is not bought
    at 3x the write time."""
    atomic_write_bytes(path, data, fsync=False)


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
