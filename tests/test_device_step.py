"""The GPU step (`cxr_cascade.device`): shards that catch damage, epochs sized to the time, data
packed at training size without changing what the pipeline computes, and (slow) the whole step
end to end on this CPU: `make train-device DRY_RUN=1`'s `python -m cxr_cascade.device dry-run`.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cxr_cascade.device import remote as R
from cxr_cascade.device import shards as S

REPO_ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------- shards
def _files(tmp_path: Path, sizes: dict[str, int]) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    files = {}
    for name, size in sizes.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        files[name] = path
    return files


def test_shards_round_trip_within_the_limits(tmp_path):
    files = _files(tmp_path, {"unet/model.keras": 5000, "unet/config.json": 300, "run.json": 10})
    manifest = S.write_shards(files, tmp_path / "out", max_shard_bytes=4096, max_files=8)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(manifest["shards"]) == len(names) - 1 >= 2  # cut into pieces, plus shards.json
    assert all(p.stat().st_size <= 4096 for p in (tmp_path / "out").glob("shard-*"))
    S.read_shards(tmp_path / "out", tmp_path / "back")
    for name, path in files.items():
        assert (tmp_path / "back" / name).read_bytes() == path.read_bytes()


def test_a_flipped_byte_in_a_shard_is_named_and_nothing_is_written(tmp_path):
    files = _files(tmp_path, {"stage1/model.keras": 9000})
    S.write_shards(files, tmp_path / "out", max_shard_bytes=4096)
    shard = tmp_path / "out" / "shard-01.bin"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="shard-01.bin: SHA-256 differs"):
        S.read_shards(tmp_path / "out", tmp_path / "back")
    assert not (tmp_path / "back").exists()
    # Negative control: the intact byte reads back.
    data[100] ^= 0x01
    shard.write_bytes(bytes(data))
    S.read_shards(tmp_path / "out", tmp_path / "back")


def test_shards_refuse_what_cannot_come_back_and_bad_names(tmp_path):
    files = _files(tmp_path, {"a.bin": 10_000})
    with pytest.raises(ValueError, match="at most 2 shard"):
        S.write_shards(files, tmp_path / "out", max_shard_bytes=2048, max_files=3)
    with pytest.raises(ValueError, match="Received: name='../x'"):
        S.write_shards({"../x": files["a.bin"]}, tmp_path / "out")
    with pytest.raises(ValueError, match="max_files"):
        S.write_shards(files, tmp_path / "out", max_files=1)


# ---------------------------------------------------------------------------- sizing
def test_epochs_fit_the_time_and_stop_at_the_target():
    # 1,000 elements at 1,000 img/s with 1.25 safety: 1.25 s per epoch (+ 300 eval / 3 / 1000).
    epochs, epoch_s = R.size_epochs(seconds=100.0, img_per_s=1000.0, fixed_s=20.0, elements=1000,
                                    eval_images=300, target=80)
    assert epoch_s == pytest.approx(1.25 * 1100 / 1000)
    assert epochs == int(80 // epoch_s) == 58
    assert R.size_epochs(seconds=1e6, img_per_s=1000.0, fixed_s=0, elements=1000, eval_images=0,
                         target=80)[0] == 80
    assert R.size_epochs(seconds=1.0, img_per_s=1.0, fixed_s=10, elements=1000, eval_images=0,
                         target=80)[0] == 1  # never zero: one epoch is the least a run can be
    with pytest.raises(ValueError, match="img_per_s"):
        R.size_epochs(seconds=1, img_per_s=0, fixed_s=0, elements=1, eval_images=0, target=1)
    assert R.share_of_time([100.0, 300.0], 200.0) == [50.0, 150.0]
    assert R.share_of_time([100.0, 300.0], 1000.0) == [250.0, 750.0]
    with pytest.raises(ValueError, match="estimates"):
        R.share_of_time([0.0], 10.0)


# ---------------------------------------------------------------------------- packing
@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    from cxr_cascade.phantoms import write_phantom_dataset

    out = tmp_path_factory.mktemp("device") / "phantoms"
    write_phantom_dataset(out, n=48, size=64, seed=1)
    return out


def test_pack_keeps_the_split_and_what_the_pipeline_reads(phantoms, tmp_path):
    from cxr_cascade.device.pack import pack_run
    from cxr_cascade.training import arrays as A
    from pipelines.records import read_manifest

    pack = tmp_path / "pack"
    plan = pack_run("a", phantoms, pack, overrides=["preprocess.image_size=32", "dedup=off"],
                    epochs_cap=2, travel_limit=None, log=lambda *_: None)
    assert [s["name"] for s in plan["stages"]] == ["unet", "stage1"]
    assert all(s["epochs_target"] == 2 for s in plan["stages"])
    assert "mixed_precision=bfloat16" in plan["stages"][1]["overrides"]
    assert "augment.placement=model" in plan["stages"][1]["overrides"]
    origins = json.loads((pack / "origins.json").read_text())
    for name in ("unet", "stage1"):
        records = read_manifest(pack / f"{name}.csv")
        files = origins[name]["files"]
        assert len({r.path for r in records}) == len(records)  # no file named twice
        for record in records[:6]:
            original = files[Path(record.path).relative_to(pack.resolve()).as_posix()]
            # 64 px phantoms into 32 px trainings: re-encoded at 32 px, within JPEG's error.
            np.testing.assert_allclose(A.load_image(record.path, 32), A.load_image(original, 32), atol=0.06)
            if record.mask_path:
                mask_origin = files[Path(record.mask_path).relative_to(pack.resolve()).as_posix()]
                np.testing.assert_array_equal(A.load_mask(record.mask_path, 32), A.load_mask(mask_origin, 32))
    # The split is the one a CPU run makes of the originals.
    from cxr_cascade.device.pack import split_records
    from cxr_cascade.device.plan import STAGES

    _, expected = split_records(STAGES["stage1"], phantoms / "chest_xray", ["preprocess.image_size=32", "dedup=off"])
    packed = read_manifest(pack / "stage1.csv")
    by_origin = {origins["stage1"]["files"][Path(r.path).relative_to(pack.resolve()).as_posix()]: r.split
                 for r in packed}
    assert by_origin == {r.path: r.split for r in expected}


def test_pack_refuses_run_b_without_a_unet_and_a_foreign_out(phantoms, tmp_path):
    from cxr_cascade.device.pack import pack_run

    with pytest.raises(ValueError, match="--unet-run"):
        pack_run("b", phantoms, tmp_path / "b", overrides=["preprocess.image_size=32", "dedup=off"],
                 travel_limit=None, log=lambda *_: None)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not a device pack"):
        pack_run("a", phantoms, tmp_path / "mine", travel_limit=None, log=lambda *_: None)
    assert (tmp_path / "mine" / "keep.txt").is_file()
    with pytest.raises(ValueError, match="Received: run='c'"):
        pack_run("c", phantoms, tmp_path / "c")


def test_pack_trains_the_experiment_given_for_a_stage(phantoms, tmp_path):
    from cxr_cascade.device.pack import pack_run

    plan = pack_run("a", phantoms, tmp_path / "a", overrides=["preprocess.image_size=32", "dedup=off"],
                    epochs_cap=1, travel_limit=None, log=lambda *_: None,
                    experiments={"stage1": "study_stage1_geometric"})
    assert [(s["name"], s["experiment"]) for s in plan["stages"]] == [
        ("unet", "release_unet_256"), ("stage1", "study_stage1_geometric")]


def test_pack_refuses_an_experiment_of_another_stage_or_task(phantoms, tmp_path):
    from cxr_cascade.device import __main__ as cli
    from cxr_cascade.device.pack import pack_run

    with pytest.raises(ValueError, match="may name"):  # run a has no stage 2
        pack_run("a", phantoms, tmp_path / "a", experiments={"stage2": "release_stage2_224"})
    with pytest.raises(ValueError, match="must be a 'stage1' experiment"):
        pack_run("a", phantoms, tmp_path / "a", experiments={"stage1": "release_stage2_224"})
    assert not (tmp_path / "a").exists()  # refused before anything is written
    assert cli._pairs(["stage1=x", "unet=y"]) == {"stage1": "x", "unet": "y"}
    with pytest.raises(ValueError, match="STAGE=NAME"):
        cli._pairs(["stage1"])


# ---------------------------------------------------------------------------- end to end
# `make train-device DRY_RUN=1`: both remote runs through tools/device_train.sh on this CPU, then
# the rebuilt folders load as CPU runs do and a damaged shard is refused. The default suite runs
# it with the TensorFlow trainer: Keras on JAX compiles every network op by op on a CPU (the whole
# JAX dry run took 28 min on 2 busy cores), so the JAX run is `slow` (make test-all).
@pytest.mark.parametrize("backend", [
    "tensorflow", pytest.param("jax", marks=[pytest.mark.slow, pytest.mark.skipif(
        importlib.util.find_spec("jax") is None, reason="JAX is not installed")])])
def test_dry_run_trains_packs_shards_and_rebuilds_loadable_runs(tmp_path, backend):
    work = tmp_path / "dry"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "cxr_cascade.device", "dry-run", "--work", str(work),
                           "--n", "48", "--backend", backend], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    from cxr_cascade.artifacts import load

    runs = work / "runs"
    for name, task in (("unet", "unet"), ("stage1", "stage1"), ("stage2", "stage2")):
        run = runs / name
        stage = load(run)
        assert stage.task == task and stage.weights == "model.keras"
        for file in ("config.json", "state.json", "history.csv", "environment.json", "results.json",
                     "splits.csv", "splits.sha256", "command.txt", "device.json"):
            assert (run / file).is_file(), f"{run}: no {file}"
        assert not (run / "checkpoints").exists()
        record = json.loads((run / "device.json").read_text())
        assert record["finished"] and record["epochs_completed"] == record["sizing"]["epochs"] <= 2
        assert "epochs=" + str(record["sizing"]["epochs"]) in record["overrides"]
        with open(run / "splits.csv", newline="") as handle:
            paths = [row["path"] for row in csv.DictReader(handle)]
        assert all(str(work / "phantoms") in p for p in paths)  # the originals again
    # A damaged shard: the rebuild names it and writes nothing.
    out = work / "out-a"
    shard = sorted(out.glob("shard-*.bin"))[-1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x40
    shard.write_bytes(bytes(data))
    bad = subprocess.run([sys.executable, "-m", "cxr_cascade.device", "rebuild", str(out),
                          "--runs", str(tmp_path / "again")], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and f"{shard.name}: SHA-256 differs" in bad.stderr
    assert not any((tmp_path / "again").glob("*/model.keras"))
