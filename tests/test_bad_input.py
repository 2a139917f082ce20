"""Nothing leaks, nothing crashes: every bad input gets one line, nothing is lost.

Each test builds its bad input itself (tiny files, no real data) and checks what the user sees:
an exit status, one line naming the file and the problem, and no Python traceback.
"""

from __future__ import annotations

import csv
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxr_cascade.cli import main
from pipelines.records import read_manifest
from pipelines.splits import split_records
from test_predict import exported  # noqa: F401  (fixture: tiny runs exported, test images)
from test_training import phantom_root, standin, standin_path  # noqa: F401  (fixtures)


def _png(path: Path, seed: int = 0, size: int = 16) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rng.integers(0, 255, (size, size), dtype=np.uint8))
    return path


def _manifest(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "patient_id", "source", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _assert_one_line(err: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], err


def _split_manifest(tmp_path: Path, leak: bool = False, twice: bool = False) -> Path:
    rows = []
    labels = ("normal", "bacterial", "viral")
    for p in range(9):
        for split in ("train", "val", "test"):
            name = f"p{p}-{split}.png"
            _png(tmp_path / "img" / name, seed=len(rows))
            rows.append(dict(path=f"img/{name}", label=labels[p % 3], patient_id=f"{split}{p}",
                             source="kermany", split=split))
    if leak:  # patient train0 also in test
        _png(tmp_path / "img" / "leak.png", seed=99)
        rows.append(dict(path="img/leak.png", label="normal", patient_id="train0",
                         source="kermany", split="test"))
    if twice:  # a file listed twice in one split
        rows.append(dict(rows[0]))
    return _manifest(tmp_path / "split.csv", rows)


# ---------------------------------------------------------------------- 1. training trusts a leaky manifest
@pytest.mark.parametrize("fault,needle", [("leak", "kermany:train0"), ("twice", "listed 2 times")])
def test_train_refuses_a_leaky_or_duplicated_manifest(tmp_path, capsys, fault, needle):
    manifest = _split_manifest(tmp_path, **{fault: True})
    run_dir = tmp_path / "run"
    code = main(["train", "demo_stage1", "--data", f"manifest={manifest}", "--run-dir", str(run_dir),
                 "--set", "epochs=1", "--set", "image_size=32"])
    err = capsys.readouterr().err
    assert code == 2
    _assert_one_line(err, "refusing to train", needle)
    if fault == "leak":
        assert "test, train" in err
    assert not (run_dir / "checkpoints").exists()


def test_split_problems_negative_control(tmp_path):
    from pipelines.splits import split_problems

    assert split_problems(read_manifest(_split_manifest(tmp_path))) == []


# ---------------------------------------------------------------------- 2. one path, one split
def test_the_same_path_is_one_image_whatever_the_flags(tmp_path, capsys):
    rows = []
    for p in range(30):
        _png(tmp_path / f"{p}.png", seed=p)
        rows.append(dict(path=f"{p}.png", label="normal", patient_id=f"p{p}", source="kermany", split=""))
    # a.png listed under two patient ids (a different patient each time)
    for p in range(30):
        rows.append(dict(path=f"{p}.png", label="normal", patient_id=f"q{p}", source="kermany", split=""))
    manifest = _manifest(tmp_path / "records.csv", rows)
    records = read_manifest(manifest)
    for seed in range(3):
        result = split_records(records, val=0.3, test=0.3, seed=seed)
        splits: dict[str, set] = {}
        for record in result.records:
            splits.setdefault(record.path, set()).add(record.split)
        assert all(len(s) == 1 for s in splits.values()), splits
    # the CLI, with --no-dedup and without (undecodable copies are not found by the dedup)
    (tmp_path / "0.png").write_bytes(b"not an image")
    for flags in (["--no-dedup"], []):
        out = tmp_path / "out.csv"
        assert main(["data", "split", str(manifest), "--out", str(out), "--val", "0.3",
                     "--test", "0.3", *flags]) == 0
        splits = {}
        for record in read_manifest(out):
            splits.setdefault(record.path, set()).add(record.split)
        assert all(len(s) == 1 for s in splits.values()), (flags, splits)
    capsys.readouterr()


# ---------------------------------------------------------------------- 3. damaged checkpoints
@pytest.fixture(scope="module")
def two_epoch_run(standin, phantom_root, tmp_path_factory):
    """Epochs 1-2 of a 3-epoch run (stopped, resumable): checkpoints 1 and 2 and best kept."""
    from test_training import _train, tiny_config

    run = tmp_path_factory.mktemp("ckpt") / "run"
    config = tiny_config(extra=["epochs=3"])
    _train(standin, config, run, [str(phantom_root / "chest_xray")], stop_after_epochs=2)
    return config, run


def _copy_run(run: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def test_checkpoints_are_kept_two_deep_and_best_is_its_own_file(two_epoch_run):
    _, run = two_epoch_run
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["epoch-0001.weights.h5", "epoch-0002.weights.h5"]
    best = run / "best.weights.h5"
    assert best.stat().st_nlink == 1
    assert all(not os.path.samefile(best, p) for p in (run / "checkpoints").iterdir())
    from cxr_cascade.artifacts.checkpoints import latest_good_checkpoint

    assert latest_good_checkpoint(run) == (run / "checkpoints" / "epoch-0002.weights.h5", [])


@pytest.mark.parametrize("damage", ["truncate", "random"])
def test_resume_falls_back_to_the_last_good_checkpoint(standin, phantom_root, two_epoch_run,
                                                       tmp_path, capsys, damage):
    from test_training import _train

    config, original = two_epoch_run
    run = _copy_run(original, tmp_path)
    last = run / "checkpoints" / "epoch-0002.weights.h5"
    best_before = (run / "best.weights.h5").read_bytes()
    if damage == "truncate":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    else:
        last.write_bytes(np.random.default_rng(0).bytes(last.stat().st_size))
    assert (run / "best.weights.h5").read_bytes() == best_before  # not a link to the damaged file
    capsys.readouterr()
    result = _train(standin, config, run, [str(phantom_root / "chest_xray")], resume=True)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    notes = [line for line in err.splitlines() if "damaged checkpoint" in line]
    assert len(notes) == 1 and "epoch-0002" in notes[0] and "falling back to checkpoints/epoch-0001" in notes[0]
    assert result.state["epochs_completed"] == 3 and len(result.state["history"]) == 3
    assert [row["epoch"] for row in result.state["history"]] == [1, 2, 3]


def test_resume_refuses_in_one_line_when_no_checkpoint_is_intact(standin, phantom_root, two_epoch_run,
                                                                 tmp_path, capsys, monkeypatch):
    from cxr_cascade.training import runner

    monkeypatch.setattr(runner, "build_model", standin.tiny_model)
    config, original = two_epoch_run
    run = _copy_run(original, tmp_path)
    for path in (run / "checkpoints").iterdir():
        path.write_bytes(b"\0" * 100)
    code = main(["train", "--resume", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "no intact checkpoint" in errors[0], err


@pytest.mark.parametrize("damage", ["missing", "random"])
def test_export_uses_the_last_good_checkpoint_and_says_which(standin, two_epoch_run, tmp_path, capsys,
                                                             monkeypatch, damage):
    import cxr_cascade.artifacts.stage as run_loader
    from cxr_cascade.artifacts import load

    monkeypatch.setattr(run_loader, "build_model", standin.tiny_model)  # rebuilds a run without model.keras
    _, original = two_epoch_run
    run = _copy_run(original, tmp_path)
    (run / "model.keras").unlink(missing_ok=True)  # a run still training, or from before model.keras
    best = run / "best.weights.h5"
    if damage == "missing":
        best.unlink()
    else:
        best.write_bytes(np.random.default_rng(1).bytes(best.stat().st_size))
    stage = load(run)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "best.weights.h5" in err and "epoch-0002" in err
    assert stage.weights == "checkpoints/epoch-0002.weights.h5"
    clean = load(original)
    expected = "model.keras" if (original / "model.keras").is_file() else "best.weights.h5"
    assert clean.weights == expected and "warning" not in capsys.readouterr().err


# ---------------------------------------------------------------------- 4. one line, never a traceback
def _kermany_tree(root: Path) -> Path:
    for split in ("train", "test"):
        for i in range(4):
            _png(root / split / "NORMAL" / f"IM-{i:04d}-0001.png", seed=i)
            _png(root / split / "PNEUMONIA" / f"person{i}_bacteria_1.png", seed=10 + i)
            _png(root / split / "PNEUMONIA" / f"person{10 + i}_virus_1.png", seed=20 + i)
    return root


@pytest.mark.parametrize("argv", [["data", "index", "{ds}", "--format", "kermany", "--out", "{tmp}/r.csv"],
                                  ["data", "check", "{ds}", "--format", "kermany"]])
def test_a_symlink_loop_is_one_line(tmp_path, capsys, argv):
    ds = _kermany_tree(tmp_path / "chest_xray")
    os.symlink("loop", ds / "train" / "loop")
    code = main([a.format(ds=ds, tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    _assert_one_line(err, str(ds / "train" / "loop"), "Too many levels of symbolic links")


def test_an_unwritable_output_is_one_line(tmp_path, capsys):
    """A path under a regular file cannot be created (as on a read-only file system, which a root
    test process cannot make): every writer says PATH: reason, exit 2, nothing else."""
    ds = _kermany_tree(tmp_path / "chest_xray")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for argv in (
        ["data", "index", str(ds), "--format", "kermany", "--out", f"{blocker}/r.csv"],
        ["data", "phantoms", "--out", f"{blocker}/ph", "--n", "6", "--size", "32"],
        ["train", "demo_stage1", "--data", f"manifest={_split_manifest(tmp_path)}",
         "--run-dir", f"{blocker}/run",
         "--set", "epochs=1", "--set", "image_size=32"],
    ):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, argv
        _assert_one_line(err, str(blocker))
        assert "Not a directory" in err or "File exists" in err, err


def test_predict_heatmap_and_gradcam_unwritable_out_are_one_line(exported, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    image = str(exported["good"][0])
    # predict keeps its diagnoses: each overlay it could not write is one line naming the file
    # (never a temporary name), then one summary line, and the exit status says so.
    capsys.readouterr()
    code = main(["predict", image, "--models", str(exported["models"]), "--heatmap", f"{blocker}/maps"])
    out, err = capsys.readouterr()
    assert code == 1, err
    assert Path(image).name in out, out
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 2 and "Traceback" not in err, err
    assert f"{blocker}/maps/scan0_gradcam.png: cannot write (Not a directory)" in lines[0], err
    assert ".tmp" not in err and "1 heatmap(s) not written" in lines[1], err
    # gradcam writes nothing but overlays: it stops at the first one, in one line.
    capsys.readouterr()
    code = main(["gradcam", str(exported["run1"]), image, "--out", f"{blocker}/maps"])
    err = capsys.readouterr().err
    assert code == 2, err
    _assert_one_line(err, str(blocker))
    assert "Not a directory" in err or "File exists" in err, err


def test_error_line_formats_oserror_and_tensorflow_errors():
    import tensorflow as tf
    from cxr_cascade.cli import _error_line

    assert _error_line(PermissionError(13, "Permission denied", "/x/y")) == "/x/y: Permission denied"
    assert _error_line(OSError(30, "Read-only file system", "/ro/out")) == "/ro/out: Read-only file system"
    error = tf.errors.PermissionDeniedError(None, None, "/ro/events; Read-only file system\n\tmore")
    assert _error_line(error) == "/ro/events; Read-only file system"
    assert _error_line(KeyError("bug")) is None  # real bugs keep their traceback


def _cli(*args: str, env: dict | None = None, **kwargs):
    import subprocess
    import sys

    full_env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent),
                    KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    full_env.pop("CXR_CASCADE_VERBOSE", None)
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "cxr_cascade", *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc (Linux)")
def test_ctrl_c_while_tensorflow_is_imported_is_one_line(tmp_path):
    import signal
    import time

    process = _cli("export", str(tmp_path / "no-run"), "--out", str(tmp_path / "models"))
    maps = Path(f"/proc/{process.pid}/maps")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if "tensorflow" in maps.read_text():
                break
        except OSError:
            pass
        time.sleep(0.01)
    assert process.poll() is None, "finished before TensorFlow was loaded"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    _assert_one_line(err, "interrupted")


# ---------------------------------------------------------------------- 8. quiet by default
def test_quiet_by_default_verbose_shows_the_library_logs(tmp_path):
    """`export` imports TensorFlow (absl start-up lines) and reports one error line; the same
    command with --verbose shows TensorFlow's lines (the negative control: they exist)."""
    argv = ("export", str(tmp_path / "no-run"), "--out", str(tmp_path / "models"))
    quiet = _cli(*argv)
    _, err = quiet.communicate(timeout=300)
    assert quiet.returncode == 2
    _assert_one_line(err, "no-run", "run directory not found")
    loud = _cli(*argv, "--verbose")
    _, err = loud.communicate(timeout=300)
    assert loud.returncode == 2 and len(err.strip().splitlines()) > 1, err


# ---------------------------------------------------------------------- 5, 6. one decode policy, one pixel cap
def _big_png(path: Path, width: int, height: int) -> Path:
    """A valid 8-bit gray PNG of width x height black pixels, written without decoding anything."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("bad-images")
    files = {"good": _png(root / "good.png", size=24)}
    files["8000x8000"] = _big_png(root / "huge.png", 8000, 8000)  # 64 MP, 64 kB on disk
    Image.new("CMYK", (24, 24), (10, 20, 30, 40)).save(root / "cmyk.jpg")
    files["cmyk"] = root / "cmyk.jpg"
    files["1x1"] = _png(root / "one.png", size=1)
    Image.fromarray(np.full((24, 24), 90, np.uint8)).save(root / "x.gif")
    files["gif"] = root / "x.gif"
    cv2.imwrite(str(root / "x.bmp"), np.full((24, 24), 90, np.uint8))
    files["bmp"] = root / "x.bmp"
    return files


EXPECTED = {"8000x8000": "over the cap of 50 megapixels", "cmyk": "CMYK JPEG", "1x1": "1x1 pixels",
            "gif": "only PNG and JPEG", "bmp": "only PNG and JPEG"}


@pytest.mark.parametrize("kind", ["good", *EXPECTED])
def test_every_reader_applies_the_same_decode_policy(bad_images, exported, tmp_path, capsys, kind):
    import tensorflow as tf
    from cxr_cascade.predict import Failure, Predictor
    from pipelines.check import inspect_image
    from pipelines.decode import validate_image_files

    path = bad_images[kind]
    expected = EXPECTED.get(kind)
    verdicts = {}
    # data check
    problems = [p.message for p in inspect_image(path).problems if p.severity == "error"]
    verdicts["data check"] = problems[0] if problems else None
    # training (every file is validated before a data set is built)
    bad = validate_image_files([str(path)])
    verdicts["training"] = bad[0].reason if bad else None
    # predict
    result = next(iter(Predictor(exported["models"], "stage1").predict_files([path])))
    verdicts["predict"] = result.reason if isinstance(result, Failure) else None
    # gradcam
    capsys.readouterr()
    code = main(["gradcam", str(exported["run1"]), str(path), "--out", str(tmp_path / "maps")])
    err = capsys.readouterr().err
    verdicts["gradcam"] = err.strip() if code else None
    assert "Traceback" not in err
    # the SavedModel, called directly
    loaded = tf.saved_model.load(str(exported["models"] / "stage1" / "1"))
    try:
        loaded.signatures["serving_default"](image_bytes=tf.constant([path.read_bytes()]))
        verdicts["SavedModel"] = None
    except tf.errors.InvalidArgumentError as error:
        verdicts["SavedModel"] = error.message.splitlines()[0]
    if expected is None:
        assert verdicts == dict.fromkeys(verdicts), verdicts
    else:
        assert all(verdicts.values()), verdicts
        for where in ("data check", "training", "predict", "gradcam"):
            assert expected in verdicts[where], (where, verdicts)


def test_the_pixel_cap_is_configurable(bad_images, monkeypatch):
    from pipelines.decode import decode_image, validate_image_files
    import tensorflow as tf

    good = bad_images["good"]  # 24 x 24 = 576 pixels
    assert validate_image_files([str(good)]) == []
    monkeypatch.setenv("CXR_CASCADE_MAX_PIXELS", "500")
    bad = validate_image_files([str(good)])
    assert bad and "over the cap of 0.0005 megapixels" in bad[0].reason and "CXR_CASCADE_MAX_PIXELS" in bad[0].reason
    with pytest.raises(tf.errors.InvalidArgumentError, match="pixel cap"):
        decode_image(tf.constant(good.read_bytes()))
    monkeypatch.setenv("CXR_CASCADE_MAX_PIXELS", "lots")
    from pipelines.image_policy import max_pixels

    with pytest.raises(ValueError, match="CXR_CASCADE_MAX_PIXELS must be a positive"):
        max_pixels()


def test_index_of_a_manifest_reports_missing_files_and_drops_unknown_labels(tmp_path, capsys):
    _png(tmp_path / "a.png")
    manifest = _manifest(tmp_path / "in.csv", [
        dict(path="a.png", label="normal", patient_id="1", source="s", split=""),
        dict(path="gone.png", label="normal", patient_id="2", source="s", split=""),
        dict(path="a.png", label="pneumonia??", patient_id="3", source="s", split=""),
    ])
    out = tmp_path / "out.csv"
    assert main(["data", "index", str(manifest), "--format", "manifest", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "gone.png: error: file not found" in err and "unknown label 'pneumonia??'" in err
    assert [(r.label, r.patient_id) for r in read_manifest(out)] == [("normal", "1")]


# ---------------------------------------------------------------------- 7. rough edges
def test_skip_bad_is_reachable_from_the_cli(tmp_path, capsys, monkeypatch, standin):
    from cxr_cascade.training import runner

    monkeypatch.setattr(runner, "build_model", standin.tiny_model)
    manifest = _split_manifest(tmp_path)
    (tmp_path / "img" / "p0-train.png").write_bytes(b"")  # one bad file
    argv = ["train", "demo_stage1", "--data", f"manifest={manifest}", "--set", "epochs=1",
            "--set", "image_size=32", "--set", "batch_size=4", "--quiet"]
    assert main([*argv, "--run-dir", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "p0-train.png: empty file (0 bytes)" in err and "--skip-bad" in err
    assert main([*argv, "--run-dir", str(tmp_path / "run"), "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert "p0-train.png: empty file (0 bytes)" in err and "Traceback" not in err
    assert (tmp_path / "run" / "results.json").is_file()


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_non_finite_learning_rate_is_refused_before_any_run_folder(tmp_path, capsys, value):
    run = tmp_path / "run"
    assert main(["train", "demo_stage1", "--data", str(tmp_path / "data"), "--set",
                 f"learning_rate={value}", "--run-dir", str(run)]) == 2
    _assert_one_line(capsys.readouterr().err, "`learning_rate` must be finite", f"learning_rate={value}")
    assert not run.exists()


def test_an_empty_or_short_file_never_shows_tensorflow_internals(exported, tmp_path, capsys):
    import tensorflow as tf
    from pipelines.decode import decode_image, validate_image_files

    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    short = tmp_path / "short.png"
    short.write_bytes(b"\x89PNG\r\n\x1a\n\0\0")  # a PNG signature and nothing else
    for path in (empty, short):
        capsys.readouterr()
        assert main(["gradcam", str(exported["run1"]), str(path), "--out", str(tmp_path / "maps")]) == 1
        assert main(["predict", str(path), "--models", str(exported["models"])]) != 0
        out, err = capsys.readouterr()
        reasons = [b.reason for b in validate_image_files([str(path)])]
        try:
            decode_image(tf.constant(path.read_bytes()))
        except tf.errors.InvalidArgumentError as error:
            reasons.append(error.message)
        text = out + err + " ".join(reasons)
        assert "function_node" not in text and "out of range" not in text, text
        assert "Traceback" not in text
    assert "empty file (0 bytes)" in validate_image_files([str(empty)])[0].reason


def _opencv_messages(path: Path) -> list[str]:
    """What this OpenCV build itself prints on stderr when it reads `path` at INFO level.

    The negative controls below look for these lines instead of a fixed text: which codec library
    warns, and in which words, depends on the OpenCV build (opencv-python-headless 5.0.0.93's libpng
    says "PNG input buffer is incomplete" for a truncated PNG; 5.1.0.95 says nothing).
    """
    import subprocess
    import sys

    env = dict(os.environ, OPENCV_LOG_LEVEL="INFO")
    done = subprocess.run([sys.executable, "-c", "import cv2, sys; cv2.imread(sys.argv[1])", str(path)],
                          env=env, capture_output=True, text=True, timeout=120)
    return [line.strip() for line in done.stderr.splitlines() if line.strip()]


def _opencv_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "opencv-python-headless " + version("opencv-python-headless")
    except PackageNotFoundError:
        return "OpenCV " + cv2.__version__


def test_opencv_warnings_are_hidden_unless_verbose(tmp_path):
    rows = []
    for i in range(4):
        _png(tmp_path / f"{i}.png", seed=i, size=32)
        rows.append(dict(path=f"{i}.png", label="normal", patient_id=str(i), source="s", split=""))
    data = (tmp_path / "0.png").read_bytes()
    (tmp_path / "0.png").write_bytes(data[: len(data) // 2])  # truncated: cannot be decoded
    manifest = _manifest(tmp_path / "m.csv", rows)
    argv = ("data", "split", str(manifest), "--out", str(tmp_path / "o.csv"))
    quiet = _cli(*argv)
    _, err = quiet.communicate(timeout=300)
    _assert_one_line(err, "0.png", "cannot decode")
    messages = _opencv_messages(tmp_path / "0.png")
    if not messages:
        pytest.skip(f"{_opencv_version()} prints nothing for a truncated PNG, even at INFO level: "
                    "no warning to hide (the one-line check above ran)")
    loud = _cli(*argv, "--verbose")
    _, err = loud.communicate(timeout=300)
    assert messages[0] in err, err  # negative control: the warning exists and --verbose shows it

