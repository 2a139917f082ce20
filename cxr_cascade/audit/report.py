"""Run the whole shortcut audit on one model and test set, apply the calibrated rule, write a report.

Every test is a number with a 95 % patient-bootstrap CI and a margin; a test *fires* only when
its CI clears the margin. The rule was calibrated on phantoms against a **clean control**: a
whole-film model trained without any planted shortcut (``cxr_cascade.audit.demo``, model
``clean``). A test that such a model fails says nothing about shortcuts, so it does not enter the
verdict (and ``calibrate`` drops any test that the clean control of a run fires):

Used in the verdict (a model at least 0.1 above chance is **flagged** when any fires):

1. ``outside_swap``: the placebo-controlled effect of the film *outside* the lungs on the decision,
   the lungs held fixed (``cxr_cascade.audit.swap``): fires when its CI lies above
   ``OUTSIDE_MARGIN`` (0.025 of probability). The clean model's effect is 0 within its CI.
2. ``attention``: the mean per-image difference between the Grad-CAM share inside the lungs and the
   lungs' share of the image: fires when its CI lies below ``-ATTENTION_MARGIN`` (0.05: what a
   coarse Grad-CAM smears across the lung border; the old rule, without a margin, flagged 0.330 vs
   0.355 on the real stage-1 model).
3. ``lungs_removed``: the share of the skill above chance that survives with the lungs blanked:
   fires when its CI lies above 0.5 (the model classifies without the lungs).

Reported, not used (the clean control fails them, so they measure the test, not the model):

- ``lungs_only``: accuracy on the lungs alone. Blanking everything around the lungs is a
  distribution shift that sends every whole-film model to chance, clean or not.
- ``pointing``: the pointing game on lesion masks (phantoms), relative to a random lung point.
  The peak of a coarse Grad-CAM of a whole-film model misses small lesions whether or not it
  reads a shortcut.

The source probe is reported without a flag: on real data the source follows the label (all
COVID-19 images come from ieee8023), so a decodable source alone proves nothing; the probe within
each class is the number to read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from cxr_cascade.artifacts.layout import AuditDir
from cxr_cascade.audit.ablation import ablate, ablation_accuracies, chance_accuracy
from cxr_cascade.audit.attention import lung_attention
from cxr_cascade.audit.pointing import lesion_area_share, pointing_game
from cxr_cascade.audit.probe import pooled_features, source_probe, source_probe_within_classes
from cxr_cascade.audit.swap import outside_swap_effects
from cxr_cascade.evaluation.bootstrap import bootstrap_ci
from cxr_cascade.evaluation.report import write_json_atomic, write_text_atomic
from cxr_cascade.explain.gradcam import GradCAM

OUTSIDE_MARGIN = 0.025
ATTENTION_MARGIN = 0.05
SKILL_RETAINED_LIMIT = 0.5
MIN_SKILL = 0.1
USED_TESTS = ("outside_swap", "attention", "lungs_removed")
REPORTED_TESTS = ("lungs_only", "pointing")

FLAG_RULE_TEXT = (
    "a model at least 0.1 above chance (majority-class share) is flagged when the 95 % "
    "patient-bootstrap CI of any used test clears its margin: (1) outside swap: the rise of a "
    f"class's probability when only the film outside the lungs comes from that class is above "
    f"{OUTSIDE_MARGIN}; (2) attention: the Grad-CAM share inside the lungs minus the lungs' area "
    f"share is below -{ATTENTION_MARGIN}; (3) lungs removed: more than {SKILL_RETAINED_LIMIT} of the "
    "skill above chance survives with the lungs blanked. Lungs-only accuracy and the pointing game "
    "are reported, not used: a clean whole-film model fails them. Calibrated on phantoms against a "
    "clean control (python -m cxr_cascade.audit.demo). The source probe is reported, not flagged."
)


def _test(value: dict, margin: float, fires_above: bool, used: bool, what: str) -> dict:
    low, high = value.get("low"), value.get("high")
    if used and value.get("value") is not None and low is not None:
        fired = bool(low > margin) if fires_above else bool(high < margin)
    else:
        fired = False
    return {"value": value.get("value"), "low": low, "high": high, "margin": margin,
            "fires_when": ("CI above " if fires_above else "CI below ") + f"{margin:g}",
            "used": used, "fired": fired, "what": what}


def audit_tests(predict, images, labels, lung_masks, maps, num_classes: int,
                patient_ids: Sequence | None = None, lesion_maps=None, lesion_masks=None,
                fill: float | str = "mean", n_boot: int = 1000, seed: int = 0,
                pointing_tolerance: int = 0) -> dict:
    """The calibrated tests (module docstring) with patient-bootstrap CIs: ``{name: {"value",
    "low", "high", "margin", "fires_when", "used", "fired", "what"}}``."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    patient_ids = np.asarray([str(p) for p in (patient_ids if patient_ids is not None else range(n))])
    ci = lambda stat: bootstrap_ci(stat, patient_ids, n_boot=n_boot, seed=seed)  # noqa: E731
    tests: dict = {}

    effects = outside_swap_effects(predict, images, labels, lung_masks, num_classes, seed=seed)
    tests["outside_swap"] = _test(
        ci(lambda idx: {"v": float(np.nanmean(effects[idx]))})["v"], OUTSIDE_MARGIN, True, True,
        "rise of a class's probability when the film outside the lungs comes from that class")

    att = lung_attention(maps, lung_masks)
    diff = np.array([np.nan if s is None else s - a for s, a in zip(att["share"], att["area"])])
    if np.isfinite(diff).any():
        value = ci(lambda idx: {"v": float(np.nanmean(diff[idx]))
                                if np.isfinite(diff[idx]).any() else None})["v"]
    else:
        value = {"value": None, "low": None, "high": None}
    tests["attention"] = _test(value, -ATTENTION_MARGIN, False, True,
                               "Grad-CAM share inside the lungs minus the lungs' area share")

    images = np.asarray(images, dtype=np.float32)
    correct = {"full": np.asarray(predict(images)).argmax(1) == labels}
    for mode in ("lungs_removed", "lungs_only"):
        correct[mode] = np.asarray(predict(ablate(images, lung_masks, mode, fill))).argmax(1) == labels

    def retained(mode):
        def stat(idx):
            chance = chance_accuracy(labels[idx], num_classes)
            skill = correct["full"][idx].mean() - chance
            return {"v": float((correct[mode][idx].mean() - chance) / skill) if skill > 1e-9 else None}
        return ci(stat)["v"]

    tests["lungs_removed"] = _test(retained("lungs_removed"), SKILL_RETAINED_LIMIT, True, True,
                                   "share of the skill above chance kept with the lungs blanked")
    tests["lungs_only"] = _test(retained("lungs_only"), SKILL_RETAINED_LIMIT, False, False,
                                "share of the skill above chance kept on the lungs alone "
                                "(reported: a clean whole-film model fails it)")
    if lesion_maps is not None and lesion_masks is not None:
        game = pointing_game(lesion_maps, lesion_masks, pointing_tolerance)
        hits = np.array([np.nan if h is None else float(h) for h in game["per_image"]])
        base = lesion_area_share(lesion_masks, lung_masks)
        if np.isfinite(hits).any() and base is not None:
            value = ci(lambda idx: {"v": float(np.nanmean(hits[idx]) - base)
                                    if np.isfinite(hits[idx]).any() else None})["v"]
            tests["pointing"] = _test(value, 0.0, False, False,
                                      "pointing-game hit rate minus a random lung point's "
                                      "(reported: a clean whole-film model fails it)")
    return tests


def flag_rule(tests: dict, full_accuracy: float, chance: float) -> dict:
    """The verdict from ``audit_tests``: ``{"flagged", "informative", "reasons", "fired"
    (names of used tests that fired), one boolean per test name}``."""
    booleans = {name: bool(t["fired"] and t["used"]) for name, t in tests.items()}
    if full_accuracy - chance < MIN_SKILL:
        return {"flagged": False, "informative": False, **booleans, "fired": [], "reasons": [
            f"not informative: accuracy {full_accuracy:.3f} is not {MIN_SKILL} above chance "
            f"({chance:.3f}, the majority class's share); a model without skill uses nothing, "
            f"so where it looks means nothing"]}
    fired = [name for name, t in tests.items() if t["used"] and t["fired"]]
    reasons = [
        f"{name}: {tests[name]['value']:.3f} (95 % CI {tests[name]['low']:.3f} to "
        f"{tests[name]['high']:.3f}), {tests[name]['fires_when']}: {tests[name]['what']}"
        for name in fired
    ]
    return {"flagged": bool(fired), "informative": True, **booleans, "fired": fired, "reasons": reasons}


def calibrate(results: dict, control: str = "clean") -> list[str]:
    """Drops from every verdict the used tests that the clean control fires (a test the clean
    model fails cannot tell a shortcut from none), recomputing each ``result["flag"]`` in place.

    Args:
        results: ``{model name: run_audit result}``, holding ``control``.

    Returns:
        The names of the dropped tests (empty when the control passes every used test).
    """
    if control not in results:
        raise ValueError(f"`control` must name one of the results {sorted(results)}. "
                         f"Received: control={control!r}")
    dropped = [name for name, t in results[control]["tests"].items() if t["used"] and t["fired"]]
    for result in results.values():
        for name in dropped:
            result["tests"][name]["used"] = False
            result["tests"][name]["what"] += " (dropped: the clean control fails it)"
        abl = result["ablation"]
        result["flag"] = flag_rule(result["tests"], abl["full"], abl["chance"])
        result["flag"]["dropped_by_control"] = dropped
    return dropped


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
    n_boot: int = 1000,
    seed: int = 0,
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
        n_boot, seed: patient-bootstrap replicates of the tests' CIs and the seed of the CIs and
            of the outside swap's donors.

    Returns:
        ``(result dict, Grad-CAM maps [N, H, W])``; the maps are returned for overlays.
    """
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
    maps_true = None
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
    result["tests"] = audit_tests(
        predict, images, labels, lung_masks, maps, len(class_names), patient_ids,
        lesion_maps=maps_true, lesion_masks=lesion_masks, fill=fill, n_boot=n_boot, seed=seed,
        pointing_tolerance=pointing_tolerance)
    result["flag"] = flag_rule(result["tests"], ablation["full"], ablation["chance"])
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
    lines += [f"- {r}" for r in flag["reasons"]] or ["- every used test within its margin"]
    if result.get("tests"):
        lines += ["", "| test | value (95 % patient-bootstrap CI) | fires when | in the verdict | fired |",
                  "|---|---|---|---|---|"]
        for name, t in result["tests"].items():
            value = "n/a" if t["value"] is None else (
                f"{t['value']:.3f}" + ("" if t["low"] is None else f" ({t['low']:.3f} to {t['high']:.3f})"))
            lines.append(f"| {name}: {t['what']} | {value} | {t['fires_when']} | "
                         f"{'yes' if t['used'] else 'no'} | {'yes' if t['fired'] else 'no'} |")
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
        f"| accuracy, lungs removed | {_pct(abl['lungs_removed'])} | skill retained {_pct(abl['skill_retained_without_lungs'])} |",
        f"| accuracy, lungs only | {_pct(abl['lungs_only'])} | skill retained {_pct(abl['skill_retained_lungs_only'])} (reported, not used) |",
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
    files = AuditDir(out_dir)
    write_json_atomic(files.result, {**(extra or {}), **result})
    write_text_atomic(files.report, audit_markdown(result, figures=figures))
    return files.report
