"""Specification of pipelines.check: every bad input is reported as one line, never a crash."""

from __future__ import annotations

import csv
import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from pipelines.check import check_path, check_records, inspect_image
from pipelines.records import MANIFEST_COLUMNS, Record


def _gray(size=32):
    y, x = np.mgrid[0:size, 0:size]
    return ((x * 7 + y * 3) % 256).astype(np.uint8)


def _jpeg_bytes(pixels, **options):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", **options)
    return buffer.getvalue()


@pytest.fixture
def bad_files(tmp_path):
    """One file per bad-input case, plus a good one."""
    folder = tmp_path / "images"
    folder.mkdir()
    gray = _gray()
    files = {}
    files["good"] = folder / "good.png"
    cv2.imwrite(str(files["good"]), gray)
    files["truncated"] = folder / "truncated.jpeg"
    whole = _jpeg_bytes(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    files["truncated"].write_bytes(whole[: len(whole) // 2])
    files["random"] = folder / "random.png"
    files["random"].write_bytes(np.random.default_rng(1).integers(0, 255, 500, dtype=np.uint8).tobytes())
    files["bit16"] = folder / "sixteen.png"
    cv2.imwrite(str(files["bit16"]), gray.astype(np.uint16) * 257)
    files["rgba"] = folder / "rgba.png"
    Image.fromarray(np.dstack([gray] * 3 + [np.full_like(gray, 200)]), "RGBA").save(files["rgba"])
    files["palette"] = folder / "palette.png"
    Image.fromarray(gray).convert("P").save(files["palette"])
    files["cmyk"] = folder / "cmyk.jpeg"
    Image.fromarray(np.dstack([gray] * 3)).convert("CMYK").save(files["cmyk"])
    files["empty"] = folder / "empty.png"
    files["empty"].write_bytes(b"")
    files["text"] = folder / "notes.jpeg"
    files["text"].write_text("this is not an image\n")
    files["missing"] = folder / "missing.png"
    return files


def _manifest(path, records):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_COLUMNS)
        for row in records:
            writer.writerow(row)
    return path


def test_good_png(bad_files):
    info = inspect_image(bad_files["good"])
    assert (info.format, info.mode, info.bits, info.width, info.height) == ("PNG", "L", 8, 32, 32)
    assert info.problems == [] and info.ok


@pytest.mark.parametrize(
    "case, severity, words",
    [
        ("truncated", "error", "truncated or corrupt JPEG"),
        ("random", "error", "not an image Pillow can identify"),
        ("empty", "error", "empty file (0 bytes)"),
        ("text", "error", "not an image Pillow can identify"),
        ("missing", "error", "file not found"),
        ("cmyk", "error", "CMYK"),
        ("bit16", "warning", "16-bit"),
        ("rgba", "warning", "alpha channel (RGBA)"),
        ("palette", "warning", "palette image"),
    ],
)
def test_each_bad_input_is_one_line_naming_the_file(bad_files, case, severity, words):
    info = inspect_image(bad_files[case])
    assert len(info.problems) == 1, info.problems
    (problem,) = info.problems
    assert problem.severity == severity and words in problem.message
    line = str(problem)
    assert line.startswith(str(bad_files[case])) and "\n" not in line


def test_bit_depth_and_mode_summary(bad_files):
    records = [Record(str(path), "normal", name, "t") for name, path in bad_files.items()]
    report = check_records(records)
    s = report.summary
    assert s["bit_depths"] == {"16 read as 16-bit": 1, "8": 4}
    assert s["modes"] == {"L": 1, "I;16": 1, "RGBA": 1, "P": 1, "CMYK": 1}
    assert s["files"] == {"checked": 10, "readable": 4, "missing": 1, "unreadable": 6}
    assert len(report.errors) == 6 and len(report.warnings) == 3
    assert [p.severity for p in report.problems] == ["error"] * 6 + ["warning"] * 3
    json.loads(report.to_json())  # one JSON object, even with broken files


def test_manifest_rows_missing_duplicate_and_unknown_label(tmp_path, bad_files):
    good = str(bad_files["good"])
    manifest = _manifest(tmp_path / "m.csv", [
        [good, "normal", "p1", "t", "train", ""],
        [good, "normal", "p1", "t", "train", ""],                 # duplicate row
        [str(bad_files["missing"]), "viral", "p2", "t", "test", ""],  # points at nothing
        [str(bad_files["rgba"]), "pneumonia", "p3", "t", "val", ""],  # unknown label
        [str(bad_files["bit16"]), "viral", "p1", "t", "test", ""],    # p1 also in train: leak
    ])
    report = check_path(manifest)
    lines = [str(p) for p in report.errors]
    assert any(good in line and "listed 2 times" in line for line in lines)
    assert any("missing.png" in line and "file not found" in line for line in lines)
    assert any("m.csv:5" in line and "unknown label 'pneumonia'" in line for line in lines)
    assert any("t:p1" in line and "more than one split: test, train" in line for line in lines)
    assert report.summary["splits"]["train"]["patients"] == 1


def test_lung_mask_checks(tmp_path):
    root = tmp_path / "lung-masks"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 2:7] = 255
    mask[6, 3] = 127
    for stem in ("a", "b", "c"):
        cv2.imwrite(str(root / "images" / f"{stem}.jpeg"), np.full((16, 16), 90, np.uint8))
    cv2.imwrite(str(root / "masks" / "a_mask.png"), mask)
    cv2.imwrite(str(root / "masks" / "b_mask.png"), np.zeros((8, 16), np.uint8))  # wrong size
    (root / "masks" / "c_mask.png").write_bytes(b"")                               # empty
    report = check_path(root)
    assert report.summary["format"] == "lung-masks"
    assert report.summary["masks"]["values"] == {"{0,127,255}": 1, "{0}": 1}
    lines = [str(p) for p in report.errors]
    assert any("b_mask.png" in line and "16x8 but its image is 16x16" in line for line in lines)
    assert any("c_mask.png" in line and "empty mask" in line for line in lines)


def test_unreadable_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="bad.csv: manifest lacks required column"):
        check_path(tmp_path / "bad.csv")


def test_real_kermany_check_counts_without_decoding(kermany_dir):
    """Fast: the reader's counts; the full decode of every file is the slow test below."""
    from pipelines.readers import read_kermany

    assert len(read_kermany(kermany_dir)) == 5840


@pytest.mark.slow
def test_real_data_check(kermany_dir, ieee8023_dir):
    report = check_path(kermany_dir, jobs=2)
    s = report.summary
    assert report.problems == [] and s["files"]["readable"] == 5840
    assert s["splits"]["train"]["images"] == 5216 and s["splits"]["test"]["images"] == 624
    assert s["sizes"]["most_common"][0] == ("224x224", 5840)
    report = check_path(ieee8023_dir, jobs=2)
    assert report.summary["files"]["readable"] == 527
    assert len([p for p in report.errors if "file not found" in p.message]) == 11
    assert report.summary["modes"]["RGBA"] > 0
