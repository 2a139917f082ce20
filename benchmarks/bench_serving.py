"""Serving speed of the exported cascade SavedModel on file bytes (issue 7).

Exports Cascade-SEMEnet (stage 1 SEME-ResNet50, stage 2 SEME-DenseNet169, at their configured
sizes; random weights, since speed does not depend on them) with `cxr_cascade.export`, loads it
with `tf.saved_model.load` and times ``serving_default`` on PNG bytes (decode, grayscale, resize,
CLAHE/masking as configured, both stages, combination) at batch sizes 1 and 16. Reports images/s and
per-request p50/p95 latency.

Usage:
    python benchmarks/bench_serving.py                 # the paper's networks (slow on a laptop)
    python benchmarks/bench_serving.py --quick         # tiny networks at 64 px: checks the machinery
    python benchmarks/bench_serving.py --image-size 224 --batch-sizes 1 16 --json-out bench.json
    make bench-serving [BENCH_SERVING_ARGS=--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from _common import provenance, write_json  # noqa: E402  (benchmarks/ is the script's folder)


def _tiny(num_classes: int, size: int, name: str):
    import keras

    inputs = keras.Input((size, size, 1), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="cam_features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, keras.layers.Activation("softmax", name="probabilities")(logits), name=name)


def _stage(experiment: str, image_size, tiny: bool):
    from cxr_cascade.artifacts import Stage
    from cxr_cascade.config import load_experiment

    overrides = [f"preprocess.image_size={image_size}"] if image_size else []
    config = load_experiment(experiment, overrides=overrides)
    if tiny:
        model = _tiny(len(config.classes), config.image_size, config.task)
    else:
        from cxr_cascade.models import build_model

        model = build_model(config)
    # The evaluation preprocessing only: CLAHE copies and lung-segmented copies are training-time.
    pre, segment = config.preprocess, bool(config.preprocess.segment)
    return Stage(config.task, model, tuple(config.classes), pre, segment, source=experiment), config


def _png(size: int, seed: int) -> bytes:
    """A radiograph-like 8-bit gray PNG (smooth body shape plus noise) of size x size."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    body = np.exp(-((xx - 0.5) ** 2 / 0.08 + (yy - 0.55) ** 2 / 0.12))
    image = np.clip(body * 200 + rng.normal(0, 12, (size, size)), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage1", default="table4_resnet50_seme", help="stage-1 experiment")
    parser.add_argument("--stage2", default="table5_seme_densenet169", help="stage-2 experiment")
    parser.add_argument("--image-size", type=int, default=None, help="override both stages' size")
    parser.add_argument("--tiny", action="store_true", help="tiny networks instead of the paper's")
    parser.add_argument("--quick", action="store_true", help="= --tiny --image-size 64 --iterations 5")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--iterations", type=int, default=None,
                        help="timed requests per batch size (default 20 at batch 1, 5 above)")
    parser.add_argument("--source-size", type=int, default=1024, help="side of the PNG files (px)")
    parser.add_argument("--json-out", help="also write the results as JSON")
    parser.add_argument("--models-dir", help="export here instead of a temporary folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.tiny, args.image_size = True, args.image_size or 64
        args.iterations = args.iterations or 5

    import tensorflow as tf
    import keras

    from cxr_cascade.export import export_models

    keras.utils.set_random_seed(0)
    s1, c1 = _stage(args.stage1, args.image_size, args.tiny)
    s2, c2 = _stage(args.stage2, args.image_size, args.tiny)
    if s2.segment or s1.segment:
        raise SystemExit("bench_serving: lung masking at evaluation needs a U-Net run; not benchmarked")
    with tempfile.TemporaryDirectory() as tmp:
        models_dir = Path(args.models_dir or tmp)
        start = time.perf_counter()
        written = export_models(models_dir, stage1=s1, stage2=s2, only=("cascade",), force=True, version=1)
        export_s = time.perf_counter() - start
        start = time.perf_counter()
        serve = tf.saved_model.load(str(written["cascade"])).signatures["serving_default"]
        load_s = time.perf_counter() - start
        pool = [_png(args.source_size, seed) for seed in range(16)]
        rows = []
        for batch in args.batch_sizes:
            data = tf.constant([pool[i % len(pool)] for i in range(batch)])
            for _ in range(2):  # warm-up: first calls build kernels and thread pools
                serve(image_bytes=data)
            n = args.iterations or (20 if batch == 1 else 5)
            latencies = []
            for _ in range(n):
                t = time.perf_counter()
                out = serve(image_bytes=data)
                out["probabilities"].numpy()
                latencies.append(time.perf_counter() - t)
            q = statistics.quantiles(latencies, n=20, method="inclusive") if n > 1 else latencies * 19
            rows.append({
                "batch": batch,
                "requests": n,
                "images_per_s": batch * n / sum(latencies),
                "p50_ms": 1000 * statistics.median(latencies),
                "p95_ms": 1000 * q[18],
            })
    gpus = tf.config.list_physical_devices("GPU")
    result = {
        **provenance("serving"),
        "stage1": f"{args.stage1} ({'tiny' if args.tiny else c1.backbone}, {c1.image_size} px)",
        "stage2": f"{args.stage2} ({'tiny' if args.tiny else c2.backbone}, {c2.image_size} px)",
        "input": f"{args.source_size}x{args.source_size} 8-bit gray PNG bytes",
        "device": gpus[0].name if gpus else f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
        "tensorflow": tf.__version__,
        "export_s": round(export_s, 1),
        "load_s": round(load_s, 1),
        "rows": rows,
    }
    print(f"cascade SavedModel, serving_default on {result['input']}")
    print(f"stage 1: {result['stage1']}; stage 2: {result['stage2']}; device: {result['device']}")
    print(f"export {export_s:.1f} s, load {load_s:.1f} s\n")
    print("| batch | requests | images/s | p50 latency (ms) | p95 latency (ms) |")
    print("|------:|---------:|---------:|-----------------:|-----------------:|")
    for r in rows:
        print(f"| {r['batch']} | {r['requests']} | {r['images_per_s']:.2f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} |")
    if args.json_out:
        write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
