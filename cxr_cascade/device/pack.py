"""Local half of the GPU step: one remote run's data, split manifests, wheels and plan in a folder.

`pack_run(run, data_root, out)` writes (the folder travels with the run as a `carry` path):

    plan.json          the run's trainings (`plan.RUNS`), --set overrides, epoch caps, time limit
    <stage>.csv        the split manifest of each training (paths relative to the folder): the
                       split made here, on the original files, exactly as a CPU run makes it
                       (`training.data.select_records` + `split`), so the remote trains on it
    data/xx/<sha>.ext  the images and masks, named by content: a file two trainings share
                       (lung-masks' Kermany images) travels once
    origins.json       per training: packed file -> original file (the rebuild maps splits.csv back)
    wheels/*.whl       the Python packages the remote lacks (keras, namex, optree)
    unet-run/          run b only: the U-Net's config.json + model.keras (stage 2's masks)
    size.json          bytes of the folder and of the code tree that travels with it

Images are packed at training size, never changing what the pipeline computes beyond 8-bit
rounding: one no larger than the training size S in both sides is copied byte for byte (the
pipeline resizes it as usual); a larger one is resized here exactly as the pipeline does
(`training.arrays.load_image`, "stretch" resize), rounded to 8 bits and stored as a grey JPEG
(quality `quality`): <= 1/255 + JPEG's error. Masks become 1-bit PNGs of the binary lung
(`mask > 0.5`, the pipelines' rule) at their own size when no larger than S, else at S after
`training.arrays.load_mask`: both give the pipeline the same mask bits as the original.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
from PIL import Image

from cxr_cascade.artifacts.layout import RunDir
from cxr_cascade.config import load_experiment
from cxr_cascade.device import plan as P
from pipelines.records import write_manifest

MIB = 2**20
TRAVEL_LIMIT = 64 * MIB  # what may travel per remote run: code tree + carried folders
REPO_ROOT = Path(__file__).resolve().parents[2]


def tree_bytes(repo: Path = REPO_ROOT) -> Optional[int]:
    """Bytes of the tracked and untracked-not-ignored files of `repo` (what travels with a run),
    or None outside a git checkout."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=repo, capture_output=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    total = 0
    for name in filter(None, listing.decode().split("\0")):
        path = repo / name
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


class _Store:
    """Content-addressed files under `root/data`, one name per content and training."""

    def __init__(self, root: Path):
        self.root = root
        self.used: dict[str, dict[str, str]] = {}  # stage -> packed name -> original

    def put(self, stage: str, data: bytes, ext: str, origin: str) -> str:
        digest = hashlib.sha256(data).hexdigest()[:24]
        names = self.used.setdefault(stage, {})
        name, copy = f"data/{digest[:2]}/{digest}{ext}", 1
        # Two originals with equal bytes inside one training stay two files: a manifest naming
        # one file twice is refused as leakage (`pipelines.splits.split_problems`).
        while name in names and names[name] != origin:
            copy += 1
            name = f"data/{digest[:2]}/{digest}-{copy}{ext}"
        path = self.root / name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        names[name] = origin
        return name


def _encode(array: np.ndarray, fmt: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        grey = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
        Image.fromarray(grey, "L").save(buffer, "JPEG", quality=quality)
    else:  # binary mask, 1 bit per pixel
        Image.fromarray(np.asarray(array) > 0.5).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def _image_size(path: str) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def pack_image(path: str, size: int, quality: int) -> tuple[bytes, str]:
    """(bytes, extension) of one image at training size `size` (module docstring)."""
    # lazy: Keras (training.arrays) stays out of the remote driver: no backend set, no TensorFlow
    from cxr_cascade.training import arrays as A

    width, height = _image_size(path)
    if width <= size and height <= size:
        return Path(path).read_bytes(), Path(path).suffix.lower()
    return _encode(A.load_image(path, size), "JPEG", quality), ".jpg"


def pack_mask(mask_path: str, size: int) -> bytes:
    """1-bit PNG of the lung of `mask_path` ("|"-joined files are united), module docstring."""
    # lazy: Keras (training.arrays) stays out of the remote driver: no backend set, no TensorFlow
    from cxr_cascade.training import arrays as A

    parts = [p.strip() for p in mask_path.split("|") if p.strip()]
    width, height = _image_size(parts[0])
    if width <= size and height <= size and all(_image_size(p) == (width, height) for p in parts):
        lung = np.zeros((height, width), bool)
        for part in parts:
            lung |= A.decode_image_file(part) > 0.5
        return _encode(lung, "PNG", 0)
    return _encode(A.load_mask(mask_path, size), "PNG", 0)


def split_records(stage: P.Stage, data_path: Path, overrides: Sequence[str]):
    """(config, records with `split` set) of `stage` on `data_path`, as a CPU run splits them."""
    # lazy: Keras (training.data) stays out of the remote driver: no backend set, no TensorFlow
    from cxr_cascade.training import data as D

    config = load_experiment(stage.experiment, P.stage_overrides(stage.name, tuple(overrides)))
    if config.preprocess.resize_mode != "stretch":
        raise ValueError(
            f"experiment {config.name!r}: packing at training size needs "
            f"preprocess.resize_mode='stretch'. Received: resize_mode={config.preprocess.resize_mode!r}"
        )
    paths = [str(data_path)]
    records = D.split(config, D.select_records(config, D.read_sources(paths), paths))
    return config, records


def _check_task(stage: P.Stage) -> None:
    """An experiment given for `stage` trains the same task as the release's (a U-Net for "unet")."""
    task = load_experiment(stage.experiment).task
    expected = load_experiment(P.STAGES[stage.name].experiment).task
    if task != expected:
        raise ValueError(f"`experiments` for {stage.name!r} must be a {expected!r} experiment. "
                         f"Received: {stage.name}={stage.experiment!r} (task {task!r})")


def pack_run(run: str, data_root: str | Path, out: str | Path, *, overrides: Sequence[str] = (),
             epochs_cap: Optional[int] = None, wheels: Optional[str | Path] = None,
             unet_run: Optional[str | Path] = None, time_limit_s: float = 500.0,
             backend: str = "jax", quality: int = 95, travel_limit: Optional[int] = TRAVEL_LIMIT,
             experiments: Optional[Mapping[str, str]] = None, log=print) -> dict:
    """Writes the pack of remote run `run` ("a" or "b", `plan.RUNS`) into `out`.

    Args:
        run: which remote run.
        data_root: folder holding chest_xray/, covid-chestxray-dataset/ and lung-masks/.
        out: the pack folder: absent, or an earlier pack (replaced).
        overrides: `--set` overrides for every training (after the device's own).
        epochs_cap: at most this many epochs (default: each paper row's count).
        wheels: folder of .whl files to carry (None: none; the remote must have Keras).
        unet_run: run b: the trained U-Net run folder (config.json + model.keras).
        time_limit_s: the remote driver's budget for the whole run (installs to packing).
        backend: Keras backend on the remote.
        quality: JPEG quality of the re-encoded images.
        travel_limit: refuse a pack that with the code tree exceeds this (None: report only).
        experiments: stage name -> experiment to train instead of the release's (e.g. the v2
            stage 1 recipe); of the same task as the stage it replaces.

    Returns:
        The plan (also in `out/plan.json`), with the measured sizes under "size".
    """
    stages = P.stages_of(run, experiments)
    for stage in stages:
        _check_task(stage)
    data_root, out = Path(data_root), Path(out)
    if out.exists():
        if not (out / P.PLAN_FILE).is_file():
            raise ValueError(f"{out}: exists and is not a device pack (no {P.PLAN_FILE}); choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    store = _Store(out)
    entries, origins = [], {}
    for stage in stages:
        name = stage.name
        source = data_root / stage.data
        if not source.exists():
            raise FileNotFoundError(f"{source}: no such folder (the data of {stage.experiment})")
        config, records = split_records(stage, source, overrides)
        size = config.image_size if isinstance(config.image_size, int) else max(config.image_size)
        packed = []
        for record in records:
            data, ext = pack_image(record.path, size, quality)
            path = store.put(name, data, ext, record.path)
            mask = ""
            if record.mask_path:
                mask = store.put(name, pack_mask(record.mask_path, size), ".png", record.mask_path)
            packed.append(record.replace(path=str(out / path), mask_path=str(out / mask) if mask else ""))
        write_manifest(packed, out / f"{name}.csv", relative=True)
        origins[name] = {"data": str(source.resolve()), "files": store.used[name]}
        target = load_experiment(stage.target).epochs
        counts = {s: sum(r.split == s for r in records) for s in ("train", "val", "test")}
        entries.append({
            "name": name, "experiment": stage.experiment, "manifest": f"{name}.csv",
            "overrides": P.stage_overrides(name, tuple(overrides)),
            "epochs_target": int(min(target, epochs_cap) if epochs_cap else target),
            "epochs_target_from": f"{stage.target} ({target} epochs)"
                                  + (f", capped at {epochs_cap}" if epochs_cap else ""),
            "needs_unet": stage.needs_unet, "split_counts": counts,
        })
        log(f"pack {run}: {name}: {len(records)} images ({counts}), {len(store.used[name])} files")
    (out / P.ORIGINS_FILE).write_text(json.dumps(origins, sort_keys=True))
    unet_source = None
    if any(stage.needs_unet for stage in stages):
        if unet_run is None:
            raise ValueError(f"run {run} trains stage 2, which needs the U-Net: pass --unet-run RUN_DIR "
                             "(the U-Net rebuilt from run a)")
        unet_source = Path(unet_run)
        target_dir = out / P.UNET_RUN_DIR
        target_dir.mkdir()
        source = RunDir(unet_source)
        for path in (source.config, source.model):
            if not path.is_file():
                raise FileNotFoundError(f"--unet-run {unet_source}: no {path.name} (a finished U-Net run?)")
            shutil.copyfile(path, target_dir / path.name)
    wheel_files = []
    if wheels is not None:
        wheel_files = sorted(Path(wheels).glob("*.whl"))
        if not wheel_files:
            raise FileNotFoundError(f"--wheels {wheels}: no .whl files (run `make device-wheels`)")
        (out / "wheels").mkdir()
        for wheel in wheel_files:
            shutil.copyfile(wheel, out / "wheels" / wheel.name)
    plan = {
        "run": run, "backend": backend, "time_limit_s": float(time_limit_s), "stages": entries,
        "unet_run": str(unet_source.resolve()) if unet_source else None,
        "wheels": [w.name for w in wheel_files],
    }
    (out / P.PLAN_FILE).write_text(json.dumps(plan, indent=1) + "\n")
    pack_size, code = folder_bytes(out), tree_bytes()
    total = pack_size + (code or 0)
    plan["size"] = {"pack_bytes": pack_size, "tree_bytes": code, "travel_bytes": total,
                    "data_bytes": folder_bytes(out / "data"),
                    "wheel_bytes": sum(w.stat().st_size for w in wheel_files)}
    (out / "size.json").write_text(json.dumps(plan["size"], indent=1) + "\n")
    log(f"pack {run}: {pack_size / MIB:.1f} MiB packed (data {plan['size']['data_bytes'] / MIB:.1f}) + "
        f"code tree {(code or 0) / MIB:.1f} MiB = {total / MIB:.1f} MiB to travel "
        f"(limit {TRAVEL_LIMIT / MIB:.0f} MiB)")
    if travel_limit is not None and total > travel_limit:
        raise ValueError(
            f"{out}: {total / MIB:.1f} MiB would travel ({pack_size / MIB:.1f} MiB pack + "
            f"{(code or 0) / MIB:.1f} MiB code tree), over the {travel_limit / MIB:.0f} MiB a run "
            "may carry: move releases/ out of the checkout for the device calls (`mv releases "
            "/tmp/cxr-releases`, back afterwards), or see the largest files: "
            "`git ls-files | xargs du -b | sort -n | tail`"
        )
    return plan


def python_has(module: str, python: str = sys.executable) -> bool:
    """Whether `python` can import `module` (the dry run picks its backend with this)."""
    probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0
