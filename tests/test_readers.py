"""Specification of pipelines.readers on tiny synthetic trees and, where present, the real data."""

from __future__ import annotations

import csv
from collections import Counter

import cv2
import numpy as np
import pytest

from pipelines.readers import (
    binarise_mask,
    detect_format,
    load_mask,
    parse_kermany_name,
    read_dataset,
    read_ieee8023,
    read_kermany,
    read_lung_masks,
    read_montgomery,
)
from pipelines.records import MASK_SEPARATOR, count_by

GRAY = np.full((8, 8), 128, np.uint8)


def _image(path, pixels=GRAY):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels)
    return path


def _kermany_tree(root):
    files = {
        "train/NORMAL/IM-0001-0001.jpeg": None,
        "train/NORMAL/IM-0001-0002.jpeg": None,
        "train/NORMAL/NORMAL2-IM-0012-0001.jpeg": None,
        "train/NORMAL/IM-0011-0001-0002.jpeg": None,
        "train/PNEUMONIA/person1_bacteria_1.jpeg": None,
        "train/PNEUMONIA/person1_virus_6.jpeg": None,
        "train/PNEUMONIA/person2_virus_7_2.jpeg": None,
        "test/NORMAL/IM-0001-0001.jpeg": None,
        "test/PNEUMONIA/person1_bacteria_2.jpeg": None,
    }
    for name in files:
        _image(root / name)
    return root


def test_parse_kermany_names():
    assert parse_kermany_name("person1_bacteria_1") == ("bacterial", "person1")
    assert parse_kermany_name("person1_virus_6") == ("viral", "person1")
    assert parse_kermany_name("person1_virus_6_2") == ("viral", "person1")
    assert parse_kermany_name("IM-0001-0001") == ("normal", "IM-0001")
    assert parse_kermany_name("IM-0011-0001-0002") == ("normal", "IM-0011")
    assert parse_kermany_name("NORMAL2-IM-0012-0001") == ("normal", "NORMAL2-IM-0012")
    for bad in ("scan_01", "person1_fungus_1", "IM-0001", "person_bacteria_1"):
        assert parse_kermany_name(bad) is None, bad


def test_kermany_labels_and_split_scoped_patients(tmp_path):
    table = read_kermany(_kermany_tree(tmp_path / "chest_xray"))
    assert table.problems == []
    by_name = {r.split + "/" + r.path.rsplit("/", 1)[-1]: r for r in table}
    assert len(table) == 9
    assert count_by(table, "split", "label") == Counter(
        {("train", "normal"): 4, ("train", "bacterial"): 1, ("train", "viral"): 2,
         ("test", "normal"): 1, ("test", "bacterial"): 1})
    patients = {r.patient_id for r in table}
    assert {"train/IM-0001", "train/NORMAL2-IM-0012", "train/person1", "test/person1", "test/IM-0001",
            "train/IM-0011", "train/person2"} == patients
    assert all(r.source == "kermany" for r in table)
    assert by_name["test/person1_bacteria_2.jpeg"].split == "test"


def test_kermany_reports_files_it_cannot_label(tmp_path):
    root = _kermany_tree(tmp_path / "chest_xray")
    _image(root / "train" / "PNEUMONIA" / "scan_17.jpeg")             # unknown name
    _image(root / "train" / "NORMAL" / "person3_virus_9.jpeg")          # wrong folder
    (root / "train" / "NORMAL" / "notes.txt").write_text("hello")      # not an image
    (root / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\0")       # hidden: ignored
    table = read_kermany(root)
    assert len(table) == 9  # none of the bad files is labelled
    messages = {p.path.rsplit("/", 1)[-1]: p.message for p in table.problems}
    assert set(messages) == {"scan_17.jpeg", "person3_virus_9.jpeg", "notes.txt"}
    assert "does not follow the Kermany scheme" in messages["scan_17.jpeg"]
    assert "folder is NORMAL" in messages["person3_virus_9.jpeg"]
    assert "not an image" in messages["notes.txt"]


def test_kermany_accepts_kaggle_nested_folder(tmp_path):
    _kermany_tree(tmp_path / "download" / "chest_xray" / "chest_xray")
    assert len(read_kermany(tmp_path / "download")) == 9
    assert detect_format(tmp_path / "download") == "kermany"
    with pytest.raises(ValueError, match="not a Kermany"):
        read_kermany(tmp_path / "download" / "chest_xray" / "chest_xray" / "train")


IEEE_HEADER = ["patientid", "offset", "finding", "view", "modality", "folder", "filename", "license", ""]


def _ieee_tree(root, rows):
    (root / "images").mkdir(parents=True)
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(IEEE_HEADER)
        for row in rows:
            writer.writerow(row + [""])
    return root


def test_ieee8023_filters_maps_and_reports(tmp_path):
    rows = [
        ["1", "0", "COVID-19", "PA", "X-ray", "images", "a.png", "CC BY 4.0"],
        ["1", "3", "COVID-19, ARDS", "AP Supine", "X-ray", "images", "b.jpg", "CC BY-NC-SA"],
        ["2", "", "SARS", "AP", "X-ray", "images", "c.jpg", ""],
        ["3", "", "Pneumocystis", "PA", "X-ray", "images", "d.png", ""],
        ["4", "", "No Finding", "PA", "X-ray", "images", "e.png", ""],
        ["5", "", "Streptococcus", "L", "X-ray", "images", "f.png", ""],       # lateral: skipped
        ["6", "", "COVID-19", "Axial", "CT", "volumes", "g.nii.gz", ""],     # CT: skipped
        ["7", "", "COVID-19", "PA", "X-ray", "images", "missing.png", ""],   # no file: problem
        ["8", "", "Mystery", "PA", "X-ray", "images", "h.png", ""],          # unmapped: unknown
        ["9", "", "COVID-19", "PA", "X-ray", "images", "a.png", ""],         # same file again
    ]
    root = _ieee_tree(tmp_path / "covid-chestxray-dataset", rows)
    for name in "abcdefh":
        _image(root / "images" / (name + (".jpg" if name in "bc" else ".png")))
    table = read_ieee8023(root)
    labels = {r.path.rsplit("/", 1)[-1]: (r.label, r.patient_id, r.license) for r in table}
    assert labels == {
        "a.png": ("covid19", "1", "CC BY 4.0"), "b.jpg": ("covid19", "1", "CC BY-NC-SA"),
        "c.jpg": ("viral", "2", ""), "d.png": ("fungal", "3", ""), "e.png": ("normal", "4", ""),
        "h.png": ("unknown", "8", ""),
    }
    assert table.skipped == Counter({"view L": 1, "modality CT": 1})
    errors = [p for p in table.problems if p.severity == "error"]
    warnings = [p for p in table.problems if p.severity == "warning"]
    assert len(errors) == 1 and "missing.png" in errors[0].message and errors[0].row == 9
    assert any("Mystery" in p.message for p in warnings)
    assert any("already listed in row 2" in p.message for p in warnings)

    all_views = read_ieee8023(root, views=None, findings={"Mystery": "bacterial"})
    labels = {r.path.rsplit("/", 1)[-1]: r.label for r in all_views}
    assert labels["f.png"] == "bacterial" and labels["h.png"] == "bacterial"


def test_ieee8023_without_metadata_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.csv"):
        read_ieee8023(tmp_path)
    (tmp_path / "metadata.csv").write_text("patientid,finding\n1,COVID-19\n")
    with pytest.raises(ValueError, match="lacks column"):
        read_ieee8023(tmp_path)


def test_lung_masks_pairs_labels_and_orphans(tmp_path):
    root = tmp_path / "lung-masks"
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 1:4] = 255
    for stem in ("person5_bacteria_9", "IM-0100-0001", "000001-2", "nomask"):
        _image(root / "images" / f"{stem}.jpeg")
    for stem in ("person5_bacteria_9", "IM-0100-0001", "000001-2", "orphan"):
        _image(root / "masks" / f"{stem}_mask.png", mask)
    table = read_lung_masks(root)
    got = {r.path.rsplit("/", 1)[-1]: (r.label, r.patient_id) for r in table}
    assert got == {"person5_bacteria_9.jpeg": ("bacterial", "train/person5"),
                   "IM-0100-0001.jpeg": ("normal", "train/IM-0100"),
                   "000001-2.jpeg": ("unknown", "000001-2")}
    assert all(r.mask_path.endswith("_mask.png") for r in table)
    assert sorted(p.message.split()[0] for p in table.problems) == ["mask", "no"]
    metadata = _ieee_tree(tmp_path / "ieee", [["42", "", "COVID-19", "PA", "X-ray", "images", "000001-2.jpg", ""]])
    table = read_lung_masks(root, ieee8023_metadata=metadata / "metadata.csv")
    got = {r.path.rsplit("/", 1)[-1]: (r.label, r.patient_id) for r in table}
    assert got["000001-2.jpeg"] == ("covid19", "42")


def test_montgomery_left_and_right_masks_merge(tmp_path):
    root = tmp_path / "MontgomerySet"
    left, right = np.zeros((6, 10), np.uint8), np.zeros((6, 10), np.uint8)
    left[1:5, 1:4] = 255
    right[1:5, 6:9] = 255
    for stem in ("MCUCXR_0001_0", "MCUCXR_0002_1"):
        _image(root / "CXR_png" / f"{stem}.png", np.zeros((6, 10), np.uint8))
        _image(root / "ManualMask" / "leftMask" / f"{stem}.png", left)
        _image(root / "ManualMask" / "rightMask" / f"{stem}.png", right)
    table = read_montgomery(root)
    assert [(r.label, r.patient_id) for r in table] == [("normal", "MCUCXR_0001"), ("tuberculosis", "MCUCXR_0002")]
    assert detect_format(root) == "montgomery"
    merged = load_mask(table[0].mask_path)
    assert merged.dtype == np.uint8 and merged.shape == (6, 10)
    np.testing.assert_array_equal(merged, np.maximum(left, right))
    assert MASK_SEPARATOR in table[0].mask_path


def test_binarise_mask_rules():
    v7 = np.array([[0, 127, 255]], np.uint8)
    np.testing.assert_array_equal(binarise_mask(v7), [[0, 0, 255]])  # 127 = V7 "ignore"
    np.testing.assert_array_equal(binarise_mask(np.array([[0, 1]], np.uint8)), [[0, 255]])
    np.testing.assert_array_equal(binarise_mask(np.array([[0, 65535]], np.uint16)), [[0, 255]])
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 1, :3] = 255
    np.testing.assert_array_equal(binarise_mask(rgba), [[0, 255]])
    with pytest.raises(ValueError, match="2-D"):
        binarise_mask(np.zeros((2, 2, 2, 2), np.uint8))


def test_load_mask_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.png"):
        load_mask(tmp_path / "gone.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="junk.png"):
        load_mask(tmp_path / "junk.png")
    _image(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    _image(tmp_path / "b.png", np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="b.png.*differs"):
        load_mask([tmp_path / "a.png", tmp_path / "b.png"])


def test_detect_format_and_read_dataset(tmp_path):
    assert detect_format(_kermany_tree(tmp_path / "k")) == "kermany"
    assert detect_format(_ieee_tree(tmp_path / "i", [])) == "ieee8023"
    (tmp_path / "m" / "images").mkdir(parents=True)
    (tmp_path / "m" / "masks").mkdir()
    assert detect_format(tmp_path / "m") == "lung-masks"
    (tmp_path / "r.csv").write_text("path,label,patient_id,source\nx.png,normal,p,s\n")
    assert detect_format(tmp_path / "r.csv") == "manifest"
    assert len(read_dataset(tmp_path / "r.csv")) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="pass --format"):
        detect_format(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        detect_format(tmp_path / "absent")
    with pytest.raises(ValueError, match="Received: format='dicom'"):
        read_dataset(tmp_path / "k", "dicom")


# ---- the real data (skipped when ../shared/data is absent): counts only, no pixels read ----

def test_real_kermany_counts(kermany_dir):
    table = read_kermany(kermany_dir)
    assert table.problems == []
    counts = count_by(table, "split", "label")
    assert [counts["train", c] for c in ("normal", "bacterial", "viral")] == [1341, 2530, 1345]
    assert [counts["test", c] for c in ("normal", "bacterial", "viral")] == [234, 242, 148]
    assert not {r.patient_id for r in table if r.split == "train"} & {
        r.patient_id for r in table if r.split == "test"}


def test_real_ieee8023_counts(ieee8023_dir):
    table = read_ieee8023(ieee8023_dir)
    names = {}
    with open(ieee8023_dir / "metadata.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            names[str(ieee8023_dir / row["folder"] / row["filename"])] = row["finding"]
    findings = Counter(names[r.path] for r in table)
    assert findings["COVID-19"] == 415 and findings["COVID-19, ARDS"] == 12
    assert (findings["SARS"], findings["Varicella"], findings["Influenza"]) == (16, 4, 1)
    assert (findings["Streptococcus"], findings["Klebsiella"], findings["Pneumocystis"]) == (11, 7, 12)
    assert (findings["E.Coli"], findings["No Finding"]) == (4, 19)
    # README's "Legionella 4" counts rows: 000001-27.jpg is listed for patients 287 and 340 (one
    # case entered twice upstream); the reader keeps the image once and reports the second row.
    assert findings["Legionella"] == 3
    repeated = [p for p in table.problems if "already listed" in p.message]
    assert len(repeated) == 4 and any("000001-27.jpg" in p.message for p in repeated)
    labels = count_by(table, "label")
    assert labels["covid19"] == 427 and labels["viral"] == 21 and labels["fungal"] == 12
    assert table.skipped["modality CT"] == 84
    missing = [p for p in table.problems if p.message.startswith("file not found")]
    assert len(missing) == 11  # frontal X-ray rows whose image is absent upstream
    assert all(r.license is not None for r in table)


def test_real_lung_mask_pairs(lung_masks_dir):
    table = read_lung_masks(lung_masks_dir)
    assert len(table) == 5257 and table.problems == []
    kermany_named = [r for r in table if r.label != "unknown"]
    assert len(kermany_named) == 4748
    mask = load_mask(table[0].mask_path)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
