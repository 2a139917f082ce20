"""Specification of pipelines.records (manifests) and pipelines.labels (label vocabulary)."""

from __future__ import annotations

import csv
import os

import pytest

from pipelines.labels import LABELS, check_label, findings_map, label_for_finding, read_findings_map
from pipelines.records import (
    MANIFEST_COLUMNS,
    MASK_SEPARATOR,
    Record,
    read_manifest,
    scan_manifest,
    write_manifest,
)


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_record_fields_and_defaults():
    record = Record("/a/b.png", "normal", "p1", "kermany")
    assert (record.split, record.mask_path, record.license) == ("", "", "")
    assert record.patient_key == "kermany:p1"
    assert record.replace(split="test").split == "test"
    with pytest.raises(Exception):
        record.label = "viral"  # frozen


def test_manifest_columns_are_the_published_interface():
    assert MANIFEST_COLUMNS == ("path", "label", "patient_id", "source", "split", "mask_path")
    assert set(LABELS) >= {"normal", "bacterial", "viral", "covid19", "fungal", "unknown"}


def test_write_then_read_round_trip(tmp_path):
    records = [
        Record(str(tmp_path / "img" / "a.png"), "normal", "p1", "kermany", "train"),
        Record(str(tmp_path / "img" / "b.png"), "covid19", "7", "ieee8023", "", "", "CC BY 4.0"),
        Record(str(tmp_path / "img" / "c.png"), "unknown", "c", "montgomery", "val",
               str(tmp_path / "l.png") + MASK_SEPARATOR + str(tmp_path / "r.png")),
    ]
    out = write_manifest(records, tmp_path / "sub" / "records.csv")
    assert read_manifest(out) == records
    with open(out, newline="") as handle:
        header = next(csv.reader(handle))
    assert header == list(MANIFEST_COLUMNS) + ["license"]


def test_relative_paths_resolve_against_the_manifest_folder(tmp_path):
    records = [Record(str(tmp_path / "data" / "a.png"), "viral", "p", "s",
                      mask_path=str(tmp_path / "data" / "a_mask.png"))]
    out = write_manifest(records, tmp_path / "out" / "m.csv", relative=True)
    with open(out, newline="") as handle:
        row = next(csv.DictReader(handle))
    assert row["path"] == os.path.join("..", "data", "a.png")
    assert read_manifest(out) == records


def test_hand_written_manifest_without_optional_columns(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    path = _write_csv(tmp_path / "m.csv", ["path", "label", "patient_id", "source"],
                      [["x.png", "bacterial", "p9", "mine"]])
    (record,) = read_manifest(path)
    assert record.path == str(tmp_path / "x.png")
    assert (record.split, record.mask_path) == ("", "")


@pytest.mark.parametrize(
    "header, row, message",
    [
        (["path", "label", "source"], ["a.png", "normal", "s"], "patient_id"),
        (list(MANIFEST_COLUMNS), ["a.png", "normal", "", "s", "", ""], "empty patient_id"),
        (list(MANIFEST_COLUMNS), ["a.png", "Pneumonia", "p", "s", "", ""], "unknown label 'Pneumonia'"),
        (list(MANIFEST_COLUMNS), ["a.png", "normal", "p", "s", "holdout", ""], "unknown split 'holdout'"),
        (list(MANIFEST_COLUMNS), ["", "normal", "p", "s", "", ""], "empty path"),
    ],
)
def test_read_manifest_names_file_row_and_problem(tmp_path, header, row, message):
    path = _write_csv(tmp_path / "bad.csv", header, [["ok.png", "normal", "p0", "s", "", ""][: len(header)], row])
    with pytest.raises(ValueError) as error:
        read_manifest(path)
    text = str(error.value)
    assert str(path) in text and message in text
    if "column" not in text:
        assert f"{path}:3:" in text  # header is line 1, the bad row line 3


def test_scan_manifest_keeps_good_rows_and_reports_bad_ones(tmp_path):
    path = _write_csv(tmp_path / "m.csv", list(MANIFEST_COLUMNS),
                      [["a.png", "normal", "p", "s", "", ""], ["b.png", "alien", "p", "s", "", ""],
                       ["c.png", "", "p", "s", "", ""]])
    table = scan_manifest(path)
    assert [r.label for r in table] == ["normal", "alien"]
    assert len(table.problems) == 2


def test_missing_manifest_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_manifest(tmp_path / "nope.csv")


def test_failed_write_leaves_the_old_manifest_intact(tmp_path):
    out = write_manifest([Record("/a.png", "normal", "p", "s")], tmp_path / "m.csv")
    before = out.read_bytes()
    with pytest.raises(ValueError, match="Record"):
        write_manifest([Record("/b.png", "normal", "p", "s"), {"path": "x"}], out)
    assert out.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.csv"]  # no temporary file left behind


def test_label_table_maps_the_published_findings():
    table = findings_map()
    expected = {
        "COVID-19": "covid19", "COVID-19, ARDS": "covid19", "SARS": "viral", "Varicella": "viral",
        "Influenza": "viral", "MERS": "viral", "Herpes": "viral", "Streptococcus": "bacterial",
        "Klebsiella": "bacterial", "E.Coli": "bacterial", "Legionella": "bacterial",
        "Mycoplasma Bacterial Pneumonia": "bacterial", "Chlamydophila": "bacterial",
        "Pneumocystis": "fungal", "No Finding": "normal", "Pneumonia": "unknown", "ARDS": "unknown",
        "Lipoid": "unknown",
    }
    for finding, label in expected.items():
        assert label_for_finding(finding, table) == label, finding
    assert label_for_finding("  covid-19 ", table) == "covid19"  # case and blanks ignored
    assert label_for_finding("Pneumonia/Viral/COVID-19", table) == "covid19"
    assert label_for_finding("Pneumonia/Bacterial/Nocardia", table) == "bacterial"
    assert label_for_finding("Something New", table) is None


def test_label_table_override_from_csv_and_dict(tmp_path):
    override = _write_csv(tmp_path / "map.csv", ["finding", "label"], [["Pneumonia", "bacterial"], ["Zika", "viral"]])
    table = findings_map(override)
    assert label_for_finding("Pneumonia", table) == "bacterial"
    assert label_for_finding("zika", table) == "viral"
    assert label_for_finding("SARS", findings_map({"SARS": "covid19"})) == "covid19"
    bad = _write_csv(tmp_path / "bad.csv", ["finding", "label"], [["X", "covid"]])
    with pytest.raises(ValueError, match=r"bad.csv:2: unknown label"):
        read_findings_map(bad)
    with pytest.raises(ValueError, match="Received: label='covid'"):
        check_label("covid")
