"""Speed of the graph-native CLAHE (pipelines.clahe.clahe) against OpenCV.

Prints ms per image, all measured in one run on the same images: TF eager (a graph for any
image size, as in a SavedModel), TF `tf.function` (traced for the shape), TF
`tf.function(jit_compile=True)` (XLA) and `cv2.createCLAHE(...).apply`, at 512x512 and
1024x1024, for one image per call ([H, W, 1]) and a batched call ([N, H, W, 1]). Also checks that
the TF outputs equal OpenCV's. Uses real radiographs from ../shared/data when present, else
smooth random images.

Method: `--rounds` rounds each time every variant (`repeats` calls) one after the other, so a
change in machine load hits them alike; a variant's time is its median round and its ratio to
OpenCV the median of the per-round ratios. Goals (issue 15): XLA <= 1.5x OpenCV, plain graph
(tf.function and eager) <= 3x.

    make bench-clahe            # or: .venv/bin/python benchmarks/bench_clahe.py [--batch 8]
    python benchmarks/bench_clahe.py --quick --json-out build/bench/clahe.json

Not a timed test: the numbers depend on the machine and its load (printed with them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pipelines.clahe import clahe  # noqa: E402

from _common import provenance, write_json  # noqa: E402  (benchmarks/ is the script's folder)

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
VARIANTS = ("eager", "tf.function", "jit_compile", "opencv")
GOALS = {"jit_compile": 1.5, "tf.function": 3.0, "eager": 3.0}


def round_ms(fn, repeats: int) -> float:
    start = CLOCK()
    for _ in range(repeats):
        fn()
    return (CLOCK() - start) / repeats * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="images per batched call")
    parser.add_argument("--clip", type=float, default=2.0)
    parser.add_argument("--grid", type=int, nargs=2, default=(8, 8))
    parser.add_argument("--sizes", type=int, nargs="+", default=(512, 1024))
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (median reported)")
    parser.add_argument("--quick", action="store_true", help="5 rounds of fewer calls (make bench)")
    parser.add_argument("--json-out", help="also write the results as JSON to this file")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time; cpu: CPU time of this process, all threads (steadier when "
        "other jobs load the machine; counts both cores when OpenCV or TF use them)",
    )
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    rounds = 5 if args.quick else args.rounds
    calls = 5 if args.quick else 20  # calls per round at 512 px, one image per call
    grid = tuple(args.grid)
    cv_clahe = cv2.createCLAHE(clipLimit=args.clip, tileGridSize=grid)
    load_before = os.getloadavg()[0]

    print(f"load average before: {load_before:.2f} (cores: {os.cpu_count()}); "
          f"TF {tf.__version__}, OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads); "
          f"clip={args.clip}, grid={grid}; clock: {args.clock}")
    header = (f"{'size':>9} {'call':>10} | {'TF eager':>9} {'tf.function':>11} {'jit_compile':>11} "
              f"{'OpenCV':>8} | {'eager/cv':>8} {'func/cv':>8} {'jit/cv':>8} exact")
    print(header)
    print("-" * len(header))
    rows = []
    source = ""
    for size in args.sizes:
        images, source = load_images(size, args.batch)
        reference = np.stack([cv_clahe.apply(img) for img in images])
        for label, batch in (("1 image", 1), (f"batch {args.batch}", args.batch)):
            x = tf.constant(images[:batch, :, :, None] if batch > 1 else images[0, :, :, None])
            graph = tf.function(lambda t: clahe(t, args.clip, grid))
            jit = tf.function(lambda t: clahe(t, args.clip, grid), jit_compile=True)
            fns = {
                "eager": lambda: clahe(x, args.clip, grid).numpy(),
                "tf.function": lambda: graph(x).numpy(),
                "jit_compile": lambda: jit(x).numpy(),
                "opencv": lambda: [cv_clahe.apply(img) for img in images[:batch]],
            }
            exact = all(
                np.array_equal(np.asarray(fns[v]()).reshape(batch, size, size), reference[:batch])
                for v in VARIANTS[:3]
            )
            fns["opencv"]()  # warm-up (the TF ones were traced/compiled above)
            repeats = max(2, round(calls * (512 / size) ** 2 / batch))
            times = {v: [] for v in VARIANTS}
            for _ in range(rounds):
                for v in VARIANTS:
                    times[v].append(round_ms(fns[v], repeats) / batch)
            ms = {v: statistics.median(t) for v, t in times.items()}
            ratio = {
                v: statistics.median(a / b for a, b in zip(times[v], times["opencv"]))
                for v in VARIANTS[:3]
            }
            rows.append({"size": size, "batch": batch, "ms_per_image": ms, "ratio_to_opencv": ratio,
                         "exact": exact})
            print(f"{size:>4}x{size:<4} {label:>10} | {ms['eager']:>9.2f} {ms['tf.function']:>11.2f} "
                  f"{ms['jit_compile']:>11.2f} {ms['opencv']:>8.2f} | {ratio['eager']:>8.2f} "
                  f"{ratio['tf.function']:>8.2f} {ratio['jit_compile']:>8.2f} {'yes' if exact else 'NO'}")
    load_after = os.getloadavg()[0]
    print(f"({args.clock} ms per image, median of {rounds} interleaved rounds; images: {source}; "
          f"load average after: {load_after:.2f})")
    verdicts = []
    for variant, goal in GOALS.items():
        worst = max(r["ratio_to_opencv"][variant] for r in rows)
        verdicts.append({"variant": variant, "goal": goal, "worst_ratio": worst, "met": worst <= goal})
        print(f"goal {variant} <= {goal}x OpenCV: worst {worst:.2f}x -> {'met' if worst <= goal else 'MISSED'}")
    if args.json_out:
        result = {
            **provenance("clahe"),
            "tensorflow": tf.__version__,
            "opencv": cv2.__version__,
            "clip": args.clip,
            "grid": list(grid),
            "clock": args.clock,
            "rounds": rounds,
            "images": source,
            "load_average": [load_before, load_after],
            "rows": rows,
            "goals": verdicts,
        }
        write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
