"""The shortcut audit proving itself on phantoms: ``python -m cxr_cascade.audit.demo --out DIR``.

Three tiny flat conv nets (``cam_features`` -> global average pooling -> ``logits``, the naming of
``cxr_cascade.models.build_classifier``) are trained on phantoms (``cxr_cascade.phantoms``) of
normal / bacterial / viral lungs, with the same recipe and seed:

- ``marker``: whole films carrying a planted marker below the lungs whose slot encodes the label
  (DeGrave et al. 2021's "shortcut"), strength 1.0: it must be **flagged**;
- ``clean``: the same whole films without any marker (``shortcut=None``, ``text=False``): the
  negative control, it must **not** be flagged. It calibrates the audit: a test it fires is
  dropped from every verdict (``cxr_cascade.audit.report.calibrate``);
- ``masked``: the marked films multiplied by their lung mask, as stage 2 of Lv et al. 2020 is
  trained after U-Net segmentation: it must **not** be flagged.

All three are audited on the same held-out marked films (the masked model on their lung-masked
version), with ground-truth lung and lesion masks and 95 % bootstrap CIs (each phantom is its own
patient). Phantoms also give a ground truth the audit never sees (``marker_oracle``): the same
test films with each marker moved to another label's slot, only the marker's pixels changed; the
rise of p(marker's label) it causes (``marker_effect``) is what the marker alone does to the
model, 0 for a model that reads only the lungs. ``--power`` also trains marker models at
strengths 1.0, 0.75, 0.5 and 0.0 (the probability that a training film's marker encodes its
label; otherwise it encodes a label drawn uniformly, so 0.0 carries no information) and states
the weakest strength still flagged.
Phantoms show that the machinery works, never that a model diagnoses.

Writes ``DIR/summary.json`` (``{"models": {"marker": {"flagged", "tests", ...}, "clean": ...,
"masked": ...}, "seed": 0, ...}``), ``DIR/summary.md`` and one audit report per model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from cxr_cascade import phantoms
from cxr_cascade.audit.report import FLAG_RULE_TEXT, calibrate, run_audit, write_audit
from cxr_cascade.evaluation.report import write_json_atomic, write_text_atomic
from cxr_cascade.explain import overlay

CLASSES = ("normal", "bacterial", "viral")
MODELS = ("marker", "clean", "masked")
POWER_STRENGTHS = (1.0, 0.75, 0.5, 0.0)


def phantom_arrays(n: int, size: int, seed: int, classes: Sequence[str] = CLASSES,
                   shortcut: str | None = "marker", strength: float = 1.0):
    """``(images [n, S, S, 1] float32 in [0, 1], lung masks, lesion masks [n, S, S] uint8,
    labels [n])``; labels cycle through ``classes``; each image has its own seeded generator.
    With probability ``strength`` the marker encodes the image's label, otherwise a label drawn
    uniformly from ``classes``."""
    images, lungs, lesions, labels = [], [], [], []
    for i in range(n):
        label = i % len(classes)
        rng = np.random.default_rng([seed, i])
        marked = classes[label]
        if shortcut is not None and strength < 1.0:
            draw = np.random.default_rng([seed, i, 7])
            if draw.random() >= strength:
                marked = classes[int(draw.integers(len(classes)))]
        ph = phantoms.render_phantom(classes[label], size, rng, shortcut=shortcut,
                                     shortcut_label=marked if shortcut else None, text=False)
        images.append(ph.image)
        lungs.append(ph.lung_mask)
        lesions.append(ph.lesion_mask)
        labels.append(label)
    images = np.stack(images)[..., None].astype(np.float32) / 255.0
    return images, np.stack(lungs), np.stack(lesions), np.array(labels)


def tiny_net(size: int, num_classes: int = len(CLASSES), seed: int = 0):
    """A 4-conv flat functional classifier with the project's layer names (compiled, Adam)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 1), name="image")
    x = inputs
    for i, filters in enumerate((8, 16, 16)):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_last")(x)
    x = keras.layers.Activation("linear", name="cam_features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    model = keras.Model(inputs, keras.layers.Softmax(name="probabilities")(logits), name="tiny")
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    return model


def conflicting_markers(n: int, size: int, seed: int, classes: Sequence[str] = CLASSES):
    """The test films of ``phantom_arrays(n, size, seed)`` with each marker moved to the slot of
    another label (same generator, so the same anatomy and lesions): ``(images, marker labels)``.

    The ground truth that only phantoms give: a model that reads the marker follows it on these
    films, a model that reads the lungs follows the label."""
    images, marks = [], []
    for i in range(n):
        label = i % len(classes)
        other = (label + 1 + (i // len(classes)) % (len(classes) - 1)) % len(classes)
        ph = phantoms.render_phantom(classes[label], size, np.random.default_rng([seed, i]),
                                     shortcut="marker", shortcut_label=classes[other], text=False)
        images.append(ph.image)
        marks.append(other)
    return np.stack(images)[..., None].astype(np.float32) / 255.0, np.array(marks)


def marker_oracle(model, conflict, marks, originals, labels) -> dict:
    """Ground truth from phantoms: what the marker alone does to a model's decisions.

    ``conflict`` and ``originals`` differ only in the marker's pixels (moved to the slot of label
    ``marks``). ``marker_effect`` is the mean rise of p(marker's label) caused by that move,
    ``follows_marker`` / ``follows_label`` how often the decision on ``conflict`` is the marker's
    label / the true label."""
    p_conflict = model.predict(conflict, verbose=0)
    p_original = model.predict(originals, verbose=0)
    rows = np.arange(len(marks))
    return {"marker_effect": float(np.mean(p_conflict[rows, marks] - p_original[rows, marks])),
            "follows_marker": float(np.mean(p_conflict.argmax(1) == marks)),
            "follows_label": float(np.mean(p_conflict.argmax(1) == labels))}


def _masked(arrays):
    return arrays[0] * (arrays[1][..., None] > 0)


def train_model(x, y, size: int, epochs: int, seed: int):
    model = tiny_net(size, seed=seed)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def train_and_audit(size: int = 64, n_train: int = 240, n_test: int = 150, epochs: int = 60,
                    seed: int = 0, method: str = "gradcam", n_boot: int = 1000,
                    power: bool = False) -> dict:
    """Train the three phantom models (and the power sweep), audit and calibrate them.

    Returns:
        ``{name: (model, result, maps, test_images)}`` for ``MODELS``, plus ``"power"``:
        ``{strength: result}`` when ``power`` (strength 1.0 is the marker model), and
        ``"train_seconds"``: ``{name: seconds}``.
    """
    test = phantom_arrays(n_test, size, seed=2 * seed + 2)
    # Sources assigned at random: a probe that decodes them would be a bug.
    sources = ["site_a" if i % 2 else "site_b" for i in range(n_test)]
    inputs = {
        "marker": (phantom_arrays(n_train, size, seed=2 * seed + 1), test[0]),
        "clean": (phantom_arrays(n_train, size, seed=2 * seed + 1, shortcut=None), test[0]),
    }
    inputs["masked"] = ((_masked(inputs["marker"][0]),) + inputs["marker"][0][1:], _masked(test))
    out: dict = {"train_seconds": {}}

    conflict, marks = conflicting_markers(n_test, size, seed=2 * seed + 2)

    def audit(model, x_test, masked=False):
        result, maps = run_audit(model, x_test, test[3], test[1], CLASSES, lesion_masks=test[2],
                                 sources=sources, fill=0.0, method=method, n_boot=n_boot, seed=seed)
        x = conflict * (test[1][..., None] > 0) if masked else conflict
        result["marker_oracle"] = marker_oracle(model, x, marks, x_test, test[3])
        return result, maps

    for name in MODELS:
        train, x_test = inputs[name]
        start = time.perf_counter()
        model = train_model(train[0], train[3], size, epochs, seed)
        out["train_seconds"][name] = round(time.perf_counter() - start, 1)
        result, maps = audit(model, x_test, masked=name == "masked")
        out[name] = (model, result, maps, x_test)
    results = {name: out[name][1] for name in MODELS}
    if power:
        power_results = {1.0: results["marker"]}
        for strength in POWER_STRENGTHS:
            if strength == 1.0:
                continue
            train = phantom_arrays(n_train, size, seed=2 * seed + 1, strength=strength)
            model = train_model(train[0], train[3], size, epochs, seed)
            power_results[strength] = audit(model, test[0])[0]
        for strength, result in power_results.items():
            results[f"marker@{strength}"] = result
        out["power"] = power_results
    calibrate(results, control="clean")
    return out


def power_turn(power: dict) -> float | None:
    """The weakest marker strength flagged such that every stronger one is flagged too."""
    turn = None
    for strength in sorted(power, reverse=True):
        if not power[strength]["flag"]["flagged"]:
            break
        turn = strength
    return turn


def _summary_entry(result: dict) -> dict:
    return {
        "flagged": bool(result["flag"]["flagged"]),
        "informative": bool(result["flag"]["informative"]),
        "fired": result["flag"]["fired"],
        "accuracy": result["accuracy"],
        "tests": result["tests"],
        "marker_oracle": result.get("marker_oracle"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxr_cascade.audit.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--n-train", type=int, default=240)
    parser.add_argument("--n-test", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates of the CIs")
    parser.add_argument("--power", action="store_true",
                        help="also train marker models at strengths 1.0, 0.75, 0.5, 0.0")
    parser.add_argument("--method", choices=("gradcam", "gradcam++"), default="gradcam")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    runs = train_and_audit(args.size, args.n_train, args.n_test, args.epochs, args.seed, args.method,
                           args.n_boot, args.power)
    out = Path(args.out)
    summary: dict = {
        "models": {name: _summary_entry(runs[name][1]) for name in MODELS},
        "seed": args.seed,
        "settings": {"size": args.size, "n_train": args.n_train, "n_test": args.n_test,
                     "epochs": args.epochs, "n_boot": args.n_boot, "method": args.method},
        "dropped_by_clean_control": runs["marker"][1]["flag"].get("dropped_by_control", []),
        "train_seconds": runs["train_seconds"],
        "flag_rule": FLAG_RULE_TEXT,
    }
    rows = ["| model | accuracy | marker effect (oracle) | outside swap (95 % CI) | "
            "attention - area (95 % CI) | lungs removed, skill kept (95 % CI) | verdict |",
            "|---|---|---|---|---|---|---|"]

    def cell(t):
        return "n/a" if t["value"] is None else f"{t['value']:.3f} ({t['low']:.3f} to {t['high']:.3f})"

    def row(name, result):
        t = result["tests"]
        fired = ", ".join(result["flag"]["fired"])
        verdict = f"FLAGGED ({fired})" if result["flag"]["flagged"] else "not flagged"
        oracle = result.get("marker_oracle") or {}
        follows = "n/a" if "marker_effect" not in oracle else f"{oracle['marker_effect']:.3f}"
        return (f"| {name} | {result['accuracy']:.3f} | {follows} | {cell(t['outside_swap'])} | "
                f"{cell(t['attention'])} | {cell(t['lungs_removed'])} | {verdict} |")

    for name in MODELS:
        _, result, maps, images = runs[name]
        figures = []
        for i in range(3):  # one image of each class
            rel = f"figures/{name}_{CLASSES[i]}.png"
            overlay.save_png(out / name / rel, overlay.side_by_side(images[i], maps[i], min_size=256))
            figures.append(rel)
        write_audit(out / name, result, figures, extra={"model": f"phantom {name} model"})
        rows.append(row(name, result))
    power_lines = []
    if "power" in runs:
        turn = power_turn(runs["power"])
        summary["power"] = {
            "strengths": {str(s): _summary_entry(r) for s, r in sorted(runs["power"].items(), reverse=True)},
            "flagged_down_to_strength": turn,
        }
        power_lines = ["", "Power: marker models trained at decreasing marker strength, audited on the "
                       "same films.", "", rows[0], rows[1]]
        power_lines += [row(f"marker strength {s}", r) for s, r in sorted(runs["power"].items(), reverse=True)]
        power_lines += ["", f"Flagged down to strength {turn}." if turn is not None else
                        "Not flagged even at strength 1.0."]
    summary["seconds"] = round(time.perf_counter() - start, 1)
    write_json_atomic(out / "summary.json", summary)
    text = "\n".join([
        "# Shortcut audit on phantoms", "",
        f"Tiny conv nets, {args.size} px phantoms, {args.n_train} training / {args.n_test} test images, "
        f"{args.epochs} epochs, seed {args.seed}, {args.method}, {args.n_boot} bootstrap replicates. "
        "Phantoms show that the machinery works, never that a model diagnoses.", "",
        *rows, *power_lines, "",
        "Tests dropped because the clean control fails them: "
        + (", ".join(summary["dropped_by_clean_control"]) or "none") + ".", "",
        "Rule: " + FLAG_RULE_TEXT, "",
    ])
    write_text_atomic(out / "summary.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
