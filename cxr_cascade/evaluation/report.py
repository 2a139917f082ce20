"""One evaluation, end to end: metrics + patient-bootstrap CIs + calibration + figures + report.

``evaluate_predictions`` takes the predictions of one stage (or the combined cascade) on a test
set and writes, under ``out_dir``:

- ``metrics.json``: headline numbers with 95 % CIs, per-class scores, confusion matrices, ECE and
  reliability bins, and the data section;
- ``report.md``: the same as Markdown tables, linking the figures;
- ``figures/roc_<name>.png``, ``confusion_<name>.png``, ``reliability_<name>.png``.

The data section follows the CLAIM checklist (Mongan et al., Radiology: AI 2020) items on data
sources and partitions: sources, split sizes, patients per split, the level at which the splits
are disjoint and how many duplicates were removed.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from cxr_cascade.artifacts.layout import EvaluationDir
from cxr_cascade.evaluation import figures
from cxr_cascade.evaluation.bootstrap import bootstrap_ci, classification_cis
from cxr_cascade.evaluation.calibration import expected_calibration_error, reliability_bins
from cxr_cascade.evaluation.metrics import classification_metrics
from pipelines.atomic import atomic_write_text


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (`pipelines.atomic`)."""
    atomic_write_text(path, text)
    return Path(path)


def write_json_atomic(path, obj) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def data_summary(records: Iterable, duplicates_removed: int | None = None) -> dict:
    """Sources, split sizes, patients per split and the disjointness level of a split manifest.

    Args:
        records: objects with ``split``, ``patient_id``, ``source`` and ``label`` attributes
            (``pipelines.records.Record``) or dicts with those keys.
        duplicates_removed: number of duplicate images dropped before splitting, if known.

    Returns:
        JSON-ready dict with ``sources`` (source -> images), ``splits`` (split -> images,
        patients, labels), ``disjoint_level`` (``"patient"`` when no patient appears in two
        splits, else ``"image"``), ``patients_in_several_splits`` and ``duplicates_removed``.
    """
    def get(record, key):
        return record[key] if isinstance(record, dict) else getattr(record, key)

    sources: Counter = Counter()
    images: Counter = Counter()
    labels: dict[str, Counter] = defaultdict(Counter)
    patients: dict[str, set] = defaultdict(set)
    for record in records:
        split = str(get(record, "split"))
        source = str(get(record, "source"))
        sources[source] += 1
        images[split] += 1
        labels[split][str(get(record, "label"))] += 1
        patients[split].add((source.split("/", 1)[0], str(get(record, "patient_id"))))
    owner: dict = defaultdict(set)
    for split, ids in patients.items():
        for pid in ids:
            owner[pid].add(split)
    shared = sorted(f"{s}:{p}" for (s, p), splits in owner.items() if len(splits) > 1)
    return {
        "sources": dict(sorted(sources.items())),
        "splits": {
            split: {
                "images": images[split],
                "patients": len(patients[split]),
                "labels": dict(sorted(labels[split].items())),
            }
            for split in sorted(images)
        },
        "disjoint_level": "patient" if not shared else "image",
        "patients_in_several_splits": len(shared),
        "duplicates_removed": duplicates_removed,
    }


def evaluate_predictions(
    y_true,
    probs,
    patient_ids: Sequence,
    class_names: Sequence[str],
    out_dir=None,
    name: str = "model",
    n_boot: int = 1000,
    seed: int = 0,
    n_bins: int = 15,
    y_pred=None,
    rule: str | None = None,
) -> dict:
    """Metrics, CIs, calibration and figures of one classifier; returns the metrics dict.

    Args:
        y_true: int ``[N]``; probs: float ``[N, C]``; patient_ids: ``[N]`` (cluster of each row).
        class_names: ``C`` names. out_dir: where ``figures/`` go (None: no figures, no
            ``figures`` entry). name: used in figure names.
        n_boot: bootstrap replicates (patients resampled with replacement). seed: bootstrap seed.
        n_bins: calibration bins.
        y_pred: int ``[N]`` decisions when they are not the argmax of ``probs`` (the cascade's
            gate); ``probs`` still give the ROC curves, AUCs and calibration.
        rule: the decision rule's name, recorded as ``decision_rule`` (cascade sections).
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    y_pred = probs.argmax(1) if y_pred is None else np.asarray(y_pred)
    metrics = classification_metrics(y_true, probs, class_names, y_pred)
    if rule is not None:
        metrics["decision_rule"] = rule
    metrics["n_patients"] = int(len(set(map(str, patient_ids))))
    metrics["confidence_intervals"] = classification_cis(
        y_true, probs, patient_ids, class_names, n_boot=n_boot, seed=seed, y_pred=y_pred
    )
    metrics["bootstrap"] = {"unit": "patient", "n_boot": n_boot, "seed": seed, "confidence": 0.95}
    bins = reliability_bins(y_true, probs, n_bins)
    ece = expected_calibration_error(y_true, probs, n_bins)
    metrics["calibration"] = {"ece": ece, "n_bins": n_bins, "bins": bins}
    if out_dir is None:
        return metrics
    fig_dir = EvaluationDir(out_dir).figures
    metrics["figures"] = {
        "roc": str(figures.plot_roc({name: (y_true, probs)}, class_names, fig_dir / f"roc_{name}.png",
                                    title=f"ROC curves: {name}").relative_to(out_dir)),
        "confusion": str(figures.plot_confusion(y_true, y_pred, class_names,
                                                fig_dir / f"confusion_{name}.png",
                                                title=f"Confusion matrix: {name}").relative_to(out_dir)),
        "reliability": str(figures.plot_reliability(bins, ece, fig_dir / f"reliability_{name}.png",
                                                    title=f"Reliability: {name}").relative_to(out_dir)),
    }
    return metrics


def group_metrics(y_true, probs, groups: Sequence, patient_ids: Sequence,
                  class_names: Sequence[str], y_pred=None, n_boot: int = 1000,
                  seed: int = 0) -> dict[str, dict]:
    """Per-group figures (``cxr-cascade evaluate --by source``): ``{group: {n, n_patients,
    labels, accuracy (95 % patient-bootstrap CI), macro_auc (or None when the group holds one
    class)}}``.

    A source holding a single class has no AUC; its accuracy is then the recall of that class, so
    a source that is all COVID-19 and all right says only that the model calls that source COVID-19.
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    y_pred = probs.argmax(1) if y_pred is None else np.asarray(y_pred)
    groups = np.asarray([str(g) for g in groups])
    patient_ids = np.asarray([str(p) for p in patient_ids])
    out = {}
    for group in sorted(set(groups.tolist())):
        rows = np.flatnonzero(groups == group)
        yt, pr, yp = y_true[rows], probs[rows], y_pred[rows]
        m = classification_metrics(yt, pr, class_names, yp)
        ci = bootstrap_ci(
            lambda idx: {"accuracy": float(np.mean(yt[idx] == yp[idx]))},
            patient_ids[rows], n_boot=n_boot, seed=seed,
        )["accuracy"]
        out[group] = {
            "n": int(len(rows)),
            "n_patients": int(len(set(patient_ids[rows].tolist()))),
            "labels": {class_names[c]: int(k) for c, k in zip(*np.unique(yt, return_counts=True))},
            "accuracy": ci,
            "macro_auc": m["macro_auc"] if len(set(yt.tolist())) > 1 else None,
        }
    return out


def group_markdown(title: str, groups: dict) -> str:
    lines = [f"### {title}", "", "| group | images | patients | labels | accuracy (95 % CI) | macro ROC AUC |",
             "|---|---|---|---|---|---|"]
    for name, g in groups.items():
        labels = ", ".join(f"{k}: {v}" for k, v in g["labels"].items())
        auc = "n/a (one class)" if g["macro_auc"] is None else f"{g['macro_auc']:.3f}"
        lines.append(f"| {name} | {g['n']} | {g['n_patients']} | {labels} | {_fmt(g['accuracy'])} | {auc} |")
    return "\n".join(lines + [""])


RULE_TEXT = {
    "gate": "the paper's hard gate: stage 2 decides the films stage 1 calls viral",
    "soft": "argmax of the products p1 * p2",
    "pneumonia": "stage 2 decides the films stage 1 calls bacterial or viral: its COVID-19 "
                 "overrides stage 1, its negative keeps stage 1's call",
}
RULE_SCORES = {"pneumonia": "the pneumonia route's distribution, p(covid19) = (1 - p1(normal)) p2(covid19)"}


def _fmt(entry: dict | None) -> str:
    if entry is None or entry.get("value") is None:
        return "n/a"
    text = f"{entry['value']:.3f}"
    if entry.get("low") is not None:
        text += f" ({entry['low']:.3f}-{entry['high']:.3f})"
    return text


def metrics_markdown(name: str, metrics: dict) -> str:
    """Markdown section for one evaluated model (headline table, per-class table, figures)."""
    ci = metrics["confidence_intervals"]
    lines = [
        f"## {name}",
        "",
        (f"Population: {metrics['population']}. " if metrics.get("population") else "")
        + f"{metrics['n']} images of {metrics['n_patients']} patients. Values with 95 % CIs from "
        f"{metrics['bootstrap']['n_boot']} patient-level bootstrap replicates."
        + (f" Decision rule: **{metrics['decision_rule']}** ({RULE_TEXT.get(metrics['decision_rule'], '')}); "
           f"ROC AUCs and calibration score {RULE_SCORES.get(metrics['decision_rule'], 'the products p1 * p2')}."
           if metrics.get("decision_rule") else ""),
        "",
        "| metric | value (95 % CI) |",
        "|---|---|",
        f"| accuracy | {_fmt(ci['accuracy'])} |",
        f"| macro F1 | {_fmt(ci['macro_f1'])} |",
        f"| macro ROC AUC (one vs rest) | {_fmt(ci['macro_auc'])} |",
        f"| expected calibration error ({metrics['calibration']['n_bins']} bins) | "
        f"{metrics['calibration']['ece']:.3f} |",
        "",
        "| class | support | precision | recall (sensitivity) | specificity | F1 | ROC AUC |",
        "|---|---|---|---|---|---|---|",
    ]
    for cls, scores in metrics["per_class"].items():
        cells = [_fmt(ci[f"{cls}/{key}"]) for key in ("precision", "recall", "specificity", "f1", "auc")]
        lines.append(f"| {cls} | {scores['support']} | " + " | ".join(cells) + " |")
    names = metrics["class_names"]
    lines += ["", "Confusion matrix (rows true, columns predicted):", "",
              "| true \\ predicted | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    for cls, row, row_n in zip(names, metrics["confusion_matrix"], metrics["confusion_matrix_normalised"]):
        lines.append(f"| {cls} | " + " | ".join(f"{c} ({r:.2f})" for c, r in zip(row, row_n)) + " |")
    lines.append("")
    for key, title in (("roc", "ROC curves"), ("confusion", "Confusion matrix"),
                       ("reliability", "Reliability diagram")):
        if key in metrics.get("figures", {}):
            lines.append(f"![{title}: {name}]({metrics['figures'][key]})")
    lines.append("")
    if metrics.get("by_source"):
        lines.append(group_markdown(f"{name} by source", metrics["by_source"]))
    return "\n".join(lines)


def data_markdown(summary: dict) -> str:
    """Markdown for the data section (CLAIM: sources, partitions, disjointness, duplicates)."""
    lines = ["## Data", "", "| source | images |", "|---|---|"]
    lines += [f"| {s} | {n} |" for s, n in summary["sources"].items()]
    lines += ["", "| split | images | patients | labels |", "|---|---|---|---|"]
    for split, info in summary["splits"].items():
        labels = ", ".join(f"{k}: {v}" for k, v in info["labels"].items())
        lines.append(f"| {split} | {info['images']} | {info['patients']} | {labels} |")
    dup = summary.get("duplicates_removed")
    lines += [
        "",
        f"Splits are disjoint at the **{summary['disjoint_level']}** level "
        f"({summary['patients_in_several_splits']} patients appear in more than one split).",
        "Duplicates removed before splitting: " + (
            str(dup) if dup is not None else
            "none (duplicates are kept together in one split instead)" if summary.get("dedup_policy") in ("exact", "near")
            else "not recorded") + ".",
    ]
    if summary.get("dedup_policy"):
        policy = {"exact": "byte-identical images kept in one split",
                  "near": "near-duplicate images (perceptual hash) kept in one split",
                  "off": "no duplicate detection"}.get(summary["dedup_policy"], summary["dedup_policy"])
        lines.append(f"Duplicate policy of the split: {summary['dedup_policy']} ({policy}).")
    if summary.get("exact_duplicates_across_splits") is not None:
        lines.append(
            "Byte-identical images with copies in different splits: "
            f"{summary['exact_duplicates_across_splits']}."
        )
    lines.append("")
    return "\n".join(lines)


def comparison_figures(out_dir, predictions: dict, class_names: Sequence[str]) -> dict:
    """ROC curves of several models overlaid and their confusion matrices side by side (the
    paper's Figures 12/18 and 13/19); ``predictions`` is ``{name: (y_true, probs)}``."""
    out_dir = Path(out_dir)
    fig_dir = EvaluationDir(out_dir).figures
    roc = figures.plot_roc(predictions, class_names, fig_dir / "roc_compare.png",
                           title="ROC curves (one vs rest)")
    grid = figures.plot_confusion_grid(
        {name: (y, np.asarray(p).argmax(1)) for name, (y, p) in predictions.items()},
        class_names, fig_dir / "confusion_compare.png")
    return {"roc": str(roc.relative_to(out_dir)), "confusion": str(grid.relative_to(out_dir))}


def comparison_markdown(sections: dict[str, dict], figs: dict) -> str:
    lines = ["## Comparison", "", "| model | accuracy | macro F1 | macro ROC AUC | ECE |", "|---|---|---|---|---|"]
    for name, m in sections.items():
        ci = m["confidence_intervals"]
        lines.append(f"| {name} | {_fmt(ci['accuracy'])} | {_fmt(ci['macro_f1'])} | "
                     f"{_fmt(ci['macro_auc'])} | {m['calibration']['ece']:.3f} |")
    lines += ["", f"![ROC curves]({figs['roc']})", f"![Confusion matrices]({figs['confusion']})", ""]
    return "\n".join(lines)


def write_report(out_dir, sections: dict[str, dict], data: dict | None = None,
                 title: str = "cxr-cascade evaluation", extra: dict | None = None,
                 comparison: dict | None = None) -> dict:
    """Write ``metrics.json`` and ``report.md`` under ``out_dir``.

    Args:
        sections: ``{name: metrics dict from evaluate_predictions}`` (a stage, or the cascade).
        data: ``data_summary`` output, or ``None``.
        extra: more JSON-ready fields for ``metrics.json`` (e.g. run directory, checkpoint).
        comparison: ``comparison_figures`` output when several models share the test set.
    """
    out_dir = Path(out_dir)
    payload = {**(extra or {}), "models": sections, "data": data}
    if comparison:
        payload["comparison_figures"] = comparison
    write_json_atomic(EvaluationDir(out_dir).metrics, payload)
    parts = [f"# {title}", "",
             "Research software, not a medical device. Phantom results show that the machinery "
             "works, never that a model diagnoses.", ""]
    if extra:
        parts += [f"- {k}: `{v}`" for k, v in extra.items()] + [""]
    if data is not None:
        parts.append(data_markdown(data))
    if comparison:
        parts.append(comparison_markdown(sections, comparison))
    for name, metrics in sections.items():
        parts.append(metrics_markdown(name, metrics))
    write_text_atomic(EvaluationDir(out_dir).report, "\n".join(parts))
    return payload
