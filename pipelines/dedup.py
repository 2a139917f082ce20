"""Exact and near-duplicate images, within and across splits and sources.

Two fingerprints per image, both from one decode (`cv2.IMREAD_UNCHANGED`, so 16-bit, palette and
alpha images decode too):

- exact: BLAKE2b of the decoded pixels in a canonical form (an opaque alpha channel dropped, an
  RGB image whose channels are equal reduced to one channel), so the same picture stored as
  grayscale JPEG or R=G=B JPEG, or re-saved as PNG, hashes the same; a re-encoded JPEG does not.
- near: a 64-bit DCT perceptual hash (pHash: grayscale, 32x32 area resize, 2-D DCT, the 8x8
  lowest frequencies compared with their median, DC excluded) and the 32x32 thumbnail itself. Two
  images are near duplicates when the Hamming distance of their pHashes is at most `threshold`
  bits AND the Pearson correlation of their thumbnails is at least `min_correlation`.

Why both: chest X-rays of one hospital look alike, and pHash alone links different children. On
the real Kermany + ieee8023 sets (6,367 images) pHash <= 4 bits alone gave 82 "near" groups, mostly
different Kermany patients, and chained thousands of images at 8 bits; different Kermany patients
reach a thumbnail correlation of 0.975. With <= 6 bits and correlation >= 0.97 only 9 pairs remain,
all ieee8023 figures re-published under another name or crop (checked by eye on samples).

Duplicate groups are the connected components of "exact-equal or near" links. A group whose
members sit in different splits is a leak; `pipelines.splits.split_records` keeps every group in
one split, and `cross_split_groups` lists the groups that break that rule in a given manifest.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from pipelines.records import Problem, Record

DEFAULT_THRESHOLD = 6  # pHash bits of 64 (candidates)
DEFAULT_MIN_CORRELATION = 0.97  # thumbnail correlation that confirms a candidate


@dataclass(frozen=True)
class Fingerprint:
    """exact: hex digest of the canonical pixels; phash: 64-bit DCT hash; shape: (H, W[, C]);
    thumb: the 32x32 grayscale thumbnail, zero mean and unit variance, float16 bytes."""

    exact: str
    phash: int
    shape: tuple
    thumb: bytes = b""

    def thumbnail(self) -> np.ndarray:
        return np.frombuffer(self.thumb, dtype=np.float16).astype(np.float32)


def _canonical(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        alpha = pixels[..., 3]
        if np.all(alpha == np.iinfo(pixels.dtype).max):
            pixels = pixels[..., :3]
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        first = pixels[..., 0]
        if np.array_equal(first, pixels[..., 1]) and np.array_equal(first, pixels[..., 2]):
            pixels = first
    return np.ascontiguousarray(pixels)


def exact_hash(pixels: np.ndarray) -> str:
    """Hex BLAKE2b-128 of the canonical pixels, their shape and dtype."""
    pixels = _canonical(np.asarray(pixels))
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((pixels.shape, pixels.dtype.str)).encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()


def thumbnail(pixels: np.ndarray) -> np.ndarray:
    """32x32 float32 grayscale area-resize of an image array (H, W) or (H, W, C), any dtype."""
    import cv2  # lazy: OpenCV is absent on the accelerator image

    pixels = np.asarray(pixels)
    if pixels.ndim == 3:
        channels = pixels.shape[2]
        pixels = pixels[..., : 3 if channels >= 3 else 1].astype(np.float32).mean(axis=2)
    gray = pixels.astype(np.float32)
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"Cannot hash an empty or non-2-D image. Received: shape={pixels.shape}")
    return cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA)


def _standardise(small: np.ndarray) -> np.ndarray:
    small = small.astype(np.float32).ravel()
    return (small - small.mean()) / (small.std() + 1e-6)


def phash(pixels: np.ndarray, *, small: Optional[np.ndarray] = None) -> int:
    """64-bit DCT perceptual hash of an image array (H, W) or (H, W, C), any integer or float dtype."""
    import cv2  # lazy: OpenCV is absent on the accelerator image

    small = thumbnail(pixels) if small is None else small
    low = cv2.dct(small)[:8, :8].flatten()
    median = np.median(low[1:])
    bits = low > median
    bits[0] = False  # DC carries brightness only
    return int(np.packbits(bits).view(">u8")[0])


def fingerprint_file(path: str) -> tuple[Optional[Fingerprint], Optional[str]]:
    """(fingerprint, None), or (None, why) when the file cannot be decoded."""
    import cv2  # lazy: OpenCV is absent on the accelerator image

    try:
        if not os.path.isfile(path):
            return None, "file not found"
        if os.path.getsize(path) == 0:
            return None, "empty file (0 bytes)"
        data = np.fromfile(path, dtype=np.uint8)
        pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if pixels is None or pixels.size == 0:
            return None, "cannot decode image"
        small = thumbnail(pixels)
        thumb = _standardise(small).astype(np.float16).tobytes()
        return Fingerprint(exact_hash(pixels), phash(pixels, small=small), tuple(pixels.shape), thumb), None
    except (OSError, ValueError, cv2.error) as error:
        return None, f"cannot decode image: {error}"


def fingerprint_files(
    paths: Sequence[str], *, jobs: int = 1
) -> list[tuple[Optional[Fingerprint], Optional[str]]]:
    """`fingerprint_file` over `paths`, in order, with `jobs` processes (1: in this process)."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1. Received: jobs={jobs}")
    if jobs == 1 or len(paths) < 64:
        return [fingerprint_file(path) for path in paths]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(fingerprint_file, paths, chunksize=64))


def hamming_pairs(hashes: Sequence[int], threshold: int, *, chunk: int = 1024) -> list[tuple[int, int, int]]:
    """All (i, j, distance) with i < j and Hamming distance of 64-bit hashes <= threshold."""
    values = np.asarray([h & 0xFFFFFFFFFFFFFFFF for h in hashes], dtype=np.uint64)
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, len(values), chunk):
        block = values[start : start + chunk]
        distances = np.bitwise_count(block[:, None] ^ values[None, :])
        rows, cols = np.nonzero(distances <= threshold)
        for row, col in zip(rows.tolist(), cols.tolist()):
            i = start + row
            if col > i:
                pairs.append((i, col, int(distances[row, col])))
    return pairs


class _UnionFind:
    def __init__(self, size: int):
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


@dataclass(frozen=True)
class DuplicateGroup:
    """Indices into the records of a set of duplicates.

    kind: "exact" when all members have the same pixels, else "near"; max_distance: the largest
    pHash distance of a link in the group (0 for exact groups).
    """

    members: tuple[int, ...]
    kind: str
    max_distance: int


@dataclass
class DuplicateReport:
    records: list[Record]
    fingerprints: list[Optional[Fingerprint]]
    groups: list[DuplicateGroup]
    problems: list[Problem] = field(default_factory=list)
    threshold: int = DEFAULT_THRESHOLD

    def splits(self, group: DuplicateGroup) -> set[str]:
        return {self.records[i].split for i in group.members}

    def sources(self, group: DuplicateGroup) -> set[str]:
        return {self.records[i].source for i in group.members}

    def summary(self) -> dict:
        exact = [g for g in self.groups if g.kind == "exact"]
        near = [g for g in self.groups if g.kind == "near"]
        return {
            "images": len(self.records),
            "unreadable": sum(f is None for f in self.fingerprints),
            "near_threshold_bits": self.threshold,
            "exact_groups": len(exact),
            "exact_images": sum(len(g.members) for g in exact),
            "near_groups": len(near),
            "near_images": sum(len(g.members) for g in near),
            "cross_split_groups": sum(len(self.splits(g)) > 1 for g in self.groups),
            "cross_source_groups": sum(len(self.sources(g)) > 1 for g in self.groups),
        }

    def describe(self, group: DuplicateGroup) -> str:
        where = ", ".join(
            f"{self.records[i].path} [{self.records[i].source}/{self.records[i].split or '-'}]"
            for i in group.members
        )
        distance = "" if group.kind == "exact" else f" (pHash distance <= {group.max_distance})"
        return f"{group.kind} duplicates{distance}: {where}"

    def as_problems(self) -> list[Problem]:
        """One line per group: an error when it crosses splits, a warning otherwise."""
        lines = []
        for group in self.groups:
            crosses = len(self.splits(group)) > 1
            scope = "across splits" if crosses else (
                "across sources" if len(self.sources(group)) > 1 else "within one split"
            )
            first = self.records[group.members[0]].path
            lines.append(
                Problem(
                    first,
                    f"{scope}: {self.describe(group)}",
                    severity="error" if crosses else "warning",
                )
            )
        return lines


def find_duplicates(
    records: Sequence[Record],
    *,
    threshold: Optional[int] = DEFAULT_THRESHOLD,
    min_correlation: float = DEFAULT_MIN_CORRELATION,
    jobs: int = 1,
    fingerprints: Optional[Sequence[Optional[Fingerprint]]] = None,
) -> DuplicateReport:
    """Finds exact and near duplicates among `records`.

    Args:
        records: the images.
        threshold: largest pHash Hamming distance (bits of 64) for a near duplicate; None: exact only.
        min_correlation: smallest thumbnail correlation that confirms a pHash candidate (-1: off).
        jobs: decoding processes.
        fingerprints: precomputed fingerprints (one per record), to skip decoding.

    Returns:
        A `DuplicateReport`; groups sorted by their first member. Unreadable files are problems.
    """
    if threshold is not None and not 0 <= threshold <= 64:
        raise ValueError(f"threshold must be in [0, 64] bits or None. Received: threshold={threshold}")
    records = list(records)
    problems: list[Problem] = []
    if fingerprints is None:
        results = fingerprint_files([r.path for r in records], jobs=jobs)
        fingerprints = []
        for record, (fp, why) in zip(records, results):
            fingerprints.append(fp)
            if fp is None:
                problems.append(Problem(record.path, f"not fingerprinted: {why}"))
    fingerprints = list(fingerprints)
    if len(fingerprints) != len(records):
        raise ValueError(
            f"Need one fingerprint per record. Received: {len(fingerprints)} for {len(records)} records"
        )
    valid = [i for i, fp in enumerate(fingerprints) if fp is not None]
    union = _UnionFind(len(records))
    max_link: dict[int, int] = {}
    first_of_hash: dict[str, int] = {}
    for i in valid:
        first = first_of_hash.setdefault(fingerprints[i].exact, i)
        if first != i:
            union.union(first, i)
    near_links: list[tuple[int, int, int]] = []
    if threshold is not None and len(valid) > 1:
        pairs = hamming_pairs([fingerprints[i].phash for i in valid], threshold)
        for a, b, distance in pairs:
            i, j = valid[a], valid[b]
            if fingerprints[i].exact == fingerprints[j].exact:
                continue
            a_thumb, b_thumb = fingerprints[i].thumbnail(), fingerprints[j].thumbnail()
            if a_thumb.size and b_thumb.size:
                correlation = float(a_thumb @ b_thumb) / a_thumb.size
                if correlation < min_correlation:
                    continue
            near_links.append((i, j, distance))
            union.union(i, j)
    members: dict[int, list[int]] = {}
    for i in valid:
        members.setdefault(union.find(i), []).append(i)
    for i, j, distance in near_links:
        root = union.find(i)
        max_link[root] = max(max_link.get(root, 0), distance)
    groups = []
    for root, items in members.items():
        if len(items) < 2:
            continue
        exact = len({fingerprints[i].exact for i in items}) == 1
        groups.append(
            DuplicateGroup(tuple(sorted(items)), "exact" if exact else "near", max_link.get(root, 0))
        )
    groups.sort(key=lambda g: g.members[0])
    return DuplicateReport(records, fingerprints, groups, problems, threshold if threshold is not None else -1)


def cross_split_groups(report: DuplicateReport) -> list[DuplicateGroup]:
    """Groups whose members are in more than one split (a leak in a split manifest)."""
    return [group for group in report.groups if len(report.splits(group)) > 1]
