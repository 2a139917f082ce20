"""Train a classifier where TensorFlow is absent: Keras 3 on JAX or PyTorch, data in memory.

The project's trainer (`cxr-cascade train`) runs on TensorFlow's engine with tf.data. Rented
accelerators often carry JAX or PyTorch only; this module trains the very same Keras builders
there from a split manifest, with the same stage-1 recipe (CLAHE on a random fraction of the
training images each epoch, OpenCV's algorithm through `cxr_cascade.numpy_clahe`). It imports
neither TensorFlow nor OpenCV (the manifest is read by the stdlib-only `pipelines.records`), and
writes the weights as float16 shards small enough to copy back, plus a JSON log with per-epoch
metrics.

    KERAS_BACKEND=jax python -m cxr_cascade.portable --manifest split.csv --out run/ \
        --backbone resnet50 --se-reduction 16 --moex --image-size 224 --epochs 80

Images are decoded with Pillow, converted to one channel (ITU-R 601 luma) and scaled to [0, 1]
float32, the range the TF pipeline feeds the models.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

STAGE1_CLASSES = ("normal", "bacterial", "viral")


def load_images(paths: list[str], size: int) -> np.ndarray:
    """uint8 [N, size, size] grey images (Pillow decode, luma, bilinear stretch)."""
    from PIL import Image

    out = np.empty((len(paths), size, size), np.uint8)
    for index, path in enumerate(paths):
        with Image.open(path) as image:
            image = image.convert("L")
            if image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            out[index] = np.asarray(image)
    return out


def save_weights_fp16(model, out_dir: Path, shard_bytes: int = 14 * 2**20) -> list[str]:
    """Write the model's weights as float16 .npz shards (`weights-000.npz`, ...)."""
    arrays = [np.asarray(w, dtype=np.float16) for w in model.get_weights()]
    shards, current, size = [], {}, 0
    for index, array in enumerate(arrays):
        if current and size + array.nbytes > shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[f"w{index:05d}"] = array
        size += array.nbytes
    shards.append(current)
    names = []
    for number, shard in enumerate(shards):
        name = f"weights-{number:03d}.npz"
        tmp = out_dir / (name + ".tmp.npz")
        np.savez(tmp, **shard)
        os.replace(tmp, out_dir / name)
        names.append(name)
    return names


def load_weights_fp16(model, folder: Path) -> None:
    """Load shards written by `save_weights_fp16` into a model of the same architecture."""
    arrays = {}
    for shard in sorted(Path(folder).glob("weights-*.npz")):
        with np.load(shard) as data:
            arrays.update({key: data[key] for key in data.files})
    weights = [arrays[key] for key in sorted(arrays)]
    model.set_weights([w.astype(np.float32) for w in weights])


def import_run(
    portable_dir: Path,
    experiment: str,
    manifest: Path,
    run_dir: Path,
    overrides: list[str] | None = None,
) -> Path:
    """Turns a portable run into a project run directory that `evaluate`, `gradcam`, `audit`
    and `export` read: resolved config, split manifest, `best.weights.h5`, history, and the
    environment of both machines. Runs on the TensorFlow backend.

    Args:
        portable_dir: the `--out` folder of a portable run (weight shards, portable_run.json).
        experiment: the experiment whose architecture the portable run trained, e.g.
            "table4_resnet50_seme", with `overrides` (`key=value`) such as image_size=224.
        manifest: the split manifest the portable run read.
        run_dir: the run directory to create (must not exist).
    """
    from cxr_cascade.config import load_experiment
    from cxr_cascade.training.run_dir import (
        RunDir,
        atomic_write_json,
        atomic_write_text,
        atomic_write_with,
        capture_environment,
        sha256_file,
    )
    from cxr_cascade.training.callbacks import write_history_csv
    from cxr_cascade.training.runner import build_model
    from pipelines.records import read_manifest, write_manifest

    if run_dir.exists():
        raise FileExistsError(f"run directory already exists: {run_dir}")
    summary = json.loads((portable_dir / "portable_run.json").read_text())
    config = load_experiment(experiment, overrides)
    model = build_model(config)
    load_weights_fp16(model, portable_dir)
    run = RunDir(run_dir)
    run_dir.mkdir(parents=True)
    atomic_write_text(run.config, config.to_json())
    write_manifest(read_manifest(manifest), run.splits)
    atomic_write_text(run.splits_hash, sha256_file(run.splits) + "\n")
    atomic_write_with(run.best_weights, model.save_weights, suffix=".weights.h5")
    write_history_csv(run.history_csv, summary["history"])
    atomic_write_json(
        run.environment,
        {
            "trained_with": "cxr_cascade.portable (Keras on a non-TensorFlow backend)",
            "portable_run": {k: v for k, v in summary.items() if k != "history"},
            "imported_on": capture_environment(),
        },
    )
    atomic_write_text(
        run.command,
        "python -m cxr_cascade.portable "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in summary["args"].items())
        + "\n",
    )
    return run_dir


def _import_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxr_cascade.portable import")
    parser.add_argument("portable_dir", type=Path)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    run = import_run(args.portable_dir, args.experiment, args.manifest, args.run_dir, args.overrides)
    print(f"imported {args.portable_dir} into {run}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["import"]:
        return _import_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--se-reduction", type=int, default=None)
    parser.add_argument("--moex", action="store_true")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--clahe-fraction", type=float, default=0.4)
    parser.add_argument("--mixed-precision", default=None, help="e.g. mixed_bfloat16")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds; stop after the epoch that passes it")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras

    from cxr_cascade.models import MoEx, build_classifier
    from cxr_cascade.numpy_clahe import clahe_numpy
    from pipelines.records import read_manifest  # stdlib only: no TensorFlow needed

    keras.utils.set_random_seed(args.seed)
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy(args.mixed_precision)
    args.out.mkdir(parents=True, exist_ok=True)

    records = read_manifest(args.manifest)
    index = {name: i for i, name in enumerate(STAGE1_CLASSES)}
    splits = {}
    t0 = time.time()
    for split in ("train", "val", "test"):
        part = [r for r in records if r.split == split]
        images = load_images([r.path for r in part], args.image_size)
        labels = np.array([index[r.label] for r in part], np.int32)
        splits[split] = (images, labels)
    train_images, train_labels = splits["train"]
    train_clahe = np.stack([clahe_numpy(im) for im in train_images])
    load_s = time.time() - t0
    print(f"loaded {[len(v[1]) for v in splits.values()]} images in {load_s:.1f} s", flush=True)

    model = build_classifier(
        args.backbone,
        len(STAGE1_CLASSES),
        input_shape=(args.image_size, args.image_size, 1),
        head="gap",
        se_reduction=args.se_reduction,
        moex=MoEx() if args.moex else None,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(args.learning_rate, momentum=args.momentum),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )

    def as_input(images: np.ndarray) -> np.ndarray:
        return (images.astype(np.float32) / 255.0)[..., None]

    val_x, val_y = as_input(splits["val"][0]), splits["val"][1]
    test_x, test_y = as_input(splits["test"][0]), splits["test"][1]
    rng = np.random.default_rng(args.seed)
    history, best = [], {"val_accuracy": -1.0}
    start = time.time()
    for epoch in range(args.epochs):
        # The paper's stage-1 recipe: CLAHE on a fresh random 40 % of the images each epoch.
        use_clahe = rng.random(len(train_labels)) < args.clahe_fraction
        # Whole batches only: one compiled step shape, as tf.data's drop_remainder gives.
        order = rng.permutation(len(train_labels))
        order = order[: len(order) - len(order) % args.batch_size]
        x = as_input(np.where(use_clahe[order, None, None], train_clahe[order], train_images[order]))
        epoch_start = time.time()
        fit = model.fit(
            x, train_labels[order], batch_size=args.batch_size, epochs=1, shuffle=False, verbose=2
        )
        val_loss, val_acc = model.evaluate(val_x, val_y, batch_size=128, verbose=0)
        record = {
            "epoch": epoch + 1,
            "loss": float(fit.history["loss"][0]),
            "accuracy": float(fit.history["accuracy"][0]),
            "val_loss": float(val_loss),
            "val_accuracy": float(val_acc),
            "epoch_s": time.time() - epoch_start,
        }
        history.append(record)
        print(json.dumps(record), flush=True)
        if record["val_accuracy"] > best["val_accuracy"]:
            best = dict(record)
            save_weights_fp16(model, args.out)
        if args.time_limit and time.time() - start > args.time_limit:
            break

    load_weights_fp16(model, args.out)
    probabilities = model.predict(test_x, batch_size=128, verbose=0)
    np.save(args.out / "test_probabilities.npy", probabilities.astype(np.float32))
    summary = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "backend": keras.backend.backend(),
        "epochs_run": len(history),
        "best_epoch": best.get("epoch"),
        "test_accuracy_best_val": float((probabilities.argmax(1) == test_y).mean()),
        "train_wall_s": time.time() - start,
        "load_s": load_s,
        "history": history,
    }
    (args.out / "portable_run.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
