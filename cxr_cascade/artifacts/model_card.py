"""A release's MODEL_CARD.md, generated from its release.json (the numbers are never typed by hand)."""

from __future__ import annotations

from typing import Optional

from cxr_cascade.artifacts.release import WEIGHTS_FILE

__all__ = ["chance_level", "render_model_card"]


def chance_level(evaluation: Optional[dict]) -> Optional[str]:
    """Why a classifier is no better than chance on its test split, or None.

    The rule: the 95 % patient-bootstrap CI of the test macro AUC reaches down to 0.5 (a model
    whose ranking of the films is indistinguishable from a coin's). `evaluation` is a release
    entry's ``evaluation`` (section -> n, confidence_intervals); the U-Net has no AUC and is
    never marked.
    """
    for name, section in (evaluation or {}).items():
        ci = ((section or {}).get("confidence_intervals") or {}).get("macro_auc")
        if isinstance(ci, dict) and isinstance(ci.get("low"), (int, float)) and ci["low"] <= 0.5:
            return (f"{name}: test macro AUC {ci['value']:.3f} (95 % CI {ci['low']:.3f}-"
                    f"{ci['high']:.3f}, n={section.get('n')}) reaches 0.5: no better than chance")
    return None


def _fmt(value, digits=3) -> str:
    return "n/a" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def _metric_lines(entry: dict) -> list[str]:
    lines = []
    for name, section in (entry.get("evaluation") or {}).items():
        counts = section.get("class_counts") or {}
        for metric, ci in (section.get("confidence_intervals") or {}).items():
            if isinstance(ci, dict) and "value" in ci:
                n = _fmt(section.get("n"))
                cls = metric.split("/", 1)[0] if "/" in metric else None
                if cls in counts:  # the class count beside a per-class number
                    n = f"{n} ({cls} {_fmt(counts[cls])})"
                lines.append(f"| {name} | {metric} | {_fmt(ci['value'])} | "
                             f"{_fmt(ci.get('low'))}-{_fmt(ci.get('high'))} | {n} |")
    if not lines:
        counts = (entry.get("split_counts") or {}).get(entry.get("test_split") or "test")
        if isinstance(counts, dict):  # class counts beside the numbers
            counts = f"{sum(counts.values())} ({', '.join(f'{k} {v}' for k, v in counts.items())})"
        for metric, value in (entry.get("test_metrics") or {}).items():
            lines.append(f"| {entry.get('test_split') or 'test'} | {metric} | {_fmt(value)} | "
                         f"not evaluated (run `cxr-cascade evaluate`) | {_fmt(counts)} |")
    return lines or ["| - | no metrics recorded | - | - | - |"]


CARD_TEMPLATE = """# Model card: cxr-cascade release {name}

Generated from `release.json` by `cxr-cascade release build` ({created}); every number below is
copied from it. Do not edit by hand: rebuild the release.

## Intended use
Research on chest X-ray classification and its failure modes (Lv et al. 2020's Cascade-SEMEnet,
reproduced). **Not a medical device; not for diagnosis, triage or any clinical decision.**

{warnings}## Models
| model | experiment | image size | parameters | stored size (MB) | weights sha256 |
|---|---|---|---|---|---|
{models}

Total stored: {total_mb:.1f} MB (kernels float16, biases and batch-norm statistics float32).

## Training data and known biases
- Stage 1 (normal / bacterial / viral) is trained on Kermany et al. 2018 only: **pediatric**
  films (children aged 1-5) from **one hospital** in Guangzhou. Adults, other hospitals and other
  devices are outside its training distribution.
- Stage 2 (COVID-19 / other viral) is trained on the ieee8023 covid-chestxray-dataset: mostly
  **adult** films from many sources, many of them figures cut from papers (tints, arrows, text).
  Its negative class is small; a class drawn from one source can be recognised by the source.
- The U-Net is trained on V7 Labs' lung polygons over Kermany and ieee8023 images.

## Metrics (test split; 95 % patient-bootstrap CIs where the run was evaluated)
| section | metric | value | 95 % CI | n |
|---|---|---|---|---|
{metrics}

## Shortcut audit
{audit}

## Failure modes to expect
- Stage 1 has seen only children: its output on adult films is not validated.
- COVID-19 films and the other classes come from different sources and ages: a high stage-2 or
  cascade score can reflect the source (markers, text, tints), not the disease.
- Lateral views, CT slices and non-chest images are not rejected; the output is still a class.
- The U-Net's training set holds Kermany and ieee8023 films, some of them in the classifiers'
  test splits: lung masks (and stage 2's lung-masked inputs) on those films can be better than
  on films it has never seen.
- The cascade's COVID-19 output is only reached through stage 1's "viral" decision (the paper's
  gate rule): a COVID-19 film stage 1 calls bacterial is never called COVID-19.

## Provenance
{provenance}
"""


def render_model_card(release: dict) -> str:
    """MODEL_CARD.md text from a release.json dict (the numbers are never typed by hand)."""
    models = release.get("models") or {}
    rows, metrics, audits, provenance = [], [], [], []
    for role, entry in models.items():
        size = (entry.get("config") or {}).get("preprocess", {}).get("image_size")
        mb = sum((entry.get("bytes") or {}).values()) / 1e6
        rows.append(f"| {role} | {entry.get('experiment')} | {size} | {entry.get('parameters'):,} | "
                    f"{mb:.1f} | `{(entry.get('files') or {}).get(WEIGHTS_FILE, '')[:16]}...` |")
        metrics.extend(f"| {role}: " + line[2:] for line in _metric_lines(entry))
        audit = entry.get("shortcut_audit")
        if role != "unet":  # the audit asks whether a classifier reads the lungs
            audits.append(f"- {role}: " + (
                f"**{audit['verdict']}**" + "".join(f"; {r}" for r in audit["reasons"]) if audit
                else "no audit recorded for this run (`cxr-cascade audit RUN` before `release build`)"))
        machine = entry.get("machine") or {}
        hours = entry.get("training_seconds")
        provenance.append(
            f"- {role}: `{entry.get('command')}`; {entry.get('epochs')} epochs (best "
            f"{entry.get('best_epoch')}), {_fmt(hours / 3600 if hours else None, 2)} h on "
            f"{machine.get('platform', 'unknown machine')} ({machine.get('cpu_count', '?')} CPUs); "
            f"split manifest sha256 `{entry.get('split_manifest_sha256')}`"
        )
    warnings = "".join(
        f"**Warning: {role} is no better than chance.** {entry['chance_level']}; its output "
        "carries no information (see Metrics).\n\n"
        for role, entry in models.items() if entry.get("chance_level"))
    return CARD_TEMPLATE.format(
        name=release.get("name"), created=release.get("created_utc"), warnings=warnings,
        models="\n".join(rows), total_mb=release.get("total_bytes", 0) / 1e6,
        metrics="\n".join(metrics), audit="\n".join(audits), provenance="\n".join(provenance),
    )
