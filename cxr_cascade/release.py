"""A release: the three trained models in float16, with their provenance, served without training.

Layout written by `build_release` (``cxr-cascade release build``)::

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
`cxr_cascade.runs.load_stage` hands a release model folder to it, so evaluate, export, gradcam and
audit all take ``releases/v1/stage1`` where they take a run directory. `verify_release` checks
every line of SHA256SUMS and every file release.json lists.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Union

import numpy as np

from cxr_cascade.checksums import sha256_file

__all__ = [
    "MODELS", "RELEASE_FILE", "SUMS_FILE", "ReleaseError", "build_release", "chance_level",
    "find_release", "load_release", "write_checksums",
    "release_models_dir", "render_model_card", "verify_release",
]

PathLike = Union[str, os.PathLike]
RELEASE_FILE = "release.json"
CARD_FILE = "MODEL_CARD.md"
SUMS_FILE = "SHA256SUMS"
MODELS = ("stage1", "stage2", "unet")
MODEL_FILES = ("config.json", "architecture.json", "weights.npz")
OPTIONAL_FILES = ("splits.csv",)
FLOAT16_MAX = float(np.finfo(np.float16).max)
# headline numbers copied from a run's results.json
HEADLINE = ("accuracy", "macro_f1", "macro_auc", "mean_iou", "dice", "loss")


class ReleaseError(ValueError):
    """A release file that is missing, changed or truncated (one line, naming the file)."""


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# --------------------------------------------------------------------------------- writing
def _store_weights(model, path: Path) -> dict:
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


def _run_summary(run: Path) -> dict:
    """What release.json says of a run: metrics, evaluation CIs, time, machine."""
    results = _read_json(run / "results.json") or {}
    environment = _read_json(run / "environment.json") or {}
    evaluation = _read_json(run / "evaluation" / "metrics.json")
    summary: dict = {
        "test_split": results.get("evaluated_split"),
        "test_metrics": {k: results[k] for k in HEADLINE if isinstance(results.get(k), (int, float))},
        "split_counts": results.get("split_counts"),
        "best_epoch": results.get("best_epoch"),
        "epochs": results.get("epochs"),
        "training_seconds": results.get("wall_seconds"),
        "command": results.get("command") or ((run / "command.txt").read_text().strip()
                                              if (run / "command.txt").is_file() else None),
        "machine": {k: environment.get(k) for k in
                    ("host", "platform", "cpu_count", "threads", "tensorflow", "keras",
                     "keras_backend", "gpus")
                    if k in environment},
    }
    if evaluation:
        sections = evaluation.get("models") or {}  # `cxr-cascade evaluate RUN`'s sections
        summary["evaluation"] = {
            name: {"n": s.get("n"), "confidence_intervals": s.get("confidence_intervals"),
                   "macro_auc": s.get("macro_auc"),
                   "class_counts": {c: v.get("support") for c, v in (s.get("per_class") or {}).items()
                                    if isinstance(v, dict)} or None}
            for name, s in sections.items() if isinstance(s, dict)
        }
    summary["chance_level"] = chance_level(summary.get("evaluation"))
    audit = _read_json(run / "audit" / "audit.json")  # `cxr-cascade audit RUN`
    if audit and isinstance(audit.get("flag"), dict):
        flag = audit["flag"]
        summary["shortcut_audit"] = {
            "verdict": "FLAGGED" if flag.get("flagged") else
                       "not flagged" if flag.get("informative") else "not informative (model at chance)",
            "reasons": flag.get("reasons") or [],
        }
    return summary


def chance_level(evaluation: Optional[dict]) -> Optional[str]:
    """Why a classifier is no better than chance on its test split, or None.

    The rule: the 95 % patient-bootstrap CI of the test macro AUC reaches down to 0.5 (a model
    whose ranking of the films is indistinguishable from a coin's). `evaluation` is a release
    entry's ``evaluation`` (section -> n, confidence_intervals); the U-Net has no AUC and is
    never marked.
    """
    for name, section in (evaluation or {}).items():
        ci = ((section or {}).get("confidence_intervals") or {}).get("macro_auc")
        if isinstance(ci, dict) and isinstance(ci.get("low"), (int, float)) and ci["low"] <= 0.5:
            return (f"{name}: test macro AUC {ci['value']:.3f} (95 % CI {ci['low']:.3f}-"
                    f"{ci['high']:.3f}, n={section.get('n')}) reaches 0.5: no better than chance")
    return None


def build_release(out: PathLike, runs: dict, *, name: Optional[str] = None, force: bool = False) -> Path:
    """Writes a release folder from trained runs.

    Args:
        out: the release folder (``releases/v1``); must not exist unless `force`.
        runs: {"stage1" | "stage2" | "unet": run directory}; each run's task must match its key.
        name: the release name in release.json (default: the folder's name).
        force: replace an existing folder's files.

    Returns:
        The path of release.json.

    Raises:
        ValueError: an unknown key, a run of another task, or `out` exists without `force`.
    """
    from cxr_cascade.runs import load_stage
    from pipelines.atomic import atomic_write_json, atomic_write_text

    out = Path(out)
    unknown = sorted(set(runs) - set(MODELS))
    if unknown:
        raise ValueError(f"`runs` keys must be among {list(MODELS)}. Received: {unknown}")
    if not runs:
        raise ValueError("a release needs at least one run. Received: runs={}")
    if (out / RELEASE_FILE).exists() and not force:
        raise ValueError(f"{out}: a release exists there already; choose another --out or pass --force")
    release: dict = {
        "name": name or out.name,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "format": 1,
        "weights_format": "weights.npz: model.weights order; kernels float16, 1-D arrays float32",
        "models": {},
    }
    stages = {}
    for role in MODELS:  # every run is checked before anything is written
        if role in runs:
            stages[role] = load_stage(runs[role])
            if stages[role].task != role:
                raise ValueError(f"--{role} {runs[role]}: a {stages[role].task} run, not a {role} run")
    for role, stage in stages.items():
        run = Path(runs[role])
        folder = out / role
        folder.mkdir(parents=True, exist_ok=True)
        config = stage.config.to_dict()
        atomic_write_text(folder / "config.json", json.dumps(config, indent=2) + "\n")
        atomic_write_text(folder / "architecture.json", stage.model.to_json())
        stats = _store_weights(stage.model, folder / "weights.npz")
        split_sha = None
        if (run / "splits.csv").is_file():
            split_sha = sha256_file(run / "splits.csv")  # the manifest the run trained on
            _copy_manifest_relative(run / "splits.csv", folder / "splits.csv")
        files = {f: sha256_file(folder / f) for f in MODEL_FILES + OPTIONAL_FILES if (folder / f).is_file()}
        sizes = {f: (folder / f).stat().st_size for f in files}
        release["models"][role] = {
            "experiment": stage.config.name,
            "paper": stage.config.paper,
            "config": config,
            "classes": list(stage.class_names),
            "run": str(run),
            "run_weights": stage.weights,
            "split_manifest_sha256": split_sha,
            "files": files,
            "bytes": sizes,
            **stats,
            **_run_summary(run),
        }
    release["total_bytes"] = sum(sum(m["bytes"].values()) for m in release["models"].values())
    atomic_write_json(out / RELEASE_FILE, release)
    atomic_write_text(out / CARD_FILE, render_model_card(release))
    write_checksums(out)
    return out / RELEASE_FILE


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
    from pipelines.atomic import atomic_write_text

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


def _copy_manifest_relative(source: Path, target: Path) -> None:
    """The run's split manifest with paths relative to the release folder.

    A clone that keeps the data at the same place relative to itself (the project's layout:
    ``../shared/data`` beside the repository) evaluates the release on its test split wherever
    it is cloned. Same records, same order; `read_manifest` resolves the paths back.
    """
    from pipelines.records import read_manifest, write_manifest

    write_manifest(read_manifest(source), target, relative=True)


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


def load_release(path: PathLike, model: str):
    """Loads one model of a release as a `cxr_cascade.runs.Stage`, after verifying its files.

    Args:
        path: the release folder (or its release.json).
        model: "stage1", "stage2" or "unet".

    Raises:
        ReleaseError: a missing, changed or truncated file (names it) or an absent model.
    """
    import keras

    import cxr_cascade.models  # noqa: F401  (registers the custom layers)
    from cxr_cascade.config import from_dict
    from cxr_cascade.runs import Stage

    if model not in MODELS:
        raise ValueError(f"`model` must be one of {list(MODELS)}. Received: model={model!r}")
    folder, release = read_release(path, checked=True)
    verify_model(folder, release, model)
    config = from_dict(json.loads((folder / model / "config.json").read_text()))
    network = keras.models.model_from_json((folder / model / "architecture.json").read_text())
    with np.load(folder / model / "weights.npz") as stored:
        paths = [str(p) for p in stored["paths"]]
        values = [stored[f"{i:04d}"] for i in range(len(paths))]
    if paths != [variable.path for variable in network.weights]:
        raise ReleaseError(
            f"{folder / model / 'weights.npz'}: its {len(paths)} weights do not match the "
            f"{len(network.weights)} of architecture.json (names or order differ)"
        )
    for variable, value in zip(network.weights, values):
        variable.assign(value.astype(variable.dtype))
    return Stage.of_run(config, network, str(folder / model), "weights.npz")


REPO_ROOT = Path(__file__).resolve().parents[1]


def is_release_model(path: PathLike) -> bool:
    """True for a model folder inside a release (``releases/v1/stage1``)."""
    path = Path(path)
    return (path / "weights.npz").is_file() and (path.parent / RELEASE_FILE).is_file()


def find_release(root: Optional[PathLike] = None) -> Optional[Path]:
    """The release `predict` and `segment` use by default: $CXR_CASCADE_RELEASE, else the
    highest-named ``releases/*/release.json`` under `root` (default: the working directory, then
    the repository of this package). None when there is none."""
    explicit = os.environ.get("CXR_CASCADE_RELEASE")
    if explicit:
        return Path(explicit)
    roots = [Path(root)] if root is not None else [Path.cwd(), REPO_ROOT]
    for base in roots:
        found = sorted((base / "releases").glob(f"*/{RELEASE_FILE}"))
        if found:
            return found[-1].parent
    return None


NO_RELEASE = (
    "no trained models: no --models, no ./models and no release in releases/ (the repository "
    "ships releases/v1; or train with `make train-release`, then `make release`, which runs "
    "`cxr-cascade release build --unet RUN --stage1 RUN --stage2 RUN --out releases/v1`)"
)


def release_models_dir(release: PathLike, cache: Optional[PathLike] = None) -> Path:
    """The TF Serving export of a release, written once into a cache folder and reused.

    The release is verified as a whole first (`verify_release`: a changed file is refused,
    whether or not an export of it is cached), and the cache folder (``$CXR_CASCADE_CACHE`` or
    ``~/.cache/cxr-cascade``) is keyed by the sha256 of its SHA256SUMS, i.e. by the digests of
    every file: a rebuilt release is exported afresh, never answered from an older export.
    """
    verify_release(release)
    folder, _ = read_release(release)
    key = sha256_file(folder / SUMS_FILE)[:16]
    base = Path(cache or os.environ.get("CXR_CASCADE_CACHE") or Path.home() / ".cache" / "cxr-cascade")
    target = base / f"release-{key}"
    if not (target / "models.config").is_file():
        export_release(folder, target)
    return target


def export_release(release: PathLike, models_dir: PathLike, **kwargs) -> dict:
    """`cxr_cascade.export.export_models` on the release's verified models."""
    from cxr_cascade.export import export_models

    folder, data = read_release(release, checked=True)
    present = data.get("models") or {}
    stages = {}
    for role, name in (("stage1", "stage1"), ("stage2", "stage2"), ("unet", "lung_unet")):
        if role in present:
            stages[name] = load_release(folder, role)
    kwargs.setdefault("chance_level", {role: m.get("chance_level") for role, m in present.items()})
    return export_models(models_dir, **stages, **kwargs)


# ------------------------------------------------------------------------------ model card
def _fmt(value, digits=3) -> str:
    return "n/a" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def _metric_lines(entry: dict) -> list[str]:
    lines = []
    for name, section in (entry.get("evaluation") or {}).items():
        counts = section.get("class_counts") or {}
        for metric, ci in (section.get("confidence_intervals") or {}).items():
            if isinstance(ci, dict) and "value" in ci:
                n = _fmt(section.get("n"))
                cls = metric.split("/", 1)[0] if "/" in metric else None
                if cls in counts:  # the class count beside a per-class number
                    n = f"{n} ({cls} {_fmt(counts[cls])})"
                lines.append(f"| {name} | {metric} | {_fmt(ci['value'])} | "
                             f"{_fmt(ci.get('low'))}-{_fmt(ci.get('high'))} | {n} |")
    if not lines:
        counts = (entry.get("split_counts") or {}).get(entry.get("test_split") or "test")
        if isinstance(counts, dict):  # class counts beside the numbers
            counts = f"{sum(counts.values())} ({', '.join(f'{k} {v}' for k, v in counts.items())})"
        for metric, value in (entry.get("test_metrics") or {}).items():
            lines.append(f"| {entry.get('test_split') or 'test'} | {metric} | {_fmt(value)} | "
                         f"not evaluated (run `cxr-cascade evaluate`) | {_fmt(counts)} |")
    return lines or ["| - | no metrics recorded | - | - | - |"]


CARD_TEMPLATE = """# Model card: cxr-cascade release {name}

Generated from `release.json` by `cxr-cascade release build` ({created}); every number below is
copied from it. Do not edit by hand: rebuild the release.

## Intended use
Research on chest X-ray classification and its failure modes (Lv et al. 2020's Cascade-SEMEnet,
reproduced). **Not a medical device; not for diagnosis, triage or any clinical decision.**

{warnings}## Models
| model | experiment | image size | parameters | stored size (MB) | weights sha256 |
|---|---|---|---|---|---|
{models}

Total stored: {total_mb:.1f} MB (kernels float16, biases and batch-norm statistics float32).

## Training data and known biases
- Stage 1 (normal / bacterial / viral) is trained on Kermany et al. 2018 only: **pediatric**
  films (children aged 1-5) from **one hospital** in Guangzhou. Adults, other hospitals and other
  devices are outside its training distribution.
- Stage 2 (COVID-19 / other viral) is trained on the ieee8023 covid-chestxray-dataset: mostly
  **adult** films from many sources, many of them figures cut from papers (tints, arrows, text).
  Its negative class is small; a class drawn from one source can be recognised by the source.
- The U-Net is trained on V7 Labs' lung polygons over Kermany and ieee8023 images.

## Metrics (test split; 95 % patient-bootstrap CIs where the run was evaluated)
| section | metric | value | 95 % CI | n |
|---|---|---|---|---|
{metrics}

## Shortcut audit
{audit}

## Failure modes to expect
- Stage 1 has seen only children: its output on adult films is not validated.
- COVID-19 films and the other classes come from different sources and ages: a high stage-2 or
  cascade score can reflect the source (markers, text, tints), not the disease.
- Lateral views, CT slices and non-chest images are not rejected; the output is still a class.
- The U-Net's training set holds Kermany and ieee8023 films, some of them in the classifiers'
  test splits: lung masks (and stage 2's lung-masked inputs) on those films can be better than
  on films it has never seen.
- The cascade's COVID-19 output is only reached through stage 1's "viral" decision (the paper's
  gate rule): a COVID-19 film stage 1 calls bacterial is never called COVID-19.

## Provenance
{provenance}
"""


def render_model_card(release: dict) -> str:
    """MODEL_CARD.md text from a release.json dict (the numbers are never typed by hand)."""
    models = release.get("models") or {}
    rows, metrics, audits, provenance = [], [], [], []
    for role, entry in models.items():
        size = (entry.get("config") or {}).get("preprocess", {}).get("image_size")
        mb = sum((entry.get("bytes") or {}).values()) / 1e6
        rows.append(f"| {role} | {entry.get('experiment')} | {size} | {entry.get('parameters'):,} | "
                    f"{mb:.1f} | `{(entry.get('files') or {}).get('weights.npz', '')[:16]}...` |")
        metrics.extend(f"| {role}: " + line[2:] for line in _metric_lines(entry))
        audit = entry.get("shortcut_audit")
        if role != "unet":  # the audit asks whether a classifier reads the lungs
            audits.append(f"- {role}: " + (
                f"**{audit['verdict']}**" + "".join(f"; {r}" for r in audit["reasons"]) if audit
                else "no audit recorded for this run (`cxr-cascade audit RUN` before `release build`)"))
        machine = entry.get("machine") or {}
        hours = entry.get("training_seconds")
        provenance.append(
            f"- {role}: `{entry.get('command')}`; {entry.get('epochs')} epochs (best "
            f"{entry.get('best_epoch')}), {_fmt(hours / 3600 if hours else None, 2)} h on "
            f"{machine.get('platform', 'unknown machine')} ({machine.get('cpu_count', '?')} CPUs); "
            f"split manifest sha256 `{entry.get('split_manifest_sha256')}`"
        )
    warnings = "".join(
        f"**Warning: {role} is no better than chance.** {entry['chance_level']}; its output "
        "carries no information (see Metrics).\n\n"
        for role, entry in models.items() if entry.get("chance_level"))
    return CARD_TEMPLATE.format(
        name=release.get("name"), created=release.get("created_utc"), warnings=warnings,
        models="\n".join(rows), total_mb=release.get("total_bytes", 0) / 1e6,
        metrics="\n".join(metrics), audit="\n".join(audits), provenance="\n".join(provenance),
    )
