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


# ------------------------------------------------------------------------- inside an epoch
def _state(run: Path) -> dict:
    return json.loads((run / "state.json").read_text())


def _assert_same_run(standin, config, a: Path, b: Path, epochs: int) -> None:
    assert _history(a) == _history(b)
    final = f"checkpoints/epoch-{epochs:04d}.weights.h5"
    for name in (final, "best.weights.h5"):
        for x, y in zip(_weights(standin, config, a / name), _weights(standin, config, b / name)):
            np.testing.assert_array_equal(x, y)
    ra = json.loads((a / "results.json").read_text())
    rb = json.loads((b / "results.json").read_text())
    for key in ("accuracy", "macro_f1", "confusion_matrix", "best_epoch", "epochs"):
        assert ra[key] == rb[key], key


def test_stop_inside_epochs_and_resume_equals_uninterrupted(standin, phantom_root, tmp_path):
    """Two stops inside epochs (one in the first, one in the second), each continued in a new
    `train` call: same weights, same logged metrics (the running sums are restored), same test."""
    data = [str(phantom_root / "chest_xray")]
    config = tiny_config(extra=["epochs=2"])
    straight = tmp_path / "straight"
    _train(standin, config, straight, data)

    run = tmp_path / "stopped"
    first = _train(standin, config, run, data, stop_after_steps=3)
    assert first.stopped == "step limit" and first.results is None
    state = _state(run)
    assert state["epochs_completed"] == 0
    assert (state["partial"]["epoch"], state["partial"]["step"]) == (1, 3)
    assert (run / state["partial"]["checkpoint"]).is_file()
    assert state["stopped"].startswith("step limit: epoch 1, step 3/")
    steps = int(state["stopped"].split("/")[1].split()[0])
    assert steps > 4, "the epoch must be long enough to stop inside the second one too"

    second = _train(standin, config, run, data, resume=True, stop_after_steps=steps)
    assert second.stopped == "step limit"
    state = _state(run)
    assert state["epochs_completed"] == 1 and state["partial"]["step"] == 3 + steps - steps
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "epoch-0001.weights.h5", "epoch-0002-step-000003.weights.h5"]

    _train(standin, config, run, data, resume=True)
    assert "partial" not in _state(run) and _state(run)["stopped"] is None
    _assert_same_run(standin, config, straight, run, epochs=2)


def test_a_damaged_partial_checkpoint_falls_back_to_the_epoch_start(standin, phantom_root, tmp_path,
                                                                    capsys):
    data = [str(phantom_root / "chest_xray")]
    config = tiny_config(extra=["epochs=1"])
    straight = tmp_path / "straight"
    _train(standin, config, straight, data)
    run = tmp_path / "run"
    _train(standin, config, run, data, stop_after_steps=2)
    partial = run / _state(run)["partial"]["checkpoint"]
    data_bytes = bytearray(partial.read_bytes())
    data_bytes[len(data_bytes) // 2] ^= 0xFF
    partial.write_bytes(bytes(data_bytes))
    capsys.readouterr()
    _train(standin, config, run, data, resume=True)
    assert "damaged checkpoint" in capsys.readouterr().err
    _assert_same_run(standin, config, straight, run, epochs=1)


def test_time_budget_stops_between_epochs_and_resumes(standin, phantom_root, tmp_path):
    data = [str(phantom_root / "chest_xray")]
    config = tiny_config(extra=["epochs=2"])
    run = tmp_path / "run"
    result = _train(standin, config, run, data, time_budget=1e-6)  # spent before epoch 1 starts
    assert result.stopped == "time budget" and _state(run)["epochs_completed"] == 0
    assert _state(run)["stopped"] == "time budget: after epoch 0"
    result = _train(standin, config, run, data, resume=True)
    assert result.stopped is None and result.results is not None


def test_sigkill_and_sigterm_inside_epochs_then_resume_equals_uninterrupted(
        standin, standin_path, phantom_root, tmp_path):
    """A real process SIGKILLed after a periodic step checkpoint (`save_every`), the resumed
    process SIGTERMed inside a later epoch (it writes a step checkpoint and exits 0), a third
    process finishing the run: the same weights and results as one process straight through."""
    data = [str(phantom_root / "chest_xray")]
    overrides = TINY + ["epochs=3"]
    spec = {"experiment": "table4_resnet50_seme", "overrides": overrides, "data": data}
    straight, run = tmp_path / "straight", tmp_path / "run"
    reference = _spawn(standin_path, dict(spec, run_dir=str(straight)), tmp_path / "straight.log")
    victim = _spawn(standin_path, dict(spec, run_dir=str(run), train_kwargs={"save_every": 0}),
                    tmp_path / "killed.log")

    def wait_for_partial(process, log, not_at=None):
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                partial = _state(run).get("partial")
            except (FileNotFoundError, json.JSONDecodeError):
                partial = None
            if partial and (partial["epoch"], partial["step"]) != not_at and partial["step"] >= 2:
                return partial["epoch"], partial["step"]
            assert process.poll() is None, log.read_text()[-3000:]
            time.sleep(0.01)
        raise AssertionError("no step checkpoint appeared")

    try:
        killed_at = wait_for_partial(victim, tmp_path / "killed.log")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        resumed = _spawn(standin_path, {"run_dir": str(run), "resume": True, "data": data,
                                        "train_kwargs": {"save_every": 0}}, tmp_path / "resumed.log")
        wait_for_partial(resumed, tmp_path / "resumed.log", not_at=killed_at)
        resumed.send_signal(signal.SIGTERM)
        assert resumed.wait(timeout=120) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
        assert reference.wait(timeout=240) == 0, (tmp_path / "straight.log").read_text()[-3000:]
    finally:
        for process in (victim, reference):
            if process.poll() is None:
                process.kill()
    log = (tmp_path / "resumed.log").read_text()
    assert f"step {killed_at[1]}/" in log and f"of epoch {killed_at[0]}" in log, log[-2000:]
    assert '"stopped": "SIGTERM"' in log, log[-2000:]
    state = _state(run)
    assert state["stopped"].startswith("SIGTERM: epoch ") and state.get("partial")
    assert not (run / "results.json").exists()

    final = _spawn(standin_path, {"run_dir": str(run), "resume": True, "data": data},
                   tmp_path / "final.log")
    assert final.wait(timeout=240) == 0, (tmp_path / "final.log").read_text()[-3000:]
    _assert_same_run(standin, tiny_config(extra=["epochs=3"]), straight, run, epochs=3)


@pytest.mark.parametrize("text, seconds", [("150m", 9000.0), ("2.5h", 9000.0), ("90s", 90.0),
                                           ("42", 42.0), (" 1.5 m ", 90.0), (7, 7.0)])
def test_parse_duration(text, seconds):
    from cxr_cascade.training.budget import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "10d", "-5m", "0", "1e3", "ten minutes", True])
def test_parse_duration_refuses_bad_values(text):
    from cxr_cascade.training.budget import parse_duration

    with pytest.raises(ValueError, match=r"`--time-budget` must be .*Received: --time-budget="):
        parse_duration(text, "--time-budget")


def test_step_budget_never_stops_on_an_epoch_s_last_step():
    from cxr_cascade.training.budget import BudgetStop, StepBudget

    budget = StepBudget(first_step=0, epoch_steps=3, deadline=0.0)  # long spent
    budget.set_model(None)
    with pytest.raises(BudgetStop) as stop:
        budget.on_train_batch_end(0)
    assert (stop.value.step, stop.value.reason) == (1, "time budget")
    last = StepBudget(first_step=2, epoch_steps=3, deadline=0.0)
    last.on_train_batch_end(2)  # the epoch's last step: the epoch-end checkpoint follows instead
    assert last.step == 3


def test_cli_time_budget_exits_75_and_names_the_resume_command(phantom_root, tmp_path, capsys):
    from cxr_cascade.cli import main

    run = tmp_path / "run"
    sets = [a for item in TINY + ["epochs=2"] for a in ("--set", item)]
    argv = ["train", "table4_resnet50_seme", "--data", str(phantom_root / "chest_xray"),
            "--run-dir", str(run), "--quiet", *sets]
    assert main(argv + ["--time-budget", "1ms"]) == 2
    assert "--time-budget" in capsys.readouterr().err
    assert not run.exists()
    assert main(argv + ["--time-budget", "0.001s"]) == 75
    out = capsys.readouterr().out
    assert f"cxr-cascade train --resume {run}" in out
    assert json.loads((run / "state.json").read_text())["stopped"] == "time budget: after epoch 0"
    assert "--time-budget 0.001s" in (run / "command.txt").read_text()


def test_runs_default_outside_the_work_tree(monkeypatch, tmp_path):
    from cxr_cascade.artifacts import default_runs_root

    monkeypatch.delenv("CXR_CASCADE_RUNS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_runs_root() == tmp_path / "cache" / "cxr-cascade" / "runs"
    monkeypatch.setenv("CXR_CASCADE_RUNS", str(tmp_path / "mine"))
    assert default_runs_root() == tmp_path / "mine"
