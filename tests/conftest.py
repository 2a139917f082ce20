"""Shared fixtures: the real data in ../shared/data (skipped when absent) and tiny phantoms."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

# Shared assertion helpers (tests/_helpers.py) get pytest's detailed assert messages too.
pytest.register_assert_rewrite("_helpers")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CXR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """Path of one real data set in ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data set not present: {path}")
    return path


@pytest.fixture
def kermany_dir() -> Path:
    return shared_dataset("chest_xray")


@pytest.fixture
def ieee8023_dir() -> Path:
    return shared_dataset("covid-chestxray-dataset")


@pytest.fixture
def lung_masks_dir() -> Path:
    return shared_dataset("lung-masks")
