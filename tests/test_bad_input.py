"""Issue 14, "nothing leaks, nothing crashes": every bad input gets one line, nothing is lost.

Each test builds its bad input itself (tiny files, no real data) and checks what the user sees:
an exit status, one line naming the file and the problem, and no Python traceback.
"""

from __future__ import annotations

import csv
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxr_cascade.cli import main
from pipelines.records import Record, read_manifest, write_manifest
from pipelines.splits import split_records


def _png(path: Path, seed: int = 0, size: int = 16) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rng.integers(0, 255, (size, size), dtype=np.uint8))
    return path


def _manifest(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "patient_id", "source", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _assert_one_line(err: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], err


def _split_manifest(tmp_path: Path, leak: bool = False, twice: bool = False) -> Path:
    rows = []
    labels = ("normal", "bacterial", "viral")
    for p in range(9):
        for split in ("train", "val", "test"):
            name = f"p{p}-{split}.png"
            _png(tmp_path / "img" / name, seed=len(rows))
            rows.append(dict(path=f"img/{name}", label=labels[p % 3], patient_id=f"{split}{p}",
                             source="kermany", split=split))
    if leak:  # patient train0 also in test
        _png(tmp_path / "img" / "leak.png", seed=99)
        rows.append(dict(path="img/leak.png", label="normal", patient_id="train0",
                         source="kermany", split="test"))
    if twice:  # a file listed twice in one split
        rows.append(dict(rows[0]))
    return _manifest(tmp_path / "split.csv", rows)


# ---------------------------------------------------------------------- 1. training trusts a leaky manifest
@pytest.mark.parametrize("fault,needle", [("leak", "kermany:train0"), ("twice", "listed 2 times")])
def test_train_refuses_a_leaky_or_duplicated_manifest(tmp_path, capsys, fault, needle):
    manifest = _split_manifest(tmp_path, **{fault: True})
    run_dir = tmp_path / "run"
    code = main(["train", "demo_stage1", "--data", f"manifest={manifest}", "--run-dir", str(run_dir),
                 "--set", "epochs=1", "--set", "image_size=32"])
    err = capsys.readouterr().err
    assert code == 2
    _assert_one_line(err, "refusing to train", needle)
    if fault == "leak":
        assert "test, train" in err
    assert not (run_dir / "checkpoints").exists()


def test_split_problems_negative_control(tmp_path):
    from pipelines.splits import split_problems

    assert split_problems(read_manifest(_split_manifest(tmp_path))) == []


# ---------------------------------------------------------------------- 2. one path, one split
def test_the_same_path_is_one_image_whatever_the_flags(tmp_path, capsys):
    rows = []
    for p in range(30):
        _png(tmp_path / f"{p}.png", seed=p)
        rows.append(dict(path=f"{p}.png", label="normal", patient_id=f"p{p}", source="kermany", split=""))
    # a.png listed under two patient ids (a different patient each time)
    for p in range(30):
        rows.append(dict(path=f"{p}.png", label="normal", patient_id=f"q{p}", source="kermany", split=""))
    manifest = _manifest(tmp_path / "records.csv", rows)
    records = read_manifest(manifest)
    for seed in range(3):
        result = split_records(records, val=0.3, test=0.3, seed=seed)
        splits: dict[str, set] = {}
        for record in result.records:
            splits.setdefault(record.path, set()).add(record.split)
        assert all(len(s) == 1 for s in splits.values()), splits
    # the CLI, with --no-dedup and without (undecodable copies are not found by the dedup)
    (tmp_path / "0.png").write_bytes(b"not an image")
    for flags in (["--no-dedup"], []):
        out = tmp_path / "out.csv"
        assert main(["data", "split", str(manifest), "--out", str(out), "--val", "0.3",
                     "--test", "0.3", *flags]) == 0
        splits = {}
        for record in read_manifest(out):
            splits.setdefault(record.path, set()).add(record.split)
        assert all(len(s) == 1 for s in splits.values()), (flags, splits)
    capsys.readouterr()
