"""`python -m cxr_cascade.device COMMAND`: the GPU step's commands (`make train-device` calls them).

    pack RUN --data-root DIR --out PACK [--wheels DIR] [--unet-run RUN_DIR] [--set K=V ...]
    remote PACK --out OUT          (on the remote, through tools/device_train.sh)
    rebuild OUT --runs RUNS        (here: shards -> run folders)
    dry-run --work DIR             (all of it on this machine at toy scale: phantoms, 32 px, 2 epochs)
    probe EXPERIMENT [--set ...] | finalize RUN_DIR | halve RUN_DIR   (the remote's child processes)

Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cxr_cascade.device.pack import pack_run, python_has
from cxr_cascade.device.rebuild import rebuild
from cxr_cascade.device.remote import finalize, halve, probe, run_remote

STARTED = time.monotonic()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cxr_cascade.device", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    pack = sub.add_parser("pack", help="pack one remote run's data, manifests, wheels and plan")
    pack.add_argument("run", choices=("a", "b"))
    pack.add_argument("--data-root", required=True, help="folder with chest_xray/, covid-chestxray-dataset/, lung-masks/")
    pack.add_argument("--out", required=True, help="pack folder (git-ignored; carried to the remote)")
    pack.add_argument("--wheels", help="folder of .whl files the remote lacks")
    pack.add_argument("--unet-run", help="run b: the U-Net run rebuilt from run a")
    pack.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    pack.add_argument("--experiment", dest="experiments", action="append", default=[], metavar="STAGE=NAME",
                      help="train experiment NAME for STAGE instead of the release's (e.g. stage1=release_stage1_v2_224)")
    pack.add_argument("--epochs-cap", type=int, help="at most this many epochs (default: the paper rows')")
    pack.add_argument("--time-limit", type=float, default=500.0, help="remote seconds for the run (default 500)")
    pack.add_argument("--backend", default="jax", choices=("jax", "tensorflow", "torch"))
    pack.add_argument("--quality", type=int, default=95, help="JPEG quality of re-encoded images")
    pack.add_argument("--no-size-limit", action="store_true", help="report the travel size, do not refuse it")
    remote = sub.add_parser("remote", help="on the remote: size, train and shard one run")
    remote.add_argument("pack")
    remote.add_argument("--out", required=True)
    remote.add_argument("--time-limit", type=float, help="override the plan's time limit (s)")
    rebuild = sub.add_parser("rebuild", help="verify shards and rebuild the run folders")
    rebuild.add_argument("shards")
    rebuild.add_argument("--runs", required=True, help="folder for the run folders")
    rebuild.add_argument("--unet-run", help="U-Net run stage 2 names (default RUNS/unet)")
    dry = sub.add_parser("dry-run", help="the whole step here at toy scale")
    dry.add_argument("--work", required=True, help="scratch folder (replaced)")
    dry.add_argument("--n", type=int, default=48, help="phantom images per layout")
    dry.add_argument("--size", type=int, default=32, help="image size of every training")
    dry.add_argument("--epochs", type=int, default=2)
    dry.add_argument("--backend", choices=("jax", "tensorflow"),
                     help="default: jax when importable, else tensorflow")
    probe = sub.add_parser("probe")
    probe.add_argument("experiment")
    probe.add_argument("--set", dest="overrides", action="append", default=[])
    probe.add_argument("--steps", type=int, default=5)
    for name in ("finalize", "halve"):
        sub.add_parser(name).add_argument("run_dir")
    return parser


def dry_run(work: Path, *, n: int, size: int, epochs: int, backend: str | None) -> dict:
    """The GPU step end to end on this machine: phantoms -> pack a -> tools/device_train.sh ->
    rebuild -> pack b (with the rebuilt U-Net) -> tools/device_train.sh -> rebuild -> load."""
    # lazy: the phantoms draw with OpenCV, which the accelerator image may lack (dry run only)
    from cxr_cascade.phantoms import write_phantom_dataset

    if work.exists():
        if not (work / "phantoms").exists():
            raise ValueError(f"{work}: exists and is not a dry-run folder; choose another --work")
        shutil.rmtree(work)
    if backend is None:
        backend = "jax" if python_has("jax") else "tensorflow"
        if backend != "jax":
            print("dry run: JAX is not importable here: training with --backend tensorflow "
                  "(the remote uses jax)", flush=True)
    write_phantom_dataset(work / "phantoms", n=n, size=64, seed=0)
    # Eager steps (no XLA compile, which costs minutes per network on a CPU): toy scale is about
    # the packing, training, sharding and rebuilding working end to end, not about speed.
    overrides = [f"preprocess.image_size={size}", "dedup=off", "jit_compile=off"]
    script = Path(__file__).resolve().parents[2] / "tools" / "device_train.sh"
    runs = work / "runs"
    for run in ("a", "b"):
        pack = work / f"pack-{run}"
        pack_run(run, work / "phantoms", pack, overrides=overrides, epochs_cap=epochs,
                 unet_run=runs / "unet" if run == "b" else None, time_limit_s=3000.0,
                 backend=backend, travel_limit=None)
        out = work / f"out-{run}"
        env = dict(os.environ, PYTHON=sys.executable)
        subprocess.run(["bash", str(script), str(pack), str(out)], check=True, env=env)
        files = sorted(p.name for p in out.iterdir())
        print(f"dry run: run {run} sent back {files}", flush=True)
        rebuild(out, runs)
    # lazy: Keras stays out of the remote driver (no Keras backend set there, no TensorFlow)
    from cxr_cascade.artifacts import load

    loaded = {}
    for name in ("unet", "stage1", "stage2"):
        stage = load(runs / name)
        loaded[name] = {"task": stage.task, "weights": stage.weights,
                        "parameters": int(stage.model.count_params())}
    print("dry run: rebuilt and loaded " + json.dumps(loaded), flush=True)
    return loaded


def _pairs(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        stage, sep, name = item.partition("=")
        if not sep or not stage or not name:
            raise ValueError(f"--experiment must be STAGE=NAME. Received: --experiment={item!r}")
        pairs[stage] = name
    return pairs


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "pack":
            pack_run(args.run, args.data_root, args.out, overrides=args.overrides,
                     epochs_cap=args.epochs_cap, wheels=args.wheels, unet_run=args.unet_run,
                     time_limit_s=args.time_limit, backend=args.backend, quality=args.quality,
                     travel_limit=None if args.no_size_limit else 64 * 2**20,
                     experiments=_pairs(args.experiments))
        elif args.command == "remote":
            run_remote(args.pack, args.out, time_limit_s=args.time_limit, python_started=STARTED)
        elif args.command == "rebuild":
            rebuild(args.shards, args.runs, unet_run=args.unet_run)
        elif args.command == "dry-run":
            dry_run(Path(args.work), n=args.n, size=args.size, epochs=args.epochs, backend=args.backend)
        elif args.command == "probe":
            print("PROBE " + json.dumps(probe(args.experiment, args.overrides, args.steps)), flush=True)
        elif args.command == "finalize":
            print(finalize(args.run_dir), flush=True)
        elif args.command == "halve":
            print(json.dumps(halve(args.run_dir)), flush=True)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(f"error: {' '.join(map(str, error.cmd[:3]))} exited with {error.returncode}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
