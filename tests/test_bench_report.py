"""benchmarks/report.py: README tables rendered from the benches' JSON, never typed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPORT = Path(__file__).resolve().parent.parent / "benchmarks" / "report.py"


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("bench_report", REPORT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLAHE = {
    "bench": "clahe",
    "machine": "2 CPUs, x86_64",
    "load_average": [0.5, 0.7],
    "command": "python benchmarks/bench_clahe.py --quick",
    "rows": [
        {
            "size": 512,
            "batch": 8,
            "ms_per_image": {"eager": 2.0, "tf.function": 1.9, "jit_compile": 0.61, "opencv": 0.5},
            "ratio_to_opencv": {"eager": 4.0, "tf.function": 3.8, "jit_compile": 1.22},
            "exact": True,
        }
    ],
    "goals": [
        {"variant": "jit_compile", "goal": 1.5, "worst_ratio": 1.22, "met": True},
        {"variant": "tf.function", "goal": 3.0, "worst_ratio": 3.8, "met": False},
    ],
}


def test_renders_the_json_numbers_and_verdicts(report, tmp_path):
    (tmp_path / "clahe.json").write_text(json.dumps(CLAHE))
    table = report.tables(tmp_path)["clahe"]
    assert "| 512 | batch 8 | 2.00 | 1.90 | 0.61 | 0.50 | 4.00 | 3.80 | 1.22 | yes |" in table
    assert "jit_compile <= 1.5x OpenCV: worst 1.22x, met" in table
    assert "tf.function <= 3.0x OpenCV: worst 3.80x, **missed**" in table
    assert "load average 0.5 -> 0.7" in table and "bench_clahe.py --quick" in table


def test_rewrites_only_the_marked_sections(report, tmp_path):
    (tmp_path / "clahe.json").write_text(json.dumps(CLAHE))
    readme = tmp_path / "README.md"
    readme.write_text(
        "intro\n<!-- bench:clahe -->\nold table\n<!-- /bench:clahe -->\nmiddle\n"
        "<!-- bench:pipeline -->\nkept: no pipeline.json\n<!-- /bench:pipeline -->\nend\n"
    )
    assert report.main([str(tmp_path), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and "| 512 | batch 8 |" in text
    assert text.startswith("intro\n<!-- bench:clahe -->\n") and "\nmiddle\n" in text
    assert "kept: no pipeline.json" in text and text.endswith("end\n")
    # Idempotent: a second run gives the same file.
    report.main([str(tmp_path), "--readme", str(readme)])
    assert readme.read_text() == text


CLAHE_OPS = {
    "utc": "2026-11-30T22:33:45+00:00",
    "bench": "clahe_ops",
    "command": "python benchmarks/bench_clahe_ops.py --model",
    "backend": "jax",
    "device": "NVIDIA H200 (gpu, JAX 0.11.2)",
    "opencv": "5.0.0, 16 threads",
    "clip_limit": 2.0,
    "tile_grid": [8, 8],
    "clahe": [
        {"size": 512, "batch": 64, "device_ms": 0.007, "round_trip_ms": 0.95, "opencv_ms": 0.121,
         "speedup_device": 17.47, "speedup_round_trip": 0.13, "exact": True, "max_abs_diff": 0},
    ],
    "rotation": [{"size": 512, "batch": 64, "device_ms": 0.0096, "max_abs_diff_vs_host_cpu": 5.9e-05}],
    "model": {"size": 512, "batch": 16, "precision": "mixed_bfloat16",
              "images_per_s": {"seme_resnet50": 544.5, "clahe+rotation+seme_resnet50": 570.8}, "ratio": 1.048},
}


def test_renders_the_accelerator_table_with_its_own_date(report, tmp_path):
    (tmp_path / "clahe_ops.json").write_text(json.dumps(CLAHE_OPS))
    table = report.tables(tmp_path)["clahe_ops"]
    assert "| 512 | 64 | 0.007 | 0.121 | 17.5x | 0.13x | yes | 0.010 | 5.9e-05 |" in table
    assert "544.5 img/s alone, 570.8 img/s" in table and "(ratio 1.048)" in table
    assert "2026-11-30 22:33 UTC" in table  # the JSON's clock, not the file's
    assert "NVIDIA H200" in table


def test_no_json_is_an_error(report, tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 1
    assert "no bench JSON" in capsys.readouterr().err
