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
    from cxr_cascade.artifacts import build_release

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
    films = root / "films"
    films.mkdir()
    yy, xx = np.mgrid[0:48, 0:40]
    film = (127 + 100 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype(np.uint8)  # not symmetric
    cv2.imwrite(str(films / "x.png"), film)
    for run in runs.values():  # each run's split manifest, which the release copies
        rows = [f"{films / 'x.png'},normal,p{i},kermany,{split}\n"
                for i, split in enumerate(("train", "val", "test", "test"))]
        (run / "splits.csv").write_text("path,label,patient_id,source,split\n" + "".join(rows))
    release = root / "releases" / "v1"
    build_release(release, {k: str(v) for k, v in runs.items()})
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
    from cxr_cascade.export.release import release_models_dir

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


# ------------------------------------------------------------ 5. a release is verified whole
def _copy(clinic, tmp_path) -> Path:
    copy = tmp_path / "v1"
    shutil.copytree(clinic["release"], copy)
    return copy


def test_release_build_writes_sha256sums_over_every_file(clinic):
    from cxr_cascade.artifacts import sha256_file

    release = clinic["release"]
    lines = (release / "SHA256SUMS").read_text().splitlines()
    listed = {name: digest for digest, name in (line.split("  ", 1) for line in lines)}
    files = {p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file()}
    assert set(listed) == files - {"SHA256SUMS"}
    assert {"release.json", "MODEL_CARD.md", "stage1/splits.csv", "unet/weights.npz"} <= set(listed)
    assert all(sha256_file(release / name) == digest for name, digest in listed.items())


@pytest.mark.parametrize("damage", ["splits edited", "splits deleted", "chance flag removed",
                                    "card edited", "sums deleted"])
def test_release_verify_catches_every_file(clinic, tmp_path, capsys, damage):
    from cxr_cascade.artifacts import ReleaseError, load_release

    copy = _copy(clinic, tmp_path)
    splits = copy / "stage1" / "splits.csv"
    assert main(["release", "verify", str(copy)]) == 0  # the clean control
    capsys.readouterr()
    if damage == "splits edited":
        splits.write_text(splits.read_text().replace(",test", ",train"))
        named = splits
    elif damage == "splits deleted":
        splits.unlink()
        named = splits
    elif damage == "chance flag removed":
        data = json.loads((copy / "release.json").read_text())
        data["models"]["stage1"].pop("chance_level", None)
        data["models"]["stage1"]["note"] = "edited"
        (copy / "release.json").write_text(json.dumps(data))
        named = copy / "release.json"
    elif damage == "card edited":
        (copy / "MODEL_CARD.md").write_text("all fine\n")
        named = copy / "MODEL_CARD.md"
    else:
        (copy / "SHA256SUMS").unlink()
        named = copy / "SHA256SUMS"
    assert main(["release", "verify", str(copy)]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and str(named) in err[0], err
    if damage != "card edited":  # a loader reads release.json and the model's files, not the card
        with pytest.raises(ReleaseError, match=str(named)):
            load_release(copy, "stage1")


# ------------------------------------------------- 6. predict's cache follows the release's digests
def test_predict_cache_never_answers_for_a_changed_release(clinic, tmp_path, monkeypatch, capsys):
    import keras

    from cxr_cascade.artifacts import build_release
    from pipelines.config import PreprocessConfig
    from pipelines.datasets import build_dataset

    copy = _copy(clinic, tmp_path)
    monkeypatch.delenv("CXR_CASCADE_MODELS", raising=False)
    monkeypatch.setenv("CXR_CASCADE_RELEASE", str(copy))
    monkeypatch.setenv("CXR_CASCADE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    film = str(clinic["films"] / "x.png")

    def stage1_answer():
        assert main(["predict", film, "--json"]) == 0
        return json.loads(capsys.readouterr().out.splitlines()[-1])["stage1_probabilities"]

    before = stage1_answer()
    # The release rebuilt with other stage-1 weights: a new export, the new model's answer.
    keras.utils.set_random_seed(11)
    other = tiny_classifier(3, "stage1")
    run = write_run(tmp_path / "other_stage1", {"name": "s1", "task": "stage1", "classes": STAGE1,
                                                "image_size": 32, "backbone": "resnet50"}, other)
    build_release(copy, {"stage1": str(run), "stage2": str(clinic["runs"]["stage2"]),
                         "unet": str(clinic["runs"]["unet"])}, force=True)
    after = stage1_answer()
    x = next(iter(build_dataset(([film], ["normal"]), class_names=["normal"],
                                preprocess=PreprocessConfig(image_size=32), batch_size=1,
                                training=False)))[0]
    want = np.asarray(other(x, training=False))[0]
    np.testing.assert_allclose([after[n] for n in STAGE1], want, atol=2e-3)
    assert not np.allclose([before[n] for n in STAGE1], want, atol=2e-3)
    assert len(list((tmp_path / "cache").iterdir())) == 2
    # Weights changed without a rebuild: refused in one line, not answered from the cache.
    weights = copy / "stage2" / "weights.npz"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    assert main(["predict", film, "--json"]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and str(weights) in err[0] and "sha256 differs" in err[0], err


# --------------------------------------------- 2. 16-bit PNGs read by their real bit depth
def _with_sbit(png: bytes, bits: int) -> bytes:
    """The PNG with an sBIT chunk (one byte: gray) right after IHDR."""
    import struct
    import zlib

    body = b"sBIT" + bytes([bits])
    chunk = struct.pack(">I", 1) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    return png[:33] + chunk + png[33:]


def _png16(values: np.ndarray, sbit: int | None = None) -> bytes:
    ok, encoded = cv2.imencode(".png", values.astype(np.uint16))
    assert ok
    return _with_sbit(encoded.tobytes(), sbit) if sbit else encoded.tobytes()


@pytest.mark.parametrize("largest,sbit,divisor", [
    (4095, None, 4095),    # 12-bit data, no sBIT: the largest value's bit length
    (2000, None, 4095),    # 11 bits rounded up to the even 12
    (4095, 12, 4095),      # sBIT 12, data in 0-4095
    (65535, 12, 65535),    # sBIT 12 but samples scaled to 16 bits, as the PNG spec says
    (1023, 10, 1023),
    (40000, None, 65535),  # full-range 16-bit
    (200, None, 255),      # 8-bit data in a 16-bit file
])
def test_16bit_png_is_read_by_its_real_bit_depth(tmp_path, largest, sbit, divisor):
    import tensorflow as tf

    from pipelines.decode import decode_image
    from pipelines.image_policy import png_sample_bits, png_sbit

    values = np.linspace(0, largest, 6 * 5).reshape(6, 5).round()
    data = _png16(values, sbit)
    assert png_sbit(data) == sbit
    assert (1 << png_sample_bits(int(values.max()), png_sbit(data))) - 1 == divisor
    got = decode_image(tf.constant(data)).numpy()[..., 0]
    np.testing.assert_array_equal(got, values.astype(np.float32) * np.float32(1.0 / divisor))
    # in a traced graph (the SavedModel's path) too
    traced = tf.function(decode_image, input_signature=[tf.TensorSpec([], tf.string)])
    np.testing.assert_array_equal(traced(tf.constant(data)).numpy()[..., 0], got)


def test_a_12bit_film_reads_as_its_8bit_copy(clinic, tmp_path):
    """The probe's film: the same picture at 8 bits and as 12-bit data in a 16-bit PNG (with and
    without sBIT) decodes to the same gray levels (within the 8-bit quantisation)."""
    import tensorflow as tf

    from pipelines.decode import decode_image

    film8 = clinic["film"]
    film12 = np.round(film8.astype(np.float64) * 4095 / 255)
    eight = decode_image(tf.constant(cv2.imencode(".png", film8)[1].tobytes())).numpy()
    for sbit in (None, 12):
        twelve = decode_image(tf.constant(_png16(film12, sbit))).numpy()
        assert np.abs(twelve - eight).max() <= 0.5 / 4095 + 1e-7  # rounding to 12 bits


def test_data_check_reports_the_bit_depth_it_reads(tmp_path):
    from pipelines.check import check_records
    from pipelines.records import Record

    values = np.linspace(0, 4095, 64).reshape(8, 8).round()
    (tmp_path / "plain.png").write_bytes(_png16(values))
    (tmp_path / "sbit.png").write_bytes(_png16(values, 12))
    records = [Record(str(tmp_path / n), "normal", n, "t") for n in ("plain.png", "sbit.png")]
    report = check_records(records)
    assert report.summary["bit_depths"] == {"16 read as 12-bit": 2}
    warnings = {p.path: p.message for p in report.warnings}
    assert "12-bit (largest value 4095, no sBIT)" in warnings[str(tmp_path / "plain.png")]
    assert "12-bit (sBIT 12)" in warnings[str(tmp_path / "sbit.png")]


# --------------------------------------------------- 3. EXIF orientation, as viewers show it
@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_bytes_turns_as_pil_exif_transpose(tmp_path, orientation):
    import io

    import tensorflow as tf
    from PIL import Image, ImageOps

    from pipelines.decode import decode_image, upright_bytes

    pixels = np.arange(5 * 7, dtype=np.uint8).reshape(5, 7) * 7  # no symmetry
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", exif=exif.tobytes())
    data, found = upright_bytes(buffer.getvalue())
    assert found == orientation
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue()))))
    got = decode_image(tf.constant(data)).numpy()[..., 0]
    np.testing.assert_array_equal(got, reference.astype(np.float32) * np.float32(1 / 255))


def _rotated_jpeg(film: np.ndarray, path: Path) -> Path:
    """The film stored turned 90 degrees counter-clockwise with EXIF orientation 6 ("rotate 90
    clockwise to display"), as a phone or a film scanner writes it."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(film, 1))).save(path, quality=100, exif=exif.tobytes())
    return path


def test_predict_and_segment_read_an_exif_rotated_film_upright(clinic, models, tmp_path, capsys):
    from PIL import Image

    film = clinic["film"]
    upright = tmp_path / "upright.jpg"
    Image.fromarray(film).save(upright, quality=100)
    turned = _rotated_jpeg(film, tmp_path / "turned.jpg")
    assert main(["predict", str(upright), str(turned), "--models", str(models), "--json"]) == 0
    captured = capsys.readouterr()
    a, b = (json.loads(line) for line in captured.out.splitlines())
    np.testing.assert_allclose(list(b["probabilities"].values()), list(a["probabilities"].values()),
                               atol=0.02)  # the same film, within two JPEG encodings
    assert "EXIF orientation 6" in " ".join(b["notes"]) and "notes" not in a
    out = tmp_path / "masks"
    assert main(["segment", str(upright), str(turned), "--out", str(out),
                 "--unet", str(clinic["runs"]["unet"])]) == 0
    lines = _lines(capsys.readouterr().out)
    assert "EXIF orientation 6 applied" in lines[1]
    masks = [cv2.imread(str(out / f"{n}_mask.png"), cv2.IMREAD_UNCHANGED) for n in ("upright", "turned")]
    assert masks[0].shape == masks[1].shape == film.shape  # the displayed size, 48 x 40
    assert np.mean(masks[0] != masks[1]) < 0.05


def test_data_check_warns_on_exif_orientation_elongated_images_on_stderr(clinic, tmp_path, capsys):
    folder = tmp_path / "ds"
    folder.mkdir()
    _rotated_jpeg(clinic["film"], folder / "turned.jpg")
    cv2.imwrite(str(folder / "strip.png"), np.full((2, 400), 128, np.uint8))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    manifest = folder / "m.csv"
    manifest.write_text("path,label,patient_id,source,split\n" + "".join(
        f"{name},normal,p{i},kermany,train\n" for i, name in enumerate(("turned.jpg", "strip.png", "broken.png"))))
    main(["data", "check", str(manifest)])
    captured = capsys.readouterr()
    assert "broken.png" not in captured.out and "broken.png" in captured.err  # problems on stderr
    assert "problems: 1 error(s)" in captured.out
    assert "EXIF orientation 6" in captured.err and "aspect 200:1" in captured.err


# ------------------------------------------------------------------------------- rough edges
def test_release_option_and_chance_level_warning_with_models(clinic, tmp_path, monkeypatch, capsys):
    from cxr_cascade.artifacts import write_checksums

    copy = tmp_path / "v2"
    shutil.copytree(clinic["release"], copy)
    data = json.loads((copy / "release.json").read_text())
    data["models"]["stage2"]["chance_level"] = "test: macro AUC 0.500 reaches 0.5"
    (copy / "release.json").write_text(json.dumps(data))
    write_checksums(copy)  # sealed as this (marked) release
    monkeypatch.setenv("CXR_CASCADE_CACHE", str(tmp_path / "cache"))
    film = str(clinic["films"] / "x.png")
    assert main(["predict", film, "--release", str(copy)]) == 0
    err = capsys.readouterr().err
    assert f"models: release {copy}" in err and "stage2 of this release is no better than chance" in err
    models = tmp_path / "models"
    assert main(["export", "--release", str(copy), "--out", str(models)]) == 0
    capsys.readouterr()
    assert main(["predict", film, "--models", str(models)]) == 0
    err = capsys.readouterr().err
    assert "warning: stage2 of" in err and "no better than chance" in err
    out = tmp_path / "masks"
    assert main(["segment", film, "--out", str(out), "--release", str(copy)]) == 0
    assert f"lung U-Net: release {copy}" in capsys.readouterr().err


def test_a_repeated_header_line_is_named_as_such(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((8, 8), 100, np.uint8))
    header = "path,label,patient_id,source,split\n"
    (tmp_path / "m.csv").write_text(header + header + "a.png,normal,p1,kermany,train\n")
    main(["data", "check", str(tmp_path / "m.csv")])
    err = _lines(capsys.readouterr().err)
    assert err == [f"{tmp_path / 'm.csv'}:2: error: repeats the header line (two files "
                   "concatenated?); row skipped"]
