"""`cxr-cascade release build|verify`: the trained models as one float16 release.

Examples:
    cxr-cascade release build --unet runs/unet --stage1 runs/stage1 --stage2 runs/stage2 --out releases/v1
    cxr-cascade release verify releases/v1
    cxr-cascade release card releases/v2 --evaluation experiments/results/release-v2   # its own numbers
    cxr-cascade release seal releases/v0      # SHA256SUMS for a release built before it existed

See `cxr_cascade.artifacts.release` for the layout (release.json, MODEL_CARD.md, one folder per model).
"""

from __future__ import annotations

import argparse
import sys

from cxr_cascade.commands import CLIError
from cxr_cascade.registry import CASCADE_RULES, CASCADE_RULES_HELP, DEFAULT_CASCADE_RULE


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "release", help="build or verify a release (float16 weights, release.json, model card)",
        description="Build a release folder from trained runs, or verify one against its sha256.",
    )
    sub = parser.add_subparsers(dest="release_command", metavar="ACTION")
    build = sub.add_parser("build", help="write a release from trained runs")
    for role in ("unet", "stage1", "stage2"):
        build.add_argument(f"--{role}", metavar="RUN", help=f"the {role} training run directory")
    build.add_argument("--out", required=True, metavar="DIR", help="release folder, e.g. releases/v1")
    build.add_argument("--name", help="release name (default: the folder's name)")
    build.add_argument("--force", action="store_true", help="replace an existing release there")
    build.add_argument("--rule", choices=CASCADE_RULES, default=None,
                       help=f"the cascade rule the release is served with ({CASCADE_RULES_HELP}); "
                            f"export and predict default to it; default: {DEFAULT_CASCADE_RULE}")
    build.set_defaults(func=run_build)
    card = sub.add_parser(
        "card", help="record the release's own evaluation in release.json and MODEL_CARD.md",
        description="Reads EVAL_DIR (make evaluate-release): <model>/metrics.json, cascade*/, "
                    "ood-*/ and rules/rules.json; rewrites release.json, MODEL_CARD.md and "
                    "SHA256SUMS. The weights are not touched.",
    )
    card.add_argument("release", metavar="DIR")
    card.add_argument("--evaluation", required=True, metavar="EVAL_DIR",
                      help="the release's evaluation folder, e.g. experiments/results/release-v2")
    card.set_defaults(func=run_card)
    verify = sub.add_parser("verify", help="check every file of a release against its sha256")
    verify.add_argument("release", metavar="DIR")
    verify.set_defaults(func=run_verify)
    seal = sub.add_parser(
        "seal", help="write SHA256SUMS for a release built before it existed",
        description="Checks every file release.json lists against its sha256, then writes "
                    "SHA256SUMS over every file of the release (release.json included).",
    )
    seal.add_argument("release", metavar="DIR")
    seal.set_defaults(func=run_seal)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run_build(args: argparse.Namespace) -> int:
    # lazy: TensorFlow stays off cxr-cascade --help
    from cxr_cascade.artifacts import build_release, read_release
    from cxr_cascade.artifacts.release import CARD_FILE, WEIGHTS_FILE

    runs = {role: getattr(args, role) for role in ("unet", "stage1", "stage2") if getattr(args, role)}
    if not runs:
        raise CLIError("give at least one of --unet RUN, --stage1 RUN, --stage2 RUN")
    if args.rule and not {"stage1", "stage2"} <= set(runs):
        raise CLIError(f"--rule needs --stage1 and --stage2 (a cascade). Received: --rule {args.rule}")
    path = build_release(args.out, runs, name=args.name, force=args.force, rule=args.rule)
    _, release = read_release(path)
    for role, entry in release["models"].items():
        mb = sum(entry["bytes"].values()) / 1e6
        print(f"{role:7s} {entry['experiment']}: {entry['parameters']:,} parameters, {mb:.1f} MB, "
              f"weights sha256 {entry['files'][WEIGHTS_FILE][:16]}...")
    if "cascade_rule" in release:
        print(f"cascade rule: {release['cascade_rule']}")
    print(f"total {release['total_bytes'] / 1e6:.1f} MB -> {path} and {path.parent / CARD_FILE}")
    if release["total_bytes"] > 100e6:
        print(f"warning: {path.parent}: {release['total_bytes'] / 1e6:.1f} MB, over the 100 MB a "
              "committed release may take", file=sys.stderr)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from cxr_cascade.artifacts import verify_release  # lazy: TensorFlow stays off cxr-cascade --help

    models = verify_release(args.release)
    print(f"{args.release}: {', '.join(models)} verified (sha256 of every file matches "
          "SHA256SUMS and release.json, release.json and splits.csv included)")
    return 0


def run_seal(args: argparse.Namespace) -> int:
    from cxr_cascade.artifacts import write_checksums  # lazy: TensorFlow stays off cxr-cascade --help

    path = write_checksums(args.release)
    lines = path.read_text().splitlines()
    print(f"{path}: {len(lines)} files (every file release.json lists matched its sha256 first)")
    return 0


def run_card(args: argparse.Namespace) -> int:
    from cxr_cascade.artifacts import record_evaluation  # lazy: TensorFlow stays off cxr-cascade --help

    try:
        path = record_evaluation(args.release, args.evaluation)
    except FileNotFoundError as error:
        raise CLIError(str(error)) from None
    print(f"{path}: evaluation from {args.evaluation} recorded; MODEL_CARD.md and SHA256SUMS rewritten")
    return 0
