"""`cxr-cascade data check DIR|MANIFEST`: validate a data set before any training.

Opens every file (Pillow verify + full decode), summarises format, mode, bit depth and size, counts
classes and patients per split, and reports missing files, unknown labels, duplicate rows, patients
in two splits, corrupt/truncated/empty/non-image files and bad masks, one line per problem (on
stderr; the summary on stdout).
`--strict` exits 1 when any error was found; `--json` prints the summary as one JSON object.
"""

from __future__ import annotations

import argparse
import sys

from cxr_cascade.commands.data_index import add_reader_options, reader_options
from pipelines.check import check_path
from pipelines.readers import detect_format


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate a data set or manifest: every file opens, counts, modes, problems",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("path", metavar="DIR|MANIFEST", help="data set folder or manifest CSV")
    add_reader_options(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any error was found")
    parser.add_argument("--duplicates", action="store_true",
                        help="also find exact and near-duplicate images (decodes every image again)")
    parser.add_argument("--jobs", type=int, default=1, help="processes for the per-file checks")
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1. Received: jobs={args.jobs}")
    format_name = args.format or detect_format(args.path)
    report = check_path(
        args.path, format_name, duplicates=args.duplicates, jobs=args.jobs,
        **reader_options(args, format_name),
    )
    if args.json:
        print(report.to_json())
    else:  # the summary on stdout, each problem on stderr (where a shell shows errors)
        print(report.format_text(problems=False), flush=True)
        for problem in report.problems:
            print(problem, file=sys.stderr)
    return 1 if args.strict and report.errors else 0
