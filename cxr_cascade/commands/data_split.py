"""`cxr-cascade data split RECORDS.csv... --out SPLIT.csv`: leak-free train/val/test by patient.

Rules: patients are `source:patient_id`; every image of a patient, and every copy of an image
(exact or near duplicate, found by decoding all images unless --no-dedup), land in ONE split;
splits are stratified by (source, label) with the requested ratios; `--keep-official-test` keeps
the official test images of the named sources (all that have one when no name is given) and MOVES
to test any image tied to one of them (same patient or duplicate), printing each move. The result
is proven patient- and duplicate-disjoint before it is written; a leaky manifest is never written.
`--verify` only checks the given manifests' own split column and exits 1 on any leak.
`--group-by source` also keeps all films of one publishing origin (a source such as
"ieee8023/radiopaedia.org", written by the ieee8023 reader) in one split, so that no test source
was seen in training. `--leave-one-source-out DIR` writes DIR/<source>.csv for every source with
a publishing origin (or those of --sources): that source is the test split, the rest train/val
(train a stage-2 model on each and evaluate it on its test split).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from cxr_cascade.commands import CLIError
from pipelines.dedup import (
    DEFAULT_MIN_CORRELATION,
    DEFAULT_THRESHOLD,
    cross_split_groups,
    find_duplicates,
)
from pipelines.records import read_manifest, write_manifest
from pipelines.splits import (
    grouping_source,
    leave_one_source_out,
    leaking_patients,
    split_records,
    split_table,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "split",
        help="patient-grouped, stratified, duplicate-aware train/val/test split of manifests",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("manifests", nargs="+", metavar="RECORDS.csv", help="manifests to pool")
    parser.add_argument("--out", metavar="SPLIT.csv", help="split manifest to write")
    parser.add_argument("--val", type=float, default=0.1, help="fraction of images for validation")
    parser.add_argument("--test", type=float, default=0.1, help="fraction of images for test")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tie-breaking shuffle")
    parser.add_argument("--keep-official-test", action="store_true",
                        help="keep the official test split (records with split=test) of every "
                             "source that has one, or of --official-test-sources only")
    parser.add_argument("--official-test-sources", default=None, metavar="SOURCE[,SOURCE]",
                        help="with --keep-official-test: the sources whose test split is kept")
    parser.add_argument("--no-dedup", action="store_true",
                        help="do not look for duplicate images (patients are still grouped)")
    parser.add_argument("--near-threshold", type=int, default=DEFAULT_THRESHOLD,
                        help="pHash Hamming distance (bits of 64) of a near-duplicate candidate; "
                             "-1: exact duplicates only")
    parser.add_argument("--min-correlation", type=float, default=DEFAULT_MIN_CORRELATION,
                        help="32x32 thumbnail correlation that confirms a near duplicate")
    parser.add_argument("--jobs", type=int, default=1, help="processes that decode images")
    parser.add_argument("--relative", action="store_true",
                        help="write image paths relative to the output manifest's folder")
    parser.add_argument("--group-by", choices=("patient", "source"), default="patient",
                        help="unit kept whole in one split: patient, or also the publishing origin")
    parser.add_argument("--leave-one-source-out", metavar="DIR",
                        help="write one manifest per source to DIR, that source as the test split")
    parser.add_argument("--sources", default=None, metavar="SOURCE[,SOURCE]",
                        help="with --leave-one-source-out: the sources to hold out (default: every "
                             "source with a publishing origin, e.g. ieee8023/...)")
    parser.add_argument("--verify", action="store_true",
                        help="check the manifests' existing splits for leaks; write nothing")
    parser.set_defaults(func=run)


def _read(paths):
    records = []
    for path in paths:
        records.extend(read_manifest(path))
    return records


def run(args) -> int:
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1. Received: jobs={args.jobs}")
    if not args.verify and not args.out and not args.leave_one_source_out:
        raise CLIError("--out is required (or use --verify or --leave-one-source-out DIR)")
    records = _read(args.manifests)
    if not records:
        raise CLIError("the manifests hold no records")
    report = None
    if not args.no_dedup:
        threshold = None if args.near_threshold < 0 else args.near_threshold
        report = find_duplicates(records, threshold=threshold,
                                 min_correlation=args.min_correlation, jobs=args.jobs)
        for problem in report.problems:
            print(problem, file=sys.stderr)
        s = report.summary()
        print(f"duplicates: {s['exact_groups']} exact groups ({s['exact_images']} images), "
              f"{s['near_groups']} near groups ({s['near_images']} images)")
    if args.verify:
        leaks = leaking_patients(records)
        for key, splits in leaks.items():
            print(f"{key}: error: patient in more than one split: {', '.join(splits)}", file=sys.stderr)
        crossing = cross_split_groups(report) if report else []
        for group in crossing:
            print(f"{report.records[group.members[0]].path}: error: across splits: "
                  f"{report.describe(group)}", file=sys.stderr)
        _print_table(split_table(records))
        print(f"verify: {len(leaks)} leaking patient(s), {len(crossing)} duplicate group(s) across splits")
        return 1 if leaks or crossing else 0
    if report is not None:
        for group in report.groups:
            print(f"kept in one split: {report.describe(group)}")
    duplicate_groups = [g.members for g in report.groups] if report else ()
    if args.leave_one_source_out:
        return _leave_one_source_out(args, records, duplicate_groups)
    keep = bool(args.keep_official_test)
    if args.official_test_sources:
        if not keep:
            raise CLIError("--official-test-sources needs --keep-official-test")
        keep = [name.strip() for name in args.official_test_sources.split(",") if name.strip()]
    result = split_records(
        records, val=args.val, test=args.test, seed=args.seed, keep_official_test=keep,
        duplicate_groups=duplicate_groups, group_by=args.group_by,
    )
    for path, old, new, why in result.moved:
        print(f"moved {old} -> {new}: {path} ({why})")
    if result.kept_test_sources:
        print(f"official test kept for: {', '.join(result.kept_test_sources)}")
    _print_table(split_table(result.records))
    out = write_manifest(result.records, args.out, relative=args.relative)
    unit = "patient/source/duplicate" if args.group_by == "source" else "patient/duplicate"
    print(f"{out}: {len(result.records)} records in {result.units} {unit} units; "
          f"{'sources, ' if args.group_by == 'source' else ''}patients and duplicates disjoint "
          f"across splits (checked)")
    return 0


def _leave_one_source_out(args, records, duplicate_groups) -> int:
    if args.sources:
        held = [name.strip() for name in args.sources.split(",") if name.strip()]
    else:
        held = sorted({r.source for r in records if grouping_source(r) is not None})
    if not held:
        raise CLIError("no source with a publishing origin (e.g. ieee8023/...) to hold out; "
                       "name them with --sources")
    out_dir = Path(args.leave_one_source_out)
    for source in held:
        try:
            result = leave_one_source_out(records, source, val=args.val, seed=args.seed,
                                          duplicate_groups=duplicate_groups)
        except ValueError as err:
            raise CLIError(str(err)) from None
        name = "".join(c if c.isalnum() or c in "-." else "_" for c in source) + ".csv"
        out = write_manifest(result.records, out_dir / name, relative=args.relative)
        test = [r for r in result.records if r.split == "test"]
        labels = ", ".join(f"{k} {v}" for k, v in sorted(Counter(r.label for r in test).items()))
        print(f"{out}: test = {source}: {len(test)} images ({labels}); "
              f"{len(result.moved)} tied image(s) moved to test")
    print(f"{len(held)} leave-one-source-out manifests in {out_dir}")
    return 0


def _print_table(table) -> None:
    for split, row in table.items():
        labels = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("images", "patients"))
        print(f"  {split}: {row['images']} images, {row['patients']} patients ({labels})")
