"""Golden digests of the phantom generator: the same seed must keep giving the same phantoms.

The phantoms are drawn with OpenCV (anti-aliased `fillPoly` / `ellipse`, `GaussianBlur`, `resize`,
`warpAffine`), whose rasteriser changes between releases, so the digests are recorded per
opencv-python-headless build, each with the version it was recorded with. On a build with no
recorded digest the tests skip and say so; the generator's properties (shapes, masks inside the
body, label-dependent lesion statistics, same seed -> same bytes within one environment) are
tested independently of OpenCV's exact pixels in test_phantoms.py, so nothing stops being tested.

To record a new build's digests: run this file under it, check test_phantoms.py passes there too,
and add the printed values (`python tests/test_phantoms_golden.py`).

Only lossless content is hashed (PNG pixels, CSV tables, raw rendered arrays), so that another
JPEG/zlib build does not break the test; JPEG bytes are covered by the same-seed test in
test_phantoms.py.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxr_cascade.phantoms import LABELS, render_phantom, write_phantom_dataset

# opencv-python-headless build -> (set "a", set "b", rendered arrays).
GOLDEN = {
    # Recorded 2026-11 on opencv-python-headless 5.0.0.93 (NumPy 2.4).
    "5.0.0.93": ("3c366465e8b30ed4f507bcf0df263c84c781e9477ab7d61744d881435ce2e23e",
                 "31c772b101a0d066233a676f45cc5497c08b59d82e88dd6df89d55e35a664e86",
                 "abc98d6a13c31f99a51d105b7838d0c9534ae223fa7cc0d203e3167a79163740"),
    # Recorded 2026-12-03 on opencv-python-headless 5.1.0.95 (NumPy 2.4.6): the lock's build.
    "5.1.0.95": ("9fc8f67a33d215610724354c9bb81eb0bcc9726347c8f36d27ad74577a6c6fe3",
                 "08b21af15ef19d6b4687711478531bdd9719878473ef50cf1c8ac54e188b5b82",
                 "06cc0b9b70d65846f4014363183f47ddb88533574000204a8f17ca0851705e7a"),
}


def opencv_build() -> str:
    """The wheel version of the imported cv2 (e.g. "5.1.0.95"); cv2.__version__ ("5.1.0") when the
    installed distribution's metadata does not belong to the imported module."""
    try:
        wheel = version("opencv-python-headless")
    except PackageNotFoundError:
        return cv2.__version__
    return wheel if wheel.startswith(cv2.__version__ + ".") else cv2.__version__


def _golden(index: int) -> str:
    build = opencv_build()
    if build not in GOLDEN:
        pytest.skip(f"no phantom digests recorded for OpenCV {build} (recorded: "
                    f"{', '.join(sorted(GOLDEN))}); test_phantoms.py's property tests still run")
    return GOLDEN[build][index]


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


def _written_digests(root: Path) -> tuple[str, str]:
    write_phantom_dataset(root / "a", 8, 48, seed=7, missing_files=True, shortcut="marker",
                          shortcut_strength=0.7)
    write_phantom_dataset(root / "b", 6, 40, seed=2, shortcut="text")
    return _lossless_digest(root / "a"), _lossless_digest(root / "b")


def _rendered_digest() -> str:
    h = hashlib.sha256()
    for label in LABELS:
        ph = render_phantom(label, 48, np.random.default_rng(5), shortcut="marker",
                            shortcut_label="viral")
        for array in (ph.image, ph.lung_mask, ph.lesion_mask):
            h.update(array.tobytes())
    return h.hexdigest()


def test_written_sets_match_their_golden_digests(tmp_path):
    a, b = _written_digests(tmp_path)
    assert a == _golden(0)
    assert b == _golden(1)


def test_rendered_arrays_match_their_golden_digest():
    assert _rendered_digest() == _golden(2)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(f'"{opencv_build()}": {(*_written_digests(Path(tmp)), _rendered_digest())!r},')
