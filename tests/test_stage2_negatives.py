"""Stage 2's negative classes: the registry, which ieee8023 films each selects, what they train as.

`stage2_negative="ieee8023_other_pneumonia"` (the negative class of the cascade's pneumonia rule)
takes every non-COVID pneumonia of ieee8023's frontal films; each film keeps its own label in the
records (splits.csv) and trains as stage 2's class "viral".
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxr_cascade.config import load_experiment
from cxr_cascade.registry import STAGE2_NEGATIVE_LABELS, STAGE2_NEGATIVES
from cxr_cascade.training.data import read_sources, select_records, trained_records
from pipelines.records import Record

REAL_IEEE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "covid-chestxray-dataset"
# (finding, view, modality): what a tiny ieee8023 layout holds, and what each negative takes
ROWS = [
    ("COVID-19", "PA", "X-ray"), ("COVID-19", "AP", "X-ray"), ("COVID-19, ARDS", "AP Supine", "X-ray"),
    ("SARS", "AP", "X-ray"), ("Streptococcus", "PA", "X-ray"), ("Pneumocystis", "PA", "X-ray"),
    ("Pneumonia", "AP Supine", "X-ray"), ("ARDS", "PA", "X-ray"),
    ("No Finding", "PA", "X-ray"), ("No Finding", "AP", "X-ray"),  # normal: never a negative
    ("Klebsiella", "L", "X-ray"),  # lateral view: the reader leaves it out
    ("SARS", "AP", "CT"),  # CT: the reader leaves it out
    ("Tuberculosis", "PA", "X-ray"),  # not a pneumonia
]


def write_ieee8023(root: Path, rows=ROWS) -> str:
    """A tiny ieee8023 layout (metadata.csv + images/), one 24 px image and one patient per row."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["patientid", "finding", "view", "modality", "folder", "filename"])
        writer.writeheader()
        for i, (finding, view, modality) in enumerate(rows):
            name = f"img{i}.png"
            assert cv2.imwrite(str(root / "images" / name), (rng.random((24, 24)) * 255).astype(np.uint8))
            writer.writerow(dict(patientid=str(i), finding=finding, view=view, modality=modality,
                                 folder="images", filename=name))
    return str(root)


def _config(negative: str):
    return load_experiment("release_stage2_224", [f"stage2_negative={negative}"])


def test_registry_and_experiment():
    assert STAGE2_NEGATIVES == tuple(STAGE2_NEGATIVE_LABELS)
    assert "ieee8023_other_pneumonia" in STAGE2_NEGATIVES
    config = load_experiment("release_stage2_pneumonia_224")
    assert config.stage2_negative == "ieee8023_other_pneumonia" and config.classes == ("covid19", "viral")
    import experiments.release_stage2_pneumonia_224 as module

    assert config.description == " ".join(module.__doc__.split("\n\n")[0].split())
    base = load_experiment("release_stage2_224")
    for key in ("image_size", "epochs", "balance", "monitor", "backbone", "learning_rate"):
        assert getattr(config, key) == getattr(base, key)


def test_unknown_negative_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"`stage2_negative` must be one of .*ieee8023_other_pneumonia.*"
                                         r"Received: stage2_negative='ieee8023_other'"):
        load_experiment("release_stage2_224", ["stage2_negative=ieee8023_other"])


def test_trained_label():
    other = _config("ieee8023_other_pneumonia")
    viral = _config("ieee8023_viral")
    stage1 = load_experiment("release_stage1_224")
    for label, want in (("bacterial", "viral"), ("fungal", "viral"), ("unknown", "viral"),
                        ("viral", "viral"), ("covid19", "covid19"), ("normal", "normal"),
                        ("tuberculosis", "tuberculosis")):
        assert other.trained_label(label) == want
    assert [viral.trained_label(x) for x in ("bacterial", "fungal", "viral")] == ["bacterial", "fungal", "viral"]
    assert stage1.trained_label("bacterial") == "bacterial"  # stage 1 never relabels


def test_phantom_layout_selection(tmp_path):
    data = write_ieee8023(tmp_path / "covid-chestxray-dataset")
    records = read_sources([data])
    # an unlabelled film of another data set must not join the negative class
    records.append(Record(path=str(tmp_path / "x.png"), label="unknown", patient_id="m1", source="lung-masks"))
    other = select_records(_config("ieee8023_other_pneumonia"), records, [data])
    viral = select_records(_config("ieee8023_viral"), records, [data])
    assert Counter(r.label for r in other) == {"covid19": 3, "viral": 1, "bacterial": 1, "fungal": 1, "unknown": 2}
    assert Counter(r.label for r in viral) == {"covid19": 3, "viral": 1}
    assert {r.dataset for r in other} == {"ieee8023"}
    trained = trained_records(_config("ieee8023_other_pneumonia"), other)
    assert Counter(r.label for r in trained) == {"covid19": 3, "viral": 5}
    assert [r.path for r in trained] == [r.path for r in other]  # same films, same order
    assert Counter(r.label for r in other)["bacterial"] == 1  # the records keep their own label


def test_missing_negative_class_is_one_clear_error(tmp_path):
    data = write_ieee8023(tmp_path / "covid-chestxray-dataset", [("COVID-19", "PA", "X-ray"),
                                                                  ("No Finding", "PA", "X-ray")])
    with pytest.raises(ValueError, match="no images of class 'viral'"):
        select_records(_config("ieee8023_other_pneumonia"), read_sources([data]), [data])


def test_evaluation_reads_a_run_as_it_trained(tmp_path):
    from cxr_cascade.evaluation import data as R

    config = _config("ieee8023_other_pneumonia")
    (tmp_path / "config.json").write_text(config.to_json())
    films = [Record(path=f"/x/{i}.png", label=label, patient_id=str(i), source="ieee8023", split="test")
             for i, label in enumerate(["covid19", "bacterial", "fungal", "viral", "normal"])]
    kept, dropped = R.keep_classes(R.as_trained(tmp_path, films), ("covid19", "viral"))
    assert [r.label for r in kept] == ["covid19", "viral", "viral", "viral"] and dropped == 1
    # negative control: the other-viral run reads the bacterial film as outside its classes
    (tmp_path / "config.json").write_text(_config("ieee8023_viral").to_json())
    kept, dropped = R.keep_classes(R.as_trained(tmp_path, films), ("covid19", "viral"))
    assert [r.label for r in kept] == ["covid19", "viral"] and dropped == 3


@pytest.mark.skipif(not (REAL_IEEE / "metadata.csv").is_file(), reason="real ieee8023 data absent")
def test_real_ieee8023_counts():
    data = [str(REAL_IEEE)]
    records = read_sources(data)
    other = select_records(_config("ieee8023_other_pneumonia"), records, data)
    viral = select_records(_config("ieee8023_viral"), records, data)
    assert Counter(r.label for r in other) == {"covid19": 427, "bacterial": 31, "viral": 21, "unknown": 17, "fungal": 12}
    assert Counter(r.label for r in viral) == {"covid19": 427, "viral": 21}
    assert sum(r.label != "covid19" for r in other) == 81
    assert not any(r.label == "normal" for r in other)  # the 19 "No Finding" films stay out
