"""The published release `releases/v1`: it serves on a fresh clone, with no training.

These tests read the committed files only (no run folder, no training). The ones that need the
real films (its recorded test metrics reproduced, a real film through `predict`) skip when
../shared/data is absent.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxr_cascade.cli import main

REPO_ROOT = Path(__file__).resolve().parent.parent
V1 = REPO_ROOT / "releases" / "v1"

pytestmark = pytest.mark.skipif(not (V1 / "release.json").is_file(), reason="releases/v1 not built")


@pytest.fixture(scope="module")
def release() -> dict:
    return json.loads((V1 / "release.json").read_text())


def test_release_verifies_and_fits_the_budget(release, capsys):
    assert main(["release", "verify", str(V1)]) == 0
    assert set(release["models"]) == {"stage1", "stage2", "unet"}
    stored = sum(p.stat().st_size for p in V1.rglob("*") if p.is_file())
    assert stored <= 100e6, f"releases/v1 is {stored / 1e6:.1f} MB (budget 100 MB)"
    experiments = {"stage1": "release_stage1_224", "stage2": "release_stage2_224", "unet": "release_unet_256"}
    for role, entry in release["models"].items():
        assert entry["experiment"] == experiments[role]
        assert entry["evaluation"], f"{role}: released without an evaluation (CIs)"
        with np.load(V1 / role / "weights.npz") as weights:
            kernels = {weights[k].dtype for k in weights.files if k != "paths" and weights[k].ndim >= 2}
        assert kernels == {np.dtype(np.float16)}, role
    for role in ("stage1", "stage2"):
        assert release["models"][role].get("shortcut_audit"), f"{role}: no audit verdict recorded"


def test_release_experiments_are_the_files_in_experiments(release):
    """The released configs are what the experiment files give today (one recipe).

    Read through `from_dict`, so a field added since the release (e.g. `augment.placement`)
    takes its default, which must then be today's value too."""
    from cxr_cascade.config import from_dict, load_experiment

    for role, entry in release["models"].items():
        config = load_experiment(entry["experiment"]).to_dict()
        released = from_dict(dict(entry["config"])).to_dict()
        for key in ("description",):  # prose, not recipe
            config.pop(key, None), released.pop(key, None)
        assert released == config, role


def test_predict_uses_the_release_on_a_phantom_film(tmp_path, monkeypatch, capsys):
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
    assert f"release {V1}" in captured.err
    for role, entry in json.loads((V1 / "release.json").read_text())["models"].items():
        warned = f"warning: {role} of this release is no better than chance" in captured.err
        assert warned == bool(entry.get("chance_level")), role  # stage 2 warned, stage 1 not
    answer = json.loads(captured.out.strip().splitlines()[-1])
    assert sorted(answer["probabilities"]) == sorted(["normal", "bacterial", "viral", "covid19"])
    assert abs(sum(answer["probabilities"].values()) - 1) < 1e-3


@pytest.mark.slow
def test_release_stage1_reproduces_its_recorded_test_accuracy(release, kermany_dir, tmp_path):
    """The float16 release on Kermany's official test split gives release.json's number."""
    out = tmp_path / "eval"
    assert main(["evaluate", str(V1 / "stage1"), "--out", str(out), "--n-boot", "20"]) == 0
    got = json.loads((out / "metrics.json").read_text())["models"]["stage1"]
    recorded = release["models"]["stage1"]["evaluation"]["stage1"]
    assert got["n"] == recorded["n"] == 624
    assert got["accuracy"] == pytest.approx(recorded["confidence_intervals"]["accuracy"]["value"], abs=0.005)
