"""A release: tiny trained runs -> float16 release -> load, export, predict, segment.

The runs are trained here at 32 px on phantoms (stand-in classifiers of test_training, a
4/8-wide U-Net), so the machinery is what is tested, never the accuracy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from test_training import _train, phantom_root, standin, standin_path, tiny_config  # noqa: F401

from cxr_cascade.cli import main


@pytest.fixture(scope="module")
def release(standin, phantom_root, tmp_path_factory):
    from cxr_cascade.config import load_experiment
    from cxr_cascade.artifacts import build_release
    from cxr_cascade.training.runner import train

    root = tmp_path_factory.mktemp("release")
    runs = {"stage1": root / "runs" / "stage1", "stage2": root / "runs" / "stage2",
            "unet": root / "runs" / "unet"}
    _train(standin, tiny_config(extra=["epochs=1"]), runs["stage1"], [str(phantom_root / "chest_xray")])
    stage2 = tiny_config("table5_seme_densenet169",
                         ["epochs=1", "augment.segmented_copies=false", "balance=sample_weight"])
    _train(standin, stage2, runs["stage2"], [str(phantom_root / "covid-chestxray-dataset")])
    unet = load_experiment("unet_lungs", ["image_size=32", "batch_size=4", "epochs=1",
                                          "unet_filters=4,8", "dedup=off", "max_per_class=12"])
    train(unet, runs["unet"], data_paths=[str(phantom_root / "lung-masks")], verbose=0, argv=["test"])
    for role in ("stage1", "unet"):  # stage 2 stays unevaluated: the card must say so
        assert main(["evaluate", str(runs[role]), "--n-boot", "20"]) == 0
    out = root / "releases" / "v1"
    build_release(out, {k: str(v) for k, v in runs.items()})
    images = root / "images"
    images.mkdir()
    scans = []  # phantom radiographs at sizes other than the models' 32 px
    sources = sorted((phantom_root / "lung-masks" / "images").iterdir())[:2]
    for i, (source, (h, w)) in enumerate(zip(sources, ((40, 36), (57, 64)))):
        path = images / f"scan{i}.png"
        image = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(path), cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA))
        scans.append(path)
    return {"root": root, "runs": runs, "out": out, "scans": scans}


def _inputs(size=32, n=3):
    return np.random.default_rng(1).random((n, size, size, 1)).astype("float32")


def test_release_json_records_provenance_and_weights_are_float16(release):
    from cxr_cascade.artifacts import sha256_file

    out, runs = release["out"], release["runs"]
    data = json.loads((out / "release.json").read_text())
    assert set(data["models"]) == {"stage1", "stage2", "unet"}
    for role, entry in data["models"].items():
        run = runs[role]
        assert entry["experiment"] == json.loads((run / "config.json").read_text())["name"]
        assert entry["config"]["task"] == role
        assert entry["split_manifest_sha256"] == sha256_file(run / "splits.csv")
        assert entry["files"]["weights.npz"] == sha256_file(out / role / "weights.npz")
        assert entry["training_seconds"] > 0 and entry["machine"]["cpu_count"] >= 1
        assert entry["test_metrics"], role
        with np.load(out / role / "weights.npz") as stored:
            dtypes = {stored[k].ndim >= 2: stored[k].dtype for k in stored.files if k != "paths"}
        assert dtypes[True] == np.float16 and dtypes[False] == np.float32
    assert data["models"]["stage2"]["config"]["balance"] == "sample_weight"
    assert "mean_iou" in data["models"]["unet"]["test_metrics"]
    card = (out / "MODEL_CARD.md").read_text()
    dice = data["models"]["unet"]["evaluation"]["unet"]["confidence_intervals"]["dice"]
    assert 0.0 <= dice["low"] <= dice["value"] <= dice["high"] <= 1.0
    assert f"| unet: unet | dice | {dice['value']:.3f} | {dice['low']:.3f}-{dice['high']:.3f} |" in card
    accuracy = data["models"]["stage1"]["evaluation"]["stage1"]["confidence_intervals"]["accuracy"]
    assert f"| stage1: stage1 | accuracy | {accuracy['value']:.3f} |" in card
    section = data["models"]["stage1"]["evaluation"]["stage1"]
    recall = section["confidence_intervals"]["normal/recall"]
    assert (f"| stage1: stage1 | normal/recall | {recall['value']:.3f} | {recall['low']:.3f}-"
            f"{recall['high']:.3f} | {section['n']} (normal {section['class_counts']['normal']}) |") in card
    accuracy = data["models"]["stage2"]["test_metrics"]["accuracy"]
    assert f"| stage2: test | accuracy | {accuracy:.3f} | not evaluated" in card
    counts = data["models"]["stage2"]["split_counts"]["test"]
    assert f"| {sum(counts.values())} (covid19 {counts['covid19']}, viral {counts['viral']}) |" in card
    assert "- unet: `" in card and "- unet: no audit" not in card  # provenance yes, audit n/a
    assert "Not a medical device" in card and "pediatric" in card
    assert not list(out.rglob("*.keras")) and not list(out.rglob("*.h5"))


def test_release_split_manifest_is_relative_and_names_the_runs_records(release, tmp_path):
    """A clone with the data at the same place beside it reads the release's test split."""
    from pipelines.records import read_manifest

    out, runs = release["out"], release["runs"]
    for role in ("stage1", "unet"):
        text = (out / role / "splits.csv").read_text()
        assert str(release["root"]) not in text  # no absolute path of the training machine
        assert read_manifest(out / role / "splits.csv") == read_manifest(runs[role] / "splits.csv")
    moved = tmp_path / "clone" / "releases" / "v1"  # same depth, elsewhere: paths no longer resolve
    shutil.copytree(out / "unet", moved / "unet")
    assert not Path(read_manifest(moved / "unet" / "splits.csv")[0].path).exists()


@pytest.mark.parametrize("role", ["stage1", "stage2", "unet"])
def test_release_weights_give_the_runs_outputs_within_float16(release, role):
    from cxr_cascade.artifacts import load, load_release

    original = load(release["runs"][role])
    loaded = load_release(release["out"], role)
    via_load = load(release["out"] / role)  # every consumer's loader takes it too
    assert loaded.task == via_load.task == role
    assert loaded.class_names == original.class_names and loaded.preprocess == original.preprocess
    x = _inputs()
    want = np.asarray(original.model(x, training=False))
    got = np.asarray(loaded.model(x, training=False))
    np.testing.assert_allclose(got, want, atol=2e-3)
    np.testing.assert_array_equal(np.asarray(via_load.model(x, training=False)), got)


@pytest.mark.parametrize("damage", ["changed", "truncated"])
def test_changed_or_truncated_weights_are_refused_in_one_line(release, tmp_path, capsys, damage):
    from cxr_cascade.artifacts import ReleaseError, load_release

    copy = tmp_path / "v1"
    shutil.copytree(release["out"], copy)
    assert main(["release", "verify", str(copy)]) == 0  # the clean control
    weights = copy / "stage2" / "weights.npz"
    data = bytearray(weights.read_bytes())
    if damage == "changed":
        data[len(data) // 2] ^= 0x01
        weights.write_bytes(bytes(data))
    else:
        weights.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ReleaseError, match=f"{weights}: sha256 differs .*{damage}"):
        load_release(copy, "stage2")
    load_release(copy, "stage1")  # the other models still load
    capsys.readouterr()
    assert main(["export", "--release", str(copy), "--out", str(tmp_path / "models")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(weights) in err[0] and damage in err[0]
    assert not (tmp_path / "models" / "stage1").exists()


def test_export_release_writes_the_serving_layout(release, tmp_path, capsys):
    models = tmp_path / "models"
    assert main(["export", "--release", str(release["out"]), "--out", str(models)]) == 0
    for name in ("stage1", "stage2", "lung_unet", "cascade"):
        assert (models / name / "1" / "saved_model.pb").is_file(), name
    assert (models / "models.config").is_file()
    # segment with the exported lung_unet = segment with the release's U-Net
    scans = [str(p) for p in release["scans"]]
    assert main(["segment", *scans, "--out", str(tmp_path / "a"), "--unet", str(models)]) == 0
    assert main(["segment", *scans, "--out", str(tmp_path / "b"), "--unet", str(release["out"] / "unet")]) == 0
    for scan in release["scans"]:
        a = cv2.imread(str(tmp_path / "a" / f"{scan.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "b" / f"{scan.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        assert a.shape == cv2.imread(str(scan), cv2.IMREAD_UNCHANGED).shape[:2]
        assert np.mean(a != b) < 0.01
        assert 0.0 < np.mean(b == 255) < 1.0  # a real mask, not an empty or full one
    assert main(["export", "--out", str(models)]) == 2  # neither runs nor --release
    assert "--release" in capsys.readouterr().err


def test_predict_defaults_to_the_release(release, tmp_path, monkeypatch, capsys):
    import cxr_cascade.artifacts.release as R

    workdir = tmp_path / "work"
    shutil.copytree(release["out"], workdir / "releases" / "v1")
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("CXR_CASCADE_MODELS", raising=False)
    monkeypatch.delenv("CXR_CASCADE_RELEASE", raising=False)
    monkeypatch.setenv("CXR_CASCADE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(R, "REPO_ROOT", tmp_path / "nowhere")
    scan = str(release["scans"][0])
    assert main(["predict", scan, "--json"]) == 0
    captured = capsys.readouterr()
    assert f"models: release {workdir / 'releases' / 'v1'} (stage1 table4_resnet50_seme" in captured.err
    prediction = json.loads(captured.out.strip().splitlines()[-1])
    assert prediction["file"] == scan and len(prediction["probabilities"]) == 4
    # `export --release NAME` finds releases/NAME
    assert main(["export", "--release", "v1", "--out", str(tmp_path / "m"), "--no-cascade"]) == 0
    assert (tmp_path / "m" / "lung_unet" / "1" / "saved_model.pb").is_file()
    # no release at all: one line telling how to get one
    shutil.rmtree(workdir / "releases")
    assert main(["predict", scan]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no release in releases/" in err[0] and "release build" in err[0]


def test_segment_writes_masks_at_the_input_size(release, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CXR_CASCADE_RELEASE", str(release["out"]))
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    scans = [str(p) for p in release["scans"]]
    out = tmp_path / "masks"
    assert main(["segment", *scans, str(bad), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:" in err and "lung U-Net: release" in err
    for scan in release["scans"]:
        mask = cv2.imread(str(out / f"{scan.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        image = cv2.imread(str(scan), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint8 and mask.shape == image.shape[:2]
        assert set(np.unique(mask).tolist()) <= {0, 255}
    # the same masks from the run itself (within float16: the fraction of flipped pixels is tiny)
    run_out = tmp_path / "run_masks"
    assert main(["segment", *scans, "--out", str(run_out), "--unet", str(release["runs"]["unet"])]) == 0
    for scan in release["scans"]:
        a = cv2.imread(str(out / f"{scan.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(run_out / f"{scan.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        assert np.mean(a != b) < 0.01
    assert main(["segment", scans[0], "--out", str(run_out), "--unet", str(release["runs"]["stage1"])]) == 2
    assert "not a U-Net run" in capsys.readouterr().err


def test_segmentation_metrics_against_hand_counts():
    from cxr_cascade.evaluation.segmentation import confusion_counts, segmentation_metrics

    truth = np.zeros((2, 4, 4), bool)
    truth[:, :2, :2] = True  # 4 lung pixels per image
    probs = np.zeros((2, 4, 4, 1), np.float32)
    probs[0, :2, :2] = 0.9  # image 0 perfect
    probs[1, 0, :2] = 0.9  # image 1: tp 2, fn 2, fp 2
    probs[1, 3, :2] = 0.7
    np.testing.assert_array_equal(confusion_counts(truth, probs), [[4, 0, 0, 12], [2, 2, 2, 10]])
    m = segmentation_metrics(truth, probs, ["a", "b"], n_boot=50)
    assert m["lung_iou"] == pytest.approx((1 + 2 / 6) / 2) and m["dice"] == pytest.approx((1 + 0.5) / 2)
    # dataset-level, as keras BinaryIoU: lung 6/10, background 22/26
    assert m["mean_iou"] == pytest.approx((6 / 10 + 22 / 26) / 2)
    perfect = segmentation_metrics(truth, truth.astype(np.float32), ["a", "b"], n_boot=10)
    assert perfect["confidence_intervals"]["dice"] == {"value": 1.0, "low": 1.0, "high": 1.0, "n_valid": 10}
    with pytest.raises(ValueError, match="masks' shape"):
        confusion_counts(truth, probs[:, :3])


def test_evaluate_release_models_unet_iou_dice_and_cascade(release, tmp_path, capsys):
    out = tmp_path / "eval"
    # the release model folder carries its split manifest: the same test split as the run
    assert main(["evaluate", str(release["out"] / "unet"), "--n-boot", "20", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["models"]["unet"]
    run_metrics = json.loads((release["runs"]["unet"] / "evaluation" / "metrics.json").read_text())["models"]["unet"]
    assert metrics["n"] == run_metrics["n"]
    assert metrics["dice"] == pytest.approx(run_metrics["dice"], abs=0.02)
    assert "dice" in capsys.readouterr().out
    # the 4-class cascade of the release models on the union of both test splits (gate rule)
    cascade = tmp_path / "cascade"
    assert main(["evaluate", str(release["out"] / "stage1"), "--stage2", str(release["out"] / "stage2"),
                 "--n-boot", "20", "--out", str(cascade)]) == 0
    sections = json.loads((cascade / "metrics.json").read_text())["models"]
    assert sections["cascade"]["decision_rule"] == "gate" and "accuracy" in sections["cascade"]["confidence_intervals"]


def test_model_card_states_the_audit_verdict_or_its_absence(release, tmp_path):
    from cxr_cascade.artifacts.model_card import render_model_card
    from cxr_cascade.artifacts.release_build import _run_summary

    data = json.loads((release["out"] / "release.json").read_text())
    assert "no audit recorded" in render_model_card(data)
    run = tmp_path / "run"
    (run / "audit").mkdir(parents=True)
    (run / "audit" / "audit.json").write_text(json.dumps(
        {"flag": {"flagged": True, "informative": True, "reasons": ["lung attention 0.20 < area 0.35"]}}))
    data["models"]["stage2"].update(_run_summary(run))
    card = render_model_card(data)
    assert "- stage2: **FLAGGED**; lung attention 0.20 < area 0.35" in card


def test_release_build_command_refuses_a_wrong_role_and_an_existing_release(release, tmp_path, capsys):
    runs, out = release["runs"], tmp_path / "v2"
    assert main(["release", "build", "--stage1", str(runs["stage1"]), "--out", str(out)]) == 0
    assert "stage1  table4_resnet50_seme" in capsys.readouterr().out
    assert set(json.loads((out / "release.json").read_text())["models"]) == {"stage1"}
    assert main(["release", "build", "--stage1", str(runs["stage1"]), "--out", str(out)]) == 2
    assert "a release exists there already" in capsys.readouterr().err
    assert main(["release", "build", "--unet", str(runs["stage1"]), "--out", str(tmp_path / "v3")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a stage1 run, not a unet run" in err[0]
    assert main(["release", "build", "--out", str(tmp_path / "v4")]) == 2


def test_chance_level_marks_a_model_whose_auc_ci_reaches_one_half():
    from cxr_cascade.artifacts.model_card import chance_level, render_model_card

    def evaluation(low, value=0.6, high=0.7):
        return {"stage2": {"n": 67, "confidence_intervals": {
            "macro_auc": {"value": value, "low": low, "high": high}}}}

    reason = chance_level(evaluation(0.365, 0.5, 0.619))
    assert reason and "0.500 (95 % CI 0.365-0.619, n=67)" in reason
    assert chance_level(evaluation(0.51)) is None  # the clean control: CI above 0.5
    assert chance_level(None) is None and chance_level({"unet": {"n": 5}}) is None
    entry = {"experiment": "x", "parameters": 1, "config": {}, "files": {}, "bytes": {}}
    card = render_model_card({"models": {"stage2": {**entry, "chance_level": reason},
                                         "stage1": dict(entry)}})
    assert "**Warning: stage2 is no better than chance.**" in card
    assert "Warning: stage1" not in card


def test_release_rule_travels_to_export_and_predict_and_a_release_model_is_reused(release, tmp_path, capsys):
    """`release build --rule` records the cascade rule; export and predict default to it; a model
    taken from another release keeps that release's account of its training."""
    runs, v1 = release["runs"], release["out"]
    out = tmp_path / "releases" / "v2"
    assert main(["release", "build", "--stage1", str(runs["stage1"]), "--stage2", str(runs["stage2"]),
                 "--unet", str(v1 / "unet"), "--rule", "pneumonia", "--out", str(out)]) == 0
    assert "cascade rule: pneumonia" in capsys.readouterr().out
    data = json.loads((out / "release.json").read_text())
    old = json.loads((v1 / "release.json").read_text())["models"]["unet"]
    assert data["cascade_rule"] == "pneumonia"
    assert data["models"]["unet"]["from_release"]["name"] == "v1"
    assert data["models"]["unet"]["test_metrics"] == old["test_metrics"] and data["models"]["unet"]["run"] == old["run"]
    assert data["models"]["unet"]["files"]["weights.npz"] == old["files"]["weights.npz"]  # float16 kept bit for bit
    card = (out / "MODEL_CARD.md").read_text()
    assert "taken unchanged from release v1" in card and "(rule pneumonia)" in card
    assert main(["release", "verify", str(out)]) == 0
    models = tmp_path / "models"
    assert main(["export", "--release", str(out), "--out", str(models)]) == 0
    info = json.loads((models / "cascade" / "1" / "assets.extra" / "cxr_cascade.json").read_text())
    assert info["decision_rule"] == "pneumonia"
    capsys.readouterr()
    scan = str(release["scans"][0])
    assert main(["predict", scan, "--models", str(models), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["rule"] == "pneumonia"
    assert main(["predict", scan, "--release", str(out)]) == 0
    assert "; cascade rule pneumonia; no --models" in capsys.readouterr().err
    assert main(["predict", scan, "--models", str(models), "--json", "--rule", "gate"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rule"] == "gate"
    # negative control: without --rule a release keeps the paper's gate; --rule needs both stages
    assert json.loads((v1 / "release.json").read_text())["cascade_rule"] == "gate"
    assert main(["release", "build", "--stage1", str(runs["stage1"]), "--rule", "soft",
                 "--out", str(tmp_path / "v3")]) == 2
    assert "--rule needs --stage1 and --stage2" in capsys.readouterr().err


def test_release_build_refuses_a_model_whose_splits_do_not_resolve(release, tmp_path, capsys):
    """A release restored at another depth than releases/vN: its relative splits.csv points nowhere,
    and a release built from it would ship a manifest that evaluates nothing."""
    runs = release["runs"]
    deeper = tmp_path / "a" / "b" / "c" / "v1"
    shutil.copytree(release["out"], deeper)
    out = tmp_path / "v2"
    assert main(["release", "build", "--stage1", str(runs["stage1"]), "--unet", str(deeper / "unet"),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--unet {deeper / 'unet'}: its splits.csv names" in err and "not there" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()  # refused before anything is written
    # control: the same model where its paths resolve (the release itself) builds
    assert main(["release", "build", "--stage1", str(runs["stage1"]), "--unet", str(release["out"] / "unet"),
                 "--out", str(out)]) == 0


def test_release_card_records_the_release_s_own_evaluation(release, tmp_path, capsys):
    out = tmp_path / "v1"
    shutil.copytree(release["out"], out)
    evaluation = tmp_path / "eval"
    v1 = release["out"]  # evaluated where its splits.csv paths resolve; the copy gets the card
    assert main(["evaluate", str(v1 / "unet"), "--n-boot", "10", "--out", str(evaluation / "unet")]) == 0
    assert main(["evaluate", str(v1 / "stage1"), "--stage2", str(v1 / "stage2"), "--n-boot", "10",
                 "--rule", "soft", "--out", str(evaluation / "cascade")]) == 0
    (evaluation / "rules").mkdir()
    (evaluation / "rules" / "rules.json").write_text(json.dumps({
        "criterion": "highest validation balanced accuracy", "reason": "a test stand-in",
        "choice": {"rule": "soft", "stage2": "s2"},
        "rows": [{"rule": "soft", "stage2": "s2", "split": "val", "balanced_accuracy": 0.5, "n": 4}]}))
    capsys.readouterr()
    assert main(["release", "card", str(out), "--evaluation", str(evaluation)]) == 0
    data = json.loads((out / "release.json").read_text())
    assert data["models"]["unet"]["evaluated"]["folder"] == str(evaluation / "unet")
    assert [c["rule"] for c in data["cascade_evaluations"]] == ["soft"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "## The cascade, every rule" in card and "| soft | " in card and "| gate (release) | " in card
    assert "## How the rule was chosen" in card and "**Choice: soft**" in card
    assert main(["release", "verify", str(out)]) == 0  # re-sealed: still verifies
    # an evaluation folder with nothing to record: one line, nothing rewritten
    before = (out / "release.json").read_bytes()
    assert main(["release", "card", str(out), "--evaluation", str(tmp_path / "empty")]) == 2
    assert "no <model>/metrics.json" in capsys.readouterr().err
    assert (out / "release.json").read_bytes() == before
    # a damaged release is refused before anything is rewritten
    weights = out / "stage1" / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:-10])
    assert main(["release", "card", str(out), "--evaluation", str(evaluation)]) == 2
    assert "truncated" in capsys.readouterr().err and (out / "release.json").read_bytes() == before


def test_find_release_takes_the_highest_version(tmp_path):
    from cxr_cascade.artifacts.release import find_release

    for name in ("v1", "v2", "v10", "v9"):
        (tmp_path / "releases" / name).mkdir(parents=True)
        (tmp_path / "releases" / name / "release.json").write_text("{}")
    assert find_release(root=tmp_path).name == "v10"
    (tmp_path / "releases" / "v10" / "release.json").unlink()
    assert find_release(root=tmp_path).name == "v9"


def test_a_model_folder_copied_out_of_its_release_is_named_as_such(release, tmp_path, capsys):
    alone = tmp_path / "unet"
    shutil.copytree(release["out"] / "unet", alone)  # without release.json and SHA256SUMS
    assert main(["segment", str(release["scans"][0]), "--out", str(tmp_path / "m"), "--unet", str(alone)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a release's model folder without its release" in err[0]
    # the control: the same folder inside its release loads
    assert main(["segment", str(release["scans"][0]), "--out", str(tmp_path / "m"),
                 "--unet", str(release["out"] / "unet")]) == 0
