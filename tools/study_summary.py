"""Summarise a recipe study: one row per run (arm, seed) and the mean per arm, on validation only.

    python tools/study_summary.py RUNS_DIR --out experiments/results/study-stage1

Reads every `RUNS_DIR/<arm>-seed<k>/` run folder (its `results.json`, which for the study's runs
holds the *validation* split's numbers: the runs have no test split, see the study's experiment
files, and `state.json`'s per-epoch history), writes `summary.md`, `summary.json` and
`val_curves.png` (validation accuracy and loss per epoch, every run) into `--out`. Unfinished
runs are listed with the epochs they reached and left out of the means.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_RUN = re.compile(r"^(?P<arm>.+)-seed(?P<seed>\d+)$")


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
    args = parser.parse_args(argv)
    rows = sorted(filter(None, (_row(p) for p in Path(args.runs).iterdir() if p.is_dir())),
                  key=lambda r: (r["arm"], r["seed"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
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
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps({"runs": rows, "means": means}, indent=2) + "\n")
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
