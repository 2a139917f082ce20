"""What a clinic's files and a tampered release do to predict, segment and verify.

Each test builds its bad input itself (tiny phantom-free synthetic images, tiny untrained models
in a release built here) and checks what the user gets: one line naming the file and the problem,
or the answer the clean input gets. The models are random: the machinery is tested, never the
accuracy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxr_cascade.cli import main
from test_predict import STAGE1, STAGE2, tiny_classifier, write_run


@pytest.fixture(scope="module")
def clinic(tmp_path_factory):
    """Tiny runs (two classifiers and a 4/8-wide U-Net at 32 px), a release built from them and
    a few synthetic films."""
    import keras

    from cxr_cascade.models import build_unet
    from cxr_cascade.release import build_release

    keras.utils.set_random_seed(3)
    root = tmp_path_factory.mktemp("clinic")
    base = {"image_size": 32, "backbone": "resnet50"}
    runs = {
        "stage1": write_run(root / "runs" / "stage1",
                            {"name": "s1", "task": "stage1", "classes": STAGE1, **base},
                            tiny_classifier(3, "stage1")),
        "stage2": write_run(root / "runs" / "stage2",
                            {"name": "s2", "task": "stage2", "classes": STAGE2, **base},
                            tiny_classifier(2, "stage2")),
        "unet": write_run(root / "runs" / "unet",
                          {"name": "u", "task": "unet", "image_size": 32, "unet_filters": [4, 8],
                           "monitor": "val_loss"},
                          build_unet((32, 32, 1), filters=(4, 8))),
    }
    release = root / "releases" / "v1"
    build_release(release, {k: str(v) for k, v in runs.items()})
    films = root / "films"
    films.mkdir()
    yy, xx = np.mgrid[0:48, 0:40]
    film = (127 + 100 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype(np.uint8)  # not symmetric
    cv2.imwrite(str(films / "x.png"), film)
    return {"root": root, "runs": runs, "release": release, "films": films, "film": film}


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------- 1. writes that fail are reported
def test_segment_into_an_unwritable_target_fails_in_one_line(clinic, tmp_path, capsys):
    # Root ignores file modes, so the unwritable target is a folder where the mask file goes:
    # cv2.imwrite returns False there, as on a read-only file system.
    out = tmp_path / "masks"
    (out / "x_mask.png").mkdir(parents=True)
    code = main(["segment", str(clinic["films"] / "x.png"), "--out", str(out),
                 "--unet", str(clinic["runs"]["unet"])])
    captured = capsys.readouterr()
    assert code != 0
    assert "->" not in captured.out  # nothing claimed as written
    errors = [l for l in _lines(captured.err) if not l.startswith("lung U-Net:")]
    assert len(errors) == 1 and "Traceback" not in captured.err, captured.err
    assert str(out / "x_mask.png") in errors[0] and "cannot write" in errors[0]
    assert ".tmp" not in errors[0]  # the user's path, not a temporary name


def test_atomic_write_names_the_destination_not_its_temporary(tmp_path):
    from pipelines.atomic import atomic_write_bytes

    target = tmp_path / "a.png"
    target.mkdir()
    with pytest.raises(OSError) as info:
        atomic_write_bytes(target, b"x")
    assert info.value.filename == str(target) and "cannot write" in info.value.strerror
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary left behind


# -------------------------------------------------------------- 4. output names never collide
def test_segment_same_stem_from_two_folders_gets_two_masks(clinic, tmp_path, capsys):
    a, b = tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"
    for path, film in ((a, clinic["film"]), (b, 255 - clinic["film"])):
        path.parent.mkdir()
        cv2.imwrite(str(path), film)
    out = tmp_path / "masks"
    assert main(["segment", str(a), str(b), "--out", str(out),
                 "--unet", str(clinic["runs"]["unet"])]) == 0
    lines = _lines(capsys.readouterr().out)
    assert sorted(p.name for p in out.iterdir()) == ["x_2_mask.png", "x_mask.png"]
    assert f"{a} -> {out / 'x_mask.png'}" in lines[0] and "renamed" not in lines[0]
    assert f"{b} -> {out / 'x_2_mask.png'}" in lines[1] and "renamed" in lines[1]


@pytest.fixture(scope="module")
def models(clinic):
    """The release exported for TF Serving (what `predict` uses), once per module."""
    from cxr_cascade.release import release_models_dir

    return release_models_dir(clinic["release"], clinic["root"] / "cache")


def test_predict_heatmap_into_an_unwritable_target_keeps_the_diagnoses(clinic, models, tmp_path, capsys):
    films = [clinic["films"] / "x.png", tmp_path / "y.png"]
    cv2.imwrite(str(films[1]), 255 - clinic["film"])
    heat = tmp_path / "heat"
    (heat / "x_gradcam.png").mkdir(parents=True)  # the first overlay cannot be written
    code = main(["predict", *map(str, films), "--models", str(models), "--heatmap", str(heat)])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    table = _lines(captured.out)
    assert table[0].startswith("file") and all(str(f) in "\n".join(table[1:3]) for f in films)
    failed = [l for l in _lines(captured.err) if "x_gradcam.png" in l]
    assert len(failed) == 1 and f"{heat / 'x_gradcam.png'}: cannot write" in failed[0]
    assert f"heatmap: {heat / 'y_gradcam.png'}" in captured.out  # the other one is written
    assert (heat / "y_gradcam.png").is_file()


def test_ctrl_c_during_predict_keeps_the_rows_computed(clinic, models, tmp_path, monkeypatch, capsys):
    from cxr_cascade.predict import Predictor

    films = []
    for i in range(3):
        films.append(tmp_path / f"f{i}.png")
        cv2.imwrite(str(films[-1]), np.roll(clinic["film"], 5 * i, axis=1))
    original, calls = Predictor.predict_bytes, []

    def interrupted_third(self, data, file="<bytes>"):
        calls.append(file)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, data, file)

    monkeypatch.setattr(Predictor, "predict_bytes", interrupted_third)
    code = main(["predict", *map(str, films), "--models", str(models)])
    captured = capsys.readouterr()
    assert code == 130
    rows = _lines(captured.out)
    assert len(rows) == 3 and str(films[0]) in rows[1] and str(films[1]) in rows[2]
    assert "interrupted after 2 of 3" in captured.err
