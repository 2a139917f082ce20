"""`tools/study_summary.py`: the recipe study's table, its pre-registered choice, and the small
run records that keep finished runs in git."""

import importlib.util
import json
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "study_summary.py"
spec = importlib.util.spec_from_file_location("study_summary", TOOL)
study_summary = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study_summary)
choose = study_summary.choose


def means(**arms):
    """arm=(balanced accuracy, normal recall[, seeds])"""
    return {a: {"balanced_accuracy": v[0], "normal_recall": v[1], "seeds": v[2] if len(v) > 2 else 2}
            for a, v in arms.items()}


def test_choose_takes_the_best_balanced_accuracy_that_keeps_normal_recall():
    arm, why = choose(means(paper=(0.70, 0.40), balanced=(0.75, 0.45), geometric=(0.72, 0.50)))
    assert arm == "balanced" and "+0.050" in why


def test_choose_excludes_an_arm_that_loses_normal_recall():
    # the best balanced accuracy, bought with normal recall: not eligible (the rule's control)
    arm, _ = choose(means(paper=(0.70, 0.40), balanced=(0.80, 0.39), geometric=(0.72, 0.41)))
    assert arm == "geometric"


def test_choose_keeps_the_reference_within_the_tie_margin():
    arm, why = choose(means(paper=(0.700, 0.40), balanced=(0.705, 0.45)))
    assert arm == "paper" and "tie" in why
    assert choose(means(paper=(0.700, 0.40), balanced=(0.706, 0.45)))[0] == "balanced"


def test_choose_waits_for_every_arm_and_seed():
    assert choose(means(paper=(0.7, 0.4, 2), balanced=(0.8, 0.5, 1)))[0] is None
    assert choose(means(balanced=(0.8, 0.5)))[0] is None
    assert choose(means(paper=(0.7, 0.4), balanced=(0.8, 0.5)), arms={"geometric"})[0] is None
    assert choose(means(paper=(0.7, 0.4, 1), balanced=(0.8, 0.5, 1)), seeds=1)[0] == "balanced"


def write_run(root: Path, name: str, balanced_recalls, split="val", finished=True) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"name": "study_stage1_" + name.split("-")[0], "epochs": 2}))
    (run / "state.json").write_text(json.dumps({
        "epochs_completed": 2 if finished else 1, "finished": finished,
        "history": [{"epoch": 1, "val_accuracy": 0.5, "val_loss": 1.0}]}))
    (run / "command.txt").write_text("cxr-cascade train ...\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "best.weights.h5").write_bytes(b"\0" * 1000)
    if finished:
        recalls = dict(zip(("normal", "bacterial", "viral"), balanced_recalls))
        (run / "results.json").write_text(json.dumps({
            "evaluated_split": split, "n": 30, "accuracy": 0.7, "macro_f1": 0.6, "macro_auc": 0.8,
            "per_class": {c: {"recall": r} for c, r in recalls.items()}}))
    return run


def test_summary_keeps_records_and_reads_them_back(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        write_run(runs, f"paper-seed{seed}", (0.4, 0.9, 0.8))
        write_run(runs, f"balanced-seed{seed}", (0.6, 0.9, 0.8))
    write_run(runs, "geometric-seed0", (0.9, 0.9, 0.9), finished=False)
    out = tmp_path / "out"
    assert study_summary.main([str(runs), "--out", str(out), "--keep-records"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["chosen"] is None  # geometric has no finished seed yet: no choice
    assert summary["means"]["balanced"]["balanced_accuracy"] == pytest.approx((0.6 + 0.9 + 0.8) / 3)
    kept = out / "runs" / "paper-seed0"
    assert sorted(p.name for p in kept.iterdir()) == ["command.txt", "config.json", "results.json", "state.json"]
    assert (out / "runs" / "geometric-seed0" / "state.json").is_file()  # progress is kept too

    again = tmp_path / "again"
    study_summary.main([str(out / "runs"), "--out", str(again)])
    assert json.loads((again / "summary.json").read_text())["means"] == summary["means"]


def test_summary_refuses_a_run_scored_on_test(tmp_path):
    write_run(tmp_path / "runs", "paper-seed0", (0.4, 0.9, 0.8), split="test")
    with pytest.raises(SystemExit, match="not 'val'"):
        study_summary.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
