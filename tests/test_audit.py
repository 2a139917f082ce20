"""Shortcut audit: unit checks of each measure, then the proof on phantoms.

The phantom test trains three tiny flat conv nets (the project's cam_features -> pool -> logits
naming) on 64 px phantoms: ``marker`` on whole films whose planted marker encodes the label
(strength 1.0), ``clean`` on whole films without any marker (the negative control that calibrates
the audit) and ``masked`` on lung-masked films. The audit must flag the first and neither other.
The five-seed sweep and the power test (marker strengths 1.0 to 0.0) are marked ``slow``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

from cxr_cascade.audit import ablation, attention, demo, pointing, probe, swap
from cxr_cascade.audit.report import audit_tests, calibrate, flag_rule, write_audit


def _lung(n=2, size=8):
    masks = np.zeros((n, size, size), np.uint8)
    masks[:, 2:6, 1:4] = 255
    return masks


def test_lung_attention_uniform_inside_and_outside():
    masks = _lung(3)
    maps = np.stack([np.ones((8, 8)), (masks[1] > 0).astype(float), 1.0 - (masks[2] > 0)])
    out = attention.lung_attention(maps, masks)
    area = 12 / 64
    assert out["share"] == pytest.approx([area, 1.0, 0.0])
    assert out["area"] == pytest.approx([area] * 3)
    assert out["ratio"] == pytest.approx([1.0, 1 / area, 0.0])
    assert out["fraction_below_area"] == pytest.approx(1 / 3)
    # Masks at another resolution are resized by nearest neighbour.
    big = np.repeat(np.repeat(masks, 2, axis=1), 2, axis=2)
    assert attention.lung_attention(maps, big)["share"] == pytest.approx(out["share"])
    empty = attention.lung_attention(np.zeros((1, 8, 8)), masks[:1])
    assert empty["share"] == [None] and empty["mean_share"] is None
    with pytest.raises(ValueError, match="non-negative"):
        attention.lung_attention(-maps, masks)
    with pytest.raises(ValueError, match="one mask per map"):
        attention.lung_attention(maps, masks[:2])


def test_ablate_modes_and_fill():
    rng = np.random.default_rng(0)
    images = rng.random((2, 8, 8, 1)).astype(np.float32)
    masks = _lung()
    inside = masks[..., None] > 0
    removed = ablation.ablate(images, masks, "lungs_removed", fill=0.0)
    assert np.all(removed[inside] == 0) and np.array_equal(removed[~inside], images[~inside])
    only = ablation.ablate(images, masks, "lungs_only", fill=0.0)
    assert np.all(only[~inside] == 0) and np.array_equal(only[inside], images[inside])
    # "mean" fills with the mean of the kept pixels: nothing of the blanked region leaks.
    mean_removed = ablation.ablate(images, masks, "lungs_removed", fill="mean")
    for i in range(2):
        assert np.allclose(mean_removed[i][inside[i]], images[i][~inside[i]].mean())
    changed = images.copy()
    changed[inside] = 1.0  # a "consolidated" lung
    np.testing.assert_array_equal(ablation.ablate(changed, masks, "lungs_removed", "mean"), mean_removed)
    assert removed.dtype == np.float32 and removed.shape == images.shape
    with pytest.raises(ValueError, match="mode"):
        ablation.ablate(images, masks, "lungs")
    with pytest.raises(ValueError, match="fill"):
        ablation.ablate(images, masks, "lungs_only", fill="median")


def test_ablation_accuracies_of_a_marker_reader():
    # A "model" that reads a pixel outside the lungs: full marks, and lungs do not matter.
    labels = np.array([0, 1, 1, 0, 1, 1])
    images = np.zeros((6, 8, 8, 1), np.float32)
    images[:, 7, 7, 0] = labels
    masks = _lung(6)
    predict = lambda x: np.eye(2)[(x[:, 7, 7, 0] > 0.5).astype(int)]  # noqa: E731
    out = ablation.ablation_accuracies(predict, images, labels, masks, fill=0.0)
    assert out["full"] == 1.0 and out["lungs_removed"] == 1.0
    assert out["lungs_only"] == pytest.approx(2 / 6)  # marker blanked -> always class 0
    assert out["chance"] == pytest.approx(4 / 6)
    assert out["skill_retained_without_lungs"] == pytest.approx(1.0)
    assert out["skill_retained_lungs_only"] == pytest.approx((2 / 6 - 4 / 6) / (1 - 4 / 6))


def _marker_world(n=60, size=8, seed=0):
    """Images whose lungs show the label as brightness and whose corner pixel shows it too."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.random((n, size, size, 1)).astype(np.float32) * 0.1
    masks = _lung(n, size)
    images[:, 2:6, 1:4, 0] += 0.5 * labels[:, None, None]
    images[:, 7, 7, 0] = labels
    return images, labels, masks


def _reader(where):
    def predict(x):
        value = x[:, 7, 7, 0] if where == "corner" else x[:, 2:6, 1:4, 0].mean(axis=(1, 2)) - 0.05
        p = np.clip(value, 0.0, 1.0)
        return np.stack([1 - p, p], axis=1)
    return predict


def test_outside_swap_effect_separates_corner_reader_from_lung_reader():
    images, labels, masks = _marker_world()
    corner = swap.outside_swap_effects(_reader("corner"), images, labels, masks, 2)
    lungs = swap.outside_swap_effects(_reader("lungs"), images, labels, masks, 2)
    assert corner.shape == (60,) and np.allclose(corner, 1.0)  # the decision follows the outside
    assert np.allclose(lungs, 0.0)  # lungs held fixed: the outside changes nothing
    comp = swap.composite(images, masks, np.array([0]), np.array([1]))
    assert comp[0, 7, 7, 0] == 1.0 and np.allclose(comp[0, 2:6, 1:4], images[0, 2:6, 1:4])
    donors = swap.pick_donors(labels, 2)
    assert (labels[donors] == np.arange(2)).all() and (donors != np.arange(60)[:, None]).all()
    with pytest.raises(ValueError, match="num_classes"):
        swap.outside_swap_effects(_reader("lungs"), images, labels, masks, 1)


def test_calibrated_tests_and_flag_rule():
    images, labels, masks = _marker_world()
    uniform = np.ones((60, 8, 8), np.float32)
    tests = {}
    for name in ("corner", "lungs"):
        tests[name] = audit_tests(_reader(name), images, labels, masks, uniform, 2, n_boot=200, fill=0.0)
    corner, lungs = tests["corner"], tests["lungs"]
    assert corner["outside_swap"]["fired"] and corner["outside_swap"]["low"] > 0.9
    assert corner["lungs_removed"]["fired"]  # the corner survives blanking the lungs
    assert not lungs["outside_swap"]["fired"] and not lungs["lungs_removed"]["fired"]
    assert lungs["attention"]["value"] == pytest.approx(0.0, abs=1e-6)  # uniform map: share = area
    assert not lungs["attention"]["fired"]  # within the margin
    assert not lungs["lungs_only"]["used"] and not lungs["lungs_only"]["fired"]  # reported only
    verdict = flag_rule(corner, 1.0, 0.5)
    assert verdict["flagged"] and set(verdict["fired"]) == {"outside_swap", "lungs_removed"}
    assert not flag_rule(lungs, 1.0, 0.5)["flagged"]
    at_chance = flag_rule(corner, 0.55, 0.5)
    assert not at_chance["flagged"] and not at_chance["informative"]
    # a test the clean control fires is dropped from every verdict
    results = {name: {"tests": t, "ablation": {"full": 1.0, "chance": 0.5}} for name, t in tests.items()}
    assert calibrate(results, control="corner") == ["outside_swap", "lungs_removed"]
    assert not results["corner"]["flag"]["flagged"]
    with pytest.raises(ValueError, match="control"):
        calibrate(results, control="clean")


def test_source_probe_against_direct_sklearn():
    rng = np.random.default_rng(0)
    sources = np.array(["a", "b"] * 60)
    informative = rng.normal(size=(120, 4)) + 2.0 * (sources == "b")[:, None]
    out = probe.source_probe(informative, sources, n_splits=4)
    assert out["balanced_accuracy"] > 0.9 and out["chance_balanced"] == 0.5
    noise = probe.source_probe(rng.normal(size=(120, 4)), sources, n_splits=4)
    assert noise["balanced_accuracy"] < 0.7
    # Grouped folds never split a patient; with one feature per patient the probe still works.
    order = np.argsort(sources, kind="stable")  # 60 a's, then 60 b's; two images per patient
    groups = np.repeat(np.arange(60), 2)
    grouped = probe.source_probe(informative[order], sources[order], groups=groups, n_splits=3)
    assert grouped["n_splits"] == 3 and grouped["balanced_accuracy"] > 0.9
    # In-sample sklearn fit is an upper bound on the cross-validated number.
    fit = LogisticRegression(max_iter=2000).fit(informative, sources)
    assert out["balanced_accuracy"] <= balanced_accuracy_score(sources, fit.predict(informative)) + 0.05
    assert "skipped" in probe.source_probe(informative, ["a"] * 120)
    within = probe.source_probe_within_classes(informative, sources, ["x"] * 60 + ["y"] * 60)
    assert set(within) == {"x", "y"}
    with pytest.raises(ValueError, match="features"):
        probe.source_probe(informative[:10], sources)


def test_pointing_game():
    lesions = np.zeros((3, 8, 8), np.uint8)
    lesions[0, 1, 1] = lesions[1, 5, 5] = 255  # third image: no lesion (normal)
    maps = np.zeros((3, 8, 8))
    maps[0, 1, 1] = 1.0  # hit
    maps[1, 5, 3] = 1.0  # miss by 2 px
    maps[2, 0, 0] = 1.0
    out = pointing.pointing_game(maps, lesions)
    assert (out["hits"], out["misses"], out["skipped"], out["score"]) == (1, 1, 1, 0.5)
    assert pointing.pointing_game(maps, lesions, tolerance=2)["score"] == 1.0
    assert pointing.lesion_area_share(lesions) == pytest.approx(1 / 64)
    with pytest.raises(ValueError, match="tolerance"):
        pointing.pointing_game(maps, lesions, tolerance=-1)


# --- the proof on phantoms ------------------------------------------------------------------

SIZE = 64
CLASSES = demo.CLASSES
ORACLE_MARGIN = 0.05  # a model "reads its marker" when moving it raises p(its label) this much (oracle)
ORACLE_MUST_FLAG = 0.1  # the audit's measured power: every model whose oracle is this high was flagged


@pytest.fixture(scope="module")
def phantom_audits():
    runs = demo.train_and_audit(size=SIZE, seed=0, n_boot=200, epochs=30)  # the demo: 60
    results = {name: runs[name][1] for name in demo.MODELS}
    results["_models"] = {name: runs[name][0] for name in demo.MODELS}
    return results


def test_audit_flags_the_marker_model(phantom_audits):
    r = phantom_audits["marker"]
    assert r["accuracy"] > 0.7
    assert r["flag"]["flagged"] and "outside_swap" in r["flag"]["fired"], r["flag"]
    assert r["tests"]["outside_swap"]["low"] > r["tests"]["outside_swap"]["margin"]
    # Ground truth the audit never sees: moving only the marker's pixels moves its decisions, and
    # the outside swap measures about as much as the marker alone does.
    oracle = r["marker_oracle"]["marker_effect"]
    assert oracle > ORACLE_MARGIN and abs(r["tests"]["outside_swap"]["value"] - oracle) < 0.05
    clean = phantom_audits["clean"]
    assert abs(clean["marker_oracle"]["marker_effect"]) < ORACLE_MARGIN


def test_audit_passes_the_clean_control(phantom_audits):
    r = phantom_audits["clean"]
    assert r["accuracy"] > 0.5
    assert r["flag"]["informative"] and not r["flag"]["flagged"], r["flag"]
    assert r["flag"]["dropped_by_control"] == []  # the clean control fires no used test
    swap_ci = r["tests"]["outside_swap"]
    assert swap_ci["low"] < 0.0 < swap_ci["high"]  # no effect of the outside, within the CI
    # what the old rule flagged it for: a whole-film model fails lungs-only and the pointing game
    assert r["ablation"]["skill_retained_lungs_only"] < 0.5
    assert not r["tests"]["lungs_only"]["used"] and not r["tests"]["pointing"]["used"]


def test_audit_passes_the_lung_masked_model(phantom_audits):
    r = phantom_audits["masked"]
    assert r["accuracy"] > 0.5
    assert r["flag"]["informative"] and not r["flag"]["flagged"], r["flag"]
    assert r["tests"]["outside_swap"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert r["lung_attention"]["mean_share"] > r["lung_attention"]["mean_area"]
    assert r["pointing_game"]["score"] > r["pointing_game"]["baseline_lesion_share_of_lung"]


def test_demo_writes_summary_json(tmp_path, monkeypatch, phantom_audits):
    runs = {name: (phantom_audits["_models"][name], phantom_audits[name], np.zeros((3, SIZE, SIZE)),
                   np.zeros((3, SIZE, SIZE, 1), np.float32)) for name in demo.MODELS}
    runs["train_seconds"] = {name: 0.0 for name in demo.MODELS}
    monkeypatch.setattr(demo, "train_and_audit", lambda *a, **k: runs)
    assert demo.main(["--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["seed"] == 0 and set(summary["models"]) == {"marker", "clean", "masked"}
    flagged = {name: m["flagged"] for name, m in summary["models"].items()}
    assert flagged == {"marker": True, "clean": False, "masked": False}
    assert {"outside_swap", "attention", "lungs_removed"} <= set(summary["models"]["marker"]["tests"])
    assert (tmp_path / "marker" / "audit.md").is_file() and "FLAGGED" in (tmp_path / "summary.md").read_text()


def test_power_turn():
    flag = lambda f: {"flag": {"flagged": f}}  # noqa: E731
    assert demo.power_turn({1.0: flag(True), 0.75: flag(True), 0.5: flag(False), 0.0: flag(False)}) == 0.75
    assert demo.power_turn({1.0: flag(False), 0.75: flag(True), 0.0: flag(False)}) is None


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_five_seeds_and_power(seed):
    """Marker flagged, clean and masked not, on every seed (the demo's 60 epochs); strength 0.0
    never flagged; every model whose phantom oracle (only the marker's pixels moved) is 0.1 or
    more is flagged; the verdict is monotone in the marker's strength."""
    runs = demo.train_and_audit(size=SIZE, seed=seed, n_boot=500, power=True)
    results = {name: runs[name][1] for name in demo.MODELS}
    flagged = {name: r["flag"]["flagged"] for name, r in results.items()}
    assert flagged == {"marker": True, "clean": False, "masked": False}, flagged
    assert results["clean"]["flag"]["dropped_by_control"] == []
    power = runs["power"]
    for strength, result in power.items():
        if result["marker_oracle"]["marker_effect"] >= ORACLE_MUST_FLAG:
            assert result["flag"]["flagged"], (strength, result["marker_oracle"], result["tests"]["outside_swap"])
    assert not power[0.0]["flag"]["flagged"]
    turn = demo.power_turn(power)
    assert turn is not None
    assert not any(r["flag"]["flagged"] for s, r in power.items() if s < turn)


def test_pointing_game_and_report_on_phantoms(phantom_audits, tmp_path):
    masked, shortcut = phantom_audits["masked"], phantom_audits["marker"]
    # The lung reader points at lesions more often than the marker reader.
    assert masked["pointing_game"]["score"] > shortcut["pointing_game"]["score"]
    # Sources were assigned at random: the probe must not decode them.
    assert masked["source_probe"]["all"]["balanced_accuracy"] < 0.75
    path = write_audit(tmp_path, shortcut)
    text = path.read_text()
    assert "FLAGGED" in text and "lungs only" in text
    assert json.loads((tmp_path / "audit.json").read_text())["flag"]["flagged"] is True


# --- the commands over a run directory ------------------------------------------------------


def _write_run(root, model, config_name, classes, records, size=SIZE):
    from cxr_cascade.config import load_experiment
    from pipelines.records import write_manifest

    root.mkdir(parents=True)
    config = load_experiment(config_name, [f"image_size={size}"])
    assert tuple(config.classes) == tuple(classes)
    (root / "config.json").write_text(config.to_json())
    model.save(root / "model.keras")
    write_manifest(records, root / "splits.csv")
    return root


def _phantom_files(root, n, seed, labels, shortcut="marker"):
    import cv2

    from cxr_cascade import phantoms
    from pipelines.records import Record

    root.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        label = labels[i % len(labels)]
        ph = phantoms.render_phantom(label, SIZE, np.random.default_rng([seed, i]), shortcut=shortcut, text=False)
        stem = root / f"p{seed}_{i:03d}"
        cv2.imwrite(f"{stem}.png", ph.image)
        cv2.imwrite(f"{stem}_lung.png", ph.lung_mask)
        cv2.imwrite(f"{stem}_lesion.png", ph.lesion_mask)
        split = ("test", "val", "train")[(i // len(labels)) % 3]  # whole label cycles per split
        records.append(Record(path=f"{stem}.png", label=label, patient_id=f"s{seed}p{i // len(labels)}",
                              source="phantom", split=split, mask_path=f"{stem}_lung.png"))
    return records


def test_evaluate_gradcam_audit_commands(phantom_audits, tmp_path, capsys):
    from cxr_cascade.cli import main

    model = phantom_audits["_models"]["marker"]
    records = _phantom_files(tmp_path / "img", 45, seed=3, labels=CLASSES)
    run = _write_run(tmp_path / "run1", model, "table4_resnet50_gap", CLASSES, records)

    assert main(["evaluate", str(run), "--n-boot", "30"]) == 0
    # Two runs of one task: compared on the first run's test set (Figures 12/13).
    other = _write_run(tmp_path / "run2", phantom_audits["_models"]["masked"], "table4_resnet50_gap", CLASSES, records)
    assert main(["evaluate", str(run), str(other), "--n-boot", "10", "--out", str(tmp_path / "cmp")]) == 0
    compared = json.loads((tmp_path / "cmp" / "metrics.json").read_text())
    assert list(compared["models"]) == ["table4_resnet50_gap", "table4_resnet50_gap-2"]
    assert (tmp_path / "cmp" / compared["comparison_figures"]["roc"]).is_file()
    assert "## Comparison" in (tmp_path / "cmp" / "report.md").read_text()
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())
    stage = metrics["models"]["stage1"]
    assert stage["n"] == 15 and stage["n_patients"] <= 15
    assert metrics["data"]["disjoint_level"] == "patient"
    assert stage["per_class"]["viral"]["support"] == 5
    assert metrics["data"]["splits"]["test"]["images"] == 15
    assert (run / "evaluation" / stage["figures"]["roc"]).is_file()
    # The evaluation reproduces the model's own predictions on the same files.
    from cxr_cascade.artifacts import load
    from cxr_cascade.evaluation import data as R

    test = [r for r in records if r.split == "test"]
    images = np.stack([R.load_image(r.path, load(run).preprocess) for r in test])
    expected = (model.predict(images, verbose=0).argmax(1) == R.label_indices(test, CLASSES)).mean()
    assert stage["accuracy"] == pytest.approx(expected)

    out = tmp_path / "cams"
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    code = main(["gradcam", str(run), test[0].path, str(bad), "--out", str(out), "--method", "gradcam++"])
    assert code == 1  # one bad file, the other written
    assert "broken.png" in capsys.readouterr().err
    heat = np.load(out / f"{Path(test[0].path).stem}_gradcam.npy")
    assert heat.shape == (SIZE, SIZE) and 0.0 <= heat.min() and heat.max() == pytest.approx(1.0)
    assert (out / f"{Path(test[0].path).stem}_gradcam.png").is_file()
    assert main(["gradcam", str(run), test[0].path, "--out", str(out), "--class", "covid19"]) == 2

    # The audit needs more than 15 films for its CIs to clear their margins: 90 marked test films.
    from pipelines.records import write_manifest

    audit_records = [r.replace(split="test") for r in _phantom_files(tmp_path / "img2", 90, seed=5, labels=CLASSES)]
    write_manifest(audit_records, tmp_path / "img2" / "audit.csv")
    gt = tmp_path / "img2" / "gt.csv"
    gt.write_text("path,lung_mask_path,lesion_mask_path\n" + "".join(
        f"{Path(r.path).name},{Path(r.mask_path).name},{Path(r.path).stem}_lesion.png\n" for r in audit_records))
    assert main(["audit", str(run), "--data", str(tmp_path / "img2" / "audit.csv"),
                 "--ground-truth", str(gt), "--overlays", "2"]) == 0
    audit = json.loads((run / "audit" / "audit.json").read_text())
    assert audit["flag"]["flagged"] is True and "pointing_game" in audit
    assert audit["flag"]["fired"] == ["outside_swap"]
    assert len(list((run / "audit" / "figures").glob("*.png"))) == 2


def test_evaluate_cascade_command(phantom_audits, tmp_path):
    import keras

    from cxr_cascade.cli import main
    from pipelines.records import write_manifest

    stage1 = phantom_audits["_models"]["marker"]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Activation("linear", name="cam_features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(2, name="logits")(x)
    stage2 = keras.Model(inputs, keras.layers.Softmax(name="probabilities")(x))
    labels = ("normal", "bacterial", "viral", "covid19")
    records = _phantom_files(tmp_path / "img", 24, seed=4, labels=labels)
    # the runs' manifests put every film in test: evaluate leaves out films a run used for another split
    unused = [r.replace(split="test") for r in records]
    run1 = _write_run(tmp_path / "s1", stage1, "table4_resnet50_gap", CLASSES, unused)
    run2 = _write_run(tmp_path / "s2", stage2, "table5_seme_densenet169", ("covid19", "viral"), unused)
    # Stage 2 alone is scored on the Table 5 population: ieee8023 films only. Half of the
    # COVID-19 / viral films here are tagged as another data set and must stay out of it.
    test = [r.replace(split="", source="ieee8023/site" if r.label in ("covid19", "viral") and (i // 4) % 2
                      else "kermany") for i, r in enumerate(records)]
    write_manifest(test, tmp_path / "test4.csv")
    out = tmp_path / "cascade_eval"
    assert main(["evaluate", str(run1), "--stage2", str(run2), "--data", str(tmp_path / "test4.csv"),
                 "--out", str(out), "--n-boot", "20", "--by", "source"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    models = metrics["models"]
    assert models["cascade"]["class_names"] == ["normal", "bacterial", "covid19", "viral"]
    assert models["cascade"]["n"] == 24
    assert set(models) == {"cascade", "cascade_soft", "cascade_pneumonia", "stage1", "stage2"}
    assert [models[k]["decision_rule"] for k in ("cascade", "cascade_soft", "cascade_pneumonia")] == [
        "gate", "soft", "pneumonia"]
    assert metrics["decision_rule"] == "gate"
    # the split filtered on and the data named are recorded apart (tools/compare_rules.py labels rows by split)
    assert metrics["split"] == "test" and metrics["data_args"] == [str(tmp_path / "test4.csv")]
    # the gate's and the pneumonia route's scores differ only in the classes stage 2 can change
    gate_auc = models["cascade"]["per_class"]["normal"]["auc"]
    assert models["cascade_pneumonia"]["per_class"]["normal"]["auc"] == gate_auc
    ieee = [r for r in test if r.source.startswith("ieee8023")]
    assert models["stage2"]["n"] == len(ieee) == 6
    assert set(models["cascade"]["by_source"]) == {"kermany", "ieee8023/site"}
    assert sum(g["n"] for g in models["cascade"]["by_source"].values()) == 24
    report_md = (out / "report.md").read_text()
    assert "## cascade" in report_md and "## cascade_soft" in report_md and "by source" in report_md
    assert "## cascade_pneumonia" in report_md and "Decision rule: **pneumonia**" in report_md
    # the chosen rule leads, the paper's gate stays beside it
    assert main(["evaluate", str(run1), "--stage2", str(run2), "--data", str(tmp_path / "test4.csv"),
                 "--out", str(tmp_path / "pneumonia_eval"), "--n-boot", "5", "--rule", "pneumonia"]) == 0
    models = json.loads((tmp_path / "pneumonia_eval" / "metrics.json").read_text())["models"]
    assert models["cascade"]["decision_rule"] == "pneumonia" and models["cascade_gate"]["decision_rule"] == "gate"


def test_commands_report_bad_input_in_one_line(tmp_path, capsys):
    from cxr_cascade.cli import main

    missing = tmp_path / "no_such_run"
    for argv in (["evaluate", str(missing)], ["audit", str(missing)],
                 ["gradcam", str(missing), "x.png", "--out", str(tmp_path / "o")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(missing) in err
    assert main(["evaluate", str(missing), "--n-boot", "0"]) == 2
    assert "--n-boot" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
