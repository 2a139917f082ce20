"""Specification of pipelines.dedup: exact pixel hashes and pHash near duplicates."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from pipelines.dedup import (
    cross_split_groups,
    exact_hash,
    find_duplicates,
    fingerprint_file,
    hamming_pairs,
    phash,
)
from pipelines.records import Record


def _radiograph(seed, size=96):
    """A smooth random picture: blurred noise, like the low frequencies of a chest film."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(size // 8, size // 8)).astype(np.float32)
    image = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    image = cv2.GaussianBlur(image, (0, 0), 3)
    image = (image - image.min()) / (image.max() - image.min()) * 200 + 20
    return image.astype(np.uint8)


def test_exact_hash_ignores_storage_but_not_pixels():
    gray = _radiograph(0)
    rgb = np.stack([gray] * 3, axis=-1)
    rgba = np.concatenate([rgb, np.full(gray.shape + (1,), 255, np.uint8)], axis=-1)
    assert exact_hash(gray) == exact_hash(rgb) == exact_hash(rgba)
    changed = gray.copy()
    changed[5, 5] ^= 1
    assert exact_hash(changed) != exact_hash(gray)
    assert exact_hash(gray.astype(np.uint16)) != exact_hash(gray)  # dtype is part of the pixels


def test_phash_is_stable_under_small_changes_and_differs_between_images():
    image = _radiograph(1)
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 2, image.shape), 0, 255).astype(np.uint8)
    smaller = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA)

    def distance(a, b):
        return bin(phash(a) ^ phash(b)).count("1")

    assert distance(image, noisy) <= 4
    assert distance(image, smaller) <= 4
    assert distance(image.astype(np.uint16) * 257, image) == 0  # 16-bit: same picture, same hash
    assert min(distance(image, _radiograph(s)) for s in range(2, 12)) > 8


def test_hamming_pairs_match_brute_force():
    rng = np.random.default_rng(0)
    hashes = [int(x) for x in rng.integers(0, 2**63, size=60, dtype=np.int64)]
    hashes += [hashes[3] ^ 0b101, hashes[7] ^ (1 << 60)]
    expected = [(i, j, bin(hashes[i] ^ hashes[j]).count("1")) for i in range(len(hashes))
                for j in range(i + 1, len(hashes)) if bin(hashes[i] ^ hashes[j]).count("1") <= 20]
    assert sorted(hamming_pairs(hashes, 20, chunk=7)) == sorted(expected)
    assert (3, 60, 2) in expected and (7, 61, 1) in expected


def _records(tmp_path, files):
    records = []
    for name, (pixels, split, source) in files.items():
        path = tmp_path / name
        if name.endswith(".jpg"):
            Image.fromarray(pixels).save(path, quality=95)
        else:
            assert cv2.imwrite(str(path), pixels)
        records.append(Record(str(path), "normal", name.split(".")[0], source, split))
    return records


def test_find_duplicates_exact_near_and_distinct(tmp_path):
    a, b, c = _radiograph(10), _radiograph(11), _radiograph(12)
    records = _records(tmp_path, {
        "a.png": (a, "train", "s1"),
        "a_copy_rgb.png": (np.stack([a] * 3, -1), "train", "s1"),    # same pixels, other storage
        "a_reencoded.jpg": (a, "test", "s2"),                          # JPEG: near, not exact
        "b.png": (b, "val", "s1"),
        "b_smaller.png": (cv2.resize(b, (80, 80), interpolation=cv2.INTER_AREA), "val", "s1"),
        "c.png": (c, "train", "s1"),
    })
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nrubbish")
    records.append(Record(str(tmp_path / "broken.png"), "normal", "x", "s1", "train"))
    report = find_duplicates(records)
    groups = {tuple(records[i].path.rsplit("/", 1)[-1] for i in g.members): g.kind for g in report.groups}
    assert groups == {("a.png", "a_copy_rgb.png", "a_reencoded.jpg"): "near",
                      ("b.png", "b_smaller.png"): "near"}
    summary = report.summary()
    assert summary["cross_split_groups"] == 1 and summary["cross_source_groups"] == 1
    assert summary["unreadable"] == 1 and "broken.png" in report.problems[0].path
    (crossing,) = cross_split_groups(report)
    problems = report.as_problems()
    assert [p.severity for p in problems] == ["error", "warning"]
    assert "across splits" in problems[0].message and "a_reencoded.jpg" in problems[0].message

    exact_only = find_duplicates(records, threshold=None)
    assert [(g.kind, len(g.members)) for g in exact_only.groups] == [("exact", 2)]


def test_fingerprint_file_reports_instead_of_raising(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    assert fingerprint_file(str(tmp_path / "empty.png")) == (None, "empty file (0 bytes)")
    assert fingerprint_file(str(tmp_path / "text.png"))[1] == "cannot decode image"
    assert fingerprint_file(str(tmp_path / "none.png"))[1] == "file not found"
    with pytest.raises(ValueError, match="threshold"):
        find_duplicates([], threshold=65)


@pytest.mark.slow
def test_real_kermany_duplicates(kermany_dir):
    from pipelines.readers import read_kermany

    report = find_duplicates(read_kermany(kermany_dir), jobs=2)
    exact = [g for g in report.groups if g.kind == "exact"]
    assert len(exact) == 30  # README: 30 byte-identical groups inside splits
    assert cross_split_groups(report) == []
    names = {report.records[i].path.rsplit("/", 1)[-1] for g in exact for i in g.members}
    assert {"person128_bacteria_606.jpeg", "person128_bacteria_607.jpeg"} <= names
