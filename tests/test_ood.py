"""Stage 1 out of distribution: adult normal vs pneumonia films, normal-vs-pneumonia collapsed."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxr_cascade.evaluation import ood
from cxr_cascade.training.data import read_sources
from test_stage2_negatives import ROWS, write_ieee8023


def test_collapse_hand_example_any_class_order():
    probs = np.array([[0.5, 0.3, 0.2], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]])
    score, call = ood.collapse_normal_pneumonia(probs, ["normal", "bacterial", "viral"])
    np.testing.assert_allclose(score, [0.5, 0.6, 0.9])
    np.testing.assert_array_equal(call, [0, 0, 1])  # row 2: p(normal) < .5 but still its argmax
    score, call = ood.collapse_normal_pneumonia(probs[:, [1, 0, 2]], ["bacterial", "normal", "viral"])
    np.testing.assert_allclose(score, [0.5, 0.6, 0.9])
    np.testing.assert_array_equal(call, [0, 0, 1])


def test_binary_numbers_against_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    score = np.clip(0.3 * y + rng.random(200) * 0.8, 0, 1)
    call = (score > 0.5).astype(int)
    got = ood.binary_numbers(y, score, call)
    assert got["accuracy"] == pytest.approx(np.mean(y == call))
    assert got["sensitivity"] == pytest.approx(call[y == 1].mean())
    assert got["specificity"] == pytest.approx(1 - call[y == 0].mean())
    assert got["auc"] == pytest.approx(roc_auc_score(y, score))
    assert ood.binary_numbers([1, 1], [0.2, 0.9], [0, 1])["specificity"] is None  # no normal film


def test_metrics_counts_and_patient_cis():
    rng = np.random.default_rng(1)
    y = np.array([0] * 10 + [1] * 20)
    probs = rng.dirichlet([1, 1, 1], 30)
    pids = [f"p{i // 2}" for i in range(30)]  # two films per patient
    labels = ["normal"] * 10 + ["bacterial"] * 12 + ["fungal"] * 8
    m = ood.ood_metrics(y, probs, pids, ["normal", "bacterial", "viral"], labels, n_boot=200)
    assert (m["n"], m["n_normal"], m["n_pneumonia"], m["n_patients"]) == (30, 10, 20, 15)
    c = m["confusion"]
    call = probs.argmax(1) != 0
    assert (c["tp"], c["fn"]) == (int(call[y == 1].sum()), int((~call[y == 1]).sum()))
    assert c["tn"] + c["fp"] == 10
    assert list(m["stage1_calls"]) == ["normal", "bacterial", "fungal"]
    assert sum(m["stage1_calls"]["fungal"].values()) == 8
    for key in ood.METRICS:
        entry = m["confidence_intervals"][key]
        assert entry["low"] <= entry["value"] <= entry["high"]
    assert m["confidence_intervals"]["specificity"]["value"] == pytest.approx(c["tn"] / 10)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`ood` must be one of \['ieee8023'\]\. Received: ood='kermany'"):
        ood.ood_records([], "kermany")
    with pytest.raises(ValueError, match=r"`class_names` must hold 'normal'.*Received: class_names=\['covid19', 'viral'\]"):
        ood.collapse_normal_pneumonia(np.ones((2, 2)) / 2, ["covid19", "viral"])
    with pytest.raises(ValueError, match=r"`probs` must have shape \[N, 3\]"):
        ood.collapse_normal_pneumonia(np.ones((2, 2)) / 2, ["normal", "bacterial", "viral"])
    with pytest.raises(ValueError, match="one row per label"):
        ood.ood_metrics([0, 1], np.ones((2, 3)) / 3, ["a"], ["normal", "bacterial", "viral"])


def test_records_of_a_phantom_layout(tmp_path):
    data = write_ieee8023(tmp_path / "covid-chestxray-dataset")
    records, y = ood.ood_records(read_sources([data]), "ieee8023")
    # No Finding x2, Streptococcus, Pneumocystis; the lateral Klebsiella, SARS, COVID-19 stay out
    assert sorted(r.label for r in records) == ["bacterial", "fungal", "normal", "normal"]
    np.testing.assert_array_equal(y, [int(r.label != "normal") for r in records])
    only_covid = write_ieee8023(tmp_path / "b", [r for r in ROWS if r[0] != "No Finding"])
    with pytest.raises(ValueError, match=r"needs films labelled \['normal'\].*ieee8023:bacterial 1"):
        ood.ood_records(read_sources([only_covid]), "ieee8023")


def _tiny_stage1(root, task="release_stage1_224", classes=3):
    import keras

    from cxr_cascade.config import load_experiment

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Activation("linear", name="cam_features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(classes, name="logits")(x)
    model = keras.Model(inputs, keras.layers.Softmax(name="probabilities")(x))
    root.mkdir(parents=True)
    (root / "config.json").write_text(load_experiment(task, ["image_size=32"]).to_json())
    model.save(root / "model.keras")
    return root


def test_cli_end_to_end_and_bad_input(tmp_path, capsys):
    from cxr_cascade.cli import main

    data = write_ieee8023(tmp_path / "covid-chestxray-dataset")
    run = _tiny_stage1(tmp_path / "stage1")
    out = tmp_path / "ood"
    assert main(["evaluate", str(run), "--ood", "ieee8023", "--data", data, "--out", str(out),
                 "--n-boot", "20"]) == 0
    m = json.loads((out / "metrics.json").read_text())["models"]["stage1"]
    with open(out / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == m["n"] == 4
    y = np.array([int(r["label"] != "normal") for r in rows])
    p = np.array([[float(r[f"p_{c}"]) for c in ("normal", "bacterial", "viral")] for r in rows])
    call = p.argmax(1) != 0
    assert m["confidence_intervals"]["accuracy"]["value"] == pytest.approx(np.mean(call == y))
    assert m["confidence_intervals"]["auc"]["value"] == pytest.approx(roc_auc_score(y, 1 - p[:, 0]), abs=1e-5)
    assert "| sensitivity" in (out / "report.md").read_text()
    capsys.readouterr()
    # bad input: one line naming the problem, exit 2, nothing written
    stage2 = _tiny_stage1(tmp_path / "stage2", "release_stage2_224", classes=2)
    for argv, message in (
        ([str(stage2), "--ood", "ieee8023", "--data", data], "checks a stage 1 model"),
        ([str(run), "--ood", "ieee8023"], "needs the data set: pass --data"),
        ([str(run), "--ood", "ieee8023", "--data", write_ieee8023(tmp_path / "c", ROWS[:3])], "needs films labelled"),
    ):
        assert main(["evaluate", *argv, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not (tmp_path / "bad").exists()
