"""A release: the three trained models in float16, with their provenance, served without training.

Layout written by `cxr_cascade.artifacts.release_build.build_release`
(``cxr-cascade release build``)::

    releases/v1/
      release.json           per model: experiment + resolved config, split manifest sha256,
                             sha256 of every file below, test metrics (with CIs when the run was
                             evaluated), training time and machine
      MODEL_CARD.md          generated from release.json (`render_model_card`)
      SHA256SUMS             `sha256sum` lines over every other file of the release, release.json
                             and MODEL_CARD.md included (`sha256sum -c SHA256SUMS` checks it too)
      stage1/ stage2/ unet/  one folder per model:
        config.json          the run's resolved ExperimentConfig (preprocessing included)
        architecture.json    the Keras model's own serialisation (`model.to_json()`)
        weights.npz          every weight in `model.weights` order (key NNNN, names in `paths`,
                             checked on load); kernels float16, 1-D arrays
                             (biases, batch-norm statistics) float32: they are a few kB and the
                             batch-norm variances lose most of their precision in float16
        splits.csv           the run's split manifest, paths relative to this folder (evaluation
                             of the release on its test split from any clone with the data at
                             the same place beside it); release.json keeps the run's own hash

`load_release(path, model)` checks release.json against SHA256SUMS and every file release.json
lists for that model (splits.csv included) against release.json's sha256 before anything is read;
`cxr_cascade.artifacts.load` hands a release model folder to it, so evaluate, export, gradcam and
audit all take ``releases/v1/stage1`` where they take a run directory. `verify_release` checks
every line of SHA256SUMS and every file release.json lists.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Optional, Union

import keras
import numpy as np

import cxr_cascade.models  # noqa: F401  (registers the custom layers for deserialisation)
from cxr_cascade.artifacts.checksums import sha256_file
from cxr_cascade.artifacts.layout import RunDir
from cxr_cascade.artifacts.stage import Stage
from cxr_cascade.config import REPO_ROOT, from_dict
from cxr_cascade.registry import CASCADE_RULES, DEFAULT_CASCADE_RULE
from pipelines.atomic import atomic_write_text

__all__ = [
    "CARD_FILE", "MODELS", "NO_RELEASE", "RELEASE_FILE", "SUMS_FILE", "ReleaseError",
    "cascade_rule", "find_release", "is_release_model", "load_release", "read_release", "read_weights",
    "store_weights", "verify_model", "verify_release", "write_checksums",
]

PathLike = Union[str, os.PathLike]
RELEASE_FILE = "release.json"
CARD_FILE = "MODEL_CARD.md"
SUMS_FILE = "SHA256SUMS"
MODELS = ("stage1", "stage2", "unet")
# A model folder keeps its run's config.json and splits.csv under the run folder's names.
CONFIG_FILE, SPLITS_FILE = RunDir("").config.name, RunDir("").splits.name
ARCHITECTURE_FILE, WEIGHTS_FILE = "architecture.json", "weights.npz"
MODEL_FILES = (CONFIG_FILE, ARCHITECTURE_FILE, WEIGHTS_FILE)
OPTIONAL_FILES = (SPLITS_FILE,)
FLOAT16_MAX = float(np.finfo(np.float16).max)


class ReleaseError(ValueError):
    """A release file that is missing, changed or truncated (one line, naming the file)."""


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# --------------------------------------------------------------------------------- weights
def store_weights(model, path: Path) -> dict:
    """weights.npz: key ``NNNN`` per `model.weights` entry; returns dtype counts and params."""
    arrays, half, full, params = {}, 0, 0, 0
    for i, variable in enumerate(model.weights):
        value = np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)
        params += int(value.size)
        if value.ndim >= 2 and np.issubdtype(value.dtype, np.floating) and (
            not value.size or float(np.max(np.abs(value))) < FLOAT16_MAX
        ):
            arrays[f"{i:04d}"] = value.astype(np.float16)
            half += 1
        else:
            arrays[f"{i:04d}"] = value
            full += 1
    arrays["paths"] = np.array([variable.path for variable in model.weights])
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return {"parameters": params, "float16_arrays": half, "full_precision_arrays": full}


def read_weights(network, path: Path, architecture: str = ARCHITECTURE_FILE) -> None:
    """Assigns `store_weights`' file at `path` to `network` (built from `architecture`).

    Raises:
        ReleaseError: the stored weights' names or order differ from `network.weights`.
    """
    with np.load(path) as stored:
        paths = [str(p) for p in stored["paths"]]
        values = [stored[f"{i:04d}"] for i in range(len(paths))]
    if paths != [variable.path for variable in network.weights]:
        raise ReleaseError(
            f"{path}: its {len(paths)} weights do not match the {len(network.weights)} of "
            f"{architecture} (names or order differ)"
        )
    for variable, value in zip(network.weights, values):
        variable.assign(value.astype(variable.dtype))


# --------------------------------------------------------------------------------- checksums
def _release_files(folder: Path) -> list[str]:
    """Every regular file of a release except SHA256SUMS, as sorted POSIX paths relative to it
    (dot files, such as an interrupted atomic write's temporary, are not part of a release)."""
    return sorted(
        path.relative_to(folder).as_posix() for path in folder.rglob("*")
        if path.is_file() and path.name != SUMS_FILE
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def write_checksums(path: PathLike) -> Path:
    """Writes SHA256SUMS over every file of a release (release.json included).

    Every file release.json lists is checked against its digest there first, so a changed file
    is never sealed as released. Returns the path written.

    Raises:
        ReleaseError: a listed file that is missing or differs from release.json.
    """
    folder, release = read_release(path)
    for model in release.get("models") or {}:
        verify_model(folder, release, model)
    lines = [f"{sha256_file(folder / name)}  {name}\n" for name in _release_files(folder)]
    atomic_write_text(folder / SUMS_FILE, "".join(lines))
    return folder / SUMS_FILE


def _read_sums(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of SHA256SUMS (ReleaseError when missing or malformed)."""
    sums_path = folder / SUMS_FILE
    try:
        text = sums_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReleaseError(
            f"{sums_path}: missing, so release.json's own edits cannot be checked; rebuild the "
            f"release, or write it with `cxr-cascade release seal {folder}` if every file is as "
            "released"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ReleaseError(f"{sums_path}: unreadable ({error})") from None
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition(" ")
        name = name.lstrip(" *")  # `sha256sum` writes "  name" (text) or " *name" (binary)
        if len(digest) != 64 or not name or ".." in Path(name).parts or Path(name).is_absolute():
            raise ReleaseError(f"{sums_path}: line {number} is not `SHA256  FILE`: {line[:80]!r}")
        sums[name] = digest.lower()
    if RELEASE_FILE not in sums:
        raise ReleaseError(f"{sums_path}: does not list {RELEASE_FILE}; not this release's checksums")
    return sums


def _check_sum(folder: Path, name: str, expected: str) -> None:
    path = folder / name
    if not path.is_file():
        raise ReleaseError(f"{path}: listed in {SUMS_FILE} but missing from the release")
    if sha256_file(path) != expected:
        raise ReleaseError(f"{path}: sha256 differs from {SUMS_FILE} (edited after the release "
                           "was built); refusing to load it")


# --------------------------------------------------------------------------------- reading
def read_release(path: PathLike, *, checked: bool = False) -> tuple[Path, dict]:
    """(release folder, release.json) of a release folder or its release.json.

    With `checked`, release.json must match its line in SHA256SUMS (ReleaseError else): what
    every loader uses, so an edited release.json (a chance-level flag removed, a digest
    replaced) is never believed.
    """
    path = Path(path)
    folder = path.parent if path.name == RELEASE_FILE else path
    if checked and (folder / RELEASE_FILE).is_file():
        _check_sum(folder, RELEASE_FILE, _read_sums(folder)[RELEASE_FILE])
    data = _read_json(folder / RELEASE_FILE)
    if data is None:
        raise ReleaseError(f"{folder / RELEASE_FILE}: missing or not valid JSON; not a release")
    return folder, data


def cascade_rule(release: dict) -> str:
    """The cascade rule a release was chosen with (release.json ``cascade_rule``; releases built
    before it was recorded ran the paper's gate).

    Raises:
        ReleaseError: a rule that is not one of `CASCADE_RULES`.
    """
    rule = release.get("cascade_rule", DEFAULT_CASCADE_RULE)
    if rule not in CASCADE_RULES:
        raise ReleaseError(f"{RELEASE_FILE}: cascade_rule must be one of {list(CASCADE_RULES)}. "
                           f"Received: cascade_rule={rule!r}")
    return rule


def verify_model(folder: Path, release: dict, model: str) -> dict:
    """The model's entry in release.json after checking each file's sha256 (ReleaseError else)."""
    entry = (release.get("models") or {}).get(model)
    if entry is None:
        raise ReleaseError(
            f"{folder / RELEASE_FILE}: no {model!r} model in this release "
            f"(it has: {', '.join(release.get('models') or {}) or 'none'})"
        )
    listed = dict(entry.get("files") or {})
    # The model files always, and every other file release.json lists (splits.csv).
    for name in dict.fromkeys([*MODEL_FILES, *listed]):
        path = folder / model / name
        expected = listed.get(name)
        if not path.is_file():
            raise ReleaseError(f"{path}: missing from the release")
        if expected is None or sha256_file(path) != expected:
            size = path.stat().st_size
            want = (entry.get("bytes") or {}).get(name)
            what = "truncated" if want is not None and size < want else "changed"
            raise ReleaseError(
                f"{path}: sha256 differs from {RELEASE_FILE} ({what}: {size} bytes"
                + (f", released {want}" if want is not None else "") + "); refusing to load it"
            )
    return entry


def verify_release(path: PathLike) -> list[str]:
    """Checks every file of a release: each line of SHA256SUMS (release.json and the model card
    included) and each file release.json lists; returns the models verified (ReleaseError on the
    first bad file)."""
    folder, release = read_release(path, checked=True)
    for name, digest in _read_sums(folder).items():
        _check_sum(folder, name, digest)
    for model in release.get("models") or {}:
        verify_model(folder, release, model)
    return list(release.get("models") or {})


def load_release(path: PathLike, model: str) -> Stage:
    """Loads one model of a release as a `cxr_cascade.artifacts.Stage`, after verifying its files.

    Args:
        path: the release folder (or its release.json).
        model: "stage1", "stage2" or "unet".

    Raises:
        ReleaseError: a missing, changed or truncated file (names it) or an absent model.
    """
    if model not in MODELS:
        raise ValueError(f"`model` must be one of {list(MODELS)}. Received: model={model!r}")
    folder, release = read_release(path, checked=True)
    verify_model(folder, release, model)
    config = from_dict(json.loads((folder / model / CONFIG_FILE).read_text()))
    network = keras.models.model_from_json((folder / model / ARCHITECTURE_FILE).read_text())
    read_weights(network, folder / model / WEIGHTS_FILE)
    return Stage.of_run(config, network, str(folder / model), WEIGHTS_FILE)


def is_release_model(path: PathLike) -> bool:
    """True for a model folder inside a release (``releases/v1/stage1``)."""
    path = Path(path)
    return (path / WEIGHTS_FILE).is_file() and (path.parent / RELEASE_FILE).is_file()


def find_release(name: Optional[PathLike] = None, *, root: Optional[PathLike] = None) -> Optional[Path]:
    """Where a release is.

    Args:
        name: a release folder (or its release.json), or a name looked up as ``releases/NAME``
            in the working directory, then in the repository of this package; returned as given
            when neither has it (`read_release` then names it as missing). None: the release
            `predict` and `segment` use by default, ``$CXR_CASCADE_RELEASE``, else the
            highest-named ``releases/*/release.json`` under `root` (default: the working
            directory, then the repository).
        root: where to look for ``releases/`` when `name` is None.

    Returns:
        The release path, or None when `name` is None and there is no release.
    """
    if name is not None:
        release = Path(name)
        for base in (Path("releases"), REPO_ROOT / "releases"):
            if not release.exists() and (base / name).exists():
                release = base / name
        return release
    explicit = os.environ.get("CXR_CASCADE_RELEASE")
    if explicit:
        return Path(explicit)
    roots = [Path(root)] if root is not None else [Path.cwd(), REPO_ROOT]
    for base in roots:
        found = sorted((base / "releases").glob(f"*/{RELEASE_FILE}"), key=lambda p: _version_key(p.parent.name))
        if found:
            return found[-1].parent
    return None


def _version_key(name: str) -> tuple:
    """Orders release names as versions: v2 before v10 (numbers compare as numbers)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", name) if part)


NO_RELEASE = (
    "no trained models: no --models, no ./models and no release in releases/ (the repository "
    "ships one; or train with `make train-release`, then `make release`, which runs "
    "`cxr-cascade release build --unet RUN --stage1 RUN --stage2 RUN --out releases/vN`)"
)
