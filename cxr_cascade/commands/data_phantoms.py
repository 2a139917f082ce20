"""`cxr-cascade data phantoms`: write synthetic chest X-ray phantoms in the three real layouts.

Phantoms are synthetic and mean nothing medically; see `cxr_cascade.phantoms`.
"""

from __future__ import annotations

import argparse

from cxr_cascade.registry import PHANTOM_FORMATS, PHANTOM_SHORTCUTS


def _shortcut(value: str):
    return None if value == "none" else value


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "phantoms",
        help="write synthetic chest X-ray phantoms (Kermany, ieee8023 and lung-mask layouts)",
        description=(
            "Write synthetic chest radiograph phantoms (normal, bacterial, viral, COVID-19 "
            "patterns) with lung and lesion masks, in the layouts of the Kermany, ieee8023 and "
            "V7 lung-mask data sets. Phantoms are synthetic and mean nothing medically."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True,
                        help="output directory: absent, empty, or the same phantom set again")
    parser.add_argument("--n", type=int, default=240,
                        help="frontal images in each of the Kermany and ieee8023 layouts")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed; same seed, same bytes")
    parser.add_argument("--formats", default=",".join(PHANTOM_FORMATS),
                        help=f"comma-separated layouts to write, from {','.join(PHANTOM_FORMATS)}")
    parser.add_argument("--shortcut", default="none", choices=("none",) + PHANTOM_SHORTCUTS,
                        help="plant a label-correlated burned-in mark outside the lungs "
                             "(marker: a bright square whose position encodes the label; "
                             "text: a token word per label)")
    parser.add_argument("--shortcut-strength", type=float, default=1.0,
                        help="probability that the planted mark encodes the true label "
                             "(0: no correlation, 1: perfect)")
    parser.add_argument("--no-text", action="store_true",
                        help="burn in no laterality markers or hospital/date strings")
    parser.add_argument("--missing-files", action="store_true",
                        help="also list ieee8023 X-ray rows whose file is absent, as upstream "
                             "(readers must report them)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier phantom set in --out")
    parser.set_defaults(func=run)


def run(args) -> int:
    from cxr_cascade.phantoms import write_phantom_dataset  # lazy: OpenCV stays off cxr-cascade --help

    summary = write_phantom_dataset(
        args.out, args.n, args.size, args.seed, formats=args.formats,
        shortcut=_shortcut(args.shortcut), shortcut_strength=args.shortcut_strength,
        text=not args.no_text, missing_files=args.missing_files, overwrite=args.overwrite)
    print(summary.line())
    return 0
