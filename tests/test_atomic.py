"""pipelines.atomic: the one write-then-rename helper (run folders, reports, figures, manifests)."""

from __future__ import annotations

import json

import pytest

from pipelines.atomic import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text


def test_writes_replace_the_file_whole(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_json(target, {"x": 1})
    assert json.loads(target.read_text()) == {"x": 1}
    atomic_write_text(target, "é\n")
    assert target.read_text(encoding="utf-8") == "é\n"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_temporary_keeps_the_suffix_writers_need(tmp_path):
    with atomic_path(tmp_path / "model.keras") as tmp:
        assert tmp.name.endswith(".keras") and tmp.parent == tmp_path
        tmp.write_bytes(b"k")
    assert (tmp_path / "model.keras").read_bytes() == b"k"


def test_fsync_false_skips_the_flushes_but_still_renames(tmp_path, monkeypatch):
    import pipelines.atomic as atomic

    flushed = []
    monkeypatch.setattr(atomic, "_fsync", flushed.append)
    target = tmp_path / "img.png"
    atomic_write_bytes(target, b"new")
    assert len(flushed) == 2 and flushed[1] == tmp_path  # the temporary file, then its folder
    flushed.clear()
    atomic_write_bytes(target, b"newer", fsync=False)
    assert flushed == [] and target.read_bytes() == b"newer"
    assert [p.name for p in tmp_path.iterdir()] == ["img.png"]
