"""Resume specification: a run killed at any moment continues from its last completed epoch and
ends exactly where an uninterrupted run ends (deterministic ops, same seed), and nothing already
written is ever corrupted.

The stand-in model (tests/test_training.py) contains MoEx (random pairing) and dropout, and the
stage-1 settings add CLAHE on a random 40 % of images, so every source of randomness the real
networks have is exercised.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from test_training import TINY, _train, phantom_root, standin, standin_path, tiny_config  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parent.parent


def _weights(standin_module, config, path):
    model = standin_module.tiny_model(config)
    model.load_weights(path)
    return model.get_weights()


def _history(run: Path) -> list[dict]:
    rows = json.loads((run / "state.json").read_text())["history"]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_stop_and_resume_in_process_equals_uninterrupted(standin, phantom_root, tmp_path):
    data = [str(phantom_root / "chest_xray")]
    config = tiny_config(extra=["epochs=2"])
    assert config.moex is not None and config.augment.clahe_fraction == 0.4

    straight = tmp_path / "straight"
    _train(standin, config, straight, data)

    resumed = tmp_path / "resumed"
    partial = _train(standin, config, resumed, data, stop_after_epochs=1)
    assert partial.state["epochs_completed"] == 1 and partial.results is None
    assert not (resumed / "results.json").exists()
    _train(standin, config, resumed, data, resume=True)

    assert _history(resumed) == _history(straight)
    final = "checkpoints/epoch-0002.weights.h5"
    for a, b in zip(_weights(standin, config, straight / final), _weights(standin, config, resumed / final)):
        np.testing.assert_array_equal(a, b)
    ra = json.loads((straight / "results.json").read_text())
    rb = json.loads((resumed / "results.json").read_text())
    assert (ra["accuracy"], ra["macro_f1"], ra["confusion_matrix"]) == (
        rb["accuracy"], rb["macro_f1"], rb["confusion_matrix"])
    commands = (resumed / "command.txt").read_text()
    assert commands.count("\ntest\n") == 2  # the start and the resume are both recorded


def test_resume_refuses_a_changed_config(standin, phantom_root, tmp_path):
    from cxr_cascade.training.runner import ResumeError

    data = [str(phantom_root / "chest_xray")]
    run = tmp_path / "run"
    _train(standin, tiny_config(extra=["epochs=2"]), run, data, stop_after_epochs=1)
    with pytest.raises(ResumeError, match=r"differs .* in learning_rate"):
        _train(standin, tiny_config(extra=["epochs=2", "learning_rate=0.2"]), run, data, resume=True)


def _spawn(standin_path: Path, spec: dict, log: Path) -> subprocess.Popen:
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2", PYTHONHASHSEED="0")
    # The same thread pools in every process, so float reductions add up in the same order.
    env.update(TF_NUM_INTEROP_THREADS="1", TF_NUM_INTRAOP_THREADS="2")
    return subprocess.Popen(
        [sys.executable, str(standin_path), json.dumps(spec)],
        cwd=REPO_ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )


def _check_nothing_corrupted(run: Path) -> int:
    """Every artifact parses; returns the epoch the state names."""
    state = json.loads((run / "state.json").read_text())
    for name in ("config.json", "environment.json", "inputs.json"):
        json.loads((run / name).read_text())
    # The state is the commit point; the CSV is derived from it afterwards, so a kill between
    # the two leaves the CSV one epoch behind (absent after the first epoch), never ahead.
    rows = []
    if (run / "history.csv").exists():
        with open(run / "history.csv") as handle:
            rows = list(csv.DictReader(handle))
    assert state["epochs_completed"] - 1 <= len(rows) <= state["epochs_completed"]
    assert (run / state["checkpoint"]).is_file()
    return state["epochs_completed"]


def test_sigkill_then_resume_equals_uninterrupted(standin, standin_path, phantom_root, tmp_path):
    """SIGKILL a real training process after its first checkpoint; --resume finishes the run."""
    data = [str(phantom_root / "chest_xray")]
    overrides = TINY + ["epochs=3"]
    spec = {"experiment": "table4_resnet50_seme", "overrides": overrides, "data": data}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    # The uninterrupted run and the run to be killed start together.
    reference = _spawn(standin_path, dict(spec, run_dir=str(straight)), tmp_path / "straight.log")
    victim = _spawn(standin_path, dict(spec, run_dir=str(killed)), tmp_path / "killed.log")
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            state = killed / "state.json"
            if state.is_file() and json.loads(state.read_text())["epochs_completed"] >= 1:
                break
            assert victim.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        assert reference.wait(timeout=240) == 0, (tmp_path / "straight.log").read_text()[-3000:]
    finally:
        for process in (victim, reference):
            if process.poll() is None:
                process.kill()
    assert victim.returncode == -signal.SIGKILL
    completed = _check_nothing_corrupted(killed)
    assert 1 <= completed < 3, "the kill must land before the run finished"
    assert not (killed / "results.json").exists()

    resume = _spawn(standin_path, {"run_dir": str(killed), "resume": True, "data": data},
                    tmp_path / "resume.log")
    assert resume.wait(timeout=240) == 0, (tmp_path / "resume.log").read_text()[-3000:]
    assert f"resuming table4_resnet50_seme from epoch {completed}/3" in (tmp_path / "resume.log").read_text()

    assert _history(killed) == _history(straight)
    config = tiny_config(extra=["epochs=3"])
    final = "checkpoints/epoch-0003.weights.h5"
    for a, b in zip(_weights(standin, config, straight / final), _weights(standin, config, killed / final)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_weights(standin, config, straight / "best.weights.h5"),
                    _weights(standin, config, killed / "best.weights.h5")):
        np.testing.assert_array_equal(a, b)
    ra = json.loads((straight / "results.json").read_text())
    rb = json.loads((killed / "results.json").read_text())
    for key in ("accuracy", "macro_f1", "confusion_matrix", "best_epoch", "epochs"):
        assert ra[key] == rb[key], key
