"""`cxr-cascade segment IMAGE... --out DIR [--unet RUN|MODELS_DIR]`: lung masks as PNG files.

Examples:
    cxr-cascade segment scan1.png scan2.jpg --out masks          # the release's U-Net
    cxr-cascade segment scans/*.png --out masks --unet runs/unet
    cxr-cascade segment scan1.png --out masks --unet models     # the exported lung_unet

Writes DIR/<stem>_mask.png per image: 8-bit, 255 = lung, 0 = background, at the input's own
size (the U-Net's probability at its input size, resized bilinearly, then thresholded at 0.5).
A film whose EXIF orientation says it is displayed turned is read upright (as viewers show it;
the mask is at the displayed size) and the line printed says so. Two inputs with the same stem (a/x.png, b/x.jpg) get x_mask.png and x_2_mask.png, and the line
printed for the second says it was renamed. A bad file is reported on one line and does not stop
the others (exit status 1 when any failed); a mask that cannot be written stops the run with one
line naming it (exit status 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from cxr_cascade.commands import CLIError
from pipelines.atomic import write_png
from pipelines.image_policy import image_bytes_problem, shape_warning


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment", help="write lung masks (PNG, 255 = lung) with the U-Net",
        description="Lung masks for chest X-ray files, at each input's size (255 = lung).",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for <stem>_mask.png")
    parser.add_argument(
        "--unet", metavar="RUN",
        help="a U-Net run directory, a release model folder (releases/v1/unet) or an export folder "
             "holding lung_unet/ (default: the release in releases/)",
    )
    parser.add_argument("--release", metavar="DIR",
                        help="a release folder whose U-Net to use (also CXR_CASCADE_RELEASE=DIR)")
    parser.add_argument("--threshold", type=float, default=0.5, help="lung if p >= this (default 0.5)")
    parser.set_defaults(func=run)


def unique_name(stem: str, suffix: str, used: set) -> str:
    """``stem + suffix``, or ``stem_2 + suffix``, ``stem_3``... when an earlier input of the same
    run already took that name (``a/x.png`` and ``b/x.jpg``); `predict --heatmap` names the same
    way. Adds the name to `used`."""
    name, i = f"{stem}{suffix}", 1
    while name in used:
        i += 1
        name = f"{stem}_{i}{suffix}"
    used.add(name)
    return name


def run(args: argparse.Namespace) -> int:
    # lazy: TensorFlow stays off cxr-cascade --help
    from cxr_cascade.artifacts import NO_RELEASE, find_release, load, load_release

    if not 0.0 < args.threshold < 1.0:
        raise CLIError(f"--threshold must be in (0, 1). Received: --threshold={args.threshold}")
    served = None
    if args.unet and (Path(args.unet) / "lung_unet").is_dir():  # an export (MODELS_DIR)
        # lazy: TensorFlow stays off cxr-cascade --help
        import tensorflow as tf

        from cxr_cascade.predict import find_model

        path = find_model(args.unet, "lung_unet")
        served = tf.saved_model.load(str(path)).signatures["serving_default"]
        used, stage = str(path), None
    elif args.unet:
        stage = load(args.unet)
        used = args.unet
    else:
        release = Path(args.release) if args.release else find_release()
        if release is None:
            raise CLIError(NO_RELEASE.replace("--models, no ./models and no", "--unet and no"))
        stage = load_release(release, "unet")
        used = f"release {release} (unet)"
    if stage is not None and stage.task != "unet":
        raise CLIError(f"--unet {args.unet}: a {stage.task} run, not a U-Net run")
    print(f"lung U-Net: {used}", file=sys.stderr)
    # lazy: TensorFlow and OpenCV stay off cxr-cascade --help
    import cv2
    import tensorflow as tf

    from pipelines.decode import decode_image, upright_bytes
    from pipelines.preprocess import preprocess_image

    if stage is not None and stage.preprocess.resize_mode != "stretch":
        raise CLIError(f"{used}: resize_mode={stage.preprocess.resize_mode!r}; segment maps masks "
                       "back to the input's size for resize_mode='stretch' only")
    kwargs = {k: v for k, v in stage.preprocess.as_kwargs().items()} if stage is not None else {}

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    used: set[str] = set()
    for file in args.images:
        try:
            data = Path(file).read_bytes()
        except OSError as err:
            print(f"cxr-cascade segment: {file}: cannot read ({err.strerror or err})", file=sys.stderr)
            failed += 1
            continue
        problem = image_bytes_problem(data) if data else "empty file (0 bytes)"
        notes = []
        if problem is None:
            try:
                # what a viewer shows: the mask is at the displayed size, over the upright film
                data, orientation = upright_bytes(data)
                if orientation != 1:
                    notes.append(f"EXIF orientation {orientation} applied: the mask is upright")
                image = decode_image(tf.constant(data))
            except tf.errors.InvalidArgumentError:
                problem = "corrupt or truncated image"
        if problem is not None:
            print(f"cxr-cascade segment: {file}: {problem}", file=sys.stderr)
            failed += 1
            continue
        if served is not None:  # the SavedModel preprocesses the bytes itself
            try:
                prob = served(image_bytes=tf.constant([data]))["mask_probabilities"].numpy()[0, ..., 0]
            except tf.errors.InvalidArgumentError:
                print(f"cxr-cascade segment: {file}: corrupt or truncated image", file=sys.stderr)
                failed += 1
                continue
        else:
            x = preprocess_image(image, **kwargs)
            prob = np.asarray(stage.model(x[None], training=False), dtype=np.float32)[0, ..., 0]
        height, width = int(image.shape[0]), int(image.shape[1])
        prob = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
        mask = np.where(prob >= args.threshold, 255, 0).astype(np.uint8)
        target = out / unique_name(Path(file).stem, "_mask.png", used)
        write_png(target, mask)  # raises OSError naming `target`: the CLI's one line, exit 2
        if target.name != f"{Path(file).stem}_mask.png":
            notes.append("renamed: another input has this name")
        warning = shape_warning(data)
        if warning:
            notes.append(warning)
        print(f"{file} -> {target} (lung {100 * float(np.mean(mask == 255)):.1f} %"
              + "".join(f"; {note}" for note in notes) + ")")
    if failed:
        print(f"cxr-cascade segment: {failed} of {len(args.images)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0

