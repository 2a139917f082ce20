"""`evaluate_cascade` and `evaluate_classifiers`: the Python API behind `cxr-cascade evaluate`.

Tiny untrained stages on phantom films: the API's shapes, its agreement with the command's
metrics.json (the command only writes what the API computes) and with predictions made
independently of it, and its bad arguments.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

SIZE = 32
CASCADE = ("normal", "bacterial", "covid19", "viral")


def _tiny_model(classes: int, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Activation("linear", name="cam_features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, keras.layers.Softmax(name="probabilities")(x))


def _run(root, experiment: str, classes: int, seed: int):
    from cxr_cascade.config import load_experiment

    root.mkdir(parents=True)
    (root / "config.json").write_text(load_experiment(experiment, [f"image_size={SIZE}"]).to_json())
    _tiny_model(classes, seed).save(root / "model.keras")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two tiny stage runs and a 4-class phantom test manifest (half of the COVID-19 / viral
    films tagged ieee8023, the paper's Table 5 population)."""
    import cv2

    from cxr_cascade import phantoms
    from pipelines.records import Record, write_manifest

    root = tmp_path_factory.mktemp("evaluate_api")
    records = []
    for i in range(16):
        label = CASCADE[i % 4]
        ph = phantoms.render_phantom(label, SIZE, np.random.default_rng([7, i]), text=False)
        stem = root / "img" / f"p{i:02d}"
        stem.parent.mkdir(exist_ok=True)
        cv2.imwrite(f"{stem}.png", ph.image)
        cv2.imwrite(f"{stem}_lung.png", ph.lung_mask)
        ieee = label in ("covid19", "viral") and (i // 4) % 2
        records.append(Record(path=f"{stem}.png", label=label, patient_id=f"p{i // 2}",
                              source="ieee8023/site" if ieee else "kermany", mask_path=f"{stem}_lung.png"))
    write_manifest(records, root / "test4.csv")
    return {
        "root": root,
        "records": records,
        "manifest": root / "test4.csv",
        "run1": _run(root / "s1", "table4_resnet50_gap", 3, seed=1),
        "run2": _run(root / "s2", "table5_seme_densenet169", 2, seed=2),
    }


def _stages(setup):
    from cxr_cascade.artifacts import load as load_stage

    return load_stage(setup["run1"]), load_stage(setup["run2"])


def _read(setup):
    from cxr_cascade.training.data import read_sources

    return read_sources([str(setup["manifest"])])


def test_evaluate_cascade_shapes_and_sections(setup):
    from cxr_cascade.evaluation.cascade import evaluate_cascade

    stage1, stage2 = _stages(setup)
    records = _read(setup)
    result = evaluate_cascade(stage1, stage2, records, n_boot=5)
    n = len(records)
    assert result.class_names == list(CASCADE) and result.rule == "gate" and result.dropped == 0
    assert result.y_true.shape == (n,) and result.y_true.dtype == np.int64
    assert result.stage1_probabilities.shape == (n, 3) and result.stage2_probabilities.shape == (n, 2)
    assert list(result.predictions) == ["cascade", "cascade_soft", "cascade_pneumonia"]
    for scores, decisions in result.predictions.values():
        assert scores.shape == (n, 4) and decisions.shape == (n,)
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    assert list(result.sections) == ["cascade", "cascade_soft", "cascade_pneumonia", "stage1", "stage2"]
    assert result.sections["stage2"]["n"] == 4  # the ieee8023 COVID-19 / viral films only
    assert result.notes == {}
    assert "figures" not in result.sections["cascade"]  # no out_dir: nothing written


def test_evaluate_cascade_matches_an_independent_gate(setup):
    """The gate's accuracy from the stages' own predictions, computed here without the API."""
    from cxr_cascade.evaluation import data as R
    from cxr_cascade.evaluation.cascade import evaluate_cascade

    stage1, stage2 = _stages(setup)
    records = _read(setup)
    p1 = stage1.model.predict(R.load_images(records, stage1.preprocess, stage1.segment), verbose=0)
    p2 = stage2.model.predict(R.load_images(records, stage2.preprocess, stage2.segment), verbose=0)
    names = list(CASCADE)
    first = p1.argmax(1)  # stage 1: normal, bacterial, viral; viral goes to stage 2 (covid19, viral)
    call = np.where(first == 2, np.array(["covid19", "viral"])[p2.argmax(1)],
                    np.array(["normal", "bacterial", "viral"])[first])
    truth = np.array([r.label for r in records])
    result = evaluate_cascade(stage1, stage2, records, n_boot=5)
    assert result.sections["cascade"]["accuracy"] == pytest.approx(np.mean(call == truth))
    np.testing.assert_array_equal(result.predictions["cascade"][1], [names.index(c) for c in call])


def test_evaluate_cascade_round_trip_with_the_command(setup, tmp_path):
    from cxr_cascade.cli import main
    from cxr_cascade.evaluation.cascade import evaluate_cascade

    out = tmp_path / "cmd"
    assert main(["evaluate", str(setup["run1"]), "--stage2", str(setup["run2"]), "--data",
                 str(setup["manifest"]), "--out", str(out), "--n-boot", "7", "--seed", "3",
                 "--rule", "soft", "--by", "source"]) == 0
    written = json.loads((out / "metrics.json").read_text())
    stage1, stage2 = _stages(setup)
    result = evaluate_cascade(stage1, stage2, _read(setup), rule="soft", n_boot=7, seed=3,
                              by_source=True, out_dir=tmp_path / "api")
    api = json.loads(json.dumps(result.sections))
    assert list(written["models"]) == list(api) == [
        "cascade", "cascade_gate", "cascade_pneumonia", "stage1", "stage2"]
    assert _same(written["models"], api)
    assert written["decision_rule"] == "soft" and written["dropped_other_labels"] == result.dropped
    assert (tmp_path / "api" / api["cascade"]["figures"]["roc"]).is_file()


def _same(a, b) -> bool:
    """Equal JSON trees, floats to 1e-9 (both sides compute the same numbers)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        return all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert len(a) == len(b)
        return all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        assert b == pytest.approx(a, abs=1e-9, nan_ok=True)
        return True
    assert a == b
    return True


def test_evaluate_cascade_bad_arguments(setup):
    from cxr_cascade.evaluation.cascade import evaluate_cascade

    stage1, stage2 = _stages(setup)
    records = _read(setup)
    with pytest.raises(ValueError, match=r"`rule` must be one of .*Received: rule='majority'"):
        evaluate_cascade(stage1, stage2, records, rule="majority")
    with pytest.raises(ValueError, match=r"`n_boot` must be a positive integer\. Received: n_boot=0"):
        evaluate_cascade(stage1, stage2, records, n_boot=0)
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive integer\. Received: batch_size=-1"):
        evaluate_cascade(stage1, stage2, records, batch_size=-1)
    with pytest.raises(ValueError, match="no test images with labels in"):
        evaluate_cascade(stage1, stage2, [r.replace(label="fungal") for r in records])
    # stage 2 in stage 1's place: its other class would appear twice in the cascade
    with pytest.raises(ValueError, match="Stage 2's class names must differ"):
        evaluate_cascade(stage2, stage2, records)


def test_evaluate_classifiers_shapes_round_trip_and_bad_arguments(setup, tmp_path):
    from cxr_cascade.cli import main
    from cxr_cascade.evaluation.stages import evaluate_classifiers

    stage1, stage2 = _stages(setup)
    records = [r.replace(split="test") for r in _read(setup)]
    result = evaluate_classifiers({"a": stage1, "b": stage1}, records, n_boot=5)
    kept = [r for r in records if r.label in ("normal", "bacterial", "viral")]
    assert result.dropped == len(records) - len(kept) == 4
    assert result.y_true.shape == (len(kept),) and result.class_names == ("normal", "bacterial", "viral")
    assert [p.shape for p in result.probabilities.values()] == [(len(kept), 3)] * 2
    np.testing.assert_array_equal(result.probabilities["a"], result.probabilities["b"])

    out = tmp_path / "cmd"
    assert main(["evaluate", str(setup["run1"]), "--data", str(setup["manifest"]), "--out", str(out),
                 "--n-boot", "6", "--seed", "2"]) == 0
    written = json.loads((out / "metrics.json").read_text())["models"]
    again = evaluate_classifiers({"stage1": stage1}, records, n_boot=6, seed=2, out_dir=tmp_path / "api")
    assert _same(written, json.loads(json.dumps(again.sections)))

    with pytest.raises(ValueError, match="`stages` must hold at least one stage"):
        evaluate_classifiers({}, records)
    with pytest.raises(ValueError, match=r"`stages` must share their class names\. Received: 'b'"):
        evaluate_classifiers({"a": stage1, "b": stage2}, records)
    with pytest.raises(ValueError, match=r"`n_boot` must be a positive integer"):
        evaluate_classifiers({"a": stage1}, records, n_boot=0)


def _with_manifest(setup, tmp_path, splits: dict):
    """A copy of run 2 whose splits.csv puts film i in ``splits.get(i, "test")``."""
    import shutil

    from pipelines.records import write_manifest

    run = tmp_path / "other"
    shutil.copytree(setup["run2"], run)
    write_manifest([r.replace(split=splits.get(i, "test")) for i, r in enumerate(setup["records"])],
                   run / "splits.csv")
    return run


def test_unseen_records_leaves_out_repeats_and_films_a_run_used_elsewhere(setup, tmp_path):
    from cxr_cascade.evaluation.data import unseen_records

    records = list(setup["records"])
    other = _with_manifest(setup, tmp_path, {0: "train", 5: "val"})
    kept, left = unseen_records(records + records[1:4], [setup["run1"], other], "test")
    assert [r.path for r in kept] == [r.path for i, r in enumerate(records) if i not in (0, 5)]
    assert left == {"duplicates": 3, "used_by_a_run": 2}
    # negative controls: a run without splits.csv knows no film; the evaluated split is kept
    assert unseen_records(records, [setup["run1"]], "test")[0] == records
    kept, left = unseen_records(records, [other], "val")
    assert [r.path for r in kept] == [records[5].path] and left["used_by_a_run"] == 15


def test_test_records_keeps_the_split_and_films_without_one():
    from cxr_cascade.evaluation.data import test_records
    from pipelines.records import Record

    rows = [Record(path=f"{s or 'x'}{i}.png", label="normal", patient_id=str(i), source="kermany",
                      split=s)
            for i, s in enumerate(["train", "test", "", "val"])]
    assert [r.path for r in test_records(rows)] == ["test1.png", "x2.png"]
    assert [r.path for r in test_records(rows, "val")] == ["x2.png", "val3.png"]
    with pytest.raises(ValueError, match="no images in split 'test'"):
        test_records(rows[:1])


def test_evaluate_command_unseen_by_leaves_out_what_another_run_trained_on(setup, tmp_path):
    from cxr_cascade.cli import main

    other = _with_manifest(setup, tmp_path, {0: "train", 1: "train", 2: "val"})
    out = tmp_path / "cmd"
    argv = ["evaluate", str(setup["run1"]), "--stage2", str(setup["run2"]), "--data",
            str(setup["manifest"]), "--n-boot", "3"]
    assert main([*argv, "--out", str(out), "--unseen-by", str(other)]) == 0
    written = json.loads((out / "metrics.json").read_text())
    assert written["left_out"] == {"duplicates": 0, "used_by_a_run": 3}
    assert written["unseen_by"] == [str(other)]
    assert written["models"]["cascade"]["n"] == 13
    assert main([*argv, "--out", str(tmp_path / "all")]) == 0  # negative control: all 16
    assert json.loads((tmp_path / "all" / "metrics.json").read_text())["models"]["cascade"]["n"] == 16
