"""Experiment configurations: typed, validated data loaded from `experiments/*.py`.

An experiment file is a short Python module at the repository root's `experiments/` package that
defines `CONFIG`, a plain `dict` (usually derived from one of the bases in `experiments/base.py`).
`load_experiment` turns it into a frozen `ExperimentConfig`, validates every field and applies
command-line overrides (`--set key=value`), so that a typo or an impossible setting fails before
any data is read, with an error that names the field, what is allowed and what was received.

Preprocessing and augmentation are nested sections holding the very objects the pipelines and the
serving graph are built from (`pipelines.config.PreprocessConfig` and `AugmentConfig`), so a run's
`config.json` records every setting that shapes a model's input. Dotted keys reach into them:
`--set preprocess.clip_limit=3 --set augment.rotation_degrees=15`. The image size lives in
`preprocess.image_size` (`config.image_size` reads it); the flat keys of earlier versions
(`image_size`, ...) are deprecated aliases, read with a warning by `cxr_cascade.compat`.

Example:
    >>> config = load_experiment("table4_resnet50_seme", overrides=["preprocess.clip_limit=3"])
    >>> config.backbone, config.image_size, config.preprocess.clip_limit
    ('resnet50', 512, 3.0)
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from cxr_cascade import compat
from cxr_cascade.registry import (
    BACKBONES,
    BALANCE_MODES,
    CLASSIFIER_TASKS,
    DEDUP_MODES,
    HEADS,
    JIT_COMPILE,
    LR_SCHEDULES,
    MIXED_PRECISION,
    MONITORS,
    NO_BALANCE,
    OPTIMIZERS,
    STAGE2_NEGATIVE_CLASS,
    STAGE2_NEGATIVE_LABELS,
    STAGE2_NEGATIVES,
    STRATEGIES,
    TASKS,
)
from pipelines.config import AugmentConfig, PreprocessConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = REPO_ROOT / "experiments"


@dataclass(frozen=True)
class MoExConfig:
    """Moment exchange (Li et al. 2021) as the paper uses it: after the first convolution.

    Attributes:
        prob: probability that a batch is mixed.
        lam: weight of the label of the image whose normalised features are kept
            (the loss is `lam * l(y_A) + (1 - lam) * l(y_B)`).
        epsilon: variance floor of the positional normalisation.
        position: where the exchange happens: "stem" = after the first convolution (the paper),
            or the name of a backbone layer.
    """

    prob: float = 1.0
    lam: float = 0.9
    epsilon: float = 1e-5
    position: str = "stem"


@dataclass(frozen=True)
class ExperimentConfig:
    """One training run, as data. Field groups: identity, model, data, optimisation, runtime."""

    # --- identity: what the experiment reproduces
    name: str
    task: str
    description: str = ""
    paper: str = ""  # table row and the figure the paper reports

    # --- model
    backbone: str = "resnet50"
    head: str = "gap"
    se_reduction: Optional[int] = None
    moex: Optional[MoExConfig] = None
    # U-Net widths from the first encoder level to the bottleneck (Ronneberger et al. 2015's).
    unet_filters: tuple[int, ...] = (64, 128, 256, 512, 1024)

    # --- data
    classes: tuple[str, ...] = ()
    stage2_negative: str = "ieee8023_viral"
    # What makes a model input from an image file: size, resize, CLAHE, lung masking. The same
    # object builds the training / evaluation pipelines and the exported serving graph.
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    # Training-only: random CLAHE, CLAHE and lung-masked copies, rotation / shift / zoom.
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    batch_size: int = 8
    val_fraction: float = 0.1
    test_fraction: float = 0.1  # one default with `cxr-cascade data split --test`
    balance: str = NO_BALANCE  # training class balance, one of `registry.BALANCE_MODES`
    max_per_class: Optional[int] = None  # smoke runs and demos: cap the images per class
    dedup: str = "near"  # duplicates kept in one split (`registry.DEDUP_MODES`); as `data split`

    # --- optimisation
    epochs: int = 80
    optimizer: str = "sgd"
    learning_rate: float = 1e-4
    momentum: float = 0.9
    lr_schedule: str = "constant"
    lr_min: float = 0.0
    monitor: str = "val_accuracy"
    divergence_factor: Optional[float] = 1e3

    # --- runtime
    seed: int = 0
    deterministic: bool = True
    strategy: str = "default"
    mixed_precision: str = "off"
    jit_compile: str = "auto"

    # ------------------------------------------------------------------ helpers
    @property
    def image_size(self) -> int:
        """The model's input size S (`preprocess.image_size`)."""
        return self.preprocess.image_size

    @property
    def is_classifier(self) -> bool:
        return self.task in CLASSIFIER_TASKS

    def trained_label(self, label: str) -> str:
        """The class a record labelled `label` trains as: `label` itself, except stage 2's
        negative labels (`STAGE2_NEGATIVE_LABELS[stage2_negative]`), which train as
        `STAGE2_NEGATIVE_CLASS` ("bacterial" -> "viral" under "ieee8023_other_pneumonia")."""
        if self.task == "stage2" and label in STAGE2_NEGATIVE_LABELS.get(self.stage2_negative, ()):
            return STAGE2_NEGATIVE_CLASS
        return label

    @property
    def monitor_mode(self) -> str:
        return "min" if self.monitor.endswith("loss") else "max"

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def replace(self, **changes: Any) -> "ExperimentConfig":
        """A validated copy with `changes` applied (same coercion as `--set`)."""
        data = self.to_dict()
        for key, value in changes.items():
            _set_path(data, key, value, name=self.name)
        return from_dict(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# Nested sections (`--set section.field=value`); the flat keys of earlier versions: `compat`.
_SECTIONS: dict[str, type] = {
    "moex": MoExConfig,
    "preprocess": PreprocessConfig,
    "augment": AugmentConfig,
}


# ---------------------------------------------------------------------------- type coercion
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~", ""}
# String fields that are on/off switches with a mode: what `true` means for each.
_SWITCHES = {"mixed_precision": "auto", "jit_compile": "on"}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _coerce(key: str, value: Any, tp: Any, where: str) -> Any:
    """Converts `value` (possibly a command-line string) to the field type `tp`."""
    inner, optional = _unwrap_optional(tp)
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
        return None
    if value is None:
        raise ValueError(f"{where}: `{key}` may not be None. Received: {key}=None")
    bad = ValueError(
        f"{where}: `{key}` must be of type {_type_name(inner)}. Received: {key}={value!r}"
    )
    if inner is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise bad
    if inner is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                try:
                    number = float(value)
                except ValueError:
                    raise bad from None
                if number.is_integer():
                    return int(number)
        raise bad
    if inner is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if inner is str:
        if key in _SWITCHES:
            # `mixed_precision=true`, `jit_compile=false`: booleans name the switch's default.
            text = str(value).strip().lower()
            if value is True or text in _TRUE:
                return _SWITCHES[key]
            if value is False or text in _FALSE:
                return "off"
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return str(value)
        if isinstance(value, str):
            return value.strip()
        raise bad
    if typing.get_origin(inner) is tuple:
        item_type = typing.get_args(inner)[0]
        if isinstance(value, str):
            value = [v.strip() for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise bad
        try:
            return tuple(_coerce(key, v, item_type, where) for v in value)
        except ValueError:
            raise bad from None
    if inner in _SECTIONS.values():
        if isinstance(value, inner):
            return value
        if isinstance(value, dict):
            return _build_dataclass(inner, value, where, prefix=f"{key}.")
        if inner is MoExConfig and (value is True or (
                isinstance(value, str) and value.strip().lower() in _TRUE)):
            return MoExConfig()
        allowed = "None, true or a mapping" if inner is MoExConfig else "a mapping"
        raise ValueError(
            f"{where}: `{key}` must be {allowed} with keys "
            f"{[f.name for f in dataclasses.fields(inner)]}. Received: {key}={value!r}"
        )
    raise TypeError(f"unsupported config field type {tp!r} for `{key}`")


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return f"comma-separated list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" Did you mean `{close[0]}`?" if close else ""


def _build_dataclass(cls: type, data: dict, where: str, prefix: str = "") -> Any:
    """`cls(**data)` with every value coerced; errors name the field as `prefix + name`."""
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in known]
    if unknown:
        raise ValueError(
            f"{where}: unknown key `{prefix}{unknown[0]}`.{_suggest(unknown[0], known)} "
            f"Known keys: {', '.join(known)}"
        )
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and f.name not in data
    ]
    if missing:
        raise ValueError(f"{where}: missing required key `{prefix}{missing[0]}`")
    values = {k: _coerce(prefix + k, v, hints[k], where) for k, v in data.items()}
    try:
        return cls(**values)
    except ValueError as error:  # the section's own checks (pipelines.config): name the section
        message = str(error)
        for name in values:
            message = message.replace(f"`{name}`", f"`{prefix}{name}`").replace(
                f"Received: {name}=", f"Received: {prefix}{name}=")
        raise ValueError(f"{where}: {message}") from None


# ---------------------------------------------------------------------------- validation
def _check_choice(where: str, key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(
            f"{where}: `{key}` must be one of {', '.join(map(str, allowed))}."
            f"{_suggest(str(value), list(map(str, allowed)))} Received: {key}={value!r}"
        )


def _check_range(where: str, key: str, value: float, lo: float, hi: float | None = None,
                 lo_open: bool = False) -> None:
    if value != value or value in (float("inf"), float("-inf")):  # NaN, +-inf
        raise ValueError(f"{where}: `{key}` must be finite. Received: {key}={value!r}")
    ok = (value > lo if lo_open else value >= lo) and (hi is None or value <= hi)
    if not ok:
        bound = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
        raise ValueError(f"{where}: `{key}` must be {bound}. Received: {key}={value!r}")


def validate(config: ExperimentConfig) -> ExperimentConfig:
    """Checks ranges, choices and cross-field consistency; returns `config` unchanged."""
    w = f"experiment {config.name!r}"
    if not config.name or not all(c.isalnum() or c in "-_." for c in config.name):
        raise ValueError(
            f"{w}: `name` must be non-empty and use letters, digits, '-', '_' or '.'. "
            f"Received: name={config.name!r}"
        )
    _check_choice(w, "task", config.task, TASKS)
    _check_choice(w, "backbone", config.backbone, BACKBONES)
    _check_choice(w, "head", config.head, HEADS)
    _check_choice(w, "optimizer", config.optimizer, OPTIMIZERS)
    _check_choice(w, "lr_schedule", config.lr_schedule, LR_SCHEDULES)
    _check_choice(w, "strategy", config.strategy, STRATEGIES)
    _check_choice(w, "mixed_precision", config.mixed_precision, MIXED_PRECISION)
    _check_choice(w, "jit_compile", config.jit_compile, JIT_COMPILE)
    _check_choice(w, "stage2_negative", config.stage2_negative, STAGE2_NEGATIVES)
    _check_choice(w, "monitor", config.monitor, MONITORS)
    _check_choice(w, "dedup", config.dedup, DEDUP_MODES)
    _check_choice(w, "balance", config.balance, BALANCE_MODES)
    if config.balance != NO_BALANCE and not config.is_classifier:
        raise ValueError(f"{w}: `balance` applies to classifiers. Received: balance={config.balance!r}")
    _check_range(w, "preprocess.image_size", config.image_size, 32)
    _check_range(w, "batch_size", config.batch_size, 1)
    _check_range(w, "epochs", config.epochs, 1)
    _check_range(w, "learning_rate", config.learning_rate, 0.0, lo_open=True)
    _check_range(w, "lr_min", config.lr_min, 0.0)
    _check_range(w, "momentum", config.momentum, 0.0, 1.0)
    _check_range(w, "val_fraction", config.val_fraction, 0.0, 0.5, lo_open=True)
    _check_range(w, "test_fraction", config.test_fraction, 0.0, 0.5)
    if len(config.unet_filters) < 2 or min(config.unet_filters) < 1:
        raise ValueError(
            f"{w}: `unet_filters` must be >= 2 positive widths (one per U-Net level). "
            f"Received: unet_filters={config.unet_filters}"
        )
    if config.task == "unet" and config.image_size % 2 ** (len(config.unet_filters) - 1):
        raise ValueError(
            f"{w}: the U-Net's `image_size` must be divisible by 2**(len(unet_filters) - 1) = "
            f"{2 ** (len(config.unet_filters) - 1)}. Received: preprocess.image_size={config.image_size}"
        )
    if config.task == "unet" and (config.preprocess.segment or config.augment.clahe_mode != "replace"):
        raise ValueError(
            f"{w}: the U-Net reads unmasked images and draws CLAHE per image: it needs "
            "preprocess.segment=false and augment.clahe_mode='replace'. Received: "
            f"preprocess.segment={config.preprocess.segment}, augment.clahe_mode={config.augment.clahe_mode!r}"
        )
    if config.task == "unet" and config.augment.in_model:
        raise ValueError(
            f"{w}: the U-Net's image and mask must move together, which the input pipeline does; "
            "use augment.placement='pipeline'. Received: augment.placement='model' with task='unet'"
        )
    _check_range(w, "seed", config.seed, 0)
    if config.se_reduction is not None:
        _check_range(w, "se_reduction", config.se_reduction, 1)
    if config.max_per_class is not None:
        _check_range(w, "max_per_class", config.max_per_class, 2)
    if config.divergence_factor is not None:
        _check_range(w, "divergence_factor", config.divergence_factor, 1.0, lo_open=True)
    if config.lr_schedule == "cosine" and config.lr_min >= config.learning_rate:
        raise ValueError(
            f"{w}: cosine annealing needs `lr_min` < `learning_rate` (the maximum). "
            f"Received: lr_min={config.lr_min}, learning_rate={config.learning_rate}"
        )
    if config.moex is not None:
        m = config.moex
        _check_range(w, "moex.prob", m.prob, 0.0, 1.0)
        _check_range(w, "moex.lam", m.lam, 0.0, 1.0)
        _check_range(w, "moex.epsilon", m.epsilon, 0.0, lo_open=True)
        if not m.position:
            raise ValueError(
                f"{w}: `moex.position` must be 'stem' (after the first convolution, as the paper) "
                f"or a layer name of the backbone. Received: moex.position={m.position!r}"
            )
    if config.is_classifier:
        if len(config.classes) < 2:
            raise ValueError(
                f"{w}: a classifier needs at least two `classes`. Received: classes={config.classes}"
            )
        if len(set(config.classes)) != len(config.classes):
            raise ValueError(f"{w}: `classes` has duplicates. Received: classes={config.classes}")
        if config.monitor == "val_mean_iou":
            raise ValueError(
                f"{w}: `monitor` val_mean_iou is for the U-Net; classifiers use val_accuracy, "
                f"val_balanced_accuracy or val_loss. Received: monitor={config.monitor!r}"
            )
        if config.backbone == "vgg19" and config.se_reduction is not None:
            # The paper adds no SE to VGG (section 3.1.2: no merge layer to attach it to).
            raise ValueError(
                f"{w}: VGG19 has no SE variant in the paper (section 3.1.2); set se_reduction=None. "
                f"Received: se_reduction={config.se_reduction}"
            )
    else:
        if config.monitor in ("val_accuracy", "val_balanced_accuracy"):
            raise ValueError(
                f"{w}: the U-Net is monitored by val_mean_iou or val_loss. "
                f"Received: monitor={config.monitor!r}"
            )
        if config.moex is not None or config.se_reduction is not None:
            raise ValueError(f"{w}: `moex` and `se_reduction` apply to classifiers, not the U-Net")
    if config.preprocess.clahe and config.augment.clahe_fraction > 0:
        raise ValueError(
            f"{w}: `preprocess.clahe` already enhances every image, so `augment.clahe_fraction` "
            f"must be 0. Received: preprocess.clahe=True, augment.clahe_fraction="
            f"{config.augment.clahe_fraction}"
        )
    if config.augment.segmented_copies and config.task != "stage2":
        raise ValueError(
            f"{w}: `augment.segmented_copies` (U-Net lung crops added to training) is a stage-2 "
            f"option. Received: augment.segmented_copies=True with task={config.task!r}"
        )
    return config


def _section_dict(value: Any) -> dict:
    if value is None:
        return {}
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return dict(value) if isinstance(value, dict) else value


def from_dict(data: dict[str, Any], name: str | None = None) -> ExperimentConfig:
    """Builds and validates an `ExperimentConfig` from a plain mapping.

    The deprecated flat keys of earlier versions (`image_size`, ...: `cxr_cascade.compat`) are
    moved into their sections first, with a `DeprecationWarning`.
    """
    data = dict(data)
    if name is not None and "name" not in data:
        data["name"] = name
    where = f"experiment {data.get('name', name or '?')!r}"
    data = compat.migrate_flat_keys(data, where)
    return validate(_build_dataclass(ExperimentConfig, data, where))


# ---------------------------------------------------------------------------- overrides
def _set_path(data: dict, key: str, value: Any, name: str) -> None:
    where = f"--set {key}=... (experiment {name!r})"
    key = compat.resolve_key(key, where)
    known = [f.name for f in dataclasses.fields(ExperimentConfig)]
    head, _, rest = key.partition(".")
    if rest and head in compat.FLAT_KEYS:  # a flat alias names one value, never a section
        raise ValueError(f"{where}: `{head}` has no sub-fields; use --set {head}=VALUE")
    if head not in known:
        raise ValueError(
            f"{where}: unknown config key `{head}`.{_suggest(head, known + list(compat.FLAT_KEYS))}")
    if not rest:
        data[head] = value
        return
    if head not in _SECTIONS:
        raise ValueError(f"{where}: `{head}` has no sub-fields; use --set {head}=VALUE")
    cls = _SECTIONS[head]
    sub = data.get(head)
    sub = dict(_section_dict(sub) if sub is not None else dataclasses.asdict(cls()))
    sub_known = [f.name for f in dataclasses.fields(cls)]
    if rest not in sub_known:
        raise ValueError(
            f"{where}: unknown `{head}` key `{rest}`.{_suggest(rest, sub_known)} "
            f"Known keys: {', '.join(sub_known)}"
        )
    sub[rest] = value
    data[head] = sub


def parse_override(text: str) -> tuple[str, str]:
    """Splits `key=value`; raises a clear error for anything else."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set expects KEY=VALUE. Received: {text!r}")
    return key.strip(), value


def apply_overrides(config: ExperimentConfig, overrides: list[str] | None) -> ExperimentConfig:
    if not overrides:
        return config
    data = config.to_dict()
    for text in overrides:
        key, value = parse_override(text)
        _set_path(data, key, value, config.name)
    return from_dict(data)


# ---------------------------------------------------------------------------- loading
def list_experiments() -> list[str]:
    """Names of every experiment in `experiments/` (the bases and private modules excluded)."""
    return sorted(
        p.stem
        for p in EXPERIMENTS_DIR.glob("*.py")
        if not p.stem.startswith("_") and p.stem != "base"
    )


def _load_module(spec: str) -> tuple[types.ModuleType, str]:
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"experiment file not found: {spec}")
        module_name = f"_cxr_experiment_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
        return module, path.stem
    if not spec.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"experiment must be a name in experiments/ or a .py path. Received: {spec!r}")
    known = list_experiments()
    if spec not in known:
        raise ValueError(
            f"unknown experiment {spec!r}.{_suggest(spec, known)} "
            f"Known experiments: {', '.join(known)}"
        )
    return importlib.import_module(f"experiments.{spec}"), spec


def load_experiment(spec: str, overrides: list[str] | None = None) -> ExperimentConfig:
    """Loads experiment `spec` (a name in experiments/ or a path to a .py file).

    Args:
        spec: e.g. "table4_resnet50_seme" or "experiments/demo_stage1.py".
        overrides: `key=value` strings (`--set`), applied after loading and validated again.

    Returns:
        The validated, frozen `ExperimentConfig`.

    Raises:
        ValueError: unknown experiment, unknown key, wrong type or out-of-range value.
        FileNotFoundError: a path that does not exist.
    """
    module, default_name = _load_module(spec)
    raw = getattr(module, "CONFIG", None)
    if not isinstance(raw, dict):
        raise ValueError(
            f"experiment {spec!r} must define CONFIG as a dict. "
            f"Received: CONFIG={type(raw).__name__}"
        )
    if "description" not in raw and module.__doc__:
        # The experiment file's docstring is its description: written once.
        raw = {**raw, "description": module.__doc__.strip().split("\n\n")[0].replace("\n", " ")}
    config = from_dict(raw, name=default_name)
    return apply_overrides(config, overrides)


def load_resolved(path: str | Path) -> ExperimentConfig:
    """Loads a resolved `config.json` written into a run directory."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"resolved config not found: {path}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    return from_dict(data)
