"""Speed of the graph-native CLAHE (pipelines.clahe.clahe) against OpenCV.

Prints ms per image, all measured in one run on the same images: TF eager, TF `tf.function`,
TF `tf.function(jit_compile=True)` and `cv2.createCLAHE(...).apply`, at 512x512 and 1024x1024,
for one image per call ([H, W, 1]) and a batched call ([N, H, W, 1]). Also checks that the TF
outputs equal OpenCV's. Uses real radiographs from ../shared/data when present, else smooth
random images.

    make bench-clahe            # or: .venv/bin/python benchmarks/bench_clahe.py [--batch 8]

Not a timed test: the numbers depend on the machine and its load (printed with them).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pipelines.clahe import clahe  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CXR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def load_images(size: int, count: int) -> tuple[np.ndarray, str]:
    """`count` grey uint8 radiographs resized to size x size, or smooth noise when absent."""
    folder = SHARED_DATA / "covid-chestxray-dataset" / "images"
    files = sorted(folder.glob("*.jp*g"))[:count] if folder.is_dir() else []
    images = []
    for path in files:
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is not None:
            images.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
    if len(images) == count:
        return np.stack(images), "ieee8023 radiographs"
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (count, size, size), dtype=np.uint8)
    return np.stack([cv2.GaussianBlur(n, (0, 0), 4) for n in noise]), "smooth random images"


CLOCK = time.perf_counter


def best_ms(fn, repeats: int, rounds: int = 5) -> float:
    """Best of `rounds` means over `repeats` calls, in ms (the minimum is the least load-affected)."""
    fn()  # warm-up: tracing / compilation
    best = float("inf")
    for _ in range(rounds):
        start = CLOCK()
        for _ in range(repeats):
            fn()
        best = min(best, (CLOCK() - start) / repeats * 1e3)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="images per batched call")
    parser.add_argument("--clip", type=float, default=2.0)
    parser.add_argument("--grid", type=int, nargs=2, default=(8, 8))
    parser.add_argument("--sizes", type=int, nargs="+", default=(512, 1024))
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time; cpu: CPU time of this process, all threads (steadier when "
        "other jobs load the machine; counts both cores when OpenCV or TF use them)",
    )
    parser.add_argument(
        "--dataset",
        action="store_true",
        help="also time a tf.data pipeline (Dataset.map, 2 parallel calls) with and without "
        "clahe(..., jit_compile=True)",
    )
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    grid = tuple(args.grid)
    cv_clahe = cv2.createCLAHE(clipLimit=args.clip, tileGridSize=grid)

    print(f"load average before: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()}); "
          f"TF {tf.__version__}, OpenCV {cv2.__version__}; clip={args.clip}, grid={grid}; "
          f"clock: {args.clock}")
    header = f"{'size':>9} {'call':>10} | {'TF eager':>9} {'tf.function':>11} {'jit_compile':>11} {'OpenCV':>8} | {'jit/OpenCV':>10} exact"
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        images, source = load_images(size, args.batch)
        reference = np.stack([cv_clahe.apply(img) for img in images])
        repeats = max(2, int(20 * (512 / size) ** 2))
        for label, batch in (("1 image", 1), (f"batch {args.batch}", args.batch)):
            x = tf.constant(images[:batch, :, :, None] if batch > 1 else images[0, :, :, None])

            def eager():
                return clahe(x, args.clip, grid)

            graph = tf.function(lambda t: clahe(t, args.clip, grid))
            jit = tf.function(lambda t: clahe(t, args.clip, grid), jit_compile=True)

            def cv():
                for img in images[:batch]:
                    cv_clahe.apply(img)

            outputs = [np.asarray(f(x)).reshape(batch, size, size) for f in (lambda t: eager(), graph, jit)]
            exact = all(np.array_equal(o, reference[:batch]) for o in outputs)
            times = [
                best_ms(eager, repeats) / batch,
                best_ms(lambda: graph(x).numpy(), repeats) / batch,
                best_ms(lambda: jit(x).numpy(), repeats) / batch,
                best_ms(cv, repeats) / batch,
            ]
            print(f"{size:>4}x{size:<4} {label:>10} | {times[0]:>9.2f} {times[1]:>11.2f} {times[2]:>11.2f} "
                  f"{times[3]:>8.2f} | {times[2] / times[3]:>10.1f} {'yes' if exact else 'NO'}")
    print(f"({args.clock} ms per image, best of 5 rounds; images: {source}; "
          f"load average after: {os.getloadavg()[0]:.2f})")
    if args.dataset:
        for size in args.sizes:
            images, _ = load_images(size, args.batch)
            for jit in (False, True):
                dataset = (
                    tf.data.Dataset.from_tensor_slices(images[..., None])
                    .repeat(4)
                    .map(lambda t: clahe(t, args.clip, grid, jit_compile=jit), num_parallel_calls=2)
                    .batch(args.batch)
                )
                per_image = best_ms(lambda: [b for b in dataset], 1, rounds=3) / (4 * args.batch)
                print(f"tf.data map {size}x{size}, jit_compile={jit}: {per_image:.2f} ms/image")


if __name__ == "__main__":
    main()
