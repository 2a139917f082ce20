"""`cxr-cascade gradcam RUN IMAGE... --out DIR`: Grad-CAM heatmaps of a trained classifier.

Examples:
    cxr-cascade gradcam runs/stage1 scan1.png scan2.jpeg --out heatmaps/
    cxr-cascade gradcam runs/stage2 scan.png --out heatmaps/ --method gradcam++ --class covid19

For each image: DIR/<name>_gradcam.png (the original and the heatmap overlay side by side, as the
paper's Figures 11 and 17) and DIR/<name>_gradcam.npy (the raw map, float32 [S, S] in [0, 1],
1 = most important, at the model's input size). The map explains the predicted class unless
--class names one. Images go through the run's evaluation preprocessing. A bad file is reported
on one line and does not stop the others; the exit status is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from cxr_cascade.commands import CLIError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "gradcam",
        help="Grad-CAM / Grad-CAM++ heatmap overlays (PNG) and raw maps (.npy) for image files",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", metavar="RUN", help="run directory of a stage 1 or stage 2 classifier")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--method", choices=("gradcam", "gradcam++"), default="gradcam")
    parser.add_argument("--class", dest="class_name", metavar="NAME",
                        help="explain this class instead of the predicted one")
    parser.add_argument("--alpha", type=float, default=0.4, help="overlay opacity (default: 0.4)")
    parser.add_argument("--unet", metavar="RUN_DIR", help="U-Net run, when the model reads lung-masked images")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: TensorFlow and matplotlib stay off cxr-cascade --help
    from cxr_cascade.artifacts import load, load_unet_mask_fn
    from cxr_cascade.evaluation import data as R
    from cxr_cascade.explain import overlay
    from cxr_cascade.explain.gradcam import GradCAM

    if not 0.0 <= args.alpha <= 1.0:
        raise CLIError(f"--alpha must be in [0, 1]. Received: --alpha {args.alpha}")
    stage = R.require_classifier(load(args.run), args.run)
    class_index = None
    if args.class_name is not None:
        if args.class_name not in stage.class_names:
            raise CLIError(
                f"--class must be one of {', '.join(stage.class_names)}. Received: --class {args.class_name}"
            )
        class_index = list(stage.class_names).index(args.class_name)
    if stage.segment and not args.unet:
        raise CLIError(f"{args.run}: the model reads lung-masked images; pass --unet RUN_DIR (a U-Net run)")
    mask_fn = load_unet_mask_fn(args.unet, stage.preprocess.image_size) if stage.segment else None
    explainer = GradCAM(stage.model, args.method)
    out = Path(args.out)
    failed = 0
    used: set[str] = set()
    for path in args.images:
        try:
            image = R.load_image(path, stage.preprocess, stage.segment, "", mask_fn)
        except (ValueError, FileNotFoundError) as error:
            failed += 1
            print(f"cxr-cascade gradcam: {error}", file=sys.stderr, flush=True)
            continue
        maps, classes = explainer(image[None], class_index=class_index)
        probs = np.asarray(stage.model.predict(image[None], verbose=0))[0]
        stem = Path(path).stem
        name, k = stem, 1
        while name in used:  # two inputs with the same file name in different folders
            k += 1
            name = f"{stem}-{k}"
        used.add(name)
        overlay.save_npy(out / f"{name}_gradcam.npy", maps[0])
        overlay.save_png(out / f"{name}_gradcam.png", overlay.side_by_side(image, maps[0], args.alpha, min_size=256))
        explained = stage.class_names[int(classes[0])]
        predicted = stage.class_names[int(probs.argmax())]
        print(f"{path}: predicted {predicted} ({probs.max():.3f}); map of {explained} -> "
              f"{out / (name + '_gradcam.png')}", flush=True)
    return 1 if failed else 0
