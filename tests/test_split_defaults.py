"""One split recipe: the trainer's own split and `cxr-cascade data split` share their defaults
(validation 0.1, test 0.1, near-duplicate detection) and give the same manifest."""

from __future__ import annotations

import argparse

import cv2
import numpy as np


def _split_parser():
    from cxr_cascade.commands import data_split

    parser = argparse.ArgumentParser()
    data_split.register(parser.add_subparsers())
    return parser


def test_defaults_agree():
    from cxr_cascade.config import ExperimentConfig, load_experiment

    args = _split_parser().parse_args(["split", "x.csv", "--out", "y.csv"])
    config = ExperimentConfig(name="defaults", task="stage1")
    assert (config.val_fraction, config.test_fraction) == (args.val, args.test) == (0.1, 0.1)
    assert config.dedup == "near" and args.near_threshold >= 0 and not args.no_dedup
    stage1 = load_experiment("table4_resnet50_seme")
    assert (stage1.val_fraction, stage1.test_fraction, stage1.dedup) == (0.1, 0.1, "near")


def test_trainer_split_equals_data_split(tmp_path):
    from cxr_cascade.cli import main
    from cxr_cascade.config import ExperimentConfig
    from cxr_cascade.training.data import split
    from pipelines.records import Record, read_manifest, write_manifest

    rng = np.random.default_rng(0)
    records = []
    for i in range(60):
        path = tmp_path / f"{i}.png"
        image = (rng.random((16, 16)) * 255).astype(np.uint8)
        if i % 10 == 9:  # a near copy of the previous film, another patient
            image = np.clip(cv2.imread(str(tmp_path / f"{i - 1}.png"), 0).astype(int) + 2, 0, 255).astype(np.uint8)
        cv2.imwrite(str(path), image)
        records.append(Record(str(path), ("normal", "bacterial", "viral")[i % 3], f"p{i // 2}", "s"))
    write_manifest(records, tmp_path / "all.csv")
    assert main(["data", "split", str(tmp_path / "all.csv"), "--out", str(tmp_path / "split.csv")]) == 0
    published = {r.path: r.split for r in read_manifest(tmp_path / "split.csv")}
    trainer = {r.path: r.split for r in split(ExperimentConfig(name="t", task="stage1"), records)}
    assert trainer == published
    assert published[str(tmp_path / "9.png")] == published[str(tmp_path / "8.png")]  # near copy kept together
