"""Specification of stage 2's sources: the ieee8023 reader's publishing origin, splits grouped by
source and leave-one-source-out folds."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest

from pipelines.readers import publishing_origin, read_ieee8023
from pipelines.records import Record
from pipelines.splits import (
    LeakageError,
    assert_patient_disjoint,
    assert_sources_disjoint,
    leave_one_source_out,
    split_records,
)

HEADER = ["patientid", "finding", "view", "modality", "folder", "filename", "doi", "url", "location"]


def _tree(root, rows):
    import cv2

    (root / "images").mkdir(parents=True)
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    for row in rows:
        cv2.imwrite(str(root / "images" / row[5]), np.full((8, 8), 100, np.uint8))
    return root


@pytest.mark.parametrize("row, origin", [
    ({"url": "https://www.eurorad.org/case/16624"}, "eurorad.org"),
    ({"url": "HTTPS://Radiopaedia.org:443/cases/x", "doi": "10.1/x"}, "radiopaedia.org"),
    ({"url": "sirm.org/2020/03/caso-1"}, "sirm.org"),
    ({"url": "", "doi": "https://doi.org/10.1148/radiol.2020200230"}, "doi-10.1148"),
    ({"doi": "10.1056/NEJMoa2001191", "location": "Italy"}, "doi-10.1056"),
    ({"location": "  Valencia,  Spain "}, "loc-Valencia, Spain"),
    ({}, "unknown"),
])
def test_publishing_origin(row, origin):
    assert publishing_origin(row) == origin


def test_reader_tags_each_film_with_its_origin_and_keeps_patients_whole(tmp_path):
    rows = [
        ["1", "COVID-19", "PA", "X-ray", "images", "a.png", "", "https://www.sirm.org/a", "Italy"],
        ["1", "COVID-19", "PA", "X-ray", "images", "b.png", "", "https://radiopaedia.org/b", ""],
        ["2", "SARS", "PA", "X-ray", "images", "c.png", "10.1148/rg.x", "", ""],
        ["3", "COVID-19", "AP", "X-ray", "images", "d.png", "", "", "Hong Kong"],
    ]
    root = _tree(tmp_path / "ieee", rows)
    table = read_ieee8023(root)
    got = {r.path.rsplit("/", 1)[-1]: r for r in table}
    assert {k: r.source for k, r in got.items()} == {
        "a.png": "ieee8023/sirm.org", "b.png": "ieee8023/radiopaedia.org",
        "c.png": "ieee8023/doi-10.1148", "d.png": "ieee8023/loc-Hong Kong"}
    assert {r.dataset for r in table} == {"ieee8023"}
    assert got["a.png"].patient_key == got["b.png"].patient_key == "ieee8023:1"
    assert {r.source for r in read_ieee8023(root, by_origin=False)} == {"ieee8023"}


def _sourced(n_sources=12, patients=8, seed=0):
    rng = np.random.default_rng(seed)
    records = []
    for s in range(n_sources):
        for p in range(patients):
            label = ("covid19", "viral")[int(rng.random() < 0.3)]
            for k in range(int(rng.integers(1, 3))):
                records.append(Record(f"/d/s{s}p{p}_{k}.png", label, f"s{s}p{p}", f"ieee8023/site{s}"))
    # one patient with films from two publications ties those sources together
    records.append(Record("/d/x.png", "covid19", "s0p0", "ieee8023/site1"))
    records += [Record(f"/k/{i}.png", "normal", f"k{i}", "kermany") for i in range(40)]
    return records


def test_group_by_source_keeps_every_source_in_one_split():
    records = _sourced()
    by_patient = split_records(records, val=0.2, test=0.2, seed=0).records
    with pytest.raises(LeakageError, match="source"):
        assert_sources_disjoint(by_patient)  # patient splits do mix sources
    result = split_records(records, val=0.2, test=0.2, seed=0, group_by="source")
    assert_sources_disjoint(result.records)
    assert_patient_disjoint(result.records)
    split_of = {r.source: r.split for r in result.records if r.source.startswith("ieee8023/")}
    assert split_of["ieee8023/site0"] == split_of["ieee8023/site1"]  # tied by patient s0p0
    assert {"train", "val", "test"} <= set(split_of.values())
    # a bare data set name is not a publishing origin: Kermany is still split by patient
    assert len({r.split for r in result.records if r.source == "kermany"}) == 3
    with pytest.raises(ValueError, match="group_by"):
        split_records(records, group_by="hospital")


def test_leave_one_source_out_fold():
    records = _sourced()
    result = leave_one_source_out(records, "ieee8023/site3", val=0.2, seed=0)
    test = {r.path for r in result.records if r.split == "test"}
    assert test == {r.path for r in records if r.source == "ieee8023/site3"}
    assert {r.split for r in result.records if r.source != "ieee8023/site3"} == {"train", "val"}
    tied = leave_one_source_out(records, "ieee8023/site1", val=0.2, seed=0)
    assert "/d/s0p0_0.png" in {r.path for r in tied.records if r.split == "test"}  # same patient
    assert len(tied.moved) >= 1
    with pytest.raises(ValueError, match="held_out"):
        leave_one_source_out(records, "ieee8023/nowhere")


def test_cli_group_by_source_and_loso(tmp_path, capsys):
    from cxr_cascade.cli import main
    from pipelines.records import read_manifest, write_manifest

    records = _sourced(n_sources=5, patients=4)
    write_manifest(records, tmp_path / "all.csv")
    assert main(["data", "split", str(tmp_path / "all.csv"), "--out", str(tmp_path / "s.csv"),
                 "--group-by", "source", "--no-dedup", "--val", "0.2", "--test", "0.2"]) == 0
    assert_sources_disjoint(read_manifest(tmp_path / "s.csv"))
    assert main(["data", "split", str(tmp_path / "all.csv"), "--no-dedup",
                 "--leave-one-source-out", str(tmp_path / "loso")]) == 0
    files = sorted(p.name for p in (tmp_path / "loso").iterdir())
    assert files == [f"ieee8023_site{s}.csv" for s in range(5)]
    fold = read_manifest(tmp_path / "loso" / "ieee8023_site2.csv")
    assert {r.source for r in fold if r.split == "test"} == {"ieee8023/site2"}
    assert "5 leave-one-source-out manifests" in capsys.readouterr().out


def test_real_ieee8023_sources(ieee8023_dir):
    table = read_ieee8023(ieee8023_dir)
    sources = Counter(r.source for r in table)
    # measured on the 2020-06-27 snapshot: 527 frontal X-rays from 37 publishing origins
    assert len(table) == 527 and len(sources) == 37
    assert sources["ieee8023/radiopaedia.org"] == 99 and sources["ieee8023/github.com"] == 92
    # other viral pneumonia (SARS, varicella, influenza) comes from 3 origins only
    viral = Counter(r.source for r in table if r.label == "viral")
    assert viral == {"ieee8023/pubs.rsna.org": 11, "ieee8023/ncbi.nlm.nih.gov": 5, "ieee8023/eurorad.org": 5}
    result = split_records(list(table), seed=0, group_by="source")
    assert_sources_disjoint(result.records)
    assert_patient_disjoint(result.records)
