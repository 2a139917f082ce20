"""Local half of the GPU step's return: shards -> run folders in the format of a CPU run.

`rebuild(shards_dir, runs_root)` verifies every shard (`shards.read_shards`: sizes and SHA-256 of
each shard, of the joined stream and of every file; nothing is written on a mismatch), then per
training folder in them:

- float16 weights (`weights.f16.npz` + `architecture.json`, when the return was over its limit)
  become `model.keras` again: the architecture loaded as it was saved on the remote, the weights
  cast to the variables' dtypes (the release's rule, `release.load_release`);
- `splits.csv` names the original files again (the packed copy -> original map in `device.json`,
  then dropped from it) and `splits.sha256` is recomputed; `inputs.json` names the original data
  folder and the local U-Net run;
- the folder moves to `runs_root/<stage>` (an existing run there is never overwritten).

What stays different from a CPU run: `device.json` (the remote run: sizing, measured step,
float16 or not, the packed data's root), `device-train.log`, `environment.json`'s machine, and no
`checkpoints/` or `best.weights.h5` (they did not come back; `model.keras` holds the best epoch).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from cxr_cascade.artifacts.layout import RunDir
from cxr_cascade.device import plan as P
from cxr_cascade.device.shards import read_shards
from pipelines.atomic import atomic_write_text


def _restore_model(run: Path) -> None:
    # Keras only for a model that came back as float16 weights.
    # lazy: Keras stays out of the remote driver (no Keras backend set there, no TensorFlow)
    import keras
    from cxr_cascade.artifacts import write_model
    from cxr_cascade.artifacts.release import read_weights

    npz, architecture = run / P.HALF_WEIGHTS_FILE, run / P.HALF_ARCHITECTURE_FILE
    network = keras.models.model_from_json(architecture.read_text())
    read_weights(network, npz, architecture.name)
    write_model(network, run)
    npz.unlink()
    architecture.unlink()


def _map_splits(run: Path, record: dict) -> int:
    """Rewrites splits.csv's packed paths to the originals; returns the rows changed."""
    rd = RunDir(run)
    splits = rd.splits
    if not splits.is_file():
        return 0
    root, files = Path(record["pack_root"]), record["origins"]
    with open(splits, newline="") as handle:
        rows = list(csv.reader(handle))
    header, changed = rows[0], 0

    def original(value: str) -> str:
        nonlocal changed
        parts = []
        for part in value.split("|") if value else []:
            key = Path(part).relative_to(root).as_posix() if Path(part).is_relative_to(root) else None
            if key is None or key not in files:
                raise ValueError(f"{splits}: {part} is not a file of the device pack {root}")
            parts.append(files[key])
            changed += 1
        return "|".join(parts)

    columns = [header.index(c) for c in ("path", "mask_path") if c in header]
    for row in rows[1:]:
        for column in columns:
            row[column] = original(row[column])
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    atomic_write_text(splits, buffer.getvalue())
    rd.write_splits_hash()
    return changed


def rebuild(shards_dir: str | Path, runs_root: str | Path, *, unet_run: Optional[str | Path] = None,
            log=print) -> dict[str, Path]:
    """Run folders from one remote run's shards (module docstring); returns stage -> folder.

    Args:
        shards_dir: the folder the remote run's files came back to (shards.json + shard-*.bin).
        runs_root: where the run folders go (`runs_root/unet`, `stage1`, `stage2`).
        unet_run: the local U-Net run stage 2 names in its inputs.json (default runs_root/unet).

    Raises:
        ValueError / FileNotFoundError: a damaged or missing shard (nothing written), or a
            run folder already at the target.
    """
    runs_root = Path(runs_root)
    runs_root.mkdir(parents=True, exist_ok=True)
    incoming = Path(tempfile.mkdtemp(prefix=".device-", dir=runs_root))
    try:
        read_shards(shards_dir, incoming)
        stages = sorted(p.name for p in incoming.iterdir() if (p / P.DEVICE_FILE).is_file())
        for name in stages:
            if (runs_root / name).exists():
                raise ValueError(f"{runs_root / name}: already exists; rebuild into another folder "
                                 "(an existing run is never overwritten)")
        built = {}
        for name in stages:
            run = incoming / name
            record = json.loads((run / P.DEVICE_FILE).read_text())
            if (run / P.HALF_WEIGHTS_FILE).is_file():
                _restore_model(run)
            rows = _map_splits(run, record)
            inputs = RunDir(run).inputs
            if inputs.is_file() or record.get("data"):
                saved = json.loads(inputs.read_text()) if inputs.is_file() else {}
                saved["data"] = [record["data"]]
                if saved.get("unet") or record.get("unet_run"):
                    saved["unet"] = str(Path(unet_run or runs_root / "unet").resolve())
                inputs.write_text(json.dumps(saved, indent=2) + "\n")
            record["origins"] = f"{len(record['origins'])} packed files mapped back to {record['data']}"
            (run / P.DEVICE_FILE).write_text(json.dumps(record, indent=1) + "\n")
            shutil.move(str(run), runs_root / name)
            built[name] = runs_root / name
            log(f"rebuilt {runs_root / name} ({record['epochs_completed']} epochs, "
                f"{'finished' if record['finished'] else 'stopped early'}; {rows} paths mapped back)")
        if (incoming / "run.json").is_file():
            shutil.copyfile(incoming / "run.json", runs_root / f"device-run-{json.loads((incoming / 'run.json').read_text())['run']}.json")
        return built
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
