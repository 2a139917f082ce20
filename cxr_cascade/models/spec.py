"""Typed description of a backbone: its spec table and the block functions that apply it.

The composer (``composer.py``) only knows this interface, so a new architecture is a new
table plus its ``apply_*`` functions, never a copy of the composer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import keras


@dataclasses.dataclass(frozen=True)
class BlockOptions:
    """Options the composer threads through every block function.

    Attributes:
        se_reduction: squeeze-and-excitation ratio ``r``; ``None`` means no SE.
        se_placement: where SE goes (backbone specific, see ``BackboneSpec.se_placements``).
    """

    se_reduction: Optional[int] = None
    se_placement: Optional[str] = None


StemFn = Callable[[keras.KerasTensor, BlockOptions], keras.KerasTensor]
StageFn = Callable[[keras.KerasTensor, Any, int, BlockOptions], keras.KerasTensor]


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One architecture.

    Attributes:
        name: public name (``"resnet50"``).
        stages: the spec table, one row per stage, interpreted by ``apply_stage``.
        apply_stem: builds the stem (input -> first down-sampled feature map).
        apply_stage: builds stage ``index`` from its table row.
        apply_finish: layers after the last stage and before ``cam_features`` (or ``None``).
        tap_names: names of the plain network's layers ending the stem and each stage; the
            positions where MoEx may be inserted (``tap_names[0]`` is the default, after the stem).
        fc_units: hidden Dense widths of the original flatten head (VGG: ``(4096, 4096)``).
        se_placements: allowed SE placements, the first being the default; empty: SE unsupported.
        min_size: smallest input height/width (every stride still leaves >= 1 pixel).
    """

    name: str
    stages: tuple
    apply_stem: StemFn
    apply_stage: StageFn
    apply_finish: Optional[StemFn]
    tap_names: tuple[str, ...]
    fc_units: tuple[int, ...] = ()
    se_placements: tuple[str, ...] = ()
    min_size: int = 32
