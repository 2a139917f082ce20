"""Compare the cascade's rules and stage-2 runs, and choose the release's rule on validation only.

    python tools/compare_rules.py --val VAL_PAPER VAL_OTHER --test TEST_PAPER TEST_OTHER \
        --out experiments/results/release-v2/rules

Each folder is one `cxr-cascade evaluate STAGE1 --stage2 RUN2 --split S --unseen-by OTHER_RUN2`
output: its metrics.json holds every rule's section (``cascade`` = the rule it was run with,
``cascade_gate`` / ``cascade_soft`` / ``cascade_pneumonia`` the others). One row per (stage-2 run,
rule) and split: balanced accuracy (mean recall over the 4 classes present), accuracy, macro F1 and
COVID-19 sensitivity / specificity with their patient-bootstrap CIs, n.

The choice (`choose`, fixed before the numbers were seen): the (rule, stage 2) with the highest
validation balanced accuracy; within `TIE` of the reference (the paper's gate with the first
--val folder's stage 2, the paper's other-viral negative class) the reference stays. Test rows are
reported beside the choice and never enter it. Writes rules.json (read by `cxr-cascade release
card`) and rules.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TIE = 0.005
REFERENCE_RULE = "gate"
COVID = "covid19"
CRITERION = (
    "Rule chosen on validation only (fixed before the numbers were seen): the (rule, stage 2) with the "
    f"highest 4-class balanced accuracy (mean per-class recall) on the cascade's validation films; "
    f"within {TIE} of the paper's gate with the paper's stage 2 (other viral), the paper's gate stays. "
    "Test rows are reported beside it, never used for the choice."
)


def _stage2_name(run) -> str:
    """The stage-2 run's experiment name (its config.json), else its folder name."""
    try:
        return json.loads((Path(run) / "config.json").read_text())["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return Path(str(run)).name


def rows_of(folder: Path, split: str) -> list[dict]:
    """One row per cascade rule of one `cxr-cascade evaluate --stage2` output folder.

    `split` labels the rows ("val" or "test": which argument named the folder).

    Raises:
        ValueError: no metrics.json with cascade sections there (names the folder).
    """
    path = Path(folder) / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable metrics.json ({error})") from None
    # every cascade section names the rule that made it (`evaluate --stage2` writes all three)
    sections = [s for s in (metrics.get("models") or {}).values() if isinstance(s, dict) and s.get("decision_rule")]
    if not sections:
        raise ValueError(f"{path}: no cascade sections; evaluate with --stage2")
    rows = []
    for section in sections:
        per_class = section.get("per_class") or {}
        recalls = [v["recall"] for v in per_class.values()
                   if isinstance(v, dict) and v.get("support") and v.get("recall") is not None]
        cis = section.get("confidence_intervals") or {}
        rows.append({
            "rule": section["decision_rule"],
            "stage2": _stage2_name(metrics.get("stage2_run")),
            "stage2_run": metrics.get("stage2_run"),
            "split": split,
            "folder": str(folder),
            "n": section.get("n"),
            "balanced_accuracy": sum(recalls) / len(recalls) if recalls else None,
            "accuracy": cis.get("accuracy"),
            "macro_f1": cis.get("macro_f1"),
            "covid19_sensitivity": cis.get(f"{COVID}/recall"),
            "covid19_specificity": cis.get(f"{COVID}/specificity"),
            "covid19_films": (per_class.get(COVID) or {}).get("support"),
        })
    return sorted(rows, key=lambda r: r["rule"])


def choose(val_rows: list[dict], reference_stage2: str, tie: float = TIE) -> tuple[dict, str]:
    """The pre-registered choice on validation rows; returns (row, why).

    Raises:
        ValueError: no reference row (the gate with `reference_stage2`) among `val_rows`.
    """
    reference = next((r for r in val_rows if r["rule"] == REFERENCE_RULE and r["stage2"] == reference_stage2), None)
    if reference is None:
        raise ValueError(f"no {REFERENCE_RULE!r} row with stage 2 {reference_stage2!r} among the validation rows")
    best = max(val_rows, key=lambda r: (r["balanced_accuracy"] or 0.0, r is reference))
    margin = (best["balanced_accuracy"] or 0.0) - (reference["balanced_accuracy"] or 0.0)
    if best is reference:
        return reference, "the paper's gate leads on validation balanced accuracy"
    if round(margin, 9) <= tie:
        return reference, (f"{best['rule']} with {best['stage2']} leads the paper's gate by {margin:.3f} "
                           f"validation balanced accuracy, within the tie margin {tie}")
    return best, (f"highest validation balanced accuracy, {best['balanced_accuracy']:.3f} against the paper "
                  f"gate's {reference['balanced_accuracy']:.3f} ({margin:+.3f})")


def _ci(ci) -> str:
    if not isinstance(ci, dict) or ci.get("value") is None:
        return "n/a"
    return f"{ci['value']:.3f} ({ci['low']:.3f}-{ci['high']:.3f})"


def markdown(result: dict) -> str:
    lines = ["# Cascade rules compared", "", result["criterion"], "",
             f"**Choice: {result['choice']['rule']}** with stage 2 `{result['choice']['stage2']}`: "
             f"{result['reason']}.", "",
             "| split | rule | stage 2 | n | balanced accuracy | accuracy | macro F1 | COVID-19 sensitivity | "
             "COVID-19 specificity | COVID-19 films |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        ba = "n/a" if r["balanced_accuracy"] is None else f"{r['balanced_accuracy']:.3f}"
        lines.append(f"| {r['split']} | {r['rule']} | {r['stage2']} | {r['n']} | {ba} | {_ci(r['accuracy'])} | "
                     f"{_ci(r['macro_f1'])} | {_ci(r['covid19_sensitivity'])} | {_ci(r['covid19_specificity'])} | "
                     f"{r['covid19_films']} |")
    lines += ["", "Folders: " + ", ".join(f"`{f}`" for f in result["folders"]), ""]
    return "\n".join(lines)


def compare(val: list, test: list) -> dict:
    val_rows = [row for folder in val for row in rows_of(folder, "val")]
    test_rows = [row for folder in test for row in rows_of(folder, "test")]
    reference_stage2 = rows_of(val[0], "val")[0]["stage2"]
    choice, why = choose(val_rows, reference_stage2)
    return {"criterion": CRITERION, "reference": {"rule": REFERENCE_RULE, "stage2": reference_stage2},
            "choice": {k: choice[k] for k in ("rule", "stage2", "stage2_run")}, "reason": why,
            "rows": val_rows + test_rows, "folders": [str(f) for f in [*val, *test]]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--val", nargs="+", required=True, metavar="DIR",
                        help="validation evaluations; the first holds the paper's stage 2 (the reference)")
    parser.add_argument("--test", nargs="*", default=[], metavar="DIR", help="test evaluations, reported only")
    parser.add_argument("--out", required=True, metavar="DIR")
    args = parser.parse_args(argv)
    try:
        result = compare(args.val, args.test)
    except ValueError as error:
        print(f"compare_rules: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rules.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "rules.md").write_text(markdown(result))
    print(f"choice: {result['choice']['rule']} with {result['choice']['stage2']} ({result['reason']}) -> {out}/rules.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
