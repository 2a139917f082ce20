"""`cxr-cascade data index DIR --format F --out RECORDS.csv`: a data set as a manifest.

Reads a data set in its publisher's layout (`pipelines.readers`) and writes one row per image with
the columns path,label,patient_id,source,split,mask_path (empty where unknown; `license` when the
data set states one). Reader problems (a missing file, an unparseable name) are printed one per line
to stderr; `--strict` turns them into exit status 1 (the manifest is still written).
"""

from __future__ import annotations

import argparse
import os
import sys

from pipelines.labels import LABELS
from pipelines.readers import DEFAULT_VIEWS, FORMATS, detect_format, read_dataset
from pipelines.records import Problem, RecordTable, count_by, write_manifest


def add_reader_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `data index` and `data check`."""
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="data set layout (detected when omitted)")
    parser.add_argument("--views", default=",".join(DEFAULT_VIEWS),
                        help="ieee8023: comma-separated `view` values to keep ('all': every view)")
    parser.add_argument("--findings-map", default=None, metavar="CSV",
                        help="ieee8023: CSV finding,label[,note] whose rows override the shipped "
                             "table pipelines/ieee8023_findings.csv")
    parser.add_argument("--metadata", default=None, metavar="CSV",
                        help="lung-masks: an ieee8023 metadata.csv to label ieee8023 images and "
                             "give their patient ids")
    parser.add_argument("--source", default=None,
                        help="source name written into the records (default: the format's name)")


def reader_options(args, format_name: str) -> dict:
    """Keyword arguments for `pipelines.readers.read_dataset` from the parsed options."""
    options = {}
    if args.source and format_name != "manifest":
        options["source"] = args.source
    if format_name == "ieee8023":
        views = args.views.strip()
        options["views"] = None if views.lower() == "all" else tuple(
            v.strip() for v in views.split(",") if v.strip())
        if args.findings_map:
            options["findings"] = args.findings_map
    elif args.findings_map:
        raise ValueError(f"--findings-map applies to --format ieee8023 only. Received: format={format_name}")
    if format_name == "lung-masks" and args.metadata:
        options["ieee8023_metadata"] = args.metadata
    elif args.metadata:
        raise ValueError(f"--metadata applies to --format lung-masks only. Received: format={format_name}")
    return options


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "index",
        help="read a data set in its publisher's layout and write it as a manifest CSV",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("path", metavar="DIR", help="data set folder (or a manifest CSV)")
    add_reader_options(parser)
    parser.add_argument("--out", required=True, metavar="RECORDS.csv", help="manifest to write")
    parser.add_argument("--relative", action="store_true",
                        help="write image paths relative to the manifest's folder")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when the reader reported any error")
    parser.set_defaults(func=run)


def _usable_manifest_rows(table):
    """A manifest re-indexed: rows with an unknown label (already reported by the reader) and rows
    whose file is missing (reported here) are left out of the output, as every folder reader
    leaves out what it cannot use."""
    kept = RecordTable(problems=table.problems, skipped=getattr(table, "skipped", None))
    for record in table:
        if record.label not in LABELS:
            continue
        if not os.path.isfile(record.path):
            kept.problems.append(Problem(record.path, "file not found (row left out)"))
            continue
        kept.append(record)
    return kept


def run(args) -> int:
    format_name = args.format or detect_format(args.path)
    table = read_dataset(args.path, format_name, **reader_options(args, format_name))
    if format_name == "manifest":
        table = _usable_manifest_rows(table)
    for problem in table.problems:
        print(problem, file=sys.stderr)
    if not table:
        raise ValueError(f"{args.path}: no records read as {format_name}; nothing written")
    out = write_manifest(table, args.out, relative=args.relative)
    counts = ", ".join(f"{split or '-'}/{label} {n}" for (split, label), n in
                       sorted(count_by(table, "split", "label").items()))
    patients = len({record.patient_key for record in table})
    skipped = getattr(table, "skipped", {})
    print(f"{out}: {len(table)} records, {patients} patients ({counts})")
    if skipped:
        print("skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())))
    errors = sum(p.severity == "error" for p in table.problems)
    if table.problems:
        print(f"{errors} error(s), {len(table.problems) - errors} warning(s) reported on stderr")
    return 1 if args.strict and errors else 0
