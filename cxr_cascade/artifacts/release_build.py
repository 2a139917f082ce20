"""Building a release from trained runs (``cxr-cascade release build``); the layout and its
reading are in `cxr_cascade.artifacts.release`."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from cxr_cascade.artifacts.checksums import sha256_file
from cxr_cascade.artifacts.layout import RunDir
from cxr_cascade.artifacts.loader import load
from cxr_cascade.artifacts.model_card import chance_level, render_model_card
from cxr_cascade.artifacts.release import (
    ARCHITECTURE_FILE,
    CARD_FILE,
    CONFIG_FILE,
    MODEL_FILES,
    MODELS,
    OPTIONAL_FILES,
    RELEASE_FILE,
    SPLITS_FILE,
    WEIGHTS_FILE,
    PathLike,
    _read_json,
    is_release_model,
    read_release,
    store_weights,
    verify_model,
    write_checksums,
)
from cxr_cascade.registry import CASCADE_RULES, DEFAULT_CASCADE_RULE
from pipelines.atomic import atomic_write_json, atomic_write_text
from pipelines.records import read_manifest, write_manifest

__all__ = ["build_release", "record_evaluation"]

# headline numbers copied from a run's results.json
HEADLINE = ("accuracy", "macro_f1", "macro_auc", "mean_iou", "dice", "loss")


# what a model's entry in an earlier release says of its training, carried into a new release
CARRIED = ("run", "test_split", "test_metrics", "split_counts", "best_epoch", "epochs",
           "training_seconds", "command", "machine", "evaluation", "evaluated", "chance_level",
           "shortcut_audit")


def _released_summary(model: Path) -> dict:
    """What release.json says of a model taken from another release (``releases/v1/unet``): that
    release's account of its run, and where it came from; the weights are copied unchanged."""
    folder, release = read_release(model.parent, checked=True)
    entry = (release.get("models") or {}).get(model.name) or {}
    return {**{k: entry[k] for k in CARRIED if k in entry},
            "from_release": {"name": release.get("name"), "folder": str(folder),
                             "created_utc": release.get("created_utc")}}


def _evaluation_summary(evaluation: dict) -> dict:
    """`cxr-cascade evaluate`'s metrics.json sections as a release entry keeps them."""
    sections = evaluation.get("models") or {}
    return {
        name: {"n": s.get("n"), "confidence_intervals": s.get("confidence_intervals"),
               "macro_auc": s.get("macro_auc"),
               "class_counts": {c: v.get("support") for c, v in (s.get("per_class") or {}).items()
                                if isinstance(v, dict)} or None}
        for name, s in sections.items() if isinstance(s, dict)
    }


def _run_summary(run: Path) -> dict:
    """What release.json says of a run: metrics, evaluation CIs, time, machine."""
    if is_release_model(run):
        return _released_summary(run)
    rd = RunDir(run)
    results = _read_json(rd.results) or {}
    environment = _read_json(rd.environment) or {}
    evaluation = _read_json(rd.evaluation.metrics)
    summary: dict = {
        "test_split": results.get("evaluated_split"),
        "test_metrics": {k: results[k] for k in HEADLINE if isinstance(results.get(k), (int, float))},
        "split_counts": results.get("split_counts"),
        "best_epoch": results.get("best_epoch"),
        "epochs": results.get("epochs"),
        "training_seconds": results.get("wall_seconds"),
        "command": results.get("command") or (rd.command.read_text().strip()
                                              if rd.command.is_file() else None),
        "machine": {k: environment.get(k) for k in
                    ("host", "platform", "cpu_count", "threads", "tensorflow", "keras",
                     "keras_backend", "gpus")
                    if k in environment},
    }
    if evaluation:  # `cxr-cascade evaluate RUN`'s sections
        summary["evaluation"] = _evaluation_summary(evaluation)
        summary["evaluated"] = {"folder": str(rd.evaluation.root), "split": evaluation.get("split")}
    summary["chance_level"] = chance_level(summary.get("evaluation"))
    audit = _read_json(rd.audit.result)  # `cxr-cascade audit RUN`
    if audit and isinstance(audit.get("flag"), dict):
        flag = audit["flag"]
        summary["shortcut_audit"] = {
            "verdict": "FLAGGED" if flag.get("flagged") else
                       "not flagged" if flag.get("informative") else "not informative (model at chance)",
            "reasons": flag.get("reasons") or [],
        }
    return summary


def build_release(out: PathLike, runs: dict, *, name: Optional[str] = None, force: bool = False,
                  rule: Optional[str] = None) -> Path:
    """Writes a release folder from trained runs.

    Args:
        out: the release folder (``releases/v1``); must not exist unless `force`.
        runs: {"stage1" | "stage2" | "unet": run directory (or anything `cxr_cascade.artifacts.load`
            takes)}; each run's task must match its key.
        name: the release name in release.json (default: the folder's name).
        force: replace an existing folder's files.
        rule: the cascade rule the release is served with (release.json ``cascade_rule``; export
            and predict default to it); default the paper's gate. Only with both stages.

    Returns:
        The path of release.json.

    Raises:
        ValueError: an unknown key, a run of another task, or `out` exists without `force`.
    """
    out = Path(out)
    unknown = sorted(set(runs) - set(MODELS))
    if unknown:
        raise ValueError(f"`runs` keys must be among {list(MODELS)}. Received: {unknown}")
    if not runs:
        raise ValueError("a release needs at least one run. Received: runs={}")
    if rule is not None and rule not in CASCADE_RULES:
        raise ValueError(f"`rule` must be one of {list(CASCADE_RULES)}. Received: rule={rule!r}")
    if rule is not None and not {"stage1", "stage2"} <= set(runs):
        raise ValueError(f"`rule` needs both stages (a cascade). Received: rule={rule!r} with {sorted(runs)}")
    if (out / RELEASE_FILE).exists() and not force:
        raise ValueError(f"{out}: a release exists there already; choose another --out or pass --force")
    release: dict = {
        "name": name or out.name,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "format": 1,
        "weights_format": f"{WEIGHTS_FILE}: model.weights order; kernels float16, 1-D arrays float32",
        "models": {},
    }
    if {"stage1", "stage2"} <= set(runs):
        release["cascade_rule"] = rule or DEFAULT_CASCADE_RULE
    stages = {}
    for role in MODELS:  # every run is checked before anything is written
        if role in runs:
            stages[role] = load(runs[role])
            if stages[role].task != role:
                raise ValueError(f"--{role} {runs[role]}: a {stages[role].task} run, not a {role} run")
            _require_resolvable_manifest(role, runs[role])
    for role, stage in stages.items():
        run = Path(runs[role])
        folder = out / role
        folder.mkdir(parents=True, exist_ok=True)
        config = stage.config.to_dict()
        atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
        atomic_write_text(folder / ARCHITECTURE_FILE, stage.model.to_json())
        stats = store_weights(stage.model, folder / WEIGHTS_FILE)
        split_sha = None
        splits = RunDir(run).splits
        if splits.is_file():
            split_sha = sha256_file(splits)  # the manifest the run trained on
            _copy_manifest_relative(splits, folder / SPLITS_FILE)
        files = {f: sha256_file(folder / f) for f in MODEL_FILES + OPTIONAL_FILES if (folder / f).is_file()}
        sizes = {f: (folder / f).stat().st_size for f in files}
        release["models"][role] = {
            "experiment": stage.config.name,
            "paper": stage.config.paper,
            "config": config,
            "classes": list(stage.class_names),
            "run": str(run),
            "run_weights": stage.weights,
            "split_manifest_sha256": split_sha,
            "files": files,
            "bytes": sizes,
            **stats,
            **_run_summary(run),
        }
    release["total_bytes"] = sum(sum(m["bytes"].values()) for m in release["models"].values())
    atomic_write_json(out / RELEASE_FILE, release)
    atomic_write_text(out / CARD_FILE, render_model_card(release))
    write_checksums(out)
    return out / RELEASE_FILE


def _require_resolvable_manifest(role: str, run: PathLike) -> None:
    """Refuses a run whose splits.csv names images that are not there (before anything is written).

    The release's manifest is rewritten relative to the release folder from the resolved paths; a
    manifest that does not resolve (a release model folder restored at another depth than
    ``releases/vN``, so that its relative paths point elsewhere) would ship a manifest that
    evaluates nothing, silently.
    """
    splits = RunDir(run).splits
    if not splits.is_file():
        return
    missing = [r.path for r in read_manifest(splits) if not Path(r.path).is_file()]
    if missing:
        raise ValueError(f"--{role} {run}: its splits.csv names {len(missing)} image(s) that are not there, "
                         f"e.g. {missing[0]} (a release model folder restored at another depth than "
                         "releases/vN resolves its relative paths elsewhere)")


def _copy_manifest_relative(source: Path, target: Path) -> None:
    """The run's split manifest with paths relative to the release folder.

    A clone that keeps the data at the same place relative to itself (the project's layout:
    ``../shared/data`` beside the repository) evaluates the release on its test split wherever
    it is cloned. Same records, same order; `read_manifest` resolves the paths back.
    """
    write_manifest(read_manifest(source), target, relative=True)


def record_evaluation(path: PathLike, evaluation_dir: PathLike) -> Path:
    """Records the release's own evaluation (``make evaluate-release``) in release.json and its card.

    Reads ``evaluation_dir``: ``<model>/metrics.json`` (`cxr-cascade evaluate releases/vN/<model>`)
    replaces that model's ``evaluation`` (the numbers of the released float16 weights, on the split
    the evaluation names) and its chance-level mark; ``cascade*/metrics.json`` (the cascade, every
    rule) goes to ``cascade_evaluations``; ``ood-*/metrics.json`` (`evaluate --ood`) to
    ``ood_evaluations``; ``rules/rules.json`` (the rule comparison that chose ``cascade_rule``) to
    ``rule_comparison``. The weights are untouched; release.json, MODEL_CARD.md and SHA256SUMS are
    rewritten (so a verified release stays verified).

    Raises:
        ReleaseError: the release does not verify before the change.
        FileNotFoundError: ``evaluation_dir`` holds no metrics.json this function reads.
    """
    folder, release = read_release(path, checked=True)
    for model in release.get("models") or {}:  # nothing is rewritten over a damaged release
        verify_model(folder, release, model)
    root = Path(evaluation_dir)
    found = 0
    for role, entry in (release.get("models") or {}).items():
        metrics = _read_json(root / role / "metrics.json")
        if metrics:
            entry["evaluation"] = _evaluation_summary(metrics)
            entry["evaluated"] = {"folder": str(root / role), "split": metrics.get("split")}
            entry["chance_level"] = chance_level(entry["evaluation"])
            found += 1
    cascades = []
    for metrics_path in sorted(root.glob("cascade*/metrics.json")):
        metrics = _read_json(metrics_path) or {}
        cascades.append({"folder": str(metrics_path.parent), "rule": metrics.get("decision_rule"),
                         "split": metrics.get("split"), "stage2_run": metrics.get("stage2_run"),
                         "sections": _evaluation_summary(metrics)})
    oods = []
    for metrics_path in sorted(root.glob("ood-*/metrics.json")):
        metrics = _read_json(metrics_path) or {}
        for name, section in (metrics.get("models") or {}).items():
            oods.append({"folder": str(metrics_path.parent), "set": metrics.get("ood"), "model": name,
                         **{k: section.get(k) for k in ("n", "n_normal", "n_pneumonia", "n_patients",
                                                        "confusion", "confidence_intervals", "score", "call")}})
    rules = _read_json(root / "rules" / "rules.json")
    if not (found or cascades or oods or rules):
        raise FileNotFoundError(f"{root}: no <model>/metrics.json, cascade*/, ood-*/ or rules/rules.json "
                                "to record (run `make evaluate-release` first)")
    release["cascade_evaluations"] = cascades
    release["ood_evaluations"] = oods
    if rules:
        release["rule_comparison"] = rules
    release["evaluation_recorded_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    atomic_write_json(folder / RELEASE_FILE, release)
    atomic_write_text(folder / CARD_FILE, render_model_card(release))
    write_checksums(folder)
    return folder / RELEASE_FILE
