"""The settings of the input pipelines as data: `PreprocessConfig` and `AugmentConfig`.

Pure Python (no TensorFlow), so an experiment config (`cxr_cascade.config.ExperimentConfig`,
fields ``preprocess`` and ``augment``) can hold these very objects, a run's ``config.json``
records them and every consumer (training pipelines, evaluation, the exported serving graph)
builds from the same object instead of loose keyword arguments.

Both classes validate on construction and raise Keras-style errors::

    ValueError: `resize_mode` must be one of ('stretch', 'pad'). Received: resize_mode='crop'
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Sequence, Tuple, Union

__all__ = [
    "AUGMENT_PLACEMENTS",
    "AugmentConfig",
    "BALANCE_MODES",
    "CLAHE_MODES",
    "FILL_MODES",
    "NO_BALANCE",
    "PreprocessConfig",
    "RESIZE_MODES",
    "check_clip_limit",
    "check_fill_mode",
    "check_resize_mode",
    "check_tile_grid_size",
    "normalize_image_size",
]

RESIZE_MODES = ("stretch", "pad")
FILL_MODES = ("constant", "reflect", "wrap", "nearest")
# "replace" = each image CLAHE'd with probability clahe_fraction per epoch;
# "add" = a CLAHE copy of round(clahe_fraction * N) images joins the originals.
CLAHE_MODES = ("replace", "add")
# Where the random per-image augmentation runs: "pipeline" = the host's input pipeline (tf.data or
# the portable arrays); "model" = Keras layers at the front of the network, on its device.
AUGMENT_PLACEMENTS = ("pipeline", "model")
# Class balance of a training epoch: none, each class's images repeated up to the largest class,
# or per-image weights N / (K * N_c) (`pipelines.balance`). The experiment config and the data set
# builders spell "no balancing" the same way.
NO_BALANCE = "off"
BALANCE_MODES = (NO_BALANCE, "oversample", "sample_weight")

ImageSize = Union[int, Sequence[int]]


def normalize_image_size(image_size: ImageSize) -> Tuple[int, int]:
    """Returns ``(height, width)`` from an int ``S`` (square) or a pair; raises ValueError else."""
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    elif (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in image_size)
    ):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise ValueError(
            "`image_size` must be an int or a (height, width) pair of ints. "
            f"Received: image_size={image_size!r}"
        )
    if min(size) < 1:
        raise ValueError(f"`image_size` must be positive. Received: image_size={image_size!r}")
    return size


def _check_choice(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {allowed}. Received: {name}={value!r}")


def check_resize_mode(resize_mode: str) -> str:
    _check_choice("resize_mode", resize_mode, RESIZE_MODES)
    return resize_mode


def check_fill_mode(fill_mode: str) -> str:
    _check_choice("fill_mode", fill_mode, FILL_MODES)
    return fill_mode


def check_clip_limit(clip_limit) -> float:
    """The CLAHE clip limit as a float; the one check of every CLAHE implementation.

    OpenCV's ``clipLimit``: the histogram clip as a multiple of the mean bin count. Allowed: a
    finite real number >= 0, where 0 means no clipping (plain adaptive equalisation), as in
    ``cv2.createCLAHE``. Negative values are refused although OpenCV treats them as 0: one
    setting, one spelling.

    Raises:
        ValueError: a bool, a non-number, NaN, an infinity or a negative number.
    """
    if (
        isinstance(clip_limit, bool)
        or not isinstance(clip_limit, numbers.Real)
        or not math.isfinite(clip_limit)
        or clip_limit < 0
    ):
        raise ValueError(
            "`clip_limit` must be a finite number >= 0 (0: no clipping, as OpenCV's clipLimit). "
            f"Received: clip_limit={clip_limit!r}"
        )
    return float(clip_limit)


def check_tile_grid_size(tile_grid_size) -> Tuple[int, int]:
    """``(tiles_x, tiles_y)``: OpenCV's ``tileGridSize``, tiles along width then along height.

    Allowed: two ints >= 1 (a tuple or list). OpenCV itself crashes on a zero count.

    Raises:
        ValueError: anything else.
    """
    ok = (
        isinstance(tile_grid_size, (tuple, list))
        and len(tile_grid_size) == 2
        and all(
            isinstance(t, numbers.Integral) and not isinstance(t, bool) and t >= 1
            for t in tile_grid_size
        )
    )
    if not ok:
        raise ValueError(
            "`tile_grid_size` must be two positive ints (tiles along width, tiles along height), "
            f"as cv2.createCLAHE's tileGridSize. Received: tile_grid_size={tile_grid_size!r}"
        )
    return int(tile_grid_size[0]), int(tile_grid_size[1])


def _check_number(name: str, value, lo: float, hi: float | None = None, lo_open: bool = False) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (hi is None or value <= hi)
    if not ok:
        bound = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
        raise ValueError(f"`{name}` must be a number {bound}. Received: {name}={value!r}")


@dataclass(frozen=True)
class PreprocessConfig:
    """What turns a decoded image into a model input, the same at training, evaluation and serving.

    Attributes:
        image_size: output ``S`` (square; the model's input is ``[S, S, 1]``) or ``(height, width)``.
        resize_mode: "stretch" (each axis on its own) or "pad" (aspect kept, black padding); see
            `pipelines.transforms.resize`.
        clahe: CLAHE on *every* image (a model trained and served on enhanced input); random
            CLAHE on part of the training images is `AugmentConfig.clahe_fraction`.
        clip_limit: CLAHE clip limit (OpenCV's ``clipLimit``; OpenCV's default 2.0; 0: no clipping,
            see `check_clip_limit`). It also sets the CLAHE of the random training copies
            (`AugmentConfig`).
        tile_grid_size: CLAHE ``(tiles along width, tiles along height)``, OpenCV's ``tileGridSize``.
        segment: lung-mask every image (a mask file per record, or a U-Net at stage 2 / serving).
    """

    image_size: int = 512
    resize_mode: str = "stretch"
    clahe: bool = False
    clip_limit: float = 2.0
    tile_grid_size: tuple[int, int] = (8, 8)
    segment: bool = False

    def __post_init__(self):
        normalize_image_size(self.image_size)
        check_resize_mode(self.resize_mode)
        check_clip_limit(self.clip_limit)
        object.__setattr__(self, "tile_grid_size", check_tile_grid_size(self.tile_grid_size))

    def as_kwargs(self) -> dict:
        """Keyword arguments of `pipelines.preprocess.preprocess_image` (``segment`` excluded:
        masking needs a mask or mask function the caller passes along)."""
        kwargs = dataclasses.asdict(self)
        del kwargs["segment"]
        return kwargs

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["tile_grid_size"] = list(self.tile_grid_size)
        if isinstance(self.image_size, tuple):
            data["image_size"] = list(self.image_size)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "PreprocessConfig":
        data = dict(data)
        for key in ("image_size", "tile_grid_size"):
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        return cls(**data)


@dataclass(frozen=True)
class AugmentConfig:
    """Training-only changes and copies of the images (never applied at evaluation or serving).

    Attributes:
        clahe_fraction: fraction of training images CLAHE-enhanced (paper: 0.4 at stage 1,
            1.0 at stage 2), with `PreprocessConfig.clip_limit` and ``tile_grid_size``.
        clahe_mode: "replace" (each image enhanced with probability `clahe_fraction`, redrawn
            each epoch) or "add" (a seeded ``round(clahe_fraction * N)`` images get an extra
            CLAHE copy).
        segmented_copies: add a lung-masked copy of every (original and CLAHE) image (paper,
            stage 2).
        rotation_degrees: uniform random rotation in ``[-r, r]`` degrees (paper: 30 at stage 2).
        shift: random translation, fraction of the image size (Keras ``RandomTranslation``).
        zoom: random content scale in ``[1 - zoom, 1 + zoom]``.
        fill_mode: pixels uncovered by the affine transform: "constant" (black), "reflect",
            "wrap" or "nearest".
        placement: where the per-image random draws run. "pipeline" (default): in the input
            pipeline on the host. "model": the rotation / shift / zoom and the "replace"-mode
            CLAHE run as layers at the front of the classifier
            (`cxr_cascade.models.preprocessing`), on the model's device, and the pipeline only
            decodes, resizes and makes the planned copies ("add"-mode CLAHE, segmented copies);
            for accelerators that the host cannot feed. Same arithmetic (CLAHE bit-exact,
            rotation within 1e-5), other random draws. Classifiers only, ``fill_mode="constant"``.
    """

    clahe_fraction: float = 0.0
    clahe_mode: str = "replace"
    segmented_copies: bool = False
    rotation_degrees: float = 0.0
    shift: float = 0.0
    zoom: float = 0.0
    fill_mode: str = "constant"
    placement: str = "pipeline"

    def __post_init__(self):
        _check_number("clahe_fraction", self.clahe_fraction, 0.0, 1.0)
        _check_choice("clahe_mode", self.clahe_mode, CLAHE_MODES)
        _check_number("rotation_degrees", self.rotation_degrees, 0.0, 180.0)
        _check_number("shift", self.shift, 0.0, 1.0)
        _check_number("zoom", self.zoom, 0.0, 0.999)
        check_fill_mode(self.fill_mode)
        _check_choice("placement", self.placement, AUGMENT_PLACEMENTS)
        if self.placement == "model" and self.fill_mode != "constant":
            raise ValueError(
                "`placement='model'` fills uncovered pixels with a constant (black); set "
                f"fill_mode='constant'. Received: fill_mode={self.fill_mode!r}"
            )

    @property
    def replace_fraction(self) -> float:
        """The per-epoch CLAHE probability of "replace" mode (0 in "add" mode)."""
        return float(self.clahe_fraction) if self.clahe_mode == "replace" else 0.0

    @property
    def geometric(self) -> bool:
        """Whether images are rotated, shifted or zoomed."""
        return self.rotation_degrees > 0 or self.shift > 0 or self.zoom > 0

    @property
    def in_model(self) -> bool:
        """Whether the random per-image draws run in the model (`placement="model"`)."""
        return self.placement == "model"

    def for_host(self) -> "AugmentConfig":
        """The part the host's input pipeline runs: all of it, or (placement "model") the
        planned copies only, without the random draws the model's layers make."""
        if not self.in_model:
            return self
        return dataclasses.replace(
            self,
            clahe_fraction=0.0 if self.replace_fraction > 0 else self.clahe_fraction,
            rotation_degrees=0.0,
            shift=0.0,
            zoom=0.0,
            placement="pipeline",
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
