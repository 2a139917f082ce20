"""Specification of pipelines.splits: patient-grouped, stratified, leak-proof splits."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sklearn.model_selection import StratifiedGroupKFold

from pipelines.records import Record
from pipelines.splits import (
    LeakageError,
    assert_duplicates_disjoint,
    assert_patient_disjoint,
    leaking_patients,
    split_records,
    split_table,
)


def _cohort(seed=0, patients=300, source="s"):
    """Patients with 1-4 images each, one label per patient, imbalanced classes."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(["normal", "bacterial", "viral", "covid19"], size=patients, p=[0.4, 0.35, 0.2, 0.05])
    records = []
    for p, label in enumerate(labels):
        for k in range(int(rng.integers(1, 5))):
            records.append(Record(f"/{source}/p{p}_{k}.png", str(label), f"p{p}", source))
    return records


def test_assert_patient_disjoint_lists_leaking_patients():
    records = [
        Record("/a", "normal", "p1", "kermany", "train"),
        Record("/b", "normal", "p1", "kermany", "test"),
        Record("/c", "viral", "p2", "kermany", "val"),
        Record("/d", "viral", "p1", "ieee8023", "val"),  # another source's p1: another patient
        Record("/e", "viral", "p3", "kermany", ""),      # unassigned rows are ignored
        Record("/f", "viral", "p3", "kermany", "train"),
    ]
    with pytest.raises(LeakageError, match=r"1 patient\(s\) in more than one split: kermany:p1 \(test, train\)"):
        assert_patient_disjoint(records)
    assert leaking_patients(records) == {"kermany:p1": ["test", "train"]}
    assert_patient_disjoint(records[2:])


def test_assert_duplicates_disjoint_names_the_files():
    records = [Record("/a", "normal", "p1", "s", "train"), Record("/b", "normal", "p2", "s", "test")]
    with pytest.raises(LeakageError, match="/a \\(train\\) = /b \\(test\\)"):
        assert_duplicates_disjoint(records, [[0, 1]])
    assert_duplicates_disjoint(records, [[0]])


def test_split_is_patient_disjoint_with_requested_ratios():
    records = _cohort()
    result = split_records(records, val=0.15, test=0.2, seed=3)
    assert [r.path for r in result.records] == [r.path for r in records]  # input order kept
    assert_patient_disjoint(result.records)
    sizes = Counter(r.split for r in result.records)
    assert abs(sizes["test"] / len(records) - 0.2) < 0.02
    assert abs(sizes["val"] / len(records) - 0.15) < 0.02
    for label, n in Counter(r.label for r in records).items():
        in_test = sum(r.label == label and r.split == "test" for r in result.records)
        assert abs(in_test / n - 0.2) < 0.06, label


def test_stratification_at_least_as_good_as_sklearn_stratified_group_kfold():
    records = _cohort(seed=1, patients=400)
    result = split_records(records, val=0.0, test=0.2, seed=0)
    labels = np.array([r.label for r in records])
    groups = np.array([r.patient_id for r in records])
    reference = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    _, test_index = next(reference.split(np.zeros(len(records)), labels, groups))

    def worst_gap(in_test):
        return max(abs(in_test[labels == c].mean() - 0.2) for c in np.unique(labels))

    ours = worst_gap(np.array([r.split == "test" for r in result.records]))
    sklearn_gap = worst_gap(np.isin(np.arange(len(records)), test_index))
    assert ours <= sklearn_gap + 0.02


def test_seed_decides_and_repeats():
    records = _cohort()
    first = [r.split for r in split_records(records, seed=1).records]
    again = [r.split for r in split_records(records, seed=1).records]
    other = [r.split for r in split_records(records, seed=2).records]
    assert first == again and first != other


def test_patients_are_scoped_by_source():
    records = _cohort(source="a", patients=60) + _cohort(source="b", patients=60)
    result = split_records(records, seed=0)
    assert_patient_disjoint(result.records)
    # a:p0 and b:p0 are different patients: free to land in different splits
    table = split_table(result.records)
    assert sum(row["patients"] for row in table.values()) == 120


def test_duplicates_pull_their_patients_into_one_split():
    records = _cohort(patients=100)
    index = {r.path: i for i, r in enumerate(records)}
    groups = [[index["/s/p0_0.png"], index["/s/p1_0.png"]], [index["/s/p2_0.png"], index["/s/p3_0.png"], index["/s/p4_0.png"]]]
    for seed in range(5):
        result = split_records(records, seed=seed, duplicate_groups=groups)
        for group in groups:
            patients = {records[i].patient_id for i in group}
            assert len({r.split for r in result.records if r.patient_id in patients}) == 1


def test_keep_official_test_keeps_it_and_moves_what_is_tied_to_it():
    official = [Record(f"/k/test{i}.png", "normal" if i % 2 else "viral", f"test/p{i}", "kermany", "test") for i in range(20)]
    train = [Record(f"/k/train{i}.png", "normal" if i % 2 else "viral", f"train/p{i}", "kermany", "train") for i in range(80)]
    other = _cohort(patients=50, source="ieee8023")
    records = official + train + other
    duplicate = [0, 20]  # /k/train0.png is a copy of official test image /k/test0.png
    result = split_records(records, keep_official_test=True, duplicate_groups=[duplicate], seed=0)
    splits = [r.split for r in result.records]
    assert all(s == "test" for s in splits[:20])
    assert splits[20] == "test"
    assert [m[0] for m in result.moved] == ["/k/train0.png"]
    assert "official test image /k/test0.png" in result.moved[0][3]
    assert {s for s in splits[21:100]} <= {"train", "val"}  # no new kermany test images
    assert "test" in splits[100:]                          # other sources still get a test share
    assert result.kept_test_sources == ("kermany",)
    with pytest.raises(ValueError, match="without official test images: ieee8023"):
        split_records(records, keep_official_test=["ieee8023"])


@pytest.mark.parametrize("val, test", [(-0.1, 0.1), (0.1, 1.0), (0.5, 0.5)])
def test_bad_ratios_are_refused(val, test):
    with pytest.raises(ValueError, match="Received"):
        split_records(_cohort(patients=10), val=val, test=test)


def test_real_split_is_leak_free(kermany_dir, ieee8023_dir):
    from pipelines.readers import read_ieee8023, read_kermany

    records = list(read_kermany(kermany_dir)) + list(read_ieee8023(ieee8023_dir))
    result = split_records(records, keep_official_test=True, seed=0)
    assert_patient_disjoint(result.records)
    kermany_test = [r for r in result.records if r.source == "kermany" and r.split == "test"]
    assert len(kermany_test) == 624
    covid = Counter(r.split for r in result.records if r.label == "covid19")
    assert covid["test"] > 0 and covid["val"] > 0
