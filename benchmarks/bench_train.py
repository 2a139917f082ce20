#!/usr/bin/env python
"""Training img/s of the release's stage-1 network on this CPU: which backend, precision and
process layout `make train-release` should use, measured beside the machine's matmul GFLOP/s.

For SEME-ResNet50 at 224 px (the release_stage1_224 experiment's network and optimizer, built
by the trainer's own `build_model` / `compile_model`), on random data, batch 16:
- backends TensorFlow (graph, and graph + XLA) and Keras on JAX (XLA), CPU wheels;
- float32 and bfloat16 (Keras's mixed_bfloat16 policy);
- one process with as many threads as cores ("1xN") against one one-thread process per core,
  run side by side, each pinned to its core ("Nx1"; img/s summed);
and, in the same run, a 4096 x 4096 matmul in TensorFlow, float32 and bfloat16, all cores.
Each worker is a fresh process (thread pools are fixed at import), warmed up for `--warmup`
steps (graph building / compilation), then timed over `--steps` steps (`train_on_batch` returns
the loss to the host, so every step is synchronised).

    python benchmarks/bench_train.py --json-out build/bench/train.json     # ~25 min on 2 cores
    python benchmarks/bench_train.py --quick                                # smoke run, 64 px

Nothing else may run on the machine meanwhile (the JSON records the load average before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import provenance, write_json  # noqa: E402  (benchmarks/ is the script's folder)

# (label, backend, jit) of the configurations timed.
ENGINES = (("tensorflow", "tensorflow", False), ("tensorflow+xla", "tensorflow", True),
           ("jax", "jax", True))
PRECISIONS = ("float32", "bfloat16")


def _thread_env(backend: str, threads: int) -> dict[str, str]:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads))
    if backend == "jax":
        # XLA:CPU's Eigen pool: one thread per process when threads == 1.
        flags = env.get("XLA_FLAGS", "")
        if threads == 1:
            flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        env["XLA_FLAGS"] = flags.strip()
        env["JAX_PLATFORMS"] = "cpu"
    return env


def _worker(spec: dict) -> dict:
    """One timed training run in this process (KERAS_BACKEND and thread counts set by the caller)."""
    if spec.get("cpu") is not None:
        os.sched_setaffinity(0, {spec["cpu"]})
    # The GPU step's measured step: the trainer's own build, compile and precision policy.
    from cxr_cascade.device.remote import probe

    precision = "bfloat16" if spec["precision"] == "bfloat16" else "off"
    overrides = [f"preprocess.image_size={spec['size']}", f"batch_size={spec['batch']}",
                 f"mixed_precision={precision}", f"jit_compile={'on' if spec['jit'] else 'off'}"]
    result = probe("release_stage1_224", overrides, steps=spec["steps"], warmup=spec["warmup"])
    return {"img_per_s": result["img_per_s"], "seconds": result["step_s"] * spec["steps"]}


def _spawn(spec: dict, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _collect(process: subprocess.Popen) -> dict:
    out, err = process.communicate()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        return {"error": (err.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def _matmul(cores: int, n: int) -> dict:
    code = (
        "import time, tensorflow as tf\n"
        "out = {}\n"
        "for name, dt in (('float32', tf.float32), ('bfloat16', tf.bfloat16)):\n"
        f"    a = tf.random.normal(({n}, {n})); a = tf.cast(a, dt)\n"
        "    f = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, a), tf.float32)))\n"
        "    f().numpy(); reps = 10; t = time.perf_counter()\n"
        "    for _ in range(reps): f().numpy()\n"
        f"    out[name] = 2 * {n}**3 * reps / (time.perf_counter() - t) / 1e9\n"
        "print(out)\n"
    )
    env = _thread_env("tensorflow", cores)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    line = [l for l in done.stdout.splitlines() if l.startswith("{")]
    return eval(line[-1]) if line else {"error": done.stderr.strip().splitlines()[-1:]}  # noqa: S307


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--engines", nargs="+", default=[e[0] for e in ENGINES],
                        choices=[e[0] for e in ENGINES])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--quick", action="store_true", help="64 px, 2 + 3 steps: a smoke run")
    parser.add_argument("--json-out")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))), flush=True)
        return 0
    if args.quick:
        args.size, args.warmup, args.steps = 64, 2, 3
    cores = len(os.sched_getaffinity(0))
    result = {**provenance("bench_train"), "load_before": os.getloadavg(),
              "network": "SEME-ResNet50 (release_stage1_224)", "size": args.size, "batch": args.batch,
              "steps": args.steps, "cores": cores, "matmul_gflops": _matmul(cores, 1024 if args.quick else 4096),
              "runs": []}
    print(f"matmul 4096^2 on {cores} cores: " + ", ".join(
        f"{k} {v:.0f} GFLOP/s" for k, v in result["matmul_gflops"].items() if isinstance(v, float)), flush=True)
    for label, backend, jit in ENGINES:
        if label not in args.engines:
            continue
        for precision in args.precisions:
            spec = {"size": args.size, "batch": args.batch, "warmup": args.warmup, "steps": args.steps,
                    "precision": precision, "jit": jit}
            one = _collect(_spawn(spec, _thread_env(backend, cores)))
            row = {"engine": label, "precision": precision, "layout": f"1x{cores}",
                   "img_per_s": one.get("img_per_s"), "error": one.get("error")}
            result["runs"].append(row)
            print(f"{label:15s} {precision:8s} 1x{cores}: {row['img_per_s'] or 0:6.2f} img/s"
                  + (f"  ({row['error']})" if row["error"] else ""), flush=True)
            workers = [_spawn(dict(spec, cpu=cpu), _thread_env(backend, 1)) for cpu in range(cores)]
            parts = [_collect(w) for w in workers]
            rates = [p.get("img_per_s") for p in parts]
            total = sum(rates) if all(rates) else None
            row = {"engine": label, "precision": precision, "layout": f"{cores}x1",
                   "img_per_s": total, "per_process": rates,
                   "error": next((p["error"] for p in parts if p.get("error")), None)}
            result["runs"].append(row)
            print(f"{label:15s} {precision:8s} {cores}x1: {total or 0:6.2f} img/s "
                  f"({', '.join(f'{r or 0:.2f}' for r in rates)})", flush=True)
    result["load_after"] = os.getloadavg()
    good = [r for r in result["runs"] if r["img_per_s"]]
    if good:
        best = max(good, key=lambda r: r["img_per_s"])
        result["fastest"] = best
        flops = 12.3e9 * (args.size / 224) ** 2  # one training step of ResNet50, per image (issue figure)
        f32 = result["matmul_gflops"].get("float32")
        if isinstance(f32, float):
            result["fastest_fraction_of_float32_matmul"] = best["img_per_s"] * flops / 1e9 / f32
        print(f"fastest: {best['engine']} {best['precision']} {best['layout']} "
              f"{best['img_per_s']:.2f} img/s", flush=True)
    if args.json_out:
        write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
