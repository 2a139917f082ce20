"""`cxr-cascade train EXPERIMENT [--data PATH ...] [--set key=value ...]`: one training run.

Examples:
    cxr-cascade train --list
    cxr-cascade train table4_resnet50_seme --data /data/chest_xray --set image_size=224
    cxr-cascade train demo_stage1 --data build/demo/phantoms/chest_xray --set preprocess.clip_limit=3
    cxr-cascade train unet_lungs --data /data/lung-masks --run-dir runs/unet
    cxr-cascade train table5_seme_densenet169 --data /data/covid-chestxray-dataset --unet runs/unet
    cxr-cascade train --resume runs/unet            # after Ctrl-C, a crash or power loss
    cxr-cascade train release_stage1_224 --data /data/chest_xray --time-budget 150m --save-every 10m
    cxr-cascade train table4_resnet50_seme --backend jax --data split.csv   # no TensorFlow needed
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cxr_cascade.artifacts import RunDir, default_run_dir, default_runs_root
from cxr_cascade.commands import CLIError
from cxr_cascade.config import apply_overrides, list_experiments, load_experiment, load_resolved
from cxr_cascade.registry import KERAS_BACKENDS, STRATEGIES

# Stopped early (time budget, SIGTERM) and resumable: sysexits' EX_TEMPFAIL, "try again later".
# Not 0, so that a chain such as U-Net -> stage 2 does not go on with an unfinished U-Net.
EXIT_STOPPED = 75


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train one experiment (a config in experiments/) into a run directory",
        description=(
            "Train one experiment. The run directory receives the resolved config, the split "
            "manifest, checkpoints (last and best), history.csv, curves.png, TensorBoard logs, "
            "environment.json and results.json. Interrupted runs continue with --resume."
        ),
    )
    parser.add_argument(
        "experiment", nargs="?",
        help="experiment name in experiments/ (see --list) or a path to a .py config",
    )
    parser.add_argument(
        "--data", action="append", default=[], metavar="[FORMAT=]PATH",
        help="data set folder or manifest .csv (repeatable); FORMAT one of kermany, ieee8023, "
             "lung-masks, montgomery, manifest (detected when omitted)",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config field, e.g. --set image_size=224 --set moex.prob=0.5 "
             "--set preprocess.clip_limit=3 --set augment.zoom=0.1 (repeatable)",
    )
    parser.add_argument("--run-dir", help="run directory (default: RUNS/<experiment>-<UTC time>)")
    parser.add_argument(
        "--runs", default=None,
        help="parent of default run directories (default: $CXR_CASCADE_RUNS, else "
             "~/.cache/cxr-cascade/runs)",
    )
    parser.add_argument(
        "--time-budget", metavar="DURATION",
        help="stop between two training steps once this much time has passed since the start "
             "(e.g. 150m, 2.5h, 900s), with a step-exact checkpoint; --resume continues to the "
             "same weights as a run straight through. Exit status 75 when stopped early",
    )
    parser.add_argument(
        "--save-every", metavar="DURATION",
        help="also write a step-exact checkpoint every DURATION inside epochs (e.g. 10m), so a "
             "killed run loses at most that much training (default: at epoch ends only)",
    )
    parser.add_argument(
        "--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
        help="continue an interrupted run from its last completed epoch (RUN_DIR or --run-dir)",
    )
    parser.add_argument("--unet", metavar="RUN_DIR", help="trained U-Net run (stage 2 segmented copies)")
    parser.add_argument(
        "--strategy", choices=STRATEGIES,
        help="distribution strategy (same as --set strategy=...)",
    )
    parser.add_argument(
        "--backend", choices=KERAS_BACKENDS,
        help="Keras backend (default: $KERAS_BACKEND, else tensorflow). jax/torch train the same "
             "recipe into the same run directory without TensorFlow or OpenCV (one device, data "
             "decoded into memory with Pillow; see cxr_cascade/training/arrays.py)",
    )
    parser.add_argument(
        "--skip-bad", action="store_true",
        help="leave out images that cannot be used (corrupt, refused by the decode policy), each "
             "named in a warning, instead of refusing to train",
    )
    parser.add_argument(
        "--cache", metavar="DIR",
        help="keep the decoded, resized images in files under DIR, keyed by the preprocessing "
             "settings and the image files, so that epochs after the first (and later runs with "
             "the same settings) skip decoding; about S*S*4 bytes per image (1 MiB at 512 px); "
             "delete DIR to reclaim the space (pipelines/image_cache.py)",
    )
    parser.add_argument("--quiet", action="store_true", help="one line per epoch instead of progress bars")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.set_defaults(func=run)


def _list() -> int:
    for name in list_experiments():
        config = load_experiment(name)
        print(f"{name:40s} {config.paper}")
    return 0


def _command_line(args: argparse.Namespace) -> list[str]:
    """The command as a user would retype it (recorded in command.txt and results.json)."""
    argv = ["cxr-cascade", "train"]
    if args.experiment:
        argv.append(args.experiment)
    for path in args.data:
        argv += ["--data", path]
    for override in args.overrides:
        argv += ["--set", override]
    if args.run_dir:
        argv += ["--run-dir", args.run_dir]
    if args.resume:
        argv += ["--resume"] + ([args.resume] if isinstance(args.resume, str) else [])
    if args.unet:
        argv += ["--unet", args.unet]
    if args.strategy:
        argv += ["--strategy", args.strategy]
    if args.backend:
        argv += ["--backend", args.backend]
    if args.skip_bad:
        argv.append("--skip-bad")
    if args.cache:
        argv += ["--cache", args.cache]
    if args.time_budget:
        argv += ["--time-budget", args.time_budget]
    if args.save_every:
        argv += ["--save-every", args.save_every]
    return argv


def _select_backend(backend: str) -> None:
    """Sets KERAS_BACKEND before Keras is imported (it reads the variable once)."""
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != backend:
            raise CLIError(
                f"--backend {backend}: Keras already runs on {current} in this process; "
                f"set KERAS_BACKEND={backend} instead"
            )
        return
    os.environ["KERAS_BACKEND"] = backend


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list()
    if args.backend:
        _select_backend(args.backend)
    overrides = list(args.overrides)
    if args.strategy:
        overrides.append(f"strategy={args.strategy}")
    resume = bool(args.resume)
    run_dir = Path(args.resume) if isinstance(args.resume, str) else (
        Path(args.run_dir) if args.run_dir else None
    )
    data_paths = list(args.data)
    unet = args.unet
    if resume:
        if run_dir is None:
            raise CLIError("--resume needs the run directory: --resume RUN_DIR (or --run-dir RUN_DIR)")
        rd = RunDir(run_dir)
        if not rd.config.is_file():
            raise CLIError(f"--resume {run_dir}: not a run directory (no {rd.config.name})")
        config = load_resolved(rd.config)
        if args.experiment and args.experiment not in (config.name, str(run_dir)):
            stem = Path(args.experiment).stem
            if stem != config.name:
                raise CLIError(
                    f"--resume {run_dir}: that run is experiment {config.name!r}, not {args.experiment!r}"
                )
        config = apply_overrides(config, overrides)
        inputs = rd.inputs
        if inputs.is_file():
            saved = json.loads(inputs.read_text())
            data_paths = data_paths or saved.get("data", [])
            unet = unet or saved.get("unet")
    else:
        if not args.experiment:
            raise CLIError("name an experiment (see `cxr-cascade train --list`) or --resume RUN_DIR")
        config = load_experiment(args.experiment, overrides)
        if run_dir is None:
            run_dir = default_run_dir(args.runs or default_runs_root(), config.name)

    # lazy: Keras loads after --backend has chosen its backend; TensorFlow stays off cxr-cascade --help
    from cxr_cascade.training.budget import parse_duration
    from cxr_cascade.training.callbacks import TrainingDiverged
    from cxr_cascade.training.runner import train

    try:
        time_budget = parse_duration(args.time_budget, "--time-budget") if args.time_budget else None
        save_every = parse_duration(args.save_every, "--save-every") if args.save_every else None
    except ValueError as error:
        raise CLIError(str(error)) from None

    verbose = 2 if args.quiet or not sys.stdout.isatty() else 1
    print(f"{config.name}: {config.paper or config.description}", flush=True)
    print(f"run directory: {run_dir}", flush=True)
    try:
        result = train(
            config,
            run_dir,
            data_paths=data_paths,
            unet_weights=unet,
            resume=resume,
            verbose=verbose,
            argv=_command_line(args),
            skip_bad=args.skip_bad,
            cache_dir=args.cache,
            time_budget=time_budget,
            save_every=save_every,
        )
    except TrainingDiverged as error:
        raise CLIError(str(error)) from None
    if result.stopped is not None:
        return EXIT_STOPPED
    if result.results is not None:
        print(f"results: {RunDir(result.run_dir).results}")
    return 0
