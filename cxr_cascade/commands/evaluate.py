"""`cxr-cascade evaluate RUN [--stage2 RUN2] [--data PATH ...] [--out DIR]`: metrics and report.

Examples:
    cxr-cascade evaluate runs/stage1                       # its test split (splits.csv)
    cxr-cascade evaluate runs/stage2 --unet runs/unet      # stage 2 reads lung-masked images
    cxr-cascade evaluate runs/stage1 --stage2 runs/stage2 --data test4.csv   # the cascade
    cxr-cascade evaluate runs/resnet50 runs/resnet50_gap runs/seme_resnet50  # Figures 12, 13

Writes DIR/metrics.json, DIR/report.md and DIR/figures/*.png (ROC curves, confusion matrices,
reliability diagram): accuracy, per-class precision / recall / specificity / F1, macro F1,
one-vs-rest ROC AUC, with 95 % CIs from a bootstrap over patients, the expected calibration error,
and a data section (sources, split sizes, patients per split, disjointness, duplicates). With
--stage2 the cascade's 4-class output (Lv et al. 2020) is evaluated end to end on a test set with
4-class truth (default: the union of both runs' test splits), besides each stage alone. The cascade's
decision is the paper's hard gate (stage 2 decides the films stage 1 calls viral; --rule soft: the
argmax of the products p1 * p2; --rule pneumonia: stage 2 decides every film stage 1 calls bacterial
or viral, its COVID-19 overriding stage 1's call); the report shows every rule, the chosen one as
"cascade", and the products (the pneumonia route's distribution for that rule) score the ROC AUCs.
Its stage-2 section is computed on the paper's Table 5 population: ieee8023 films whose truth is a
stage-2 class (not Kermany's pediatric viral films). --by source adds per-source figures.
Several runs of one task are evaluated on the first run's test set (or --data) and compared in
one ROC figure and one row of confusion matrices, as the paper's Figures 12, 13, 18 and 19.
Whatever the test set, a film is evaluated only once, and only if every run that knows it (the
evaluated runs and --unseen-by RUN, through their splits.csv) put it in --split: no run is scored
on a film it trained on, and no test film enters a validation score. Two cascades with different
stage-2 runs are compared on the same films by naming the other one with --unseen-by.
--ood ieee8023 (with --data PATH/covid-chestxray-dataset) checks a stage 1 out of distribution:
ieee8023's adult "No Finding" and bacterial / fungal frontal films, normal vs pneumonia collapsed
(score p(bacterial) + p(viral), call: argmax not normal), accuracy, sensitivity, specificity and
ROC AUC with patient-bootstrap CIs (default --out RUN/evaluation-ood-ieee8023).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxr_cascade.artifacts import EvaluationDir, RunDir
from cxr_cascade.commands import CLIError
from cxr_cascade.registry import CASCADE_RULES, CASCADE_RULES_HELP, DEFAULT_CASCADE_RULE, OOD_SETS
from cxr_cascade.selection import read_sources


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="metrics with patient-bootstrap CIs, calibration, ROC/confusion figures and a report",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run directory of a stage 1 or stage 2 classifier; several runs of one "
                             "task are compared on the first run's test set")
    parser.add_argument("--stage2", metavar="RUN2", help="stage 2 run: evaluate the whole cascade")
    parser.add_argument(
        "--data", action="append", default=[], metavar="[FORMAT=]PATH",
        help="test data instead of the runs' test splits (repeatable; a manifest or a data set folder)",
    )
    parser.add_argument("--split", default="test", help="split of the manifest to evaluate (default: test)")
    parser.add_argument(
        "--unseen-by", action="append", default=[], metavar="RUN",
        help="also leave out the films RUN used for another split than --split (repeatable; the "
             "evaluated runs always count): several cascades compared on the same films",
    )
    parser.add_argument("--unet", metavar="RUN_DIR", help="U-Net run for lung masking when records carry no masks")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: RUN/evaluation)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument("--batch-size", type=int, default=16, help="inference batch size (default: 16)")
    parser.add_argument("--rule", choices=CASCADE_RULES, default=DEFAULT_CASCADE_RULE,
                        help=f"cascade decision: {CASCADE_RULES_HELP}; default: {DEFAULT_CASCADE_RULE}; "
                             "the report shows the other rules too")
    parser.add_argument("--by", choices=("source",), help="also report per-group metrics (source)")
    parser.add_argument("--ood", choices=tuple(OOD_SETS), metavar="SET",
                        help="out-of-distribution check of a stage 1 on SET's adult normal and "
                             "pneumonia films (ieee8023; pass its folder with --data)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: TensorFlow and matplotlib stay off cxr-cascade --help
    from cxr_cascade.evaluation import report
    from cxr_cascade.artifacts import load
    from cxr_cascade.evaluation import data as R
    from cxr_cascade.evaluation.cascade import evaluate_cascade
    from cxr_cascade.evaluation.stages import evaluate_classifiers

    if args.n_boot < 1:
        raise CLIError(f"--n-boot must be a positive integer. Received: --n-boot {args.n_boot}")
    if args.stage2 and len(args.runs) > 1:
        raise CLIError(f"--stage2 takes one stage 1 run. Received: {len(args.runs)} runs")
    args.run = args.runs[0]
    out = Path(args.out) if args.out else RunDir(args.run).evaluation.root
    common = dict(out_dir=out, unet=args.unet, n_boot=args.n_boot, seed=args.seed,
                  batch_size=args.batch_size, by_source=bool(args.by))
    stage1 = load(args.run)
    if args.ood:
        return _evaluate_ood(args, stage1)
    if stage1.task == "unet":
        return _evaluate_unet(args, stage1, out)
    stage1 = R.require_classifier(stage1, args.run)
    manifests = [R.manifest_records(args.run)] if RunDir(args.run).splits.is_file() else []
    extra = {"run": str(args.run), "split": args.split, **({"data_args": list(args.data)} if args.data else {})}
    comparison = None

    if not args.stage2:
        if args.data:
            records = R.test_records(R.data_records(args.run, args.data), args.split)
        elif manifests:
            records = R.test_records(manifests[0], args.split)
        else:
            raise CLIError(f"{args.run}: no splits.csv; pass --data")
        records = _unseen(args, records, args.runs, extra)
        stages = {}
        for i, run_dir in enumerate(args.runs):
            stage = stage1 if i == 0 else R.require_classifier(load(run_dir), run_dir)
            if tuple(stage.class_names) != tuple(stage1.class_names):
                raise CLIError(
                    f"{run_dir}: classes {list(stage.class_names)} differ from {args.run}'s "
                    f"{list(stage1.class_names)}; compare runs of one task"
                )
            name = stage.task if len(args.runs) == 1 else R.run_config(run_dir).name
            if name in stages:
                name = f"{name}-{i + 1}"
            stages[name] = stage
        result = evaluate_classifiers(stages, R.as_trained(args.run, records), **common)
        sections = result.sections
        if len(args.runs) > 1:
            extra["compared_runs"] = [str(r) for r in args.runs]
            comparison = report.comparison_figures(
                out, {name: (result.y_true, p) for name, p in result.probabilities.items()},
                result.class_names)
        extra["dropped_other_labels"] = result.dropped
    else:
        stage2 = R.require_classifier(load(args.stage2), args.stage2)
        if RunDir(args.stage2).splits.is_file():
            manifests.append(R.manifest_records(args.stage2))
        if args.data:
            records = R.test_records(read_sources(list(args.data)), args.split)
        elif len(manifests) == 2:
            records = [r for manifest in manifests for r in manifest if r.split == args.split]
        else:
            raise CLIError("the cascade needs a 4-class test set: pass --data (both runs need splits.csv otherwise)")
        records = _unseen(args, records, [args.run, args.stage2], extra)
        result = evaluate_cascade(stage1, stage2, records, rule=args.rule, **common)
        sections = result.sections
        extra.update(result.notes)
        extra["decision_rule"] = args.rule
        extra.update(stage2_run=str(args.stage2), dropped_other_labels=result.dropped,
                     image_size=max(stage1.preprocess.image_size, stage2.preprocess.image_size))

    data = None
    if manifests:
        all_records = [r for m in manifests for r in m]
        data = report.data_summary(all_records)
        data["exact_duplicates_across_splits"] = R.duplicate_images_across_splits(all_records)
        data["duplicates_removed"] = None  # the trainer keeps duplicate groups in one split
        data["dedup_policy"] = getattr(R.run_config(args.run), "dedup", None)
    report.write_report(out, sections, data, extra=extra, comparison=comparison)
    for name, m in sections.items():
        ci = m["confidence_intervals"]
        print(
            f"{name}: n={m['n']} accuracy {ci['accuracy']['value']:.3f} "
            f"({ci['accuracy']['low']:.3f}-{ci['accuracy']['high']:.3f}), "
            f"macro F1 {m['macro_f1']:.3f}, macro AUC "
            f"{'n/a' if m['macro_auc'] is None else format(m['macro_auc'], '.3f')}, "
            f"ECE {m['calibration']['ece']:.3f}"
        )
    print(f"wrote {EvaluationDir(out).metrics} and {EvaluationDir(out).report}")
    return 0


def _evaluate_unet(args, stage, out: Path) -> int:
    """A U-Net run (or release model): `evaluation.segmentation.evaluate_unet` on its test split."""
    # lazy: TensorFlow and matplotlib stay off cxr-cascade --help
    from cxr_cascade.evaluation import report
    from cxr_cascade.evaluation import data as R
    from cxr_cascade.evaluation.segmentation import METRICS, evaluate_unet, unet_markdown

    if args.stage2 or len(args.runs) > 1:
        raise CLIError(f"{args.run}: a U-Net run is evaluated alone (no --stage2, one RUN)")
    if args.data:
        records = R.test_records(R.data_records(args.run, args.data), args.split)
    elif RunDir(args.run).splits.is_file():
        records = R.test_records(R.manifest_records(args.run), args.split)
    else:
        raise CLIError(f"{args.run}: no splits.csv; pass --data")
    _, metrics = evaluate_unet(stage, records, n_boot=args.n_boot, seed=args.seed, batch_size=args.batch_size)
    out.mkdir(parents=True, exist_ok=True)
    report.write_json_atomic(EvaluationDir(out).metrics, {
        "run": str(args.run), "split": args.split, "models": {"unet": metrics}})
    report.write_text_atomic(EvaluationDir(out).report, unet_markdown(
        metrics, f"U-Net evaluation: {args.run}", f"{args.split} split"))
    ci = metrics["confidence_intervals"]
    for key in METRICS:
        print(f"unet: n={metrics['n']} {key} {ci[key]['value']:.4f} ({ci[key]['low']:.4f}-{ci[key]['high']:.4f})")
    print(f"wrote {EvaluationDir(out).metrics} and {EvaluationDir(out).report}")
    return 0


def _evaluate_ood(args, stage) -> int:
    """A stage 1 (run or release) on an out-of-distribution set: `evaluation.ood.evaluate_ood`."""
    # lazy: TensorFlow and matplotlib stay off cxr-cascade --help
    from cxr_cascade.evaluation import ood, report

    if args.stage2 or len(args.runs) > 1:
        raise CLIError(f"--ood checks one stage 1 alone (no --stage2, one RUN). Received: {len(args.runs)} "
                       f"run(s){', --stage2' if args.stage2 else ''}")
    if stage.task != "stage1" or ood.NORMAL_CLASS not in stage.class_names:
        raise CLIError(f"{args.run}: --ood checks a stage 1 model (classes with 'normal'); this is a "
                       f"{stage.task} model with classes {list(stage.class_names)}")
    if not args.data:
        raise CLIError(f"--ood {args.ood} needs the data set: pass --data PATH (its folder)")
    try:
        records, probs, metrics = ood.evaluate_ood(stage, read_sources(list(args.data)), args.ood,
                                                   n_boot=args.n_boot, seed=args.seed, batch_size=args.batch_size)
    except ValueError as error:
        raise CLIError(f"--data {' '.join(args.data)}: {error}") from None
    files = EvaluationDir(args.out) if args.out else RunDir(args.run).ood_evaluation(args.ood)
    out = files.root
    header = [f"model: `{args.run}` ({stage.preprocess.image_size} px)", f"data: `{' '.join(args.data)}`",
              f"set: {args.ood} frontal films, normal labels {list(ood.OOD_SETS[args.ood][0])}, "
              f"pneumonia labels {list(ood.OOD_SETS[args.ood][1])}"]
    out.mkdir(parents=True, exist_ok=True)
    report.write_json_atomic(files.metrics, {
        "run": str(args.run), "ood": args.ood, "data": list(args.data),
        "class_names": list(stage.class_names), "models": {"stage1": metrics}})
    report.write_text_atomic(files.report, ood.ood_markdown(
        metrics, f"Stage 1 out of distribution: {args.ood}", header))
    report.write_text_atomic(files.predictions, ood.predictions_csv(records, probs, stage.class_names))
    ci = metrics["confidence_intervals"]
    print(f"stage1 on {args.ood}: n={metrics['n']} ({metrics['n_normal']} normal, {metrics['n_pneumonia']} "
          "pneumonia) " + ", ".join(
              f"{k} {'n/a' if ci[k]['value'] is None else format(ci[k]['value'], '.3f')}" for k in ood.METRICS))
    print(f"wrote {files.metrics}, {files.report} and {files.predictions}")
    return 0


def _unseen(args, records: list, runs: list, extra: dict) -> list:
    """`records` without repeats and without films a run used for another split (`unseen_records`
    over the evaluated runs and --unseen-by); what was left out goes to stderr and the report."""
    from cxr_cascade.evaluation import data as R  # lazy: TensorFlow stays off cxr-cascade --help

    kept, left_out = R.unseen_records(records, [*runs, *args.unseen_by], args.split)
    extra["left_out"] = left_out
    if args.unseen_by:
        extra["unseen_by"] = [str(r) for r in args.unseen_by]
    if left_out["used_by_a_run"]:
        print(f"note: {left_out['used_by_a_run']} film(s) left out: a run used them for another split "
              f"than {args.split!r}", file=sys.stderr)
    if not kept:
        raise CLIError(f"no {args.split} films left once the films the runs used for other splits are left out")
    return kept
