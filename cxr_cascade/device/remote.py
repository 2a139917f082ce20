"""Remote half of the GPU step: size, train, and send back one run's trainings (no TensorFlow needed).

`run_remote(pack, out)` (what `tools/device_train.sh` calls after installing the carried wheels):

1. for each training of the pack's plan, a measured step (`probe`, in its own process so that
   its accelerator memory is freed): images/s of the experiment's model at its batch and size,
   in the run's precision, after the compile, whose seconds are measured too;
2. `size_epochs`: the epochs that fit what is left of the run's time limit, after the compile
   and data loading, keeping the later trainings' share (`share_of_time`), capped by the plan's
   target (the paper row's count);
3. `cxr-cascade train EXPERIMENT --backend jax --data <stage>.csv --set epochs=N ...` in a child
   process, stopped at its share of the time (SIGTERM, then SIGKILL);
4. a run stopped before its end gets `model.keras` from its best checkpoint (`finalize`) and is
   marked unfinished in `device.json`;
5. the run folders' files, less `checkpoints/` and `best.weights.h5` (model + Adam slots, three
   times the model: they cannot come back, and a finished run needs neither: `model.keras`
   holds the best epoch), into at most 7 shards + `shards.json` under `out`. When they exceed
   the 64 MiB that may come back, the largest models travel as float16 weights + their
   architecture (`halve`, the release's format), which `rebuild` turns back into model.keras.
"""

from __future__ import annotations

import csv
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from cxr_cascade.artifacts.layout import RunDir
from cxr_cascade.config import load_experiment
from cxr_cascade.device import plan as P
from cxr_cascade.device.shards import MAX_TOTAL_BYTES, write_shards

REPO_ROOT = Path(__file__).resolve().parents[2]
SAFETY = 1.25  # measured step time -> planned epoch time (host batches, validation, callbacks)
RESERVE_S = 25.0  # kept at the end for halving, sharding and the copy back
# What stays on the remote: `model.keras` holds the best epoch.
EXCLUDED = (RunDir(".").checkpoints.name + "/", RunDir(".").best_weights.name)


# ---------------------------------------------------------------------------- sizing
def share_of_time(estimates: list[float], available: float) -> list[float]:
    """Seconds for each training: `available` in proportion to their estimated full lengths
    (more than the estimate when all fit: `size_epochs` caps at the target anyway, and the
    spare seconds become the trainings' margin)."""
    total = sum(estimates)
    if total <= 0:
        raise ValueError(f"`estimates` must sum to more than 0. Received: estimates={estimates}")
    return [available * e / total for e in estimates]


def elements_per_epoch(config, train_images: int) -> int:
    """Training elements of one epoch: the images and their planned copies."""
    count = train_images
    aug = config.augment
    if config.is_classifier and aug.clahe_mode == "add" and aug.clahe_fraction > 0:
        count += int(round(aug.clahe_fraction * train_images))
    if config.is_classifier and aug.segmented_copies:
        count *= 2
    return count


def size_epochs(*, seconds: float, img_per_s: float, fixed_s: float, elements: int,
                eval_images: int, target: int) -> tuple[int, float]:
    """(epochs, estimated seconds per epoch): as many as fit `seconds`, 1 .. `target`."""
    if img_per_s <= 0 or target < 1:
        raise ValueError(f"`img_per_s` and `target` must be positive. Received: img_per_s={img_per_s}, target={target}")
    # Validation runs the forward pass only: about a third of a training step per image.
    epoch_s = SAFETY * (elements + eval_images / 3.0) / img_per_s
    fit = math.floor(max(0.0, seconds - fixed_s) / epoch_s)
    return max(1, min(target, fit)), epoch_s


# ---------------------------------------------------------------------------- child processes
def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    # One XLA compilation cache for every child: the training process then reuses what its
    # measured step (a process of its own) compiled, instead of paying the compile twice.
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(tempfile.gettempdir()) / "cxr-cascade-jax-cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    return env


def _child(args: list[str], log_path: Path, timeout: Optional[float], backend: str) -> tuple[int, float, str]:
    """Runs `python -m ...args` with KERAS_BACKEND=backend, output to `log_path` and to stdout;
    stopped with SIGTERM (then SIGKILL after 20 s) at `timeout`. Returns (rc, seconds, output)."""
    env = _env()
    env["KERAS_BACKEND"] = backend
    started = time.monotonic()
    lines: list[str] = []
    with open(log_path, "a") as log:
        child = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO_ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 start_new_session=True)
        deadline = None if timeout is None else started + timeout
        selector = selectors.DefaultSelector()
        selector.register(child.stdout, selectors.EVENT_READ)
        stopped = False
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if selector.select(timeout=wait if wait is None else min(wait, 5.0)):
                line = child.stdout.readline()
                if not line:
                    break
                lines.append(line)
                log.write(line)
                log.flush()
                print(line, end="", flush=True)
            if deadline is not None and time.monotonic() >= deadline and not stopped:
                print(f"device: time limit ({timeout:.0f} s) reached: stopping {' '.join(args[:3])}", flush=True)
                os.killpg(child.pid, signal.SIGTERM)
                stopped, deadline = True, time.monotonic() + 20.0
            elif stopped and deadline is not None and time.monotonic() >= deadline:
                os.killpg(child.pid, signal.SIGKILL)
                deadline = None
        rc = child.wait()
    return rc, time.monotonic() - started, "".join(lines)


def probe(experiment: str, overrides: list[str], steps: int = 5, warmup: int = 2) -> dict:
    """Images/s of one training step of `experiment`'s model (this process's Keras backend).

    The model is built, compiled and run exactly as the trainer does (`training.runner`'s
    `compile_model`, the run's precision policy), on random inputs of the training shape.

    Returns:
        {"img_per_s", "step_s", "compile_s", "batch_size", "image_size", "backend"}.
    """
    # Keras and the models load in the probe's own child process (KERAS_BACKEND set there).
    # lazy: Keras stays out of the remote driver (no Keras backend set there, no TensorFlow)
    import keras
    import numpy as np
    from cxr_cascade.models.build import build_model
    from cxr_cascade.training.backend import process_settings, setup_runtime
    from cxr_cascade.training.runner import compile_model

    config = load_experiment(experiment, overrides)
    size, batch = config.image_size, config.batch_size
    rng = np.random.default_rng(0)
    with process_settings():
        runtime = setup_runtime(config)
        with runtime.strategy.scope():
            model = build_model(config)
            compile_model(model, config, 100, runtime.jit_compile)
        x = rng.random((batch, size, size, 1), dtype=np.float32)
        if config.task == "unet":
            y = (rng.random((batch, size, size, 1)) > 0.5).astype(np.float32)
        else:
            y = rng.integers(0, len(config.classes), batch).astype(np.int32)
        weights = np.ones(batch, np.float32) if config.balance == "sample_weight" else None
        started = time.monotonic()
        for _ in range(warmup):  # graph building / compilation
            model.train_on_batch(x, y, sample_weight=weights)
        compile_s = time.monotonic() - started
        started = time.monotonic()
        for _ in range(steps):
            model.train_on_batch(x, y, sample_weight=weights)  # returns host floats: synchronised
        step_s = (time.monotonic() - started) / steps
    return {"img_per_s": batch / step_s, "step_s": step_s, "compile_s": compile_s,
            "batch_size": batch, "image_size": size, "backend": keras.backend.backend(),
            "steps": steps}


def finalize(run_dir: str | Path) -> str:
    """model.keras of a run stopped before its end, from its best (else last) checkpoint."""
    # lazy: Keras loads in the finalize child only, never in the remote driver (no backend set)
    from cxr_cascade.artifacts import load, write_model

    stage = load(run_dir)
    write_model(stage.model, run_dir)
    return stage.weights


def halve(run_dir: str | Path) -> dict:
    """architecture.json + weights.f16.npz (the release's weight format) of a run's model.keras."""
    # The release format (kernels float16, 1-D arrays as they are), so one reader serves both.
    # lazy: Keras loads in the halve child only, never in the remote driver (no backend set)
    from cxr_cascade.artifacts import load
    from cxr_cascade.artifacts.release import store_weights

    run_dir = Path(run_dir)
    stage = load(RunDir(run_dir).model)
    (run_dir / P.HALF_ARCHITECTURE_FILE).write_text(stage.model.to_json())
    return store_weights(stage.model, run_dir / P.HALF_WEIGHTS_FILE)


# ---------------------------------------------------------------------------- the run
def _count_eval(manifest: Path) -> tuple[int, int]:
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return sum(r["split"] == "train" for r in rows), sum(r["split"] in ("val", "test") for r in rows)


def _return_files(run_dir: Path, name: str) -> dict[str, Path]:
    files = {}
    for path in sorted(run_dir.rglob("*")):
        relative = path.relative_to(run_dir).as_posix()
        if path.is_file() and not relative.startswith(EXCLUDED) and ".tmp" not in path.name:
            files[f"{name}/{relative}"] = path
    return files


def run_remote(pack: str | Path, out: str | Path, *, time_limit_s: Optional[float] = None,
               python_started: Optional[float] = None) -> dict:
    """Trains the pack's plan and writes the shards into `out` (module docstring).

    Returns:
        The run's summary (also `run.json` inside the shards).
    """
    started = python_started or time.monotonic()
    pack, out = Path(pack).resolve(), Path(out)
    plan = json.loads((pack / P.PLAN_FILE).read_text())
    origins = json.loads((pack / P.ORIGINS_FILE).read_text())
    limit = float(time_limit_s or plan["time_limit_s"])
    deadline = started + limit - RESERVE_S
    backend = plan["backend"]
    runs, logs = pack / "runs", pack / "logs"
    runs.mkdir(exist_ok=True)
    logs.mkdir(exist_ok=True)
    summary: dict = {"run": plan["run"], "backend": backend, "time_limit_s": limit, "stages": {}}

    # 1. measured steps, all first: the time shares need every training's estimate.
    estimates, sizing = [], {}
    for entry in plan["stages"]:
        name = entry["name"]
        rc, seconds, text = _child(
            ["cxr_cascade.device", "probe", entry["experiment"], *sum((["--set", o] for o in entry["overrides"]), [])],
            logs / f"{name}-probe.log", timeout=max(30.0, deadline - time.monotonic()), backend=backend)
        found = [line for line in text.splitlines() if line.startswith("PROBE ")]
        if rc != 0 or not found:
            raise RuntimeError(f"device: the measured step of {name} failed (rc {rc}); see its log above")
        measured = json.loads(found[-1][len("PROBE "):])
        config = load_experiment(entry["experiment"], entry["overrides"])
        train_images, eval_images = _count_eval(pack / entry["manifest"])
        elements = elements_per_epoch(config, train_images)
        epoch_s = SAFETY * (elements + eval_images / 3.0) / measured["img_per_s"]
        # compile of training, validation and test steps in the trainer + decoding the data
        fixed = 3.0 * measured["compile_s"] + 15.0 + 0.002 * (train_images + eval_images)
        sizing[name] = {"probe": measured, "probe_wall_s": round(seconds, 1), "fixed_s": round(fixed, 1),
                        "elements_per_epoch": elements, "eval_images": eval_images,
                        "epochs_target": entry["epochs_target"],
                        "epochs_target_from": entry["epochs_target_from"]}
        estimates.append(fixed + entry["epochs_target"] * epoch_s)
        print(f"device: {name}: {measured['img_per_s']:.0f} img/s at batch {measured['batch_size']}, "
              f"{measured['image_size']} px (compile {measured['compile_s']:.1f} s); "
              f"{entry['epochs_target']} epochs would take ~{estimates[-1]:.0f} s", flush=True)

    # 2.-4. each training in turn, sized from what is left.
    files: dict[str, Path] = {}
    for index, entry in enumerate(plan["stages"]):
        name = entry["name"]
        available = deadline - time.monotonic()
        shares = share_of_time(estimates[index:], available)
        s = sizing[name]
        epochs, epoch_s = size_epochs(
            seconds=shares[0], img_per_s=s["probe"]["img_per_s"], fixed_s=s["fixed_s"],
            elements=s["elements_per_epoch"], eval_images=s["eval_images"], target=entry["epochs_target"])
        s.update(budget_s=round(shares[0], 1), epochs=epochs, estimated_epoch_s=round(epoch_s, 2),
                 estimated_s=round(s["fixed_s"] + epochs * epoch_s, 1))
        print(f"device: {name}: {epochs} epoch(s) (target {entry['epochs_target']}) in a "
              f"{shares[0]:.0f} s share, ~{epoch_s:.1f} s per epoch", flush=True)
        run_dir = runs / name
        args = ["cxr_cascade", "train", entry["experiment"], "--backend", backend,
                "--data", str(pack / entry["manifest"]), "--run-dir", str(run_dir), "--quiet",
                *sum((["--set", o] for o in entry["overrides"]), []), "--set", f"epochs={epochs}"]
        if entry["needs_unet"]:
            unet = runs / "unet" if RunDir(runs / "unet").model.is_file() else pack / P.UNET_RUN_DIR
            args += ["--unet", str(unet)]
        # The share and a fifth more, from the later trainings' margin (an estimate is an
        # estimate); the last one runs to the deadline.
        timeout = shares[0] if len(shares) == 1 else min(1.2 * shares[0], available - 0.9 * sum(shares[1:]))
        rc, seconds, _ = _child(args, logs / f"{name}.log", timeout=max(timeout, 10.0), backend=backend)
        rd = RunDir(run_dir)
        finished = rd.results.is_file() and rd.model.is_file()
        note = None
        if not finished and run_dir.is_dir():
            frc, _, text = _child(["cxr_cascade.device", "finalize", str(run_dir)],
                                  logs / f"{name}-finalize.log", timeout=120.0, backend=backend)
            note = f"stopped before its end (rc {rc}); model.keras from " + (
                text.strip().splitlines()[-1] if frc == 0 and text.strip() else "nothing (no checkpoint)")
        state = json.loads(rd.state.read_text()) if rd.state.is_file() else {}
        record = {
            "machine": "remote", "run": plan["run"], "experiment": entry["experiment"],
            "overrides": entry["overrides"] + [f"epochs={epochs}"], "sizing": s, "rc": rc,
            "train_wall_s": round(seconds, 1), "finished": finished, "note": note,
            "epochs_completed": state.get("epochs_completed"),
            "pack_root": str(pack), "data": origins[name]["data"], "origins": origins[name]["files"],
            "unet_run": plan.get("unet_run") if entry["needs_unet"] else None,
            "weights": rd.model.name,
        }
        summary["stages"][name] = {k: record[k] for k in ("rc", "finished", "epochs_completed", "train_wall_s")}
        if not run_dir.is_dir():
            print(f"device: {name}: no run folder (rc {rc})", flush=True)
            continue
        (run_dir / P.DEVICE_FILE).write_text(json.dumps(record, indent=1) + "\n")
        (run_dir / "device-train.log").write_text((logs / f"{name}.log").read_text())
        files.update(_return_files(run_dir, name))

    # 5. what comes back: float16 for the largest models while over the limit.
    budget = MAX_TOTAL_BYTES - 64 * 1024
    model_name = RunDir(".").model.name
    models = sorted((p for k, p in files.items() if k.endswith("/" + model_name)), key=lambda p: -p.stat().st_size)
    for model in models:
        if sum(p.stat().st_size for p in files.values()) <= budget:
            break
        run_dir = model.parent
        rc, _, _ = _child(["cxr_cascade.device", "halve", str(run_dir)], logs / f"{run_dir.name}-halve.log",
                          timeout=180.0, backend=backend)
        if rc != 0:
            raise RuntimeError(f"device: could not store {model} in float16 (rc {rc})")
        record = json.loads((run_dir / P.DEVICE_FILE).read_text())
        record["weights"] = P.HALF_WEIGHTS_FILE
        (run_dir / P.DEVICE_FILE).write_text(json.dumps(record, indent=1) + "\n")
        files.pop(f"{run_dir.name}/{model_name}")
        files.update({f"{run_dir.name}/{n}": run_dir / n
                      for n in (P.HALF_ARCHITECTURE_FILE, P.HALF_WEIGHTS_FILE, P.DEVICE_FILE)})
        print(f"device: {run_dir.name}: {model_name} ({model.stat().st_size / 2**20:.1f} MiB) travels "
              "as float16 weights", flush=True)
    summary["wall_s"] = round(time.monotonic() - started, 1)
    (logs / "run.json").write_text(json.dumps(summary, indent=1) + "\n")
    files["run.json"] = logs / "run.json"
    manifest = write_shards(files, out)
    summary["returned_bytes"] = sum(s["bytes"] for s in manifest["shards"])
    print(f"device: {len(manifest['shards'])} shard(s), {summary['returned_bytes'] / 2**20:.1f} MiB in {out}; "
          f"{summary['wall_s']:.0f} s", flush=True)
    return summary
