"""`cxr-cascade data check`: validate a data set before any training.

Every file is opened with Pillow (`verify()` for structure, then `load()` to decode every byte, which
catches truncation); format, mode, bit depth and size are summarised; class and patient counts per
split, missing files, unknown labels, duplicate rows, patients leaking across splits and lung masks
(present, decodable, same size as their image) are checked. Bad input never raises: each problem is
one `Problem` line naming the file.

Severity:
- error (fails `--strict`): missing, empty, unidentifiable, corrupt or truncated file; anything
  the shared decode policy (`pipelines.image_policy`) refuses: not PNG/JPEG, CMYK JPEG, a side
  under 2 pixels, over the pixel cap (50 megapixels or CXR_CASCADE_MAX_PIXELS); unknown
  label; a row listed twice; a patient in two splits; a duplicate image across splits; a mask that is
  missing, unreadable or of another size; a reader problem (unparseable name, metadata row without
  its file).
- warning: valid but worth knowing: 16-bit, alpha channel, palette, extension that disagrees with
  the content, duplicates inside one split, a finding not in the label table, mask values other
  than 0/127/255.
"""

from __future__ import annotations

import json
import os
import statistics
import struct
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from pipelines.dedup import find_duplicates
from pipelines.image_policy import (
    ORIENTATIONS,
    exif_orientation,
    image_bytes_problem,
    png_sample_bits,
    png_sbit,
    shape_warning,
)
from pipelines.labels import LABELS
from pipelines.readers import detect_format, load_mask, read_dataset
from pipelines.records import MASK_SEPARATOR, PathLike, Problem, Record, RecordTable
from pipelines.splits import leaking_patients, split_table

# bits per sample of Pillow modes (PNG files are read from their header instead)
_MODE_BITS = {
    "1": 1, "L": 8, "LA": 8, "P": 8, "PA": 8, "RGB": 8, "RGBA": 8, "RGBX": 8, "CMYK": 8,
    "YCbCr": 8, "LAB": 8, "HSV": 8, "I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16,
    "I": 32, "F": 32,
}
_EXTENSION_FORMATS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF",
    ".tiff": "TIFF", ".gif": "GIF", ".webp": "WEBP",
}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class ImageInfo:
    """What `inspect_image` learned about one file; `format` is None when it could not be read."""

    path: str
    format: Optional[str] = None
    mode: Optional[str] = None
    bits: Optional[int] = None
    read_bits: Optional[str] = None  # a 16-bit PNG's real depth and why: "12 (sBIT)", "12 (max 4095)"
    width: Optional[int] = None
    height: Optional[int] = None
    colour: Optional[bool] = None  # RGB(A) whose channels differ somewhere
    problems: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


def _png_bit_depth(path: str) -> Optional[int]:
    try:
        with open(path, "rb") as handle:
            head = handle.read(26)
    except OSError:
        return None
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">B", head[24:25])[0]


def _png16_read_bits(path: str) -> str:
    """The bit depth every reader uses for a 16-bit PNG (`pipelines.image_policy.png_sample_bits`)
    and its ground: "12-bit (sBIT 12)" or "12-bit (largest value 4095, no sBIT)"."""
    # OpenCV: the largest sample of 16-bit colour too (Pillow reduces RGB48 to 8 bits)
    import cv2  # lazy: OpenCV is absent on the accelerator image

    data = np.fromfile(path, dtype=np.uint8)
    pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if pixels is None:
        return "unknown"
    colour = pixels if pixels.ndim == 2 else pixels[..., : 3 if pixels.shape[-1] >= 3 else 1]
    largest = int(colour.max())
    sbit = png_sbit(data[:1 << 16].tobytes())
    bits = png_sample_bits(largest, sbit)
    ground = (f"sBIT {sbit}" + (", samples above it: scaled to 16 bits" if bits == 16 and sbit < 16 else "")
              if sbit else f"largest value {largest}, no sBIT")
    return f"{bits}-bit ({ground})"


def inspect_image(path: PathLike) -> ImageInfo:
    """Opens `path` with Pillow and reports format, mode, bit depth, size and problems; never raises."""
    from PIL import Image, UnidentifiedImageError  # lazy: Pillow stays off cxr-cascade --help

    path = str(path)
    info = ImageInfo(path)

    def error(message: str) -> ImageInfo:
        info.problems.append(Problem(path, message))
        return info

    def warn(message: str) -> None:
        info.problems.append(Problem(path, message, severity="warning"))

    if not os.path.exists(path):
        return error("file not found")
    if not os.path.isfile(path):
        return error("not a regular file")
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        return error(f"cannot stat file: {exc}")
    if size == 0:
        return error("empty file (0 bytes)")
    # The decode policy every other command applies (format, CMYK, size, pixel cap), from the
    # header: a refused file is never handed to Pillow (a 20000x20000 PNG is not decoded here).
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 20)
        problem = image_bytes_problem(head)
    except OSError as exc:
        return error(f"cannot read file ({exc.strerror or exc})")
    if problem is not None and (" megapixels" in problem or "each side must be" in problem):
        return error(problem)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                fmt, mode, (width, height) = image.format, image.mode, image.size
                image.verify()
        except UnidentifiedImageError:
            try:
                with open(path, "rb") as handle:
                    head = handle.read(8)
            except OSError:
                head = b""
            return error(f"not an image Pillow can identify (first bytes {head!r})")
        except Exception as exc:  # Pillow raises many types for broken files
            return error(f"corrupt image: {type(exc).__name__}: {exc}")
        try:
            with Image.open(path) as image:
                image.load()
                if image.mode in ("RGB", "RGBA"):
                    pixels = np.asarray(image)[::2, ::2, :3]
                    info.colour = bool(
                        np.any(pixels[..., 0] != pixels[..., 1])
                        or np.any(pixels[..., 0] != pixels[..., 2])
                    )
                alpha_used = None
                if image.mode in ("RGBA", "LA", "PA"):
                    alpha = np.asarray(image.getchannel("A"))
                    alpha_used = bool(np.any(alpha != 255))
        except Exception as exc:
            return error(f"truncated or corrupt {fmt}: {type(exc).__name__}: {exc}")
    info.format, info.mode, info.width, info.height = fmt, mode, width, height
    if problem is not None and not problem.startswith("corrupt or truncated"):
        if "unknown file signature" in problem:  # TIFF, WebP...: Pillow named it
            problem = f"{fmt} image: only PNG and JPEG are read (convert it to PNG)"
        error(problem)
    info.bits = _png_bit_depth(path) if fmt == "PNG" else None
    if info.bits is None:
        info.bits = _MODE_BITS.get(mode)
    expected = _EXTENSION_FORMATS.get(os.path.splitext(path)[1].lower())
    if expected and fmt and expected != fmt:
        warn(f"extension says {expected} but the content is {fmt}")
    if fmt == "PNG" and info.bits == 16:
        info.read_bits = _png16_read_bits(path)
        warn(f"16-bit PNG ({mode}) holding {info.read_bits} data: every command reads v / "
             f"(2**{info.read_bits.split()[0]} - 1)")
    elif info.bits and info.bits > 8:
        warn(f"{info.bits}-bit image ({mode}): decode as uint{16 if info.bits <= 16 else 32} and rescale")
    orientation = exif_orientation(head)
    if orientation != 1:
        warn(f"EXIF orientation {orientation} ({ORIENTATIONS[orientation]} when displayed): predict "
             "and segment read it upright; training and evaluation read the stored pixels")
    if shape_warning(head):
        warn(shape_warning(head))
    if mode in ("RGBA", "LA", "PA"):
        warn(
            f"alpha channel ({mode}) is dropped on decode"
            + ("; some pixels are transparent" if alpha_used else "; fully opaque")
        )
    if mode in ("P", "PA"):
        warn("palette image (P): expand the palette before use")
    if mode == "1":
        warn("1-bit image")
    return info


def _inspect_mask(mask_path: str, image: ImageInfo) -> tuple[list[Problem], Optional[str]]:
    """Problems of a record's mask(s) and a key naming its value set."""
    import cv2  # lazy: OpenCV is absent on the accelerator image

    problems = []
    values_key = None
    for part in mask_path.split(MASK_SEPARATOR):
        if not os.path.isfile(part):
            problems.append(Problem(part, f"mask file not found (for {image.path})"))
            continue
        if os.path.getsize(part) == 0:
            problems.append(Problem(part, "empty mask file (0 bytes)"))
            continue
        decoded = cv2.imdecode(np.fromfile(part, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if decoded is None:
            problems.append(Problem(part, "cannot decode the mask"))
            continue
        values = np.unique(decoded)
        values_key = "{" + ",".join(str(v) for v in values[:6]) + (",...}" if len(values) > 6 else "}")
        if not set(values.tolist()) <= {0, 127, 255} and not set(values.tolist()) <= {0, 1}:
            problems.append(
                Problem(part, f"mask values {values_key}: expected 0/255 (127 = ignore)", severity="warning")
            )
        height, width = decoded.shape[:2]
        if image.width is not None and (width, height) != (image.width, image.height):
            problems.append(
                Problem(
                    part,
                    f"mask is {width}x{height} but its image is {image.width}x{image.height}",
                )
            )
    if not problems and MASK_SEPARATOR in mask_path:
        try:
            load_mask(mask_path)
        except (OSError, ValueError) as exc:
            problems.append(Problem(mask_path, f"masks cannot be merged: {exc}"))
    return problems, values_key


def _inspect_record(args: tuple[str, str]) -> tuple[ImageInfo, list[Problem], Optional[str]]:
    path, mask_path = args
    info = inspect_image(path)
    if not mask_path:
        return info, [], None
    problems, values = _inspect_mask(mask_path, info)
    return info, problems, values


def _stats(values: Sequence[int]) -> dict:
    if not values:
        return {}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


@dataclass
class CheckReport:
    """summary: JSON-ready dict; problems: every problem found, errors first."""

    summary: dict
    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]

    def to_json(self) -> str:
        payload = dict(self.summary)
        payload["problems"] = [str(p) for p in self.problems]
        return json.dumps(payload, sort_keys=False, default=str)

    def format_text(self, problems: bool = True) -> str:
        """The summary as text; with `problems`, one line per problem after it (`data check`
        prints those on stderr instead)."""
        s = self.summary
        lines = [f"data check: {s.get('input', '')} ({s.get('format', '')})"]
        lines.append(
            f"  records: {s['records']}  patients: {s['patients']}  "
            f"files readable: {s['files']['readable']}/{s['files']['checked']}"
        )
        if s.get("skipped"):
            lines.append("  skipped by the reader: " + ", ".join(f"{k} {v}" for k, v in s["skipped"].items()))
        for split, row in s["splits"].items():
            labels = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("images", "patients"))
            lines.append(
                f"  split {split}: {row['images']} images, {row['patients']} patients ({labels})"
            )
        for key in ("formats", "modes", "bit_depths"):
            lines.append(f"  {key.replace('_', ' ')}: " + ", ".join(f"{k} {v}" for k, v in s[key].items()))
        if s.get("colour_images"):
            lines.append(f"  colour images (RGB channels differ): {s['colour_images']}")
        sizes = s.get("sizes", {})
        if sizes.get("width"):
            lines.append(
                "  width min/median/max: {min}/{median}/{max}".format(**sizes["width"])
                + "  height: {min}/{median}/{max}".format(**sizes["height"])
                + "  most common: " + ", ".join(f"{k} ({v})" for k, v in sizes["most_common"])
            )
        if s.get("masks"):
            m = s["masks"]
            lines.append(
                f"  masks: {m['checked']} checked, values " + ", ".join(f"{k} {v}" for k, v in m["values"].items())
            )
        if s.get("duplicates"):
            d = s["duplicates"]
            lines.append(
                f"  duplicates: {d['exact_groups']} exact groups ({d['exact_images']} images), "
                f"{d['near_groups']} near groups ({d['near_images']} images), "
                f"{d['cross_split_groups']} across splits, {d['cross_source_groups']} across sources"
            )
        lines.append(f"  problems: {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        if problems:
            lines.extend(str(p) for p in self.problems)
        return "\n".join(lines)


def check_records(
    records: Sequence[Record],
    *,
    reader_problems: Sequence[Problem] = (),
    skipped: Optional[Counter] = None,
    duplicates: bool = False,
    jobs: int = 1,
    input_name: str = "",
    format_name: str = "",
) -> CheckReport:
    """Checks `records` (see module docstring); never raises on bad files.

    Args:
        records: the records to check.
        reader_problems: problems the reader already met (kept first in the report).
        skipped: the reader's count of rows left out on purpose.
        duplicates: also look for exact and near duplicate images (`pipelines.dedup`), which
            decodes every image a second time.
        jobs: processes for the per-file checks.
    """
    records = list(records)
    problems: list[Problem] = list(reader_problems)
    path_counts = Counter(r.path for r in records)
    for path, count in sorted(path_counts.items()):
        if count > 1:
            problems.append(Problem(path, f"listed {count} times (duplicate rows)"))
    unique = list(dict.fromkeys((r.path, r.mask_path) for r in records))
    if jobs > 1 and len(unique) >= 64:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_inspect_record, unique, chunksize=32))
    else:
        results = [_inspect_record(item) for item in unique]
    formats, modes, bits = Counter(), Counter(), Counter()
    widths, heights, sizes = [], [], Counter()
    mask_values: Counter = Counter()
    masks_checked = 0
    readable = colour = 0
    for (path, mask_path), (info, mask_problems, values) in zip(unique, results):
        problems.extend(info.problems)
        problems.extend(mask_problems)
        if mask_path:
            masks_checked += 1
            if values:
                mask_values[values] += 1
        if info.format is None:
            continue
        readable += 1 if info.ok else 0
        formats[info.format] += 1
        modes[info.mode] += 1
        bits[str(info.bits) + (f" read as {info.read_bits.split()[0]}" if info.read_bits else "")] += 1
        colour += bool(info.colour)
        widths.append(info.width)
        heights.append(info.height)
        sizes[f"{info.width}x{info.height}"] += 1
    # a manifest's reader already reported unknown labels with their row numbers
    labels_reported = any(p.message.startswith("unknown label") for p in reader_problems)
    for record in records:
        if record.label not in LABELS and not labels_reported:
            problems.append(Problem(record.path, f"unknown label {record.label!r}"))
    for key, splits in leaking_patients(records).items():
        problems.append(Problem(key, f"patient in more than one split: {', '.join(splits)}"))
    summary = {
        "input": input_name,
        "format": format_name,
        "records": len(records),
        "patients": len({r.patient_key for r in records}),
        "sources": dict(Counter(r.source for r in records)),
        "labels": dict(Counter(r.label for r in records)),
        "splits": split_table(records),
        "skipped": dict(skipped or {}),
        "files": {
            "checked": len(unique),
            "readable": readable,
            "missing": sum(1 for p in problems if p.message.startswith("file not found")),
            "unreadable": len(unique) - readable,
        },
        "formats": dict(formats.most_common()),
        "modes": dict(modes.most_common()),
        "bit_depths": dict(sorted(bits.items())),
        "colour_images": colour,
        "sizes": {
            "width": _stats(widths),
            "height": _stats(heights),
            "most_common": sizes.most_common(3),
        },
        "leaking_patients": len(leaking_patients(records)),
    }
    if masks_checked:
        summary["masks"] = {"checked": masks_checked, "values": dict(mask_values.most_common())}
    if duplicates:
        report = find_duplicates(records, jobs=jobs)
        summary["duplicates"] = report.summary()
        problems.extend(report.as_problems())
    problems.sort(key=lambda p: p.severity != "error")  # stable: errors first, order kept
    summary["errors"] = sum(p.severity == "error" for p in problems)
    summary["warnings"] = len(problems) - summary["errors"]
    return CheckReport(summary, problems)


def check_path(
    path: PathLike,
    format: Optional[str] = None,
    *,
    duplicates: bool = False,
    jobs: int = 1,
    **reader_options,
) -> CheckReport:
    """Reads `path` with `pipelines.readers.read_dataset` and checks the records.

    Raises only when nothing can be read at all (no such path, unknown layout, a manifest without
    the required columns): FileNotFoundError or ValueError naming the path.
    """
    format = format or detect_format(path)
    table: RecordTable = read_dataset(path, format, **reader_options)
    return check_records(
        table,
        reader_problems=table.problems,
        skipped=getattr(table, "skipped", None),
        duplicates=duplicates,
        jobs=jobs,
        input_name=str(path),
        format_name=format,
    )
