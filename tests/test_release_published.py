"""The published release (the newest in `releases/`): it serves on a fresh clone, with no training.

These tests read the committed files only (no run folder, no training). The ones that need the
real films (its recorded test metrics reproduced) skip when ../shared/data is absent.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from cxr_cascade.artifacts.release import find_release
from cxr_cascade.cli import main

REPO_ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = find_release(root=REPO_ROOT)

pytestmark = pytest.mark.skipif(PUBLISHED is None, reason="no release in releases/")


@pytest.fixture(scope="module")
def release() -> dict:
    return json.loads((PUBLISHED / "release.json").read_text())


def _overrides(command: str) -> list[str]:
    """The ``--set KEY=VALUE`` arguments of a recorded `cxr-cascade train` command."""
    words = shlex.split(command or "")
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == "--set"]


def test_overrides_reads_the_set_arguments_of_a_command():
    assert _overrides("cxr-cascade train x --data d --set epochs=8 --set seed=0 --run-dir r") == ["epochs=8", "seed=0"]
    assert _overrides("cxr-cascade train x --data d") == [] and _overrides(None) == []


def test_release_verifies_and_fits_the_budget(release, capsys):
    assert main(["release", "verify", str(PUBLISHED)]) == 0
    assert set(release["models"]) == {"stage1", "stage2", "unet"}
    stored = sum(p.stat().st_size for p in PUBLISHED.rglob("*") if p.is_file())
    assert stored <= 100e6, f"{PUBLISHED} is {stored / 1e6:.1f} MB (budget 100 MB)"
    for role, entry in release["models"].items():
        assert entry["evaluation"], f"{role}: released without an evaluation (CIs)"
        with np.load(PUBLISHED / role / "weights.npz") as weights:
            kernels = {weights[k].dtype for k in weights.files if k != "paths" and weights[k].ndim >= 2}
        assert kernels == {np.dtype(np.float16)}, role
    for role in ("stage1", "stage2"):
        assert release["models"][role].get("shortcut_audit"), f"{role}: no audit verdict recorded"
    assert release.get("cascade_rule", "gate") in ("gate", "soft", "pneumonia")


def test_release_experiments_are_the_files_in_experiments(release):
    """The released configs are what the experiment files give today with the `--set` overrides
    its training command recorded (one recipe, one trainer).

    Read through `from_dict`, so a field added since the release takes its default, which must
    then be today's value too."""
    from cxr_cascade.config import from_dict, load_experiment

    for role, entry in release["models"].items():
        config = load_experiment(entry["experiment"], _overrides(entry.get("command"))).to_dict()
        released = from_dict(dict(entry["config"])).to_dict()
        for key in ("description",):  # prose, not recipe
            config.pop(key, None), released.pop(key, None)
        assert released == config, role


def test_predict_uses_the_release_on_a_phantom_film(release, tmp_path, monkeypatch, capsys):
    import cv2

    monkeypatch.chdir(tmp_path)  # no ./models here: the repository's newest release is used
    for name in ("CXR_CASCADE_MODELS", "CXR_CASCADE_RELEASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CXR_CASCADE_CACHE", str(tmp_path / "cache"))
    film = tmp_path / "film.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(film), (rng.random((300, 280)) * 255).astype(np.uint8))
    assert main(["predict", str(film), "--json"]) == 0
    captured = capsys.readouterr()
    assert f"release {PUBLISHED}" in captured.err
    rule = release.get("cascade_rule", "gate")
    assert f"; cascade rule {rule};" in captured.err
    for role, entry in release["models"].items():
        warned = f"warning: {role} of this release is no better than chance" in captured.err
        assert warned == bool(entry.get("chance_level")), role
    answer = json.loads(captured.out.strip().splitlines()[-1])
    assert sorted(answer["probabilities"]) == sorted(["normal", "bacterial", "viral", "covid19"])
    assert abs(sum(answer["probabilities"].values()) - 1) < 1e-3 and answer["rule"] == rule


@pytest.mark.slow
def test_release_stage1_reproduces_its_recorded_test_accuracy(release, kermany_dir, tmp_path):
    """The float16 release on Kermany's official test split gives release.json's number."""
    out = tmp_path / "eval"
    assert main(["evaluate", str(PUBLISHED / "stage1"), "--data", f"kermany={kermany_dir}", "--out", str(out),
                 "--n-boot", "20"]) == 0
    got = json.loads((out / "metrics.json").read_text())["models"]["stage1"]
    recorded = release["models"]["stage1"]["evaluation"]["stage1"]
    assert got["n"] == recorded["n"] == 624
    assert got["accuracy"] == pytest.approx(recorded["confidence_intervals"]["accuracy"]["value"], abs=0.005)
