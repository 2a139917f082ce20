"""`tools/compare_rules.py`: the cascade rules side by side and the release rule chosen on
validation only (the pre-registered rule, with its negative controls)."""

import importlib.util
import json
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "compare_rules.py"
spec = importlib.util.spec_from_file_location("compare_rules", TOOL)
compare_rules = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_rules)

CLASSES = ("normal", "bacterial", "covid19", "viral")


def _section(recalls, n=100):
    ci = {"value": 0.5, "low": 0.4, "high": 0.6, "n_valid": 10}
    return {"n": n,
            "per_class": {c: {"recall": r, "support": 0 if r is None else 25} for c, r in zip(CLASSES, recalls)},
            "confidence_intervals": {"accuracy": ci, "macro_f1": ci, "covid19/recall": ci, "covid19/specificity": ci}}


def _evaluation(root: Path, name: str, stage2: str, split: str, rule: str, recalls: dict) -> Path:
    """A `cxr-cascade evaluate --stage2` folder: `recalls` rule -> per-class recalls."""
    run = root / "runs" / stage2
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps({"name": stage2}))
    folder = root / name
    folder.mkdir(parents=True)
    models = {("cascade" if r == rule else f"cascade_{r}"): {**_section(v), "decision_rule": r}
              for r, v in recalls.items()}
    models["stage1"] = _section((0.9, 0.9, None, 0.9))
    (folder / "metrics.json").write_text(json.dumps(
        {"decision_rule": rule, "split": split, "stage2_run": str(run), "models": models}))
    return folder


def _pair(root, split, paper, pneumonia):
    """Two evaluations (paper's stage 2 with gate; pneumonia stage 2 with pneumonia); each dict is
    rule -> balanced recall (every class that value)."""
    a = _evaluation(root, f"{split}-paper", "release_stage2_224", split, "gate",
                    {r: (v, v, v, v) for r, v in paper.items()})
    b = _evaluation(root, f"{split}-pneumonia", "release_stage2_pneumonia_224", split, "pneumonia",
                    {r: (v, v, v, v) for r, v in pneumonia.items()})
    return [a, b]


def test_rows_read_every_rule_with_balanced_accuracy_over_the_classes_present(tmp_path):
    folder = _evaluation(tmp_path, "e", "s2", "val", "soft",
                         {"soft": (1.0, 0.5, 0.0, None), "gate": (1.0, 1.0, 1.0, 1.0)})
    rows = {r["rule"]: r for r in compare_rules.rows_of(folder, "val")}
    assert set(rows) == {"soft", "gate"}  # stage1 is not a cascade row
    assert rows["soft"]["balanced_accuracy"] == pytest.approx(0.5)  # viral absent: mean of 3
    assert rows["soft"]["stage2"] == "s2" and rows["soft"]["split"] == "val"
    with pytest.raises(ValueError, match="not a readable metrics.json"):
        compare_rules.rows_of(tmp_path / "missing", "val")


def test_choice_is_the_best_validation_row_and_test_rows_never_enter_it(tmp_path):
    val = _pair(tmp_path, "val", {"gate": 0.50, "soft": 0.52}, {"gate": 0.51, "pneumonia": 0.60})
    # test favours another row: the choice must not move (the negative control)
    test = _pair(tmp_path, "test", {"gate": 0.90, "soft": 0.50}, {"gate": 0.50, "pneumonia": 0.40})
    result = compare_rules.compare(val, test)
    assert result["choice"]["rule"] == "pneumonia"
    assert result["choice"]["stage2"] == "release_stage2_pneumonia_224"
    assert "+0.100" in result["reason"] and len(result["rows"]) == 8
    assert compare_rules.compare(val, [])["choice"] == result["choice"]


def test_a_lead_within_the_tie_margin_keeps_the_paper_gate(tmp_path):
    val = _pair(tmp_path, "val", {"gate": 0.600, "soft": 0.55}, {"gate": 0.55, "pneumonia": 0.604})
    result = compare_rules.compare(val, [])
    assert result["choice"]["rule"] == "gate" and result["choice"]["stage2"] == "release_stage2_224"
    assert "within the tie margin" in result["reason"]


def test_command_writes_rules_json_and_md_and_refuses_a_folder_without_cascade(tmp_path, capsys):
    val = _pair(tmp_path, "val", {"gate": 0.7}, {"pneumonia": 0.6})
    out = tmp_path / "rules"
    assert compare_rules.main(["--val", *map(str, val), "--out", str(out)]) == 0
    written = json.loads((out / "rules.json").read_text())
    assert written["choice"]["rule"] == "gate" and "| val | gate |" in (out / "rules.md").read_text()
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "metrics.json").write_text(json.dumps({"models": {"stage1": _section((1, 1, 1, 1))}}))
    assert compare_rules.main(["--val", str(plain), "--out", str(tmp_path / "x")]) == 2
    assert "no cascade sections" in capsys.readouterr().err
