#!/usr/bin/env python
"""Training throughput of our builders against keras.applications and of SE/SEME against plain.

Prints one line per model and precision (training images/s on random data) and the ratios, then
one JSON line (also written to ``--json-out FILE``). Goals (issue 4): our plain ResNet50/DenseNet169
within 3 % of keras.applications' step time; SE adds at most 12 % step time over its plain twin.
Issue 15: ``--precisions float32 bfloat16`` times every model in both in one run (the bfloat16 /
float32 ratio is what `mixed_precision=auto` relies on for CPUs with AVX512-BF16 or AMX).

Backend-agnostic: no TensorFlow import of its own (cxr_cascade.models is Keras-only), so it runs
with KERAS_BACKEND=jax on a machine without TensorFlow:

    KERAS_BACKEND=jax python benchmarks/bench_models.py --size 512 --batch 16 --steps 20 --mixed-precision
    make bench-models BENCH_MODELS_ARGS="--size 64 --steps 2 --no-jit"   # CPU smoke run
    python benchmarks/bench_models.py --quick --models keras_resnet50,resnet50 --precisions float32 bfloat16

Method: every model is compiled with SGD(momentum=0.9) and sparse cross-entropy (jit-compiled
train step unless --no-jit), warmed up (compilation), then timed over ``--steps`` calls of ``train_on_batch``
(each returns the loss to the host, so every step is synchronised) in ``--rounds`` rounds that
interleave the models of a comparison; a model's figure is its best round.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from cxr_cascade.models import MoEx, build_classifier  # noqa: E402

from _common import provenance, write_json  # noqa: E402  (benchmarks/ is the script's folder)

# name -> (factory(input_shape, num_classes) -> model)
MODELS = {
    "keras_resnet50": lambda s, n: keras.applications.ResNet50(weights=None, input_shape=s, classes=n),
    "resnet50": lambda s, n: build_classifier("resnet50", n, input_shape=s),
    "se_resnet50": lambda s, n: build_classifier("resnet50", n, input_shape=s, se_reduction=16),
    "seme_resnet50": lambda s, n: build_classifier("resnet50", n, input_shape=s, se_reduction=16, moex=MoEx(seed=0)),
    "keras_densenet169": lambda s, n: keras.applications.DenseNet169(weights=None, input_shape=s, classes=n),
    "densenet169": lambda s, n: build_classifier("densenet169", n, input_shape=s),
    "se_densenet169": lambda s, n: build_classifier("densenet169", n, input_shape=s, se_reduction=16),
    "seme_densenet169": lambda s, n: build_classifier(
        "densenet169", n, input_shape=s, se_reduction=16, moex=MoEx(seed=0)
    ),
}
# (model, baseline, goal on the step-time ratio model/baseline)
COMPARISONS = [
    ("resnet50", "keras_resnet50", 1.03),
    ("se_resnet50", "resnet50", 1.12),
    ("seme_resnet50", "resnet50", None),
    ("densenet169", "keras_densenet169", 1.03),
    ("se_densenet169", "densenet169", 1.12),
    ("seme_densenet169", "densenet169", None),
]


def _device() -> str:
    if keras.backend.backend() == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        from cxr_cascade.training.strategy import BF16_NATIVE_CPU_FLAGS, cpu_flags, precision_policy

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return gpus[0].name
        bf16 = sorted(set(BF16_NATIVE_CPU_FLAGS) & cpu_flags())
        auto = precision_policy("auto", gpu=False)
        return (
            f"CPU ({os.cpu_count()} cores; bfloat16 flags: {', '.join(bf16) or 'none'}; "
            f"mixed_precision=auto -> {auto})"
        )
    return f"CPU or other ({os.cpu_count()} cores)"


def _time_model(model, x, y, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="input height and width (default 512)")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation) per model")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--mixed-precision", action="store_true", help="= --precisions bfloat16")
    parser.add_argument(
        "--precisions", nargs="+", choices=("float32", "bfloat16", "float16"), default=None,
        help="dtype policies timed in one run, interleaved (default float32)",
    )
    parser.add_argument("--quick", action="store_true", help="= --size 64 --batch 4 --steps 2 --rounds 2 --warmup 1")
    parser.add_argument("--json-out", help="also write the JSON result to this file")
    parser.add_argument(
        "--no-jit", action="store_true", help="no XLA train step (TensorFlow CPU smoke runs; JAX always jits)"
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    args = parser.parse_args(argv)

    names = [n for n in args.models.split(",") if n]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    if args.quick:
        args.size, args.batch, args.steps, args.rounds, args.warmup = 64, 4, 2, 2, 1
    precisions = args.precisions or (["bfloat16"] if args.mixed_precision else ["float32"])
    policies = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}

    rng = np.random.default_rng(0)
    shape = (args.size, args.size, args.channels)
    x = rng.random((args.batch, *shape), dtype="float32")
    y = rng.integers(0, args.classes, args.batch)

    models = {}
    runs = [(name, p) for p in precisions for name in names]
    for name, precision in runs:
        t0 = time.perf_counter()
        keras.mixed_precision.set_global_policy(policies[precision])
        model = MODELS[name](shape, args.classes)
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=1e-4, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            jit_compile=False if args.no_jit else "auto",
        )
        for _ in range(args.warmup):
            model.train_on_batch(x, y)
        models[(name, precision)] = model
        print(f"# built+compiled {name} ({precision}) in {time.perf_counter() - t0:.1f}s "
              f"({model.count_params():,} params)", flush=True)
    keras.mixed_precision.set_global_policy("float32")

    def key(name, precision):  # JSON keys: the model name, suffixed unless float32
        return name if precision == "float32" else f"{name}@{precision}"

    best = {run: float("inf") for run in runs}
    for _ in range(args.rounds):
        for run in runs:
            best[run] = min(best[run], _time_model(models[run], x, y, args.steps))
    throughput = {key(*run): args.batch * args.steps / best[run] for run in runs}
    step_ms = {key(*run): 1000.0 * best[run] / args.steps for run in runs}

    for run in runs:
        k = key(*run)
        print(f"{run[0]:>18} {run[1]:>8}: {throughput[k]:8.1f} img/s  {step_ms[k]:8.1f} ms/step")
    ratios = {}
    for precision in precisions:
        for model_name, base, goal in COMPARISONS:
            if (model_name, precision) in best and (base, precision) in best:
                ratio = best[(model_name, precision)] / best[(base, precision)]
                ratios[f"{key(model_name, precision)}/{key(base, precision)}"] = ratio
                verdict = "" if goal is None else ("  OK" if ratio <= goal else f"  ABOVE GOAL {goal:.2f}")
                print(f"step-time ratio {model_name}/{base} ({precision}): {ratio:.3f}{verdict}")
    for precision in precisions:
        if precision == "float32" or "float32" not in precisions:
            continue
        for name in names:
            ratio = best[(name, precision)] / best[(name, "float32")]
            ratios[f"{key(name, precision)}/{name}"] = ratio
            print(f"step-time ratio {name} {precision}/float32: {ratio:.3f}")

    result = {
                **provenance("models"),
                "backend": keras.backend.backend(),
                "device": _device(),
                "size": args.size,
                "channels": args.channels,
                "batch": args.batch,
                "steps": args.steps,
                "rounds": args.rounds,
                "precisions": precisions,
                "jit_compile": not args.no_jit,
                "images_per_s": {k: round(v, 2) for k, v in throughput.items()},
                "step_ms": {k: round(v, 2) for k, v in step_ms.items()},
                "step_time_ratios": {k: round(v, 4) for k, v in ratios.items()},
    }
    print(json.dumps(result))
    if args.json_out:
        write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    raise SystemExit(main())
