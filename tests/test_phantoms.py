"""Specification of the synthetic phantom generator (`cxr_cascade.phantoms`, `data phantoms`)."""

from __future__ import annotations

import argparse
import csv
import hashlib
import re
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from cxr_cascade import phantoms
from cxr_cascade.phantoms import (
    IEEE8023_COLUMNS,
    LABELS,
    TABLE_COLUMNS,
    render_phantom,
    sample_anatomy,
    write_phantom_dataset,
)

from conftest import SHARED_DATA


def _render(label, seed, size=64, **kwargs):
    return render_phantom(label, size, np.random.default_rng(seed), **kwargs)


def _table(out: Path) -> list[dict]:
    with open(out / "phantoms.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "README.txt"}


@pytest.fixture(scope="module")
def phantom_set(tmp_path_factory) -> tuple[Path, phantoms.PhantomSummary]:
    out = tmp_path_factory.mktemp("phantoms") / "set"
    return out, write_phantom_dataset(out, 24, 64, seed=3, missing_files=True)


# --- render_phantom -------------------------------------------------------------------------


@pytest.mark.parametrize("label", LABELS)
def test_render_shapes_dtypes_and_binary_masks(label):
    ph = _render(label, 1)
    for array in (ph.image, ph.lung_mask, ph.lesion_mask):
        assert array.shape == (64, 64) and array.dtype == np.uint8
    assert set(np.unique(ph.lung_mask)) <= {0, 255}
    assert set(np.unique(ph.lesion_mask)) <= {0, 255}
    assert 0.15 < (ph.lung_mask == 255).mean() < 0.6
    assert ph.image.std() > 20  # anatomy, not a flat field
    assert ph.meta["label"] == label


@pytest.mark.parametrize("label", LABELS)
def test_lesion_mask_inside_lungs_and_empty_for_normal(label):
    ph = _render(label, 2, size=96)
    lesion, lung = ph.lesion_mask == 255, ph.lung_mask == 255
    assert not (lesion & ~lung).any()
    if label == "normal":
        assert not lesion.any()
    else:
        assert 0.03 < lesion.sum() / lung.sum() < 0.95


def test_lungs_dark_and_bones_bright():
    ph = _render("normal", 4, size=128, text=False)
    lung = ph.lung_mask == 255
    assert 20 < np.median(ph.image[lung]) < 110
    # the spine runs down the middle: the central column is brighter than the lung fields
    assert ph.image[30:90, 60:68].mean() > np.median(ph.image[lung]) + 40
    # the mediastinum separates two lung fields
    n_parts, _ = cv2.connectedComponents(ph.lung_mask)
    assert n_parts - 1 == 2


def test_render_is_deterministic_by_rng_seed():
    a, b, c = _render("covid19", 7), _render("covid19", 7), _render("covid19", 8)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.lesion_mask, b.lesion_mask)
    assert not np.array_equal(a.image, c.image)


def test_lesions_brighten_lungs_in_the_expected_order():
    """Consolidation (bacterial) replaces most air; every disease is brighter than normal."""
    means = {}
    for label in LABELS:
        values = []
        for seed in range(20):
            ph = _render(label, 1000 + seed, size=64, text=False)
            values.append(ph.image[ph.lung_mask == 255].mean())
        means[label] = float(np.mean(values))
    for label in ("bacterial", "viral", "covid19"):
        assert means[label] > means["normal"] + 3, means
    # inside its lesion mask a consolidation is far brighter than the rest of the lung
    ph = _render("bacterial", 5, size=96, text=False)
    lesion, lung = ph.lesion_mask == 255, ph.lung_mask == 255
    assert ph.image[lesion].mean() > ph.image[lung & ~lesion].mean() + 15


def test_covid_is_peripheral_and_bacterial_mostly_one_sided():
    cov = [_render("covid19", s, size=96) for s in range(6)]
    for ph in cov:
        ys, xs = np.nonzero(ph.lesion_mask)
        lys, lxs = np.nonzero(ph.lung_mask)
        assert ys.mean() > lys.mean()  # lower zones
        assert (xs < 48).any() and (xs >= 48).any()  # bilateral
        assert np.abs(xs - 48).mean() > np.abs(lxs - 48).mean()  # peripheral
    one_sided = 0
    for s in range(8):
        xs = np.nonzero(_render("bacterial", s, size=96).lesion_mask)[1]
        one_sided += max((xs < 48).mean(), (xs >= 48).mean()) > 0.9
    assert one_sided >= 6


def test_patient_anatomy_is_shared():
    """Two films of one patient overlap more than films of two patients (pose still varies)."""
    iou = lambda m, n: ((m > 0) & (n > 0)).sum() / ((m > 0) | (n > 0)).sum()  # noqa: E731
    same, other = [], []
    for k in range(6):
        anatomy = sample_anatomy(np.random.default_rng(100 + k))
        a = _render("normal", 2 * k, anatomy=anatomy, text=False)
        b = _render("normal", 2 * k + 1, anatomy=anatomy, text=False)
        c = _render("normal", 2 * k + 1, text=False)
        assert not np.array_equal(a.image, b.image)
        same.append(iou(a.lung_mask, b.lung_mask))
        other.append(iou(a.lung_mask, c.lung_mask))
    assert np.mean(same) > np.mean(other)


def test_shortcut_marker_lies_outside_the_lungs_and_is_bright():
    for label in LABELS:
        ph = _render(label, 9, size=96, shortcut="marker")
        x0, y0, x1, y1 = ph.meta["shortcut_box"]
        assert ph.image[y0:y1, x0:x1].mean() > 230
        assert not ph.lung_mask[y0:y1, x0:x1].any()
    boxes = {lab: _render("normal", 9, size=96, shortcut="marker", shortcut_label=lab)
             .meta["shortcut_box"] for lab in LABELS}
    assert len(set(boxes.values())) == len(LABELS)  # the position encodes the label


def test_text_is_burned_in_unless_disabled():
    with_text = _render("normal", 3, size=128)
    without = _render("normal", 3, size=128, text=False)
    assert with_text.meta["laterality"] in ("L", "R") and without.meta["laterality"] == ""
    assert (with_text.image.astype(int) - without.image).max() > 60


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(label="covid"), "Received: label='covid'"),
        (dict(label="normal", size=8), "Received: size=8"),
        (dict(label="normal", size=64.0), "Received: size=64.0"),
        (dict(label="normal", shortcut="arrow"), "Received: shortcut='arrow'"),
        (dict(label="normal", shortcut="marker", shortcut_label="x"), "Received: shortcut_label='x'"),
    ],
)
def test_render_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        render_phantom(rng=np.random.default_rng(0), **kwargs)


# --- write_phantom_dataset: layouts -----------------------------------------------------------


def test_kermany_layout_names_and_patients(phantom_set):
    out, summary = phantom_set
    root = out / "chest_xray"
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert len(files) == 24 == sum(summary.counts["kermany"].values())
    normal = re.compile(r"^(NORMAL2-)?IM-\d{4}-0001(-\d{4})?\.jpeg$")
    pneumonia = re.compile(r"^person\d+_(bacteria|virus)_\d+\.jpeg$")
    for path in files:
        split, folder = path.parent.parent.name, path.parent.name
        assert split in ("train", "test")
        assert (normal if folder == "NORMAL" else pneumonia).match(path.name), path
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (64, 64)
    rows = [r for r in _table(out) if r["source"] == "kermany"]
    patients = {r["patient_id"] for r in rows}
    assert len(patients) < len(rows)  # several images per patient
    assert {r["split"] for r in rows} == {"train", "test"}
    for pid in patients:  # a patient lives in one split
        assert len({r["split"] for r in rows if r["patient_id"] == pid}) == 1


def test_ieee8023_layout_has_the_real_header_and_mixed_files(phantom_set):
    out, _ = phantom_set
    root = out / "covid-chestxray-dataset"
    header = (root / "metadata.csv").read_text().splitlines()[0]
    assert header.split(",") == list(IEEE8023_COLUMNS)
    real = SHARED_DATA / "covid-chestxray-dataset" / "metadata.csv"
    if real.is_file():
        assert header == real.read_text(errors="replace").splitlines()[0]
    with open(root / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["modality"] for r in rows} == {"X-ray", "CT"}
    assert {"PA", "AP", "AP Supine", "L"} <= {r["view"] for r in rows}
    present = [r for r in rows if (root / r["folder"] / r["filename"]).is_file()]
    frontal = [r for r in present if r["view"] != "L" and r["modality"] == "X-ray"]
    assert len(frontal) == 24
    assert len(present) < len(rows)  # CT rows and (missing_files=True) a listed-but-absent X-ray
    assert any(r["modality"] == "X-ray" and r not in present for r in rows)
    assert all(r["modality"] == "X-ray" for r in present)
    assert "COVID-19" in {r["finding"] for r in rows}
    modes, formats = set(), set()
    for r in present:
        with Image.open(root / "images" / r["filename"]) as im:
            modes.add(im.mode)
            formats.add(im.format)
            assert max(im.size) == 64
    assert {"JPEG", "PNG"} <= formats and {"RGB", "L"} <= modes


def test_lung_mask_layout_pairs(phantom_set):
    out, summary = phantom_set
    root = out / "lung-masks"
    images = sorted((root / "images").iterdir())
    assert len(images) == sum(summary.counts["lung-masks"].values()) > 0
    kermany = {p.name for p in (out / "chest_xray").rglob("*.jpeg")}
    for image in images:
        mask_path = root / "masks" / f"{image.stem}_mask.png"
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        assert mask is not None and mask.ndim == 2
        assert set(np.unique(mask)) <= {0, 255} and (mask == 255).any()
        assert mask.shape == cv2.imread(str(image), cv2.IMREAD_GRAYSCALE).shape
        if image.name in kermany:  # the very same file as in chest_xray/, as in the real set
            [twin] = list((out / "chest_xray" / "train").rglob(image.name))
            assert twin.read_bytes() == image.read_bytes()


def test_ground_truth_table_points_at_existing_masks(phantom_set):
    out, summary = phantom_set
    rows = _table(out)
    assert list(rows[0]) == list(TABLE_COLUMNS)
    assert len(rows) == summary.n_images
    for row in rows:
        image = cv2.imread(str(out / row["path"]), cv2.IMREAD_GRAYSCALE)
        assert image.shape == (int(row["height"]), int(row["width"]))
        for key in ("mask_path", "lung_mask_path", "lesion_mask_path"):
            if row[key]:
                mask = cv2.imread(str(out / row[key]), cv2.IMREAD_GRAYSCALE)
                assert mask.shape == image.shape, row
        assert row["label"] in LABELS and row["shortcut"] == ""
        if row["label"] == "normal" and row["view"] != "L":
            assert float(row["lesion_fraction"]) == 0.0
    text = (out / "README.txt").read_text()
    assert "SYNTHETIC" in text and "mean nothing medically" in text and "seed: 3" in text


def test_same_seed_same_bytes_and_larger_n_keeps_earlier_images(tmp_path):
    a = write_phantom_dataset(tmp_path / "a", 6, 48, seed=11)
    write_phantom_dataset(tmp_path / "b", 6, 48, seed=11)
    write_phantom_dataset(tmp_path / "c", 9, 48, seed=11)
    write_phantom_dataset(tmp_path / "d", 6, 48, seed=12)
    da, db, dc = (_digests(tmp_path / k) for k in "abc")
    assert da == db and a.n_images > 0
    images = {k: v for k, v in da.items() if k.startswith(("chest_xray", "covid-chestxray-dataset/images"))}
    assert images and all(dc.get(k) == v for k, v in images.items())
    assert da != _digests(tmp_path / "d")
    assert not list((tmp_path / "a").rglob(".*.tmp"))  # no temporary file left behind


def test_missing_x_ray_files_only_on_request(tmp_path):
    write_phantom_dataset(tmp_path / "o", 12, 48, formats="ieee8023")
    root = tmp_path / "o" / "covid-chestxray-dataset"
    with open(root / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert all((root / r["folder"] / r["filename"]).is_file() for r in rows if r["modality"] == "X-ray")
    assert any(r["modality"] == "CT" for r in rows)


def test_formats_option_writes_only_the_requested_layouts(tmp_path):
    summary = write_phantom_dataset(tmp_path / "o", 5, 48, formats="lung-masks")
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "README.txt", "ground_truth", "lung-masks", "phantoms.csv"]
    assert list(summary.counts) == ["lung-masks"]


# --- planted shortcut -------------------------------------------------------------------------


def _slot_means(out: Path, rows: list[dict]) -> np.ndarray:
    """Mean grey level of every marker slot (one per label) in each image."""
    means = []
    for row in rows:
        image = cv2.imread(str(out / row["path"]), cv2.IMREAD_GRAYSCALE)
        s = image.shape[0]
        half = max(2, round(0.025 * s))
        y = int(0.93 * s)
        means.append([image[y - half:y + half, int(phantoms._MARKER_SLOTS_X[lab] * s) - half:
                            int(phantoms._MARKER_SLOTS_X[lab] * s) + half].mean() for lab in LABELS])
    return np.array(means)


def test_shortcut_marker_correlates_with_label_only_when_asked(tmp_path):
    kwargs = dict(n=30, size=48, seed=5, formats="kermany")
    write_phantom_dataset(tmp_path / "on", shortcut="marker", shortcut_strength=1.0, **kwargs)
    write_phantom_dataset(tmp_path / "half", shortcut="marker", shortcut_strength=0.0, **kwargs)
    write_phantom_dataset(tmp_path / "off", **kwargs)
    on, half, off = (_table(tmp_path / k) for k in ("on", "half", "off"))
    # strength 1: the brightest slot names the label in every image, and the table says so
    predicted = np.array(LABELS)[_slot_means(tmp_path / "on", on).argmax(axis=1)]
    assert list(predicted) == [r["label"] for r in on]
    assert {r["shortcut_agrees"] for r in on} == {"1"} and {r["shortcut"] for r in on} == {"marker"}
    # strength 0: the marker is drawn at random, so it disagrees with the label often
    agree = np.mean([r["shortcut_agrees"] == "1" for r in half])
    assert 0.0 < agree < 0.7
    # off (default): no slot is marked at all
    assert {r["shortcut"] for r in off} == {""}
    assert _slot_means(tmp_path / "off", off).max() < 230
    # with and without the shortcut, images differ only around the marker (JPEG blocks)
    for r_on, r_off in zip(on, off):
        a = cv2.imread(str(tmp_path / "on" / r_on["path"]), cv2.IMREAD_GRAYSCALE).astype(int)
        b = cv2.imread(str(tmp_path / "off" / r_off["path"]), cv2.IMREAD_GRAYSCALE).astype(int)
        y0 = int(r_on["shortcut_y0"]) // 8 * 8
        assert np.abs(a[:y0 - 8] - b[:y0 - 8]).max() == 0


def test_text_shortcut_token_recorded(tmp_path):
    write_phantom_dataset(tmp_path / "t", 8, 64, seed=1, formats="kermany", shortcut="text")
    for row in _table(tmp_path / "t"):
        x0, y0, x1, y1 = (int(row[k]) for k in ("shortcut_x0", "shortcut_y0", "shortcut_x1", "shortcut_y1"))
        image = cv2.imread(str(tmp_path / "t" / row["path"]), cv2.IMREAD_GRAYSCALE)
        assert image[y0:y1, x0:x1].max() > 200 and row["shortcut_label"] == row["label"]


# --- arguments, output directory, CLI ---------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n=-1), "Received: n=-1"),
        (dict(n=True), "Received: n=True"),
        (dict(size=16), "Received: size=16"),
        (dict(seed=-3), "Received: seed=-3"),
        (dict(formats="kermany,dicom"), "Received: formats=('kermany', 'dicom')"),
        (dict(formats=()), "Received: formats=()"),
        (dict(shortcut="logo"), "Received: shortcut='logo'"),
        (dict(shortcut="marker", shortcut_strength=1.5), "Received: shortcut_strength=1.5"),
    ],
)
def test_write_bad_arguments(tmp_path, kwargs, message):
    args = dict(n=2, size=48, seed=0) | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        write_phantom_dataset(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists()


def test_refuses_foreign_directory_and_overwrites_only_with_permission(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing"):
        write_phantom_dataset(foreign, 2, 48)
    assert (foreign / "precious.txt").read_text() == "keep me"
    out = tmp_path / "set"
    write_phantom_dataset(out, 8, 48, formats="kermany")
    before = _digests(out)
    write_phantom_dataset(out, 8, 48, formats="kermany")  # the same set again: allowed, same bytes
    assert _digests(out) == before
    with pytest.raises(ValueError, match="overwrite"):
        write_phantom_dataset(out, 3, 48, formats="kermany")
    write_phantom_dataset(out, 3, 48, formats="kermany", overwrite=True)
    assert len(list((out / "chest_xray").rglob("*.jpeg"))) == 3  # nothing stale left


def _phantoms_parser() -> argparse.ArgumentParser:
    from cxr_cascade.commands import data_phantoms

    parser = argparse.ArgumentParser(prog="cxr-cascade data")
    data_phantoms.register(parser.add_subparsers(dest="data_command"))
    return parser


def test_command_module_writes_and_prints_summary(tmp_path, capsys):
    args = _phantoms_parser().parse_args(
        ["phantoms", "--out", str(tmp_path / "p"), "--n", "4", "--size", "48", "--seed", "2",
         "--formats", "kermany,ieee8023", "--shortcut", "marker", "--shortcut-strength", "0.5"])
    assert args.func(args) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("wrote 8 phantom images") and "images/s" in line
    rows = _table(tmp_path / "p")
    assert {r["shortcut"] for r in rows} == {"marker"}


def test_cli_main(tmp_path, capsys):
    from cxr_cascade import cli

    try:
        cli.build_parser()
    except ModuleNotFoundError as error:  # another `data` sub-command not written yet
        pytest.skip(f"cxr-cascade CLI incomplete: {error}")
    out = tmp_path / "cli"
    assert cli.main(["data", "phantoms", "--out", str(out), "--n", "3", "--size", "48"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert cli.main(["data", "phantoms", "--out", str(out), "--n", "-1"]) == 2
    assert "Received: n=-1" in capsys.readouterr().err


# --- the project's readers read the phantom layouts unchanged ----------------------------------


def test_project_readers_read_phantom_layouts(phantom_set):
    readers = pytest.importorskip("pipelines.readers")
    from pipelines.records import count_by, scan_manifest

    out, summary = phantom_set
    kermany = readers.read_kermany(out / "chest_xray")
    assert not kermany.problems
    assert dict(count_by(kermany, "label")) == summary.counts["kermany"]
    ieee = readers.read_ieee8023(out / "covid-chestxray-dataset")
    frontal = Counter(r["label"] for r in _table(out)
                      if r["source"] == "ieee8023" and r["view"] != "L")
    assert dict(count_by(ieee, "label")) == dict(frontal)
    assert len(ieee) == 24  # frontal X-rays with a file
    assert ieee.skipped and all("not found" in p.message for p in ieee.problems) and ieee.problems
    masks = readers.read_lung_masks(
        out / "lung-masks", ieee8023_metadata=out / "covid-chestxray-dataset" / "metadata.csv")
    assert not masks.problems and len(masks) == sum(summary.counts["lung-masks"].values())
    assert dict(count_by(masks, "label")) == summary.counts["lung-masks"]
    manifest = scan_manifest(out / "phantoms.csv")
    assert not manifest.problems and len(manifest) == summary.n_images
    assert readers.detect_format(out / "chest_xray") == "kermany"
