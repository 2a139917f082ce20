"""Golden digests of the phantom generator: the same seed must keep giving the same phantoms.

The digests were computed before `cxr_cascade.phantoms` was split into drawing / layouts /
writing modules; any change of random streams, drawing order, names, tables or masks changes them.
Only lossless content is hashed (PNG pixels, CSV tables, raw rendered arrays), so that another
JPEG/zlib build of OpenCV does not break the test; JPEG bytes are covered by the same-seed test in
test_phantoms.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from cxr_cascade.phantoms import LABELS, render_phantom, write_phantom_dataset


def _lossless_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name == "README.txt":
            continue
        h.update(str(p.relative_to(root)).encode())
        if p.suffix.lower() == ".png":
            h.update(np.ascontiguousarray(cv2.imread(str(p), cv2.IMREAD_UNCHANGED)).tobytes())
        elif p.suffix == ".csv":
            h.update(p.read_bytes())
    return h.hexdigest()


def test_written_sets_match_their_golden_digests(tmp_path):
    write_phantom_dataset(tmp_path / "a", 8, 48, seed=7, missing_files=True, shortcut="marker",
                          shortcut_strength=0.7)
    write_phantom_dataset(tmp_path / "b", 6, 40, seed=2, shortcut="text")
    assert _lossless_digest(tmp_path / "a") == (
        "3c366465e8b30ed4f507bcf0df263c84c781e9477ab7d61744d881435ce2e23e")
    assert _lossless_digest(tmp_path / "b") == (
        "31c772b101a0d066233a676f45cc5497c08b59d82e88dd6df89d55e35a664e86")


def test_rendered_arrays_match_their_golden_digest():
    h = hashlib.sha256()
    for label in LABELS:
        ph = render_phantom(label, 48, np.random.default_rng(5), shortcut="marker",
                            shortcut_label="viral")
        for array in (ph.image, ph.lung_mask, ph.lesion_mask):
            h.update(array.tobytes())
    assert h.hexdigest() == "abc98d6a13c31f99a51d105b7838d0c9534ae223fa7cc0d203e3167a79163740"
