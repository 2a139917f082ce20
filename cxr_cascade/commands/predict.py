"""`cxr-cascade predict IMAGE... [--models MODELS_DIR] [--heatmap DIR] [--json]`: diagnoses.

Examples:
    cxr-cascade predict scan1.png scan2.jpg --models models
    cxr-cascade predict scans/*.png --json > predictions.jsonl
    cxr-cascade predict scan1.png --heatmap heatmaps/

Runs the exported SavedModel (default the cascade: normal / bacterial / COVID-19 / other viral) on
each file's bytes, exactly as TF Serving would. A bad file is reported on one line and does not
stop the others; the exit status is 1 when any file failed, 0 otherwise. Research software, not a
medical device.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cxr_cascade.commands import CLIError
from cxr_cascade.registry import CASCADE_RULES, CASCADE_RULES_HELP


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="diagnose image files with the exported models (table or JSON lines)",
        description=(
            "Diagnose chest X-ray files (PNG or JPEG) with the models written by "
            "`cxr-cascade export`. Research software, not a medical device."
        ),
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument(
        "--models", default=os.environ.get("CXR_CASCADE_MODELS"), metavar="MODELS_DIR",
        help="export folder (default: $CXR_CASCADE_MODELS, else ./models, else the newest release "
             "in releases/, exported once into a cache)",
    )
    parser.add_argument(
        "--release", metavar="DIR",
        help="a release folder to use (instead of --models and the default release; also "
             "CXR_CASCADE_RELEASE=DIR); exported once into a cache",
    )
    parser.add_argument(
        "--model", default="cascade", choices=("cascade", "stage1", "stage2"),
        help="which exported model to run (default: cascade)",
    )
    parser.add_argument(
        "--heatmap", metavar="DIR",
        help="also write a Grad-CAM overlay per image to DIR/<name>_gradcam.png",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--rule", choices=CASCADE_RULES, default=None,
        help=f"the cascade's decision: {CASCADE_RULES_HELP}; "
             "default: the rule the cascade was exported with",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: TensorFlow stays off cxr-cascade --help
    from cxr_cascade.predict import Failure, Predictor, format_table

    models = None if args.release else args.models  # --release wins over CXR_CASCADE_MODELS
    from_release = False
    if models is None:
        models = "models"
        if args.release or not os.path.isdir(models):
            from_release = True
            # lazy: TensorFlow stays off cxr-cascade --help
            from cxr_cascade.artifacts import NO_RELEASE, cascade_rule, find_release, read_release
            from cxr_cascade.export.release import release_models_dir

            release = Path(args.release) if args.release else find_release()
            if release is None:
                raise CLIError(NO_RELEASE)

            models = release_models_dir(release)
            data = read_release(release)[1]
            entries = data.get("models") or {}
            used = ", ".join(f"{role} {m.get('experiment')}" for role, m in entries.items())
            rule = f"; cascade rule {args.rule or cascade_rule(data)}" if args.model == "cascade" else ""
            print(f"models: release {release} ({used}{rule}; no --models and no ./models)",
                  file=sys.stderr, flush=True)
            for role, m in entries.items():
                if m.get("chance_level"):
                    print(f"warning: {role} of this release is no better than chance "
                          f"({m['chance_level']}); see its MODEL_CARD.md", file=sys.stderr, flush=True)
    predictor = Predictor(models, args.model, rule=args.rule)
    if not from_release:  # the release's own marks are printed above
        for role, reason in predictor.chance_level.items():
            print(f"warning: {role} of {models} is no better than chance ({reason})",
                  file=sys.stderr, flush=True)
    results = []
    failed = unwritten = 0
    interrupted = False
    try:
        for result in predictor.predict_files(args.images, heatmap_dir=args.heatmap):
            if isinstance(result, Failure):
                failed += 1
                print(f"cxr-cascade predict: {result}", file=sys.stderr, flush=True)
            else:
                for note in result.notes:
                    print(f"note: {result.file}: {note}", file=sys.stderr, flush=True)
                if result.heatmap_error:
                    unwritten += 1
                    print(f"cxr-cascade predict: {result.heatmap_error}", file=sys.stderr, flush=True)
            if args.json:
                print(json.dumps(result.to_json()), flush=True)
            results.append(result)
    except KeyboardInterrupt:
        # The diagnoses computed so far are printed (the table is written at the end).
        interrupted = True
    if not args.json:
        table = format_table(results, predictor.class_names)
        if table:
            print(table, flush=True)
        for r in results:
            if getattr(r, "heatmap", None):
                print(f"heatmap: {r.heatmap}")
    if interrupted:
        print(f"cxr-cascade predict: interrupted after {len(results)} of {len(args.images)} "
              "file(s); the rows above are complete", file=sys.stderr)
        return 130
    if failed:
        print(
            f"cxr-cascade predict: {failed} of {len(results)} file(s) failed", file=sys.stderr
        )
    if unwritten:
        print(f"cxr-cascade predict: {unwritten} heatmap(s) not written", file=sys.stderr)
    return 1 if failed or unwritten else 0
