#!/usr/bin/env python
"""CLAHE and rotation as keras.ops layers on the model's device against OpenCV on the CPU.

Issue 15, goal 5: `cxr_cascade.models.preprocessing` runs CLAHE and the random rotation inside
the model, on the accelerator, under any Keras backend. This bench measures, in one run:

* CLAHE (`clahe`, jit-compiled) on the default device, ms per image at each size and batch:
  "device" with the images already there (what a layer inside a model costs) and "round trip"
  with the copy from and to the host; OpenCV's `cv2.createCLAHE(...).apply` per image on the
  host CPU (its own threads); the speed-up OpenCV / device; and whether every output equals
  OpenCV's bit for bit (checked on the device's own outputs, every size and batch).
* The random rotation (`RandomAffine(30)`, bilinear) on the device, ms per image, and its largest
  difference from the same maps computed on the host CPU backend (float rounding only).
* With ``--model``: training images/s of SEME-ResNet50 with and without the two layers in front
  (the stage-1 augmentation: CLAHE on 40 % of images, rotation +-30 degrees).

Backend-agnostic (no TensorFlow import of its own):

    KERAS_BACKEND=jax python benchmarks/bench_clahe_ops.py --json-out build/bench/clahe_ops.json
    make bench-clahe-ops            # on this machine's backend and device

Images: real radiographs from ``--images DIR`` (or ../shared/data's ieee8023 folder), else smooth
random images. Timings: median of ``--rounds`` rounds of ``--repeats`` calls, each synchronised.
Not a timed test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from cxr_cascade.models.preprocessing import AdaptiveEqualization, RandomAffine, clahe  # noqa: E402

from _common import provenance, write_json  # noqa: E402  (benchmarks/ is the script's folder)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CXR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def load_images(folder: Path | None, size: int, count: int) -> tuple[np.ndarray, str]:
    """`count` grey uint8 images [count, size, size]: radiographs when found, else smooth noise."""
    folder = folder or SHARED / "covid-chestxray-dataset" / "images"
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if folder.is_dir() else []
    images = []
    for path in files[:count]:
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is not None:
            images.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
    if len(images) == count:
        return np.stack(images), f"radiographs from {folder.name}"
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (count, size, size), dtype=np.uint8)
    return np.stack([cv2.GaussianBlur(n, (0, 0), 4) for n in noise]), "smooth random images"


def device_name() -> str:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        d = jax.devices()[0]
        return f"{d.device_kind} ({d.platform}, JAX {jax.__version__})"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return gpus[0].name if gpus else f"CPU ({os.cpu_count()} cores, TensorFlow {tf.__version__})"
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    return backend


def compiled(fn):
    """`fn` compiled for the backend (jax.jit, tf.function with XLA, torch as is)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return fn


def to_device(x):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.device_put(x)
    return keras.ops.convert_to_tensor(x)


def sync(x):
    """Waits for `x` on its device (without copying it to the host where the backend allows)."""
    if keras.backend.backend() == "jax":
        return x.block_until_ready()
    if keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return x
    return keras.ops.convert_to_numpy(x)


def median_ms(fn, repeats: int, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        times.append((time.perf_counter() - start) / repeats * 1e3)
    return statistics.median(times)


def bench_clahe(images: np.ndarray, batch: int, args) -> dict:
    size = images.shape[1]
    x = np.resize(images, (batch, size, size))[..., None]
    expected = np.stack([cv2.createCLAHE(args.clip, (8, 8)).apply(img[..., 0]) for img in x])[..., None]
    fn = compiled(lambda v: clahe(v, args.clip, (8, 8)))
    on_device = to_device(x)
    out = keras.ops.convert_to_numpy(fn(on_device))  # compiles
    exact = bool(np.array_equal(out, expected))
    max_diff = int(np.abs(out.astype(np.int32) - expected).max())
    device_ms = median_ms(lambda: sync(fn(on_device)), args.repeats, args.rounds) / batch
    trip_ms = median_ms(lambda: keras.ops.convert_to_numpy(fn(to_device(x))), args.repeats, args.rounds) / batch
    op = cv2.createCLAHE(args.clip, (8, 8))
    planes = [np.ascontiguousarray(img[..., 0]) for img in x]
    cv_ms = median_ms(lambda: [op.apply(p) for p in planes], args.repeats, args.rounds) / batch
    return {
        "size": size,
        "batch": batch,
        "device_ms": round(device_ms, 4),
        "round_trip_ms": round(trip_ms, 4),
        "opencv_ms": round(cv_ms, 4),
        "speedup_device": round(cv_ms / device_ms, 2),
        "speedup_round_trip": round(cv_ms / trip_ms, 2),
        "exact": exact,
        "max_abs_diff": max_diff,
    }


def host_rotation(images: np.ndarray, uniforms: np.ndarray) -> np.ndarray | None:
    """The same maps on the host CPU (JAX's CPU device), for the float-rounding comparison."""
    if keras.backend.backend() != "jax":
        return None
    import jax

    layer = RandomAffine(30.0)
    with jax.default_device(jax.devices("cpu")[0]):
        return np.asarray(layer.transform(images, uniforms))


def bench_rotation(images: np.ndarray, batch: int, args) -> dict:
    size = images.shape[1]
    x = (np.resize(images, (batch, size, size))[..., None] / 255.0).astype(np.float32)
    uniforms = np.random.default_rng(1).random((batch, 4), dtype=np.float32)
    layer = RandomAffine(30.0)
    fn = compiled(lambda v, u: layer.transform(v, u))
    xd, ud = to_device(x), to_device(uniforms)
    out = keras.ops.convert_to_numpy(fn(xd, ud))
    ms = median_ms(lambda: sync(fn(xd, ud)), args.repeats, args.rounds) / batch
    host = host_rotation(x, uniforms)
    row = {"size": size, "batch": batch, "device_ms": round(ms, 4)}
    if host is not None:
        row["max_abs_diff_vs_host_cpu"] = float(np.abs(out - host).max())
    return row


def bench_model(args) -> dict:
    """Training images/s of SEME-ResNet50 with and without the preprocessing layers in front."""
    from cxr_cascade.models import MoEx, build_classifier

    keras.mixed_precision.set_global_policy(args.precision)
    shape = (args.model_size, args.model_size, 1)
    rng = np.random.default_rng(0)
    x = rng.random((args.model_batch, *shape), dtype="float32")
    y = rng.integers(0, 3, args.model_batch)
    result = {"size": args.model_size, "batch": args.model_batch, "precision": args.precision, "images_per_s": {}}
    for name in ("seme_resnet50", "clahe+rotation+seme_resnet50"):
        net = build_classifier("resnet50", 3, input_shape=shape, se_reduction=16, moex=MoEx(seed=0))
        if name.startswith("clahe"):
            inputs = keras.Input(shape)
            h = AdaptiveEqualization(fraction=0.4, seed=0)(inputs)
            h = RandomAffine(30.0, seed=0)(h)
            net = keras.Model(inputs, net(h))
        net.compile(optimizer=keras.optimizers.SGD(1e-4, momentum=0.9), loss="sparse_categorical_crossentropy")
        t0 = time.perf_counter()
        for _ in range(2):
            net.train_on_batch(x, y)
        compile_s = time.perf_counter() - t0
        best = float("inf")
        for _ in range(args.rounds):
            start = time.perf_counter()
            for _ in range(args.model_steps):
                net.train_on_batch(x, y)
            best = min(best, time.perf_counter() - start)
        result["images_per_s"][name] = round(args.model_batch * args.model_steps / best, 1)
        print(f"{name}: {result['images_per_s'][name]} img/s (warm-up {compile_s:.0f} s)", flush=True)
    keras.mixed_precision.set_global_policy("float32")
    ips = result["images_per_s"]
    result["ratio"] = round(ips["clahe+rotation+seme_resnet50"] / ips["seme_resnet50"], 3)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--clip", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=Path, help="folder of radiographs (default ../shared/data's ieee8023 images)")
    parser.add_argument("--model", action="store_true", help="also time SEME-ResNet50 with the layers in front")
    parser.add_argument("--model-size", type=int, default=512)
    parser.add_argument("--model-batch", type=int, default=16)
    parser.add_argument("--model-steps", type=int, default=20)
    parser.add_argument("--precision", default="mixed_bfloat16", help="dtype policy of --model")
    parser.add_argument("--quick", action="store_true", help="= --sizes 64 --batches 1 2 --repeats 2 --rounds 2")
    parser.add_argument("--json-out", help="also write the JSON result to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.batches, args.repeats, args.rounds = [64], [1, 2], 2, 2

    result = {
        **provenance("clahe_ops"),
        "backend": keras.backend.backend(),
        "device": device_name(),
        "opencv": f"{cv2.__version__}, {cv2.getNumThreads()} threads",
        "clip_limit": args.clip,
        "tile_grid": [8, 8],
        "clahe": [],
        "rotation": [],
    }

    def save():
        if args.json_out:
            write_json(args.json_out, result)

    for size in args.sizes:
        images, source = load_images(args.images, size, 8)
        result["images"] = source
        for batch in args.batches:
            row = bench_clahe(images, batch, args)
            result["clahe"].append(row)
            print(
                f"CLAHE {size} px batch {batch}: device {row['device_ms']:.3f} ms/img, round trip "
                f"{row['round_trip_ms']:.3f}, OpenCV {row['opencv_ms']:.3f} -> x{row['speedup_device']} "
                f"(x{row['speedup_round_trip']} with copies); exact {row['exact']}",
                flush=True,
            )
            save()
        for batch in args.batches:
            row = bench_rotation(images, batch, args)
            result["rotation"].append(row)
            print(f"rotation {size} px batch {batch}: {row}", flush=True)
            save()
    if args.model:
        result["model"] = bench_model(args)
        save()
    return 0 if all(r["exact"] for r in result["clahe"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
