"""Stage 1 out of distribution: adult films through the pediatric normal / pneumonia split.

Stage 1 is trained on Kermany's pediatric films (normal / bacterial / viral). Its out-of-
distribution check takes the adult films of another collection whose truth is "normal" or a
non-COVID pneumonia and scores stage 1 with normal-vs-pneumonia collapsed:

    score  = p1(bacterial) + p1(viral)          (= 1 - p1(normal); ROC AUC)
    call   = pneumonia iff argmax p1 != normal  (stage 1's own decision, as the cascade uses it)

Positives are pneumonia films: sensitivity = pneumonia recall, specificity = normal recall.
Numbers come with 95 % CIs from a patient-level bootstrap (`cxr_cascade.evaluation.bootstrap`).

``OOD_SETS["ieee8023"]``: ieee8023's frontal films (its reader keeps PA, AP, AP Supine) labelled
"normal" (finding "No Finding") or "bacterial" / "fungal" (Streptococcus, Klebsiella,
Pneumocystis, ...). Viral and COVID-19 films stay out: stage 1 is not asked to tell them from
bacterial here, only pneumonia from normal; films whose cause is not stated stay out too.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from cxr_cascade.evaluation import data as R
from cxr_cascade.evaluation.bootstrap import bootstrap_ci
from cxr_cascade.evaluation.metrics import binary_auc
from cxr_cascade.registry import OOD_SETS

NORMAL_CLASS = "normal"
METRICS = ("accuracy", "sensitivity", "specificity", "auc")


def check_ood_set(name: str) -> str:
    if name not in OOD_SETS:
        raise ValueError(f"`ood` must be one of {list(OOD_SETS)}. Received: ood={name!r}")
    return name


def ood_records(records: Sequence, name: str = "ieee8023") -> tuple[list, np.ndarray]:
    """The records of data set `name` that the check uses and their truth (int ``[N]``, 1 = pneumonia).

    Raises:
        ValueError: `name` unknown, or no film of one of the two groups (naming what was found).
    """
    normal, pneumonia = OOD_SETS[check_ood_set(name)]
    chosen = [r for r in records if r.dataset == name and r.label in normal + pneumonia]
    y = np.array([int(r.label in pneumonia) for r in chosen], dtype=np.int64)
    if not (y == 0).any() or not (y == 1).any():
        found = Counter(f"{r.dataset}:{r.label}" for r in records)
        raise ValueError(
            f"the {name} out-of-distribution check needs films labelled {list(normal)} and "
            f"{list(pneumonia)} from data set {name!r}. Received: "
            + (", ".join(f"{k} {v}" for k, v in sorted(found.items())) or "no films")
        )
    return chosen, y


def collapse_normal_pneumonia(probs, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(score, call)`` from stage-1 probabilities ``[N, C]``: score = 1 - p(normal) summed from
    the other classes (float64 ``[N]``), call = 1 where the argmax is not normal (int64 ``[N]``)."""
    probs = np.asarray(probs, dtype=np.float64)
    class_names = list(class_names)
    if NORMAL_CLASS not in class_names:
        raise ValueError(
            f"`class_names` must hold {NORMAL_CLASS!r} (a stage-1 model). Received: class_names={class_names}"
        )
    if probs.ndim != 2 or probs.shape[1] != len(class_names):
        raise ValueError(
            f"`probs` must have shape [N, {len(class_names)}]. Received: probs.shape={probs.shape}"
        )
    k = class_names.index(NORMAL_CLASS)
    score = np.delete(probs, k, axis=1).sum(axis=1)
    call = (probs.argmax(axis=1) != k).astype(np.int64)
    return score, call


def binary_numbers(y, score, call) -> dict[str, float | None]:
    """Accuracy, sensitivity (pneumonia recall), specificity (normal recall), ROC AUC of `score`;
    None where undefined (no positive or no negative film)."""
    y, call = np.asarray(y).astype(bool), np.asarray(call).astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    auc = binary_auc(y, score) if pos and neg else float("nan")
    return {
        "accuracy": float(np.mean(y == call)) if y.size else None,
        "sensitivity": float(np.mean(call[y])) if pos else None,
        "specificity": float(np.mean(~call[~y])) if neg else None,
        "auc": None if np.isnan(auc) else float(auc),
    }


def ood_metrics(y, probs, patient_ids: Sequence, class_names: Sequence[str], labels: Sequence[str] = (),
                n_boot: int = 1000, seed: int = 0) -> dict:
    """Everything the report shows, JSON-ready.

    Args:
        y: int ``[N]`` truth, 1 = pneumonia. probs: stage-1 probabilities ``[N, C]``.
        patient_ids: ``[N]`` bootstrap clusters. class_names: stage 1's ``C`` class names.
        labels: ``[N]`` each film's own label ("bacterial", "fungal", ...) for the call table.
    """
    y = np.asarray(y, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    score, call = collapse_normal_pneumonia(probs, class_names)
    if len(patient_ids) != len(y) or len(probs) != len(y):
        raise ValueError(
            "`probs` and `patient_ids` must have one row per label. Received: "
            f"len(y)={len(y)}, len(probs)={len(probs)}, len(patient_ids)={len(patient_ids)}"
        )
    cis = bootstrap_ci(lambda i: binary_numbers(y[i], score[i], call[i]), patient_ids,
                       n_boot=n_boot, seed=seed)
    argmax = probs.argmax(axis=1)
    labels = np.asarray(list(labels) or [("pneumonia" if t else "normal") for t in y])
    order = sorted(set(zip(y.tolist(), labels.tolist())))  # normal labels first
    calls = {label: {name: int(np.sum((labels == label) & (argmax == j)))
                     for j, name in enumerate(class_names)} for _, label in order}
    return {
        "n": int(len(y)),
        "n_normal": int(np.sum(y == 0)),
        "n_pneumonia": int(np.sum(y == 1)),
        "n_patients": len(set(map(str, patient_ids))),
        "confusion": {"tn": int(np.sum((y == 0) & (call == 0))), "fp": int(np.sum((y == 0) & (call == 1))),
                      "fn": int(np.sum((y == 1) & (call == 0))), "tp": int(np.sum((y == 1) & (call == 1)))},
        "stage1_calls": calls,
        "confidence_intervals": cis,
        "bootstrap": {"unit": "patient", "n_boot": n_boot, "seed": seed, "confidence": 0.95},
        "score": "p(bacterial) + p(viral) = 1 - p(normal)",
        "call": "pneumonia where stage 1's argmax is not normal",
    }


def _fmt(entry: dict) -> str:
    if entry["value"] is None:
        return "n/a"
    if entry["low"] is None:
        return f"{entry['value']:.3f}"
    return f"{entry['value']:.3f} ({entry['low']:.3f}-{entry['high']:.3f})"


def ood_markdown(metrics: dict, title: str, header: Sequence[str] = ()) -> str:
    """The report: counts, the four numbers with CIs, the confusion and stage 1's own calls."""
    c, ci = metrics["confusion"], metrics["confidence_intervals"]
    lines = [f"# {title}", "", "Research software, not a medical device.", ""]
    lines += [f"- {line}" for line in header] + ([""] if header else [])
    lines += [
        f"{metrics['n']} films of {metrics['n_patients']} patients: {metrics['n_normal']} normal, "
        f"{metrics['n_pneumonia']} pneumonia. Score {metrics['score']}; call: {metrics['call']}. "
        f"95 % CIs from {metrics['bootstrap']['n_boot']} patient-level bootstrap replicates.",
        "",
        "| metric | value (95 % CI) |",
        "|---|---|",
        f"| accuracy | {_fmt(ci['accuracy'])} |",
        f"| sensitivity (pneumonia called pneumonia: {c['tp']} of {c['tp'] + c['fn']}) | {_fmt(ci['sensitivity'])} |",
        f"| specificity (normal called normal: {c['tn']} of {c['tn'] + c['fp']}) | {_fmt(ci['specificity'])} |",
        f"| ROC AUC of the score | {_fmt(ci['auc'])} |",
        "",
        "Stage 1's own calls (argmax) per label:",
        "",
    ]
    names = list(next(iter(metrics["stage1_calls"].values())))
    lines += ["| label | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, row in metrics["stage1_calls"].items():
        lines.append(f"| {label} | " + " | ".join(str(row[n]) for n in names) + " |")
    return "\n".join(lines) + "\n"


def predictions_csv(records: Sequence, probs, class_names: Sequence[str]) -> str:
    """One row per film: path, label, patient_key and stage 1's probabilities."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "label", "patient_key", *[f"p_{n}" for n in class_names]])
    for record, row in zip(records, np.asarray(probs, dtype=np.float64)):
        writer.writerow([Path(record.path).name, record.label, record.patient_key, *[f"{p:.6f}" for p in row]])
    return out.getvalue()


def evaluate_ood(stage, records: Sequence, name: str = "ieee8023", *, n_boot: int = 1000, seed: int = 0,
                 batch_size: int = 16) -> tuple[list, np.ndarray, dict]:
    """A stage 1 (``cxr_cascade.artifacts.Stage``) on data set `name`'s normal and pneumonia films.

    Args:
        stage: a stage-1 model whose classes hold ``NORMAL_CLASS``.
        records: records of any data sets; ``ood_records`` picks the films of the check.

    Returns:
        ``(records scored, probabilities float32 [N, C], ood_metrics(...))``.

    Raises:
        ValueError: `name` unknown, no film of one group, a stage without ``NORMAL_CLASS``, or an
            image that cannot be read.
    """
    chosen, y = ood_records(records, name)
    probs = stage.model.predict(R.load_images(chosen, stage.preprocess), batch_size=batch_size, verbose=0)
    metrics = ood_metrics(y, probs, [r.patient_key for r in chosen], stage.class_names,
                          [r.label for r in chosen], n_boot=n_boot, seed=seed)
    return chosen, probs, metrics
