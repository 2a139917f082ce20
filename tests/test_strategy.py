"""Runtime specification: strategies (default, mirrored over two logical CPUs, multi-worker over
two loopback processes), mixed precision, XLA switches, determinism, worker roles."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from test_training import TINY, _train, phantom_root, standin, standin_path, tiny_config  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------ unit
def test_precision_and_jit_switches():
    import tensorflow as tf
    from cxr_cascade.training.strategy import precision_policy, resolve_jit

    gpu = bool(tf.config.list_physical_devices("GPU"))
    assert precision_policy("off") == "float32"
    assert precision_policy("float16") == "mixed_float16"
    assert precision_policy("bfloat16") == "mixed_bfloat16"
    assert precision_policy("auto", gpu=True, flags=frozenset()) == "mixed_float16"
    assert (resolve_jit("on"), resolve_jit("off"), resolve_jit("auto")) == (True, False, gpu)
    with pytest.raises(ValueError, match="Allowed: off, float16, bfloat16, auto"):
        precision_policy("half")


@pytest.mark.parametrize(
    "flags, policy",
    [
        # AVX512-BF16 without AMX: bfloat16 steps measured 1.38-1.48x slower (bench-models).
        ({"fpu", "avx2", "avx512f", "avx512_bf16"}, "float32"),
        ({"avx2", "amx_tile", "amx_bf16"}, "mixed_bfloat16"),  # AMX
        ({"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}, "mixed_bfloat16"),  # Sapphire Rapids
        ({"fpu", "avx2", "avx512f", "amx_tile"}, "float32"),  # AVX-512 without bfloat16
        (set(), "float32"),  # flags unknown (not Linux)
    ],
)
def test_auto_precision_on_cpus(flags, policy):
    from cxr_cascade.training.strategy import precision_policy

    assert precision_policy("auto", gpu=False, flags=frozenset(flags)) == policy


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    from cxr_cascade.training.strategy import cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu sse2 avx512_bf16 amx_bf16\n\n")
    assert cpu_flags(str(info)) == {"fpu", "sse2", "avx512_bf16", "amx_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_worker_roles_from_tf_config(monkeypatch):
    from cxr_cascade.training.strategy import make_strategy, worker_role

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert worker_role() == (True, 0)
    with pytest.raises(ValueError, match="strategy=multiworker needs TF_CONFIG"):
        make_strategy("multiworker")
    cluster = {"worker": ["localhost:1", "localhost:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert worker_role() == (False, 1)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert worker_role() == (True, 0)
    chief = dict(cluster, chief=["localhost:3"])
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": chief, "task": {"type": "worker", "index": 0}}))
    assert worker_role() == (False, 0)
    monkeypatch.setenv("TF_CONFIG", "{oops")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        worker_role()
    with pytest.raises(ValueError, match="Unknown strategy"):
        make_strategy("tpu")


def test_mixed_precision_run_restores_global_settings(standin, phantom_root, tmp_path):
    """bfloat16 compute, float32 variables and softmax; policy and determinism undone after."""
    import keras
    from tensorflow.python.framework import config as tf_config

    before_det = tf_config.is_op_determinism_enabled()
    config = tiny_config(extra=["epochs=1", "mixed_precision=bfloat16", "max_per_class=6"])
    seen = {}

    def model_fn(cfg):
        model = standin.tiny_model(cfg)
        seen["conv"] = model.get_layer("conv1").compute_dtype
        seen["kernel"] = model.get_layer("conv1").kernel.dtype
        seen["out"] = model.get_layer("probabilities").compute_dtype
        return model

    from cxr_cascade.training.runner import train

    result = train(config, tmp_path / "run", data_paths=[str(phantom_root / "chest_xray")],
                   model_fn=model_fn, verbose=0)
    assert seen == {"conv": "bfloat16", "kernel": "float32", "out": "float32"}
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["precision_policy"] == "mixed_bfloat16" and env["jit_compile"] in (False, True)
    assert all(v == v for v in result.state["history"][0].values())  # no NaN
    assert keras.mixed_precision.global_policy().name == "float32"
    assert tf_config.is_op_determinism_enabled() == before_det


# ------------------------------------------------------------------------------ distributed
def _env(**extra) -> dict:
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_mirrored_over_two_logical_cpus(standin_path, phantom_root, tmp_path):
    run = tmp_path / "run"
    spec = {"experiment": "table4_resnet50_seme", "run_dir": str(run), "logical_cpus": 2,
            "data": [str(phantom_root / "chest_xray")],
            "overrides": TINY + ["epochs=1", "strategy=mirrored", "max_per_class=8"]}
    done = subprocess.run([sys.executable, str(standin_path), json.dumps(spec)], cwd=REPO_ROOT,
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    env = json.loads((run / "environment.json").read_text())
    assert env["strategy"] == "mirrored" and env["replicas"] == 2
    assert len([d for d in env["devices"] if d["type"] == "CPU"]) == 2
    results = json.loads((run / "results.json").read_text())
    assert results["epochs"] == 1 and 0.0 <= results["accuracy"] <= 1.0


def test_multiworker_two_processes_on_loopback(standin_path, phantom_root, tmp_path):
    run = tmp_path / "run"
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    spec = {"experiment": "table4_resnet50_seme", "run_dir": str(run),
            "data": [str(phantom_root / "chest_xray")],
            "overrides": TINY + ["epochs=1", "strategy=multiworker", "max_per_class=8"]}
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        log = (tmp_path / f"worker{index}.log").open("w")
        processes.append(subprocess.Popen(
            [sys.executable, str(standin_path), json.dumps(spec)], cwd=REPO_ROOT,
            env=_env(TF_CONFIG=json.dumps(tf_config)), stdout=log, stderr=subprocess.STDOUT))
    try:
        codes = [p.wait(timeout=300) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], logs[0][-3000:] + "\n----\n" + logs[1][-3000:]
    assert all("STANDIN-DONE" in log for log in logs)
    env = json.loads((run / "environment.json").read_text())
    assert env["strategy"] == "multiworker" and env["replicas"] == 2
    assert json.loads((run / "results.json").read_text())["epochs"] == 1
    # Only the chief (worker 0) wrote: one command line, one checkpoint.
    assert (run / "command.txt").read_text().count("standin") == 1
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["epoch-0001.weights.h5"]
