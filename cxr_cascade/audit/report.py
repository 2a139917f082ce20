"""Run the whole shortcut audit on one model and test set, apply the flag rule, write a report.

Flag rule (``flag_rule``), on the audited test set, chance being the majority-class share and
"skill" the accuracy above chance. A model within 0.1 of chance on full images is reported as
*not informative* (it uses nothing, so where it looks means nothing). Otherwise it is flagged
as probably relying on shortcuts outside the lungs when any part fires:

1. **attention**: the mean share of Grad-CAM mass inside the lungs is below the mean lung share
   of the image (the model looks at the lungs *less* than a uniform map would);
2. **lungs removed**: with the lungs blanked the model keeps more than half of its skill
   (it classifies without seeing the lungs);
3. **lungs only**: with everything but the lungs blanked the model keeps less than half of its
   skill (the lungs alone do not carry its decisions);
4. **pointing** (only with lesion masks, i.e. phantoms): the Grad-CAM peak of the true class
   falls in the lesion less often than a random point of the lung would (the lesion's mean
   share of the lung).

Why several parts: on the phantoms a marker whose *position* encodes the label is decoded
against the surrounding anatomy, so blanking the lungs also destroys the shortcut (part 2 stays
silent), and a coarse 8 x 8 Grad-CAM of a tiny network smears the marker's evidence over the
lower lungs (part 1 stays silent), while the lungs-only images and the pointing game expose it
(parts 3 and 4). A model trained on lung-masked images passes parts 2 and 3 by construction of
its input; parts 1 and 4 still measure where its evidence lies. The source probe is reported
without a flag: on real data the source follows the label (all COVID-19 images come from
ieee8023), so a decodable source alone proves nothing; the probe within each class is the
number to read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from cxr_cascade.audit.ablation import ablation_accuracies
from cxr_cascade.audit.attention import lung_attention
from cxr_cascade.audit.pointing import lesion_area_share, pointing_game
from cxr_cascade.audit.probe import pooled_features, source_probe, source_probe_within_classes

FLAG_RULE_TEXT = (
    "a model at least 0.1 above chance (majority-class share) is flagged when (1) the mean share "
    "of Grad-CAM mass inside the lungs is below the lungs' share of the image, or (2) more than "
    "half of its skill above chance survives with the lungs blanked, or (3) less than half "
    "survives when only the lungs are shown, or (4) with lesion masks, the heatmap peak of the "
    "true class hits the lesion less often than a random point of the lung would. The source "
    "probe is reported, not flagged."
)
SKILL_RETAINED_LIMIT = 0.5
MIN_SKILL = 0.1


def flag_rule(attention: dict, ablation: dict, pointing: dict | None = None) -> dict:
    """Apply the documented flag rule.

    Args:
        attention: ``lung_attention`` summary; ablation: ``ablation_accuracies`` output;
        pointing: ``pointing_game`` output with ``baseline_lesion_share_of_lung``, or None.

    Returns:
        ``{"flagged", "informative", "reasons" (one sentence per part that fired),
        "attention", "lungs_removed", "lungs_only", "pointing"}`` (booleans per part).
    """
    parts = dict(attention=False, lungs_removed=False, lungs_only=False, pointing=False)
    if ablation["full"] - ablation["chance"] < MIN_SKILL:
        return {"flagged": False, "informative": False, **parts, "reasons": [
            f"not informative: accuracy {ablation['full']:.3f} is within {MIN_SKILL} of chance "
            f"({ablation['chance']:.3f}); the model uses nothing, so where it looks means nothing"]}
    reasons = []
    if attention.get("mean_share") is not None and attention["mean_share"] < attention["mean_area"]:
        parts["attention"] = True
        reasons.append(
            f"lung attention share {attention['mean_share']:.3f} is below the lung area share "
            f"{attention['mean_area']:.3f}"
        )
    without = ablation.get("skill_retained_without_lungs")
    only = ablation.get("skill_retained_lungs_only")
    if without is not None and without > SKILL_RETAINED_LIMIT:
        parts["lungs_removed"] = True
        reasons.append(
            f"with the lungs removed accuracy is {ablation['lungs_removed']:.3f} "
            f"(chance {ablation['chance']:.3f}, full {ablation['full']:.3f}): "
            f"{without:.0%} of the skill survives without lungs"
        )
    if only is not None and only < SKILL_RETAINED_LIMIT:
        parts["lungs_only"] = True
        reasons.append(
            f"on the lungs alone accuracy is {ablation['lungs_only']:.3f} "
            f"(chance {ablation['chance']:.3f}, full {ablation['full']:.3f}): "
            f"only {max(only, 0.0):.0%} of the skill comes from the lungs"
        )
    if pointing and pointing.get("score") is not None and pointing.get("baseline_lesion_share_of_lung") is not None:
        if pointing["score"] < pointing["baseline_lesion_share_of_lung"]:
            parts["pointing"] = True
            reasons.append(
                f"the heatmap peak falls in the lesion in {pointing['score']:.0%} of images, less "
                f"than a random point of the lung would ({pointing['baseline_lesion_share_of_lung']:.0%})"
            )
    return {"flagged": any(parts.values()), "informative": True, **parts, "reasons": reasons}


def run_audit(
    model,
    images,
    labels,
    lung_masks,
    class_names: Sequence[str],
    lesion_masks=None,
    sources: Sequence[str] | None = None,
    patient_ids: Sequence | None = None,
    method: str = "gradcam",
    fill: float | str = "mean",
    batch_size: int = 32,
    pointing_tolerance: int = 0,
) -> tuple[dict, np.ndarray]:
    """All four audits of ``model`` on one test set.

    Args:
        model: flat functional classifier (``cam_features`` -> pooling -> ``logits``).
        images: float32 ``[N, H, W, C]`` in the model's input range. labels: int ``[N]``.
        lung_masks: ``[N, h, w]`` (ground truth or U-Net), non-zero = lung.
        class_names: the model's classes.
        lesion_masks: optional ``[N, h, w]`` for the pointing game (phantoms have them).
        sources, patient_ids: optional, for the source probe (grouped by patient).
        method: ``"gradcam"`` or ``"gradcam++"``.

    Returns:
        ``(result dict, Grad-CAM maps [N, H, W])``; the maps are returned for overlays.
    """
    from cxr_cascade.explain.gradcam import GradCAM  # TensorFlow only when auditing

    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    predict = lambda x: model.predict(x, batch_size=batch_size, verbose=0)  # noqa: E731
    probs = predict(images)
    predicted = probs.argmax(axis=1)
    maps, _ = GradCAM(model, method)(images, class_index=predicted, batch_size=batch_size)
    attention = lung_attention(maps, lung_masks)
    ablation = ablation_accuracies(predict, images, labels, lung_masks, fill)
    result: dict = {
        "n": int(len(images)),
        "class_names": list(class_names),
        "method": method,
        "accuracy": float((predicted == labels).mean()),
        "lung_attention": {k: v for k, v in attention.items() if k not in ("share", "area", "ratio")},
        "ablation": ablation,
    }
    if lesion_masks is not None:
        # Where the model points for the true class: lesions are evidence of the true label.
        maps_true, _ = GradCAM(model, method)(images, class_index=labels, batch_size=batch_size)
        game = pointing_game(maps_true, lesion_masks, pointing_tolerance)
        result["pointing_game"] = {k: v for k, v in game.items() if k != "per_image"}
        result["pointing_game"]["baseline_lesion_share_of_lung"] = lesion_area_share(lesion_masks, lung_masks)
    if sources is not None:
        features = pooled_features(model, images, batch_size=batch_size)
        label_names = [class_names[i] for i in labels]
        result["source_probe"] = {
            "all": source_probe(features, sources, patient_ids),
            "within_class": source_probe_within_classes(features, sources, label_names, patient_ids),
        }
    result["flag"] = flag_rule(attention, ablation, result.get("pointing_game"))
    result["per_image"] = {"lung_share": attention["share"], "lung_area": attention["area"]}
    return result, maps


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def audit_markdown(result: dict, title: str = "Shortcut audit", figures: Sequence[str] = ()) -> str:
    """Markdown report of one ``run_audit`` result."""
    flag = result["flag"]
    att = result["lung_attention"]
    abl = result["ablation"]
    lines = [
        f"# {title}",
        "",
        "**Verdict: " + ("FLAGGED: probable shortcut learning" if flag["flagged"] else
                         "not flagged" if flag.get("informative", True) else
                         "not informative (model at chance)") + ".**",
        "",
    ]
    lines += [f"- {r}" for r in flag["reasons"]] or ["- every part of the rule within its limits"]
    lines += [
        "",
        f"{result['n']} test images, accuracy {result['accuracy']:.3f}, heatmaps: {result['method']}.",
        "",
        "| check | value | reference |",
        "|---|---|---|",
        f"| lung attention share (mean) | {_pct(att['mean_share'])} | lung area share {_pct(att['mean_area'])} |",
        f"| median attention / area ratio | {_pct(att['median_ratio'])} | 1.0 = uniform map |",
        f"| images with share below lung area | {_pct(att['fraction_below_area'])} | |",
        f"| accuracy, full images | {_pct(abl['full'])} | chance {_pct(abl['chance'])} |",
        f"| accuracy, lungs removed | {_pct(abl['lungs_removed'])} | skill retained {_pct(abl['skill_retained_without_lungs'])} (flag > {SKILL_RETAINED_LIMIT}) |",
        f"| accuracy, lungs only | {_pct(abl['lungs_only'])} | skill retained {_pct(abl['skill_retained_lungs_only'])} (flag < {SKILL_RETAINED_LIMIT}) |",
    ]
    if "pointing_game" in result:
        pg = result["pointing_game"]
        lines.append(
            f"| pointing game (lesion masks, tolerance {pg['tolerance']} px) | {_pct(pg['score'])} "
            f"({pg['hits']}/{pg['hits'] + pg['misses']}) | lesion share of lung {_pct(pg['baseline_lesion_share_of_lung'])} |"
        )
    if "source_probe" in result:
        probe = result["source_probe"]["all"]
        if "skipped" in probe:
            lines.append(f"| source probe | skipped: {probe['skipped']} | |")
        else:
            lines.append(
                f"| source probe, balanced accuracy | {_pct(probe['balanced_accuracy'])} | chance {_pct(probe['chance_balanced'])} |"
            )
        for label, within in result["source_probe"]["within_class"].items():
            if "skipped" not in within:
                lines.append(
                    f"| source probe within {label} | {_pct(within['balanced_accuracy'])} | chance {_pct(within['chance_balanced'])} |"
                )
    lines += ["", "Flag rule: " + FLAG_RULE_TEXT, ""]
    lines += [f"![Grad-CAM overlay]({f})" for f in figures]
    return "\n".join(lines) + "\n"


def write_audit(out_dir, result: dict, figures: Sequence[str] = (), extra: dict | None = None) -> Path:
    """Write ``audit.json`` and ``audit.md`` under ``out_dir`` (atomically)."""
    from cxr_cascade.evaluation.report import write_json_atomic, write_text_atomic

    out_dir = Path(out_dir)
    write_json_atomic(out_dir / "audit.json", {**(extra or {}), **result})
    write_text_atomic(out_dir / "audit.md", audit_markdown(result, figures=figures))
    return out_dir / "audit.md"
