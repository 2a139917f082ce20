"""Metrics, patient bootstrap, calibration and report: checked against scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from cxr_cascade.evaluation import bootstrap, calibration, metrics, report


def _predictions(n=300, c=3, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y]
    if ties:
        logits = np.round(logits, 1)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    if ties:
        probs = np.round(probs, 2)
    return y, probs


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("c", [2, 3, 4])
def test_classification_metrics_match_sklearn(c, ties):
    y, probs = _predictions(c=c, seed=c, ties=ties)
    pred = probs.argmax(1)
    out = metrics.classification_metrics(y, probs, [f"k{i}" for i in range(c)])
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert out["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    np.testing.assert_array_equal(out["confusion_matrix"], skm.confusion_matrix(y, pred))
    np.testing.assert_allclose(
        out["confusion_matrix_normalised"], skm.confusion_matrix(y, pred, normalize="true"), atol=1e-6
    )
    prec = skm.precision_score(y, pred, average=None, zero_division=0)
    rec = skm.recall_score(y, pred, average=None, zero_division=0)
    f1 = skm.f1_score(y, pred, average=None, zero_division=0)
    for i in range(c):
        cls = out["per_class"][f"k{i}"]
        assert cls["precision"] == pytest.approx(prec[i])
        assert cls["recall"] == pytest.approx(rec[i])
        assert cls["f1"] == pytest.approx(f1[i])
        # Specificity is the recall of the negative class in the one-vs-rest problem.
        assert cls["specificity"] == pytest.approx(skm.recall_score(y != i, pred != i))
        assert cls["auc"] == pytest.approx(skm.roc_auc_score(y == i, probs[:, i]))
    if c > 2:
        # sklearn's multiclass AUC insists that rows sum to 1 (the rounded ties do not).
        scores = probs / probs.sum(1, keepdims=True) if not ties else probs
        expected = (
            skm.roc_auc_score(y, scores, multi_class="ovr", average="macro")
            if not ties
            else np.mean([skm.roc_auc_score(y == i, probs[:, i]) for i in range(c)])
        )
        assert out["macro_auc"] == pytest.approx(expected)


def test_roc_curve_matches_sklearn_with_ties():
    y, probs = _predictions(n=200, c=2, ties=True, seed=3)
    fpr, tpr, thr = metrics.roc_curve(y == 1, probs[:, 1])
    s_fpr, s_tpr, s_thr = skm.roc_curve(y == 1, probs[:, 1], drop_intermediate=False)
    np.testing.assert_allclose(fpr, s_fpr)
    np.testing.assert_allclose(tpr, s_tpr)
    np.testing.assert_allclose(thr[1:], s_thr[1:])
    assert np.trapezoid(tpr, fpr) == pytest.approx(skm.roc_auc_score(y == 1, probs[:, 1]))


def test_zero_division_and_absent_class():
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.7, 0.3, 0.0], [0.2, 0.8, 0.0]])
    out = metrics.classification_metrics(y, probs, ["a", "b", "c"])
    assert out["per_class"]["c"]["auc"] is None  # class 2 never occurs
    assert out["per_class"]["c"]["precision"] == 0.0
    assert out["macro_auc"] == pytest.approx(
        np.mean([skm.roc_auc_score(y == 0, probs[:, 0]), skm.roc_auc_score(y == 1, probs[:, 1])])
    )
    json.dumps(out, allow_nan=False)  # JSON-ready, no NaN


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(y_true=[0, 3], probs=np.full((2, 3), 1 / 3)), "y_true"),
        (dict(y_true=[0, 1], probs=np.ones(3)), "probs"),
        (dict(y_true=[0, 1], probs=np.full((3, 3), 1 / 3)), "one row per label"),
        (dict(y_true=[0, 1], probs=np.full((2, 3), 1 / 3), class_names=["a"]), "class_names"),
        (dict(y_true=[0], probs=[[np.nan, 1.0]]), "finite"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        metrics.classification_metrics(**kwargs)


def test_cluster_bootstrap_draws_whole_patients():
    pids = np.array(["a", "a", "a", "b", "c", "c"])
    for idx in bootstrap.cluster_bootstrap_indices(pids, n_boot=50, seed=1):
        drawn = pids[idx]
        for p in set(drawn):
            # Every draw of a patient brings all of that patient's images.
            assert np.sum(drawn == p) % np.sum(pids == p) == 0
        assert len(set(pids) & set(drawn)) >= 1
    # Same seed, same replicates; number of patients drawn per replicate is constant.
    a = bootstrap.cluster_bootstrap_indices(pids, 5, seed=7)
    b = bootstrap.cluster_bootstrap_indices(pids, 5, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_bootstrap_ci_against_direct_resampling_with_sklearn():
    y, probs = _predictions(n=240, c=3, seed=5)
    pids = np.repeat(np.arange(80), 3)  # 3 images per patient
    ci = bootstrap.classification_cis(y, probs, pids, ["n", "b", "v"], n_boot=200, seed=11)
    # Independent replicate loop: draw patients with the same generator, score with sklearn.
    rng = np.random.default_rng(11)
    draws = rng.integers(0, 80, size=(200, 80))
    accs, aucs = [], []
    for draw in draws:
        idx = np.concatenate([np.flatnonzero(pids == p) for p in draw])
        accs.append(skm.accuracy_score(y[idx], probs[idx].argmax(1)))
        aucs.append(skm.roc_auc_score(y[idx], probs[idx], multi_class="ovr"))
    assert ci["accuracy"]["low"] == pytest.approx(np.quantile(accs, 0.025))
    assert ci["accuracy"]["high"] == pytest.approx(np.quantile(accs, 0.975))
    assert ci["macro_auc"]["low"] == pytest.approx(np.quantile(aucs, 0.025))
    assert ci["accuracy"]["low"] <= ci["accuracy"]["value"] <= ci["accuracy"]["high"]
    assert ci["accuracy"]["n_valid"] == 200


def test_patient_bootstrap_is_wider_than_image_bootstrap_for_clustered_errors():
    # Errors clustered by patient: resampling patients must give a wider interval than
    # pretending every image is its own patient.
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(40), 10)
    wrong_patient = rng.random(40) < 0.3
    y = np.zeros(400, dtype=int)
    pred = np.where(wrong_patient[pids], 1, 0)
    probs = np.eye(2)[pred] * 0.8 + 0.1
    by_patient = bootstrap.classification_cis(y, probs, pids, n_boot=300)["accuracy"]
    by_image = bootstrap.classification_cis(y, probs, np.arange(400), n_boot=300)["accuracy"]
    assert by_patient["high"] - by_patient["low"] > 2 * (by_image["high"] - by_image["low"])


def test_ece_and_reliability_bins_match_sklearn_calibration_curve():
    rng = np.random.default_rng(2)
    p1 = rng.uniform(0.5, 1.0, 500)  # top-label confidence when class 1 is predicted
    y = (rng.random(500) < p1**2).astype(int)
    probs = np.stack([1 - p1, p1], axis=1)
    bins = calibration.reliability_bins(y, probs, n_bins=10)
    frac_pos, mean_pred = calibration_curve(y, p1, n_bins=10, strategy="uniform")
    got_acc = [a for a in bins["accuracy"] if a is not None]
    got_conf = [c for c in bins["confidence"] if c is not None]
    np.testing.assert_allclose(got_acc, frac_pos, atol=1e-12)
    np.testing.assert_allclose(got_conf, mean_pred, atol=1e-12)
    counts = np.array([k for k in bins["count"] if k])
    expected = np.sum(counts / 500 * np.abs(frac_pos - mean_pred))
    assert calibration.expected_calibration_error(y, probs, n_bins=10) == pytest.approx(expected)


def test_ece_of_perfectly_calibrated_and_overconfident():
    y = np.array([0] * 8 + [1] * 2)
    calibrated = np.tile([0.8, 0.2], (10, 1))  # says 0.8, right 80 % of the time
    assert calibration.expected_calibration_error(y, calibrated, 10) == pytest.approx(0.0)
    confident = np.tile([1.0, 0.0], (10, 1))
    assert calibration.expected_calibration_error(y, confident, 10) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="n_bins"):
        calibration.reliability_bins(y, confident, 0)


def test_evaluate_and_report_write_json_markdown_and_pngs(tmp_path):
    y, probs = _predictions(n=60, c=3, seed=9)
    pids = np.repeat(np.arange(30), 2)
    names = ["normal", "bacterial", "viral"]
    m = report.evaluate_predictions(y, probs, pids, names, tmp_path, name="stage1", n_boot=50)
    records = [
        {"split": s, "patient_id": f"p{i % 7}" if s == "train" else f"q{i}", "source": "phantom", "label": "normal"}
        for i, s in enumerate(["train"] * 10 + ["test"] * 5)
    ]
    data = report.data_summary(records, duplicates_removed=3)
    assert data["disjoint_level"] == "patient"
    assert data["splits"]["train"] == {"images": 10, "patients": 7, "labels": {"normal": 10}}
    report.write_report(tmp_path, {"stage1": m}, data)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["models"]["stage1"]["accuracy"] == pytest.approx(skm.accuracy_score(y, probs.argmax(1)))
    text = (tmp_path / "report.md").read_text()
    assert "disjoint at the **patient** level" in text and "Duplicates removed before splitting: 3" in text
    for rel in m["figures"].values():
        png = (tmp_path / rel).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    assert not list(tmp_path.rglob(".*tmp*"))
    leaked = report.data_summary(records + [{"split": "test", "patient_id": "p1", "source": "phantom", "label": "x"}])
    assert leaked["disjoint_level"] == "image" and leaked["patients_in_several_splits"] == 1


# ----------------------------------------------------------------------------- training metric
def test_balanced_accuracy_metric_matches_sklearn_over_batches():
    from cxr_cascade.models import BalancedAccuracy

    y, probs = _predictions(n=301, c=3, seed=7)
    metric = BalancedAccuracy(3)
    for start in range(0, len(y), 64):  # accumulated over batches, like fit/evaluate do
        metric.update_state(y[start:start + 64, None], probs[start:start + 64])
    want = skm.balanced_accuracy_score(y, probs.argmax(1))
    assert float(metric.result()) == pytest.approx(want, abs=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    metric = BalancedAccuracy(2)
    # the majority-class model: accuracy 0.955, balanced accuracy 0.5 (64 COVID-19, 3 other viral)
    y = np.array([0] * 64 + [1] * 3)
    metric.update_state(y, np.tile([0.9, 0.1], (67, 1)))
    assert float(metric.result()) == pytest.approx(0.5)
    assert skm.balanced_accuracy_score(y, np.zeros(67, int)) == pytest.approx(0.5)


def test_balanced_accuracy_leaves_out_absent_classes_and_checks_its_argument():
    from cxr_cascade.models import BalancedAccuracy

    metric = BalancedAccuracy(4)
    y = np.array([0, 0, 2, 2, 2])
    predicted = np.array([0, 1, 2, 2, 0])
    metric.update_state(y, np.eye(4)[predicted])
    want = skm.balanced_accuracy_score(y, predicted)  # classes 1 and 3 never occur as labels
    assert float(metric.result()) == pytest.approx(want)
    restored = BalancedAccuracy.from_config(metric.get_config())
    assert restored.num_classes == 4 and restored.name == "balanced_accuracy"
    for bad in (1, 2.0, True):
        with pytest.raises(ValueError, match="num_classes"):
            BalancedAccuracy(bad)
