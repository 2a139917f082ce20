"""`cxr-cascade data index | split | check` end to end on tiny synthetic trees."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from cxr_cascade import cli
from cxr_cascade.cli import main
from pipelines.records import MANIFEST_COLUMNS, Record, read_manifest, write_manifest
from pipelines.splits import assert_patient_disjoint


@pytest.fixture(autouse=True)
def only_data_commands(monkeypatch):
    """The real `main`, with only the `data` command registered: other commands' modules are
    other helpers' work in progress and must not break these tests."""
    monkeypatch.setattr(cli, "COMMANDS", (("data", "data"),))


def _picture(seed, size=48):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (6, 6)).astype(np.float32)
    return cv2.GaussianBlur(cv2.resize(small, (size, size)), (0, 0), 2).astype(np.uint8)


@pytest.fixture
def kermany(tmp_path):
    root = tmp_path / "chest_xray"
    seed = 0
    for split, patients in (("train", 24), ("test", 6)):
        for p in range(patients):
            kind = ("bacteria", "virus", None)[p % 3]
            folder = root / split / ("NORMAL" if kind is None else "PNEUMONIA")
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(2):
                seed += 1
                name = f"IM-{p:04d}-{k:04d}.jpeg" if kind is None else f"person{p}_{kind}_{k}.jpeg"
                cv2.imwrite(str(folder / name), _picture(seed))
    return root


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_index_writes_a_manifest(kermany, tmp_path, capsys):
    out = tmp_path / "records.csv"
    assert main(["data", "index", str(kermany), "--format", "kermany", "--out", str(out)]) == 0
    rows = _rows(out)
    assert list(rows[0])[:6] == list(MANIFEST_COLUMNS)
    assert len(rows) == 60 and {r["source"] for r in rows} == {"kermany"}
    assert {r["mask_path"] for r in rows} == {""}
    assert "60 records, 30 patients" in capsys.readouterr().out
    assert len(read_manifest(out)) == 60


def test_index_reports_problems_and_strict_fails(kermany, tmp_path, capsys):
    (kermany / "train" / "NORMAL" / "mystery.jpeg").write_bytes(b"x")
    out = tmp_path / "records.csv"
    assert main(["data", "index", str(kermany), "--out", str(out)]) == 0
    assert "mystery.jpeg: error: file name does not follow" in capsys.readouterr().err
    assert main(["data", "index", str(kermany), "--out", str(out), "--strict"]) == 1
    assert len(_rows(out)) == 60


def test_split_is_leak_free_and_keeps_official_test(kermany, tmp_path, capsys):
    records = tmp_path / "records.csv"
    main(["data", "index", str(kermany), "--out", str(records)])
    out = tmp_path / "split.csv"
    # a copy of an official test image sits in train: the split must move it to test
    copy = kermany / "train" / "NORMAL" / "IM-0100-0000.jpeg"
    copy.write_bytes((kermany / "test" / "NORMAL" / "IM-0002-0000.jpeg").read_bytes())
    main(["data", "index", str(kermany), "--out", str(records)])
    capsys.readouterr()
    code = main(["data", "split", str(records), "--out", str(out), "--val", "0.2",
                 "--keep-official-test", "--seed", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "moved train -> test" in printed and "IM-0100-0000.jpeg" in printed
    split = read_manifest(out)
    assert_patient_disjoint(split)
    by_name = {r.path.rsplit("/", 1)[-1]: r.split for r in split}
    assert by_name["IM-0100-0000.jpeg"] == "test"
    official = {r.path for r in read_manifest(records) if r.split == "test"}
    assert all(r.split == "test" for r in split if r.path in official)
    assert {r.split for r in split} == {"train", "val", "test"}
    assert main(["data", "split", str(out), "--verify"]) == 0


def test_split_verify_refuses_a_leaky_manifest(tmp_path, capsys):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), _picture(0))
    other = tmp_path / "b.png"
    cv2.imwrite(str(other), _picture(1))
    leaky = write_manifest([Record(str(image), "normal", "p1", "s", "train"),
                            Record(str(other), "normal", "p1", "s", "test")], tmp_path / "leaky.csv")
    assert main(["data", "split", str(leaky), "--verify"]) == 1
    assert "s:p1: error: patient in more than one split: test, train" in capsys.readouterr().err
    copy = write_manifest([Record(str(image), "normal", "p1", "s", "train"),
                           Record(str(image) , "normal", "p2", "s", "test")], tmp_path / "copy.csv")
    assert main(["data", "split", str(copy), "--verify"]) == 1
    assert "across splits" in capsys.readouterr().err


def test_split_pools_sources_without_collisions(tmp_path, capsys):
    manifests = []
    for source in ("a", "b"):
        records = []
        for p in range(20):
            path = tmp_path / f"{source}{p}.png"
            cv2.imwrite(str(path), _picture(hash((source, p)) % 10_000))
            records.append(Record(str(path), ("normal", "viral")[p % 2], f"person{p}", source))
        manifests.append(str(write_manifest(records, tmp_path / f"{source}.csv")))
    out = tmp_path / "split.csv"
    assert main(["data", "split", *manifests, "--out", str(out), "--no-dedup", "--test", "0.25"]) == 0
    split = read_manifest(out)
    assert len(split) == 40 and len({r.patient_key for r in split}) == 40


def test_split_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "split", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o.csv")]) == 2
    assert "none.csv" in capsys.readouterr().err
    manifest = write_manifest([Record("/x.png", "normal", "p", "s")], tmp_path / "m.csv")
    assert main(["data", "split", str(manifest), "--out", str(tmp_path / "o.csv"),
                 "--no-dedup", "--val", "0.6", "--test", "0.5"]) == 2
    assert "val + test must be < 1" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_check_text_json_and_strict(kermany, tmp_path, capsys):
    assert main(["data", "check", str(kermany), "--strict"]) == 0
    text = capsys.readouterr().out
    assert "split train: 48 images, 24 patients" in text and "0 error(s)" in text
    (kermany / "test" / "NORMAL" / "IM-0090-0001.jpeg").write_bytes(b"")
    assert main(["data", "check", str(kermany), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["errors"] == 1 and summary["splits"]["test"]["images"] == 13
    assert any("IM-0090-0001.jpeg: error: empty file" in line for line in summary["problems"])
    assert main(["data", "check", str(kermany), "--strict"]) == 1
    capsys.readouterr()
    assert main(["data", "check", str(kermany), "--duplicates", "--json"]) == 0
    assert "duplicates" in json.loads(capsys.readouterr().out)


def test_check_unknown_layout_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path)]) == 2
    assert "cannot tell the data set layout" in capsys.readouterr().err


def test_official_test_sources_must_exist(kermany, tmp_path, capsys):
    records = tmp_path / "records.csv"
    main(["data", "index", str(kermany), "--out", str(records)])
    out = tmp_path / "split.csv"
    assert main(["data", "split", str(records), "--out", str(out), "--no-dedup",
                 "--keep-official-test", "--official-test-sources", "ieee8023"]) == 2
    assert "without official test images: ieee8023" in capsys.readouterr().err
    assert main(["data", "split", str(records), "--out", str(out), "--no-dedup",
                 "--keep-official-test", "--official-test-sources", "kermany"]) == 0
    assert sum(r.split == "test" for r in read_manifest(out)) == 12


def test_check_passes_on_the_phantom_generator_output(tmp_path):
    """The phantoms helper writes the publisher layouts; the readers must take them as they are."""
    phantoms = pytest.importorskip("cxr_cascade.phantoms")
    phantoms.write_phantom_dataset(tmp_path / "ph", 24, 48, 0)
    for folder in ("chest_xray", "covid-chestxray-dataset", "lung-masks"):
        assert main(["data", "check", str(tmp_path / "ph" / folder), "--strict"]) == 0, folder
