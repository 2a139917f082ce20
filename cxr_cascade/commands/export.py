"""`cxr-cascade export RUN... --out MODELS_DIR [--version N] [--force]`: models for TF Serving.

Examples:
    cxr-cascade export runs/stage1 runs/stage2 runs/unet --out models
    cxr-cascade export runs/stage1 runs/stage2 --out models --version 3 --force
    cxr-cascade export --release v1 --out models        # releases/v1, weights sha256-verified

Each RUN is a training run directory; its role (stage 1, stage 2, lung U-Net) is read from its
config (`task`). With both stages given the cascade is written too. See `cxr_cascade.export`.
"""

from __future__ import annotations

import argparse
import sys

from cxr_cascade.commands import CLIError
from cxr_cascade.registry import CASCADE_RULES, CASCADE_RULES_HELP, DEFAULT_CASCADE_RULE


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export trained runs as TF Serving SavedModels (image bytes in) plus models.config",
        description=(
            "Write MODELS_DIR/<name>/<version>/ (TF Serving layout) for stage1, stage2, lung_unet "
            "and cascade, and MODELS_DIR/models.config. The SavedModels take PNG/JPEG file bytes "
            "(signature serving_default, input image_bytes) and run the evaluation preprocessing "
            "in the graph; serving_images takes preprocessed float images."
        ),
    )
    parser.add_argument("runs", nargs="*", metavar="RUN", help="training run directories")
    parser.add_argument(
        "--release", metavar="NAME|DIR",
        help="export a release instead of runs (releases/NAME or a release folder; sha256-verified)",
    )
    parser.add_argument("--out", required=True, metavar="MODELS_DIR", help="TF Serving base folder")
    parser.add_argument(
        "--version", type=int, default=None, metavar="N",
        help="version folder for every model (default: one more than the highest existing)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing version")
    parser.add_argument(
        "--base-path", default="/models",
        help="where the server sees MODELS_DIR, for models.config (default: /models, docker)",
    )
    parser.add_argument(
        "--refined-class", default="viral",
        help="the stage-1 class that stage 2 subdivides (default: viral)",
    )
    parser.add_argument("--no-cascade", action="store_true", help="do not write the cascade model")
    parser.add_argument(
        "--rule", choices=CASCADE_RULES, default=None,
        help=f"the cascade's decision: {CASCADE_RULES_HELP}; default: a release's own rule "
             f"(release.json cascade_rule), for runs {DEFAULT_CASCADE_RULE}",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.version is not None and args.version < 1:
        raise CLIError(f"--version must be a positive integer. Received: --version={args.version}")
    # lazy: TensorFlow stays off cxr-cascade --help
    from cxr_cascade.artifacts import find_release
    from cxr_cascade.export import export_models
    from cxr_cascade.export.release import export_release

    if bool(args.runs) == bool(args.release):
        raise CLIError("give either training RUN directories or --release NAME, not both or neither")
    options = dict(version=args.version, force=args.force, refined_class=args.refined_class,
                   base_path=args.base_path, cascade=not args.no_cascade)
    try:
        if args.release:  # the release's verified models, chance-level marks and cascade rule
            folder = find_release(args.release)
            print(f"release {folder}")
            written = export_release(folder, args.out, rule=args.rule, **options)
        else:
            written = export_models(args.out, rule=args.rule or DEFAULT_CASCADE_RULE, **options,
                                    **_stages(args.runs))
    except FileExistsError as err:
        raise CLIError(str(err)) from None
    for name, path in written.items():
        print(f"{name:10s} {path}")
    print(f"{'config':10s} {args.out.rstrip('/')}/models.config", file=sys.stdout)
    return 0


def _stages(runs: list) -> dict:
    """{serving name: Stage} of training runs, one per task (CLIError otherwise)."""
    # lazy: TensorFlow stays off cxr-cascade --help
    from cxr_cascade.artifacts import load
    from cxr_cascade.export import SERVING_NAMES

    stages: dict = {}
    for path in runs:
        stage = load(path)
        role = SERVING_NAMES.get(stage.task)
        if role is None:
            raise CLIError(f"{path}: task {stage.task!r} cannot be exported")
        if role in stages:
            raise CLIError(
                f"two {stage.task} runs given: {stages[role].source} and {path}; give one of each"
            )
        stages[role] = stage
        if getattr(stage, "weights", ""):
            print(f"{role}: weights {path.rstrip('/')}/{stage.weights}")
    return stages
