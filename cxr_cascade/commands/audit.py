"""`cxr-cascade audit RUN [--data PATH ...] [--out DIR]`: does the model read the lungs?

Examples:
    cxr-cascade audit runs/stage2 --unet runs/unet
    cxr-cascade audit runs/phantom-stage1 --ground-truth build/demo/phantoms/phantoms.csv

Reports on the test split (or --data), each with a 95 % patient-bootstrap CI: the outside swap
(how much a class's probability rises when only the film outside the lungs comes from a film of
that class), the share of Grad-CAM mass inside the lung masks against the lungs' share of the
image, accuracy with the lungs blanked and with only the lungs shown, a
cross-validated probe of the source data set from the pooled cam_features (overall and within
each class), and, where lesion masks exist (phantoms: --ground-truth phantoms.csv), the pointing
game. Lung masks come from the records (ground truth) or the U-Net (--unet). The model is flagged
when a test of the calibrated rule in DIR/audit.md clears its margin (calibrated on phantoms
against a clean control: `python -m cxr_cascade.audit.demo`) (DeGrave et al., Nat. Mach. Intell. 2021: public COVID-19
models learn sources, text and markers instead of lungs). Writes DIR/audit.json, DIR/audit.md
and a few Grad-CAM overlays. Exit status 0 whether flagged or not; the verdict is printed.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from cxr_cascade.artifacts import AuditDir, RunDir
from cxr_cascade.commands import CLIError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="shortcut audit: lung attention, lungs-removed/lungs-only accuracy, source probe",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", metavar="RUN", help="run directory of a stage 1 or stage 2 classifier")
    parser.add_argument("--data", action="append", default=[], metavar="[FORMAT=]PATH",
                        help="test data instead of the run's test split (repeatable)")
    parser.add_argument("--split", default="test", help="split of the manifest (default: test)")
    parser.add_argument("--unet", metavar="RUN_DIR", help="U-Net run for lung masks (else the records' masks)")
    parser.add_argument("--ground-truth", metavar="CSV",
                        help="phantoms.csv of a phantom set: lung and lesion masks per image")
    parser.add_argument("--method", choices=("gradcam", "gradcam++"), default="gradcam")
    parser.add_argument("--fill", default="0", help="value of blanked pixels: a number or 'mean' (default: 0)")
    parser.add_argument("--pointing-tolerance", type=int, default=0, metavar="PX",
                        help="pointing game: count peaks within PX pixels of a lesion (default: 0)")
    parser.add_argument("--max-images", type=int, default=None, help="audit at most N images (seeded sample)")
    parser.add_argument("--overlays", type=int, default=6, help="Grad-CAM overlays to write (default: 6)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: RUN/audit)")
    parser.set_defaults(func=run)


def read_ground_truth(csv_path) -> dict[str, tuple[str, str]]:
    """``{resolved image path: (lung mask path, lesion mask path)}`` from a phantoms.csv."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: ground-truth table not found")
    root = csv_path.parent
    out = {}
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        needed = {"path", "lung_mask_path", "lesion_mask_path"}
        if not needed <= set(reader.fieldnames or ()):
            raise ValueError(f"{csv_path}: needs columns {sorted(needed)}; found {reader.fieldnames}")
        for row in reader:
            out[str((root / row["path"]).resolve())] = (
                str(root / row["lung_mask_path"]), str(root / row["lesion_mask_path"]))
    return out


def run(args: argparse.Namespace) -> int:
    # lazy: TensorFlow, OpenCV and matplotlib stay off cxr-cascade --help
    from cxr_cascade.audit.report import run_audit, write_audit
    from cxr_cascade.artifacts import load, load_unet_mask_fn
    from cxr_cascade.evaluation import data as R
    from cxr_cascade.explain import overlay

    try:
        fill = "mean" if args.fill == "mean" else float(args.fill)
    except ValueError:
        raise CLIError(f"--fill must be a number or 'mean'. Received: --fill {args.fill}") from None
    stage = R.require_classifier(load(args.run), args.run)
    if args.data:
        records = R.test_records(R.data_records(args.run, args.data), args.split)
    else:
        records = R.test_records(R.manifest_records(args.run), args.split)
    records, _ = R.keep_classes(records, stage.class_names)
    if args.max_images and len(records) > args.max_images:
        keep = np.sort(np.random.default_rng(0).choice(len(records), args.max_images, replace=False))
        records = [records[i] for i in keep]
    if not records:
        raise CLIError(f"no test images with labels in {list(stage.class_names)}")
    lesion_masks = None
    if args.ground_truth:
        table = read_ground_truth(args.ground_truth)
        missing = [r.path for r in records if str(Path(r.path).resolve()) not in table]
        if missing:
            raise CLIError(f"{args.ground_truth}: no ground truth for {len(missing)} images, e.g. {missing[0]}")
        pairs = [table[str(Path(r.path).resolve())] for r in records]
        records = [r.replace(mask_path=lung) for r, (lung, _) in zip(records, pairs)]
        lesion_records = [r.replace(mask_path=lesion) for r, (_, lesion) in zip(records, pairs)]
    mask_fn = load_unet_mask_fn(args.unet, stage.preprocess.image_size) if args.unet else None
    if mask_fn is not None and not args.ground_truth:
        records = [r.replace(mask_path="") for r in records]  # --unet: the U-Net's masks, not the records'
    images = R.load_images(records, stage.preprocess, stage.segment, mask_fn)
    lungs = R.load_lung_masks(records, stage.preprocess, mask_fn, images)
    if args.ground_truth:
        lesion_masks = R.load_lung_masks(lesion_records, stage.preprocess)
    labels = R.label_indices(records, stage.class_names)
    sources = [r.source for r in records]
    result, maps = run_audit(
        stage.model, images, labels, lungs, stage.class_names, lesion_masks=lesion_masks,
        sources=sources, patient_ids=[r.patient_key for r in records], method=args.method, fill=fill,
        pointing_tolerance=args.pointing_tolerance,
    )
    files = AuditDir(args.out) if args.out else RunDir(args.run).audit
    out = files.root
    figures = []
    for i in np.linspace(0, len(images) - 1, min(args.overlays, len(images))).astype(int):
        path = files.figures / f"{i:04d}_{Path(records[i].path).stem}_gradcam.png"
        overlay.save_png(path, overlay.side_by_side(images[i], maps[i], min_size=256))
        figures.append(path.relative_to(out).as_posix())
    report = write_audit(out, result, figures, extra={"run": str(args.run)})
    verdict = ("FLAGGED" if result["flag"]["flagged"] else
               "not flagged" if result["flag"]["informative"] else "not informative (model at chance)")
    att, abl = result["lung_attention"], result["ablation"]
    print(f"{args.run}: {verdict}; lung attention {att['mean_share']:.3f} vs area {att['mean_area']:.3f}; "
          f"accuracy full {abl['full']:.3f}, lungs removed {abl['lungs_removed']:.3f}, "
          f"lungs only {abl['lungs_only']:.3f} (chance {abl['chance']:.3f})")
    for reason in result["flag"]["reasons"]:
        print(f"  - {reason}")
    print(f"wrote {report}")
    return 0
