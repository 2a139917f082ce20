"""Throughput of the tf.data input pipelines (pipelines.datasets.build_dataset), images per second.

Measured in one run on the same image files, at each size S (JPEG files 5/4 S wide and S tall, output
S x S, stretched):

* decode + resize                     (evaluation pipeline, no enhancement)
* + CLAHE, TF graph ops               (pipelines.clahe.clahe inside Dataset.map, per image)
* + CLAHE, TF graph ops under XLA      (here every image is enhanced and nothing follows, so
                                       build_dataset enhances whole batches after .batch():
                                       pipelines.transforms.apply_clahe_batch)
* + CLAHE, OpenCV in tf.numpy_function (same numbers, holds the GIL, not exportable)
* + CLAHE (TF, XLA) + rotation +-30   (training pipeline of stage 1/2; CLAHE per image, as
                                       rotation follows it)
* + CLAHE (cv2) + rotation +-30 deg
* cached: the same after the first epoch with `pipelines.image_cache.ImageCache` (decoded,
  resized, enhanced images read from a disk cache; rotation still per epoch)

Goals (issue 15): the all-TF pipeline at least as fast as the cv2 one; images/s per core (the
rate divided by the CPUs, as the pipeline runs on all of them) and the cores it would take to
feed a GPU training SEME-ResNet50 at 550 img/s at 512 px. Images: Kermany radiographs from
../shared/data/chest_xray when present (224 px copies, upscaled and written as RGB JPEG like the
originals), else phantoms (cxr_cascade.phantoms), written to a temporary folder.

    make bench-pipeline        # or: .venv/bin/python benchmarks/bench_pipeline.py --sizes 512 1024
    python benchmarks/bench_pipeline.py --quick --json-out build/bench/pipeline.json

Not a timed test: numbers depend on the machine and its load (printed with them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pipelines.config import AugmentConfig, PreprocessConfig  # noqa: E402
from pipelines.datasets import build_dataset  # noqa: E402
from pipelines.image_cache import ImageCache  # noqa: E402

from _common import provenance, write_json  # noqa: E402  (benchmarks/ is the script's folder)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CXR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

CONFIGS = [
    ("decode + resize", dict(training=False)),
    ("+ CLAHE (TF ops)", dict(training=False, clahe=True, clahe_backend="tf")),
    ("+ CLAHE (TF ops, XLA)", dict(training=False, clahe=True, clahe_backend="tf-xla")),
    ("+ CLAHE (cv2 numpy_function)", dict(training=False, clahe=True, clahe_backend="cv2")),
    ("+ CLAHE (TF, XLA) + rotation 30", dict(training=True, clahe=True, rotation_degrees=30.0)),
    (
        "+ CLAHE (cv2) + rotation 30",
        dict(training=True, clahe=True, clahe_backend="cv2", rotation_degrees=30.0),
    ),
    ("cached: CLAHE (TF, XLA)", dict(training=False, clahe=True, cache="image_cache")),
    (
        "cached: CLAHE (TF, XLA) + rot. 30",
        dict(training=True, clahe=True, rotation_degrees=30.0, cache="image_cache"),
    ),
]
GPU_RATE = 550.0  # img/s: SEME-ResNet50 at 512 px on one GPU (JAX, issue 15)


def source_images(count: int) -> tuple[list[np.ndarray], str]:
    """`count` grey uint8 radiographs (any size) and where they came from."""
    folder = SHARED_DATA / "chest_xray" / "train"
    files = sorted(folder.glob("*/*.jpeg")) if folder.is_dir() else []
    files = files[:: max(1, len(files) // count)]  # spread over the classes
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in files[:count]]
    images = [im for im in images if im is not None]
    if len(images) == count:
        return images, f"Kermany chest_xray/train ({count} files)"
    from cxr_cascade.phantoms import render_phantom

    rng = np.random.default_rng(0)
    labels = ("normal", "bacterial", "viral", "covid19")
    return [render_phantom(labels[i % 4], 512, rng).image for i in range(count)], f"phantoms ({count})"


def write_files(images, size: int, folder: Path) -> list[str]:
    paths = []
    for i, image in enumerate(images):
        # Wider than tall, like most films, so the pipeline really resizes (S * 5/4 x S -> S x S).
        resized = cv2.resize(image, (size * 5 // 4, size), interpolation=cv2.INTER_CUBIC)
        path = folder / f"s{size}_{i:04d}.jpeg"
        cv2.imwrite(str(path), np.dstack([resized] * 3), [cv2.IMWRITE_JPEG_QUALITY, 95])
        paths.append(str(path))
    return paths


def make_dataset(paths, size: int, batch: int, cache_dir: str, **config) -> tf.data.Dataset:
    """`config`: a row of `CONFIGS` (CLAHE on every image, rotation, cache, other builder keywords)."""
    cached = config.pop("cache", None) == "image_cache"
    preprocess = PreprocessConfig(image_size=size, clahe=config.pop("clahe", False))
    augment = AugmentConfig(rotation_degrees=config.pop("rotation_degrees", 0.0))
    ds = build_dataset(
        (paths, ["normal"] * len(paths)), class_names=["normal"], preprocess=preprocess,
        augment=augment, batch_size=batch, seed=0, cache=ImageCache(cache_dir) if cached else False,
        **config,
    )
    if cached:
        for _ in ds:  # the first epoch decodes and writes the cache
            pass
    for _ in ds.take(1):  # warm-up: tracing, thread pools
        pass
    return ds


def epoch_seconds(ds: tf.data.Dataset) -> tuple[float, int]:
    start = time.perf_counter()
    n = sum(int(images.shape[0]) for images, _ in ds)
    return time.perf_counter() - start, n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--count", type=int, default=64, help="images per size")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--rounds", type=int, default=5,
        help="interleaved epochs timed; img/s from the best, goal ratios the median of per-round ratios",
    )
    parser.add_argument("--quick", action="store_true", help="= --count 16 --rounds 2 (make bench)")
    parser.add_argument("--json-out", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.rounds = 16, 2

    images, origin = source_images(args.count)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"TensorFlow {tf.__version__}, OpenCV {cv2.__version__}, {os.cpu_count()} CPUs, load {load:.1f}")
    print(f"images: {origin}, RGB JPEG (5/4 S) x S -> pipeline S x S x 1")
    print(f"batch {args.batch}, {args.rounds} interleaved epochs (img/s: the best; goal: median "
          "of per-round ratios)")
    print()
    header = f"{'pipeline':32s}" + "".join(f"{f'S={s} img/s':>14s}" for s in args.sizes)
    results: dict[str, list[float]] = {}
    paired: dict[tuple[int, str], float] = {}  # (size, pipeline): median per-round ratio to cv2
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            files = write_files(images, size, Path(tmp))
            cache_dir = str(Path(tmp) / f"cache{size}")
            datasets = {
                name: make_dataset(files, size, args.batch, cache_dir, **dict(cfg)) for name, cfg in CONFIGS
            }
            times: dict[str, list[float]] = {name: [] for name, _ in CONFIGS}
            # Rounds interleave the pipelines, so a change in machine load hits all of them alike;
            # the goal compares pipelines within each round (median of the per-round ratios).
            for _ in range(args.rounds):
                for name, ds in datasets.items():
                    seconds, n = epoch_seconds(ds)
                    times[name].append(seconds)
            for name in times:
                results.setdefault(name, []).append(n / min(times[name]))
                cv_times = times["+ CLAHE (cv2 numpy_function)"]
                paired[size, name] = statistics.median(c / t for c, t in zip(cv_times, times[name]))
    cores = os.cpu_count() or 1
    header += "".join(f"{f'S={s} /core':>13s}" for s in args.sizes)
    if 512 in args.sizes:
        header += f"{'cores for 550/s':>17s}"
    print(header)
    print("-" * len(header))
    rows = []
    for name, _ in CONFIGS:
        rates = results[name]
        line = f"{name:32s}" + "".join(f"{v:14.1f}" for v in rates) + "".join(f"{v / cores:13.1f}" for v in rates)
        row = {"pipeline": name, "images_per_s": dict(zip(map(str, args.sizes), rates)),
               "images_per_s_per_core": {str(s): v / cores for s, v in zip(args.sizes, rates)}}
        if 512 in args.sizes:
            need = GPU_RATE / (rates[args.sizes.index(512)] / cores)
            row["cores_for_550_at_512"] = need
            line += f"{need:17.0f}"
        rows.append(row)
        print(line)
    print()
    goals = []
    for s_i, s in enumerate(args.sizes):
        cv_rate = results["+ CLAHE (cv2 numpy_function)"][s_i]
        for name in ("+ CLAHE (TF ops)", "+ CLAHE (TF ops, XLA)"):
            ratio = paired[s, name]
            met = ratio >= 1.0
            goals.append({"size": s, "pipeline": name, "ratio_to_cv2": ratio,
                          "ratio_of_best_rates": results[name][s_i] / cv_rate, "met": met})
            print(f"S={s}: {name[2:]} / cv2 pipeline = {ratio:.2f}x, median of per-round ratios "
                  f"({'goal met' if met else 'goal NOT met'})")
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end: {load_end:.1f}; per core = img/s / {cores} CPUs (the pipeline "
          f"uses all of them), so the core counts assume linear scaling")
    if args.json_out:
        result = {
            **provenance("pipeline"),
            "tensorflow": tf.__version__,
            "opencv": cv2.__version__,
            "images": origin,
            "count": args.count,
            "batch": args.batch,
            "rounds": args.rounds,
            "sizes": args.sizes,
            "load_average": [load, load_end],
            "rows": rows,
            "goals": goals,
        }
        write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
