"""A release's MODEL_CARD.md, generated from its release.json (the numbers are never typed by hand)."""

from __future__ import annotations

from typing import Optional

from cxr_cascade.artifacts.release import WEIGHTS_FILE
from cxr_cascade.registry import DEFAULT_CASCADE_RULE

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
- Stage 2 (COVID-19 / {stage2_negative}) is trained on the ieee8023 covid-chestxray-dataset: mostly
  **adult** films from many sources, many of them figures cut from papers (tints, arrows, text).
  Its negative class is small; a class drawn from one source can be recognised by the source.
- The U-Net is trained on V7 Labs' lung polygons over Kermany and ieee8023 images.

## Metrics (95 % patient-bootstrap CIs where the model was evaluated)
{evaluated}
| section | metric | value | 95 % CI | n |
|---|---|---|---|---|
{metrics}
{cascade}{rules}{ood}
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
- {rule_failure}

## Provenance
{provenance}
"""


STAGE2_NEGATIVES = {
    "ieee8023_viral": "other viral pneumonia",
    "ieee8023_plus_kermany_viral": "other viral pneumonia (ieee8023 and Kermany's pediatric viral films)",
    "ieee8023_other_pneumonia": "every other pneumonia of ieee8023 (viral, bacterial, fungal, unstated)",
}
RULE_FAILURES = {
    "gate": "The cascade's COVID-19 output is only reached through stage 1's \"viral\" decision (the "
            "paper's gate rule): a COVID-19 film stage 1 calls bacterial or normal is never called COVID-19.",
    "soft": "The cascade's call is the argmax of the products p1 * p2 (rule soft): a COVID-19 film needs "
            "p(viral) from stage 1 as well as p(COVID-19) from stage 2, so one stage 1 calls bacterial "
            "with confidence is rarely called COVID-19.",
    "pneumonia": "Stage 2 decides every film stage 1 calls bacterial or viral (rule pneumonia): a COVID-19 "
                 "film stage 1 calls normal is never called COVID-19, and a bacterial or other viral film "
                 "stage 2 mistakes for COVID-19 is called COVID-19.",
}
COVID = "covid19"


def _ci(ci) -> str:
    if not isinstance(ci, dict) or ci.get("value") is None:
        return "n/a"
    return f"{_fmt(ci['value'])} ({_fmt(ci.get('low'))}-{_fmt(ci.get('high'))})"


def _cascade_section(release: dict) -> str:
    """The release's cascade on its evaluation, every rule (`record_evaluation`)."""
    lines = []
    for ev in release.get("cascade_evaluations") or []:
        for name, section in (ev.get("sections") or {}).items():
            if not name.startswith("cascade"):
                continue
            rule = ev.get("rule") if name == "cascade" else name.split("_", 1)[1]
            cis = section.get("confidence_intervals") or {}
            counts = section.get("class_counts") or {}
            lines.append(
                f"| {rule}{' (release)' if rule == release.get('cascade_rule') else ''} | "
                f"{_fmt(section.get('n'))} | {_ci(cis.get('accuracy'))} | {_ci(cis.get('macro_f1'))} | "
                f"{_ci(cis.get(COVID + '/recall'))} | {_ci(cis.get(COVID + '/specificity'))} | "
                f"{_fmt(counts.get(COVID))} |")
    if not lines:
        return ""
    source = ", ".join(f"`{ev.get('folder')}` (split: {ev.get('split')})"
                       for ev in release.get("cascade_evaluations") or [])
    return ("\n## The cascade, every rule (this release's models)\n"
            f"Evaluated by `cxr-cascade evaluate` into {source}; 95 % patient-bootstrap CIs.\n\n"
            "| rule | n | 4-class accuracy | macro F1 | COVID-19 sensitivity | COVID-19 specificity | "
            "COVID-19 films |\n|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n")


def _rules_section(release: dict) -> str:
    """How ``cascade_rule`` was chosen (`tools/compare_rules.py`'s rules.json)."""
    comparison = release.get("rule_comparison")
    if not comparison:
        return ""
    rows = [f"| {r.get('rule')} | {r.get('stage2')} | {r.get('split')} | {_fmt(r.get('balanced_accuracy'))} | "
            f"{_ci(r.get('accuracy'))} | {_ci(r.get('covid19_sensitivity'))} | {_ci(r.get('covid19_specificity'))} | "
            f"{_fmt(r.get('n'))} |" for r in comparison.get("rows") or []]
    return ("\n## How the rule was chosen\n"
            f"{comparison.get('criterion', '')}\n\n**Choice: {comparison.get('choice', {}).get('rule')}** "
            f"with stage 2 `{comparison.get('choice', {}).get('stage2')}`: {comparison.get('reason', '')}\n\n"
            "| rule | stage 2 | split | balanced accuracy | accuracy | COVID-19 sensitivity | "
            "COVID-19 specificity | n |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def _ood_section(release: dict) -> str:
    """Stage 1 out of distribution (`cxr-cascade evaluate --ood`)."""
    lines = []
    for ev in release.get("ood_evaluations") or []:
        cis = ev.get("confidence_intervals") or {}
        conf = ev.get("confusion") or {}
        lines.append(
            f"| {ev.get('set')} | {ev.get('model')} | {_fmt(ev.get('n_normal'))} / {_fmt(ev.get('n_pneumonia'))} | "
            f"{_ci(cis.get('auc'))} | {_ci(cis.get('sensitivity'))} | {_ci(cis.get('specificity'))} | "
            f"{_ci(cis.get('accuracy'))} | {_fmt(conf.get('tn'))} of {_fmt(ev.get('n_normal'))} |")
    if not lines:
        return ""
    return ("\n## Out of distribution: stage 1 on adult films\n"
            "Normal against pneumonia (stage 1's bacterial and viral collapsed; score p(bacterial) + "
            "p(viral)) on adult frontal films stage 1 never saw; 95 % patient-bootstrap CIs. An AUC "
            "whose CI reaches 0.5 means stage 1 does not tell adult normal lungs from adult pneumonia.\n\n"
            "| set | model | normal / pneumonia films | ROC AUC | sensitivity | specificity | accuracy | "
            "normal films called normal |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n")


def render_model_card(release: dict) -> str:
    """MODEL_CARD.md text from a release.json dict (the numbers are never typed by hand)."""
    models = release.get("models") or {}
    rows, metrics, audits, provenance, evaluated = [], [], [], [], []
    for role, entry in models.items():
        where = entry.get("evaluated") or {}
        if where:
            evaluated.append(f"- {role}: `cxr-cascade evaluate` into `{where.get('folder')}` "
                             f"(split: {where.get('split') or 'test'})")
        elif entry.get("evaluation"):
            evaluated.append(f"- {role}: its run's test split")
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
            + (f"; taken unchanged from release {entry['from_release'].get('name')}"
               if entry.get("from_release") else "")
        )
    warnings = "".join(
        f"**Warning: {role} is no better than chance.** {entry['chance_level']}; its output "
        "carries no information (see Metrics).\n\n"
        for role, entry in models.items() if entry.get("chance_level"))
    negative = ((models.get("stage2") or {}).get("config") or {}).get("stage2_negative")
    return CARD_TEMPLATE.format(
        name=release.get("name"), created=release.get("created_utc"), warnings=warnings,
        models="\n".join(rows), total_mb=release.get("total_bytes", 0) / 1e6,
        evaluated="\n".join(evaluated) + "\n" if evaluated else "",
        metrics="\n".join(metrics), audit="\n".join(audits), provenance="\n".join(provenance),
        stage2_negative=STAGE2_NEGATIVES.get(negative, "other viral"),
        rule_failure=RULE_FAILURES[release.get("cascade_rule", DEFAULT_CASCADE_RULE)],
        cascade=_cascade_section(release), rules=_rules_section(release), ood=_ood_section(release),
    )
