"""tools/train_queue.sh: finished runs skipped, unfinished resumed, missing started, and the queue
stops at the first run that did not finish (a stand-in CLI records what it was asked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
QUEUE = REPO_ROOT / "tools" / "train_queue.sh"

FAKE_CLI = r'''#!/usr/bin/env python3
"""Stand-in for `cxr-cascade`: logs its argv; `train EXP --run-dir R` makes R a run; a run whose
name holds "stop" stops (status 75) instead of finishing."""
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(" ".join(args) + "\n")
run = Path(args[args.index("--resume") + 1] if "--resume" in args else args[args.index("--run-dir") + 1])
run.mkdir(parents=True, exist_ok=True)
(run / "config.json").write_text("{}")
if "stop" in run.name:
    (run / "state.json").write_text(json.dumps({"finished": False}))
    sys.exit(75)
(run / "state.json").write_text(json.dumps({"finished": True}))
(run / "results.json").write_text("{}")
'''


@pytest.fixture()
def fake(tmp_path):
    cli = tmp_path / "fake-cli"
    cli.write_text(FAKE_CLI)
    cli.chmod(0o755)
    env = dict(os.environ, CLI=str(cli), PYTHON=sys.executable, FAKE_LOG=str(tmp_path / "calls.log"),
               TRAIN_ARGS="--time-budget 1m")
    return tmp_path, env


def _run_queue(tmp_path, env, lines):
    queue = tmp_path / "queue.txt"
    queue.write_text("\n".join(lines) + "\n")
    done = subprocess.run(["bash", str(QUEUE), str(queue)], env=env, capture_output=True, text=True,
                          timeout=300)
    calls = (tmp_path / "calls.log").read_text().splitlines() if (tmp_path / "calls.log").exists() else []
    return done, calls


def test_missing_runs_start_finished_ones_are_skipped_unfinished_ones_resume(fake):
    tmp_path, env = fake
    a, b = tmp_path / "a", tmp_path / "b"
    lines = ["# a comment", "", f"{a} exp_a --data x --set seed=1", f"{b} exp_b --data y"]
    done, calls = _run_queue(tmp_path, env, lines)
    assert done.returncode == 0, done.stdout + done.stderr
    assert calls == [f"train exp_a --run-dir {a} --quiet --data x --set seed=1 --time-budget 1m",
                     f"train exp_b --run-dir {b} --quiet --data y --time-budget 1m"]
    (b / "state.json").write_text(json.dumps({"finished": False}))  # as if stopped at its budget
    (tmp_path / "calls.log").unlink()
    done, calls = _run_queue(tmp_path, env, lines)
    assert done.returncode == 0, done.stdout + done.stderr
    assert calls == [f"train --resume {b} --quiet --time-budget 1m"]
    assert f"{a} finished; skipped" in done.stdout


def test_the_queue_stops_at_a_run_that_did_not_finish(fake):
    tmp_path, env = fake
    unet, stage2 = tmp_path / "unet-stop", tmp_path / "stage2"
    done, calls = _run_queue(tmp_path, env, [f"{unet} unet_exp", f"{stage2} stage2_exp --unet {unet}"])
    assert done.returncode == 75
    assert len(calls) == 1 and not stage2.exists()  # stage 2 never starts on an unfinished U-Net
    assert "run the queue again to continue" in done.stdout
