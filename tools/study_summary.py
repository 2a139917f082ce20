"""Summarise a recipe study: one row per run (arm, seed) and the mean per arm, on validation only.

    python tools/study_summary.py RUNS_DIR --out experiments/results/study-stage1 --keep-records

Reads every `RUNS_DIR/<arm>-seed<k>/` run folder (its `results.json`, which for the study's runs
holds the *validation* split's numbers: the runs have no test split, see the study's experiment
files, and `state.json`'s per-epoch history), writes `summary.md`, `summary.json` and
`val_curves.png` (validation accuracy and loss per epoch, every run) into `--out`. Unfinished
runs are listed with the epochs they reached and left out of the means.

`--keep-records` also copies each run's small records (`RECORD_FILES`, a few kB; not the
weights) to `--out/runs/<run>/`, where this tool reads them as it reads run folders: committed,
they keep finished runs when the machine that trained them is gone.

The choice follows the rule fixed before the runs (`choose`); it is made only when every arm has
the same number of finished seeds.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_RUN = re.compile(r"^(?P<arm>.+)-seed(?P<seed>\d+)$")
RECORD_FILES = ("config.json", "state.json", "results.json", "command.txt", "environment.json")
REFERENCE = "paper"
TIE = 0.005
SEEDS = 2


def choose(means: dict, arms=(), seeds: int = SEEDS, reference: str = REFERENCE,
           tie: float = TIE) -> tuple[str | None, str]:
    """The study's pre-registered rule: the arm with the highest mean validation balanced accuracy
    whose mean normal recall is not below the reference arm's; an arm within `tie` of the
    reference's balanced accuracy does not displace it. Made only once every arm (`means`' and
    `arms`, the arms with any run) has `seeds` finished seeds. Returns ``(arm or None, why)``.

    `means`: arm -> {"balanced_accuracy", "normal_recall", "seeds"} (means over finished seeds).
    """
    waiting = {a: means.get(a, {}).get("seeds", 0) for a in sorted(set(arms) | set(means) | {reference})}
    waiting = {a: n for a, n in waiting.items() if n != seeds}
    if waiting:
        return None, f"waiting for {seeds} finished seeds of every arm (finished: " + ", ".join(
            f"{a} {n}" for a, n in waiting.items()) + ")"
    ref = means[reference]
    eligible = {a: m for a, m in means.items() if m["normal_recall"] >= ref["normal_recall"]}
    best = max(sorted(eligible), key=lambda a: eligible[a]["balanced_accuracy"])
    margin = eligible[best]["balanced_accuracy"] - ref["balanced_accuracy"]
    if best != reference and round(margin, 9) <= tie:
        return reference, (f"{best} leads the reference by {margin:.3f} balanced accuracy, within the "
                           f"tie margin {tie}: the reference stays")
    if best == reference:
        return reference, "no eligible arm beats the reference's balanced accuracy"
    return best, (f"highest mean balanced accuracy ({eligible[best]['balanced_accuracy']:.3f}, "
                  f"+{margin:.3f} over the reference) with mean normal recall "
                  f"{eligible[best]['normal_recall']:.3f} >= the reference's {ref['normal_recall']:.3f}")


def _row(run: Path) -> dict | None:
    match = _RUN.match(run.name)
    state_file = run / "state.json"
    if not match or not state_file.is_file():
        return None
    state = json.loads(state_file.read_text())
    config = json.loads((run / "config.json").read_text())
    row = {"arm": match["arm"], "seed": int(match["seed"]), "experiment": config["name"],
           "epochs": state["epochs_completed"], "of": config["epochs"],
           "finished": bool(state.get("finished")), "history": state["history"]}
    results = run / "results.json"
    if row["finished"] and results.is_file():
        r = json.loads(results.read_text())
        if r.get("evaluated_split") != "val":
            raise SystemExit(f"{results}: evaluated on {r.get('evaluated_split')!r}, not 'val': "
                             "a study run must not see a test split")
        recall = {k: v["recall"] for k, v in r["per_class"].items()}
        row.update(n=r["n"], accuracy=r["accuracy"], macro_f1=r["macro_f1"], macro_auc=r["macro_auc"],
                   balanced_accuracy=float(np.mean(list(recall.values()))), recall=recall)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, default=SEEDS,
                        help=f"finished seeds every arm needs before the choice (default {SEEDS})")
    parser.add_argument("--keep-records", action="store_true",
                        help="copy each run's small records to OUT/runs/<run>/ (commit them)")
    args = parser.parse_args(argv)
    runs = [p for p in sorted(Path(args.runs).iterdir()) if p.is_dir()]
    rows = sorted(filter(None, (_row(p) for p in runs)), key=lambda r: (r["arm"], r["seed"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.keep_records:
        for run in runs:
            if _RUN.match(run.name) and (run / "state.json").is_file():
                kept = out / "runs" / run.name
                if kept.resolve() == run.resolve():
                    continue
                kept.mkdir(parents=True, exist_ok=True)
                for name in RECORD_FILES:
                    if (run / name).is_file():
                        shutil.copyfile(run / name, kept / name)
    lines = ["| arm | seed | epochs | val n | val accuracy | balanced accuracy | macro F1 | macro AUC | "
             "recall normal / bacterial / viral |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "accuracy" in r:
            rec = " / ".join(f"{r['recall'][c]:.3f}" for c in ("normal", "bacterial", "viral"))
            lines.append(f"| {r['arm']} | {r['seed']} | {r['epochs']}/{r['of']} | {r['n']} | {r['accuracy']:.3f} | "
                         f"{r['balanced_accuracy']:.3f} | {r['macro_f1']:.3f} | {r['macro_auc']:.3f} | {rec} |")
        else:
            lines.append(f"| {r['arm']} | {r['seed']} | {r['epochs']}/{r['of']} (unfinished) | | | | | | |")
    means = {}
    for arm in sorted({r["arm"] for r in rows}):
        done = [r for r in rows if r["arm"] == arm and "accuracy" in r]
        if done:
            means[arm] = {k: float(np.mean([r[k] for r in done]))
                          for k in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")}
            means[arm]["normal_recall"] = float(np.mean([r["recall"]["normal"] for r in done]))
            means[arm]["seeds"] = len(done)
    lines += ["", "| arm | finished seeds | mean val accuracy | mean balanced accuracy | mean macro F1 | "
              "mean macro AUC | mean normal recall |", "|---|---|---|---|---|---|---|"]
    for arm, m in means.items():
        lines.append(f"| {arm} | {m['seeds']} | {m['accuracy']:.3f} | {m['balanced_accuracy']:.3f} | "
                     f"{m['macro_f1']:.3f} | {m['macro_auc']:.3f} | {m['normal_recall']:.3f} |")
    chosen, why = choose(means, arms={r["arm"] for r in rows}, seeds=args.seeds)
    lines += ["", f"Choice (rule fixed before the runs): **{chosen or 'none yet'}**: {why}."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps({"runs": rows, "means": means, "chosen": chosen, "why": why},
                                                 indent=2) + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for r in rows:
        epochs = [h["epoch"] for h in r["history"]]
        for ax, key in zip(axes, ("val_accuracy", "val_loss")):
            ax.plot(epochs, [h.get(key) for h in r["history"]], marker="o",
                    label=f"{r['arm']} seed {r['seed']}")
    for ax, key in zip(axes, ("validation accuracy", "validation loss")):
        ax.set_xlabel("epoch")
        ax.set_title(key)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "val_curves.png", dpi=100)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
