"""The shortcut audit proving itself on phantoms: ``python -m cxr_cascade.audit.demo --out DIR``.

Two tiny flat conv nets (``cam_features`` -> global average pooling -> ``logits``, the naming of
``cxr_cascade.models.build_classifier``) are trained on phantoms (``cxr_cascade.phantoms``) of
normal / bacterial / viral lungs:

- ``shortcut``: raw images carrying a planted marker whose position encodes the label with
  strength 1.0 (DeGrave et al. 2021's "shortcut": the label is readable outside the lungs);
- ``masked``: the same kind of images multiplied by their lung mask, as stage 2 of Lv et al.
  2020 is trained after U-Net segmentation, so nothing outside the lungs is left to read.

Each model is audited on held-out phantoms with the ground-truth lung and lesion masks; the
first must be flagged, the second not. Phantoms show that the machinery works, never that a
model diagnoses.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np

CLASSES = ("normal", "bacterial", "viral")


def phantom_arrays(n: int, size: int, seed: int, classes: Sequence[str] = CLASSES,
                   shortcut: str | None = "marker"):
    """``(images [n, S, S, 1] float32 in [0, 1], lung masks, lesion masks [n, S, S] uint8,
    labels [n])``; labels cycle through ``classes``; each image has its own seeded generator."""
    from cxr_cascade import phantoms

    images, lungs, lesions, labels = [], [], [], []
    for i in range(n):
        label = i % len(classes)
        ph = phantoms.render_phantom(classes[label], size, np.random.default_rng([seed, i]),
                                     shortcut=shortcut, text=False)
        images.append(ph.image)
        lungs.append(ph.lung_mask)
        lesions.append(ph.lesion_mask)
        labels.append(label)
    images = np.stack(images)[..., None].astype(np.float32) / 255.0
    return images, np.stack(lungs), np.stack(lesions), np.array(labels)


def tiny_net(size: int, num_classes: int = len(CLASSES), seed: int = 0):
    """A 4-conv flat functional classifier with the project's layer names (compiled, Adam)."""
    import keras

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


def train_and_audit(size: int = 64, n_train: int = 240, n_test: int = 90, epochs: int = 20,
                    seed: int = 0, method: str = "gradcam") -> dict:
    """Train both phantom models and audit them.

    Returns:
        ``{"shortcut": (model, result, maps, test_images), "masked": (...)}``.
    """
    from cxr_cascade.audit.report import run_audit

    train = phantom_arrays(n_train, size, seed=2 * seed + 1)
    test = phantom_arrays(n_test, size, seed=2 * seed + 2)
    # Sources assigned at random: a probe that decodes them would be a bug.
    sources = ["site_a" if i % 2 else "site_b" for i in range(n_test)]
    out = {}
    for name, masked in (("shortcut", False), ("masked", True)):
        x_train = train[0] * (train[1][..., None] > 0) if masked else train[0]
        x_test = test[0] * (test[1][..., None] > 0) if masked else test[0]
        model = tiny_net(size, seed=seed)
        model.fit(x_train, train[3], epochs=epochs, batch_size=32, verbose=0)
        result, maps = run_audit(model, x_test, test[3], test[1], CLASSES, lesion_masks=test[2],
                                 sources=sources, fill=0.0, method=method)
        out[name] = (model, result, maps, x_test)
    return out


def main(argv: list[str] | None = None) -> int:
    from cxr_cascade.audit.report import write_audit
    from cxr_cascade.evaluation.report import write_text_atomic
    from cxr_cascade.explain import overlay

    parser = argparse.ArgumentParser(prog="python -m cxr_cascade.audit.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--n-train", type=int, default=240)
    parser.add_argument("--n-test", type=int, default=90)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", choices=("gradcam", "gradcam++"), default="gradcam")
    args = parser.parse_args(argv)
    runs = train_and_audit(args.size, args.n_train, args.n_test, args.epochs, args.seed, args.method)
    out = Path(args.out)
    rows = ["| model | accuracy | lung attention / area | lungs removed | lungs only | chance | "
            "pointing game / baseline | source probe | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for name, (_, result, maps, images) in runs.items():
        figures = []
        for i in range(3):  # one image of each class
            rel = f"figures/{name}_{CLASSES[i]}.png"
            overlay.save_png(out / name / rel, overlay.side_by_side(images[i], maps[i], min_size=256))
            figures.append(rel)
        write_audit(out / name, result, figures, extra={"model": f"phantom {name} model"})
        att, abl, pg = result["lung_attention"], result["ablation"], result["pointing_game"]
        probe = result["source_probe"]["all"]
        rows.append(
            f"| {name} | {result['accuracy']:.3f} | {att['mean_share']:.3f} / {att['mean_area']:.3f} | "
            f"{abl['lungs_removed']:.3f} | {abl['lungs_only']:.3f} | {abl['chance']:.3f} | "
            f"{pg['score']:.3f} / {pg['baseline_lesion_share_of_lung']:.3f} | "
            f"{probe.get('balanced_accuracy', float('nan')):.3f} | "
            f"{'FLAGGED (' + ', '.join(k for k in ('attention', 'lungs_removed', 'lungs_only', 'pointing') if result['flag'][k]) + ')' if result['flag']['flagged'] else 'not flagged'} |"
        )
    summary = "\n".join([
        "# Shortcut audit on phantoms", "",
        f"Tiny conv nets, {args.size} px phantoms, {args.n_train} training / {args.n_test} test images, "
        f"{args.epochs} epochs, seed {args.seed}, {args.method}. Phantoms show that the machinery "
        "works, never that a model diagnoses.", "", *rows, "",
    ])
    write_text_atomic(out / "summary.md", summary)
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
