"""Theoretical receptive field with the recurrence of Lv et al. 2020, section 3.1.1.

``rf_n = rf_{n-1} * k_n - (k_n - 1) * (rf_{n-1} - prod_{i<n} s_i)`` with ``rf_0 = 1``; it equals
the familiar ``rf_{n-1} + (k_n - 1) * prod_{i<n} s_i``. A dilated kernel counts with its
effective size ``d (k - 1) + 1``.

On a graph (``receptive_field``) each tensor carries ``(rf, jump)`` per spatial axis, ``jump``
being the product of strides so far. Merges (Add, Concatenate) take the largest receptive
field of their inputs. Global pooling makes a tensor *global* (it sees the whole image, Fig. 5
of the paper); a Multiply of a spatial map with a global gate (squeeze-and-excitation) keeps
the spatial input's receptive field: the gate rescales channels, it adds no spatial locality.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Optional, Sequence

import keras

_CONV_TYPES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
_POOL_TYPES = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
_GLOBAL_TYPES = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D, keras.layers.Flatten)
_UNSUPPORTED = (keras.layers.Conv2DTranspose, keras.layers.UpSampling2D, keras.layers.Resizing)


def _step(rf: int, jump: int, kernel: int, stride: int) -> tuple[int, int]:
    """One application of the paper's recurrence; returns ``(rf_n, jump_n)``."""
    return rf * kernel - (kernel - 1) * (rf - jump), jump * stride


def receptive_field_recurrence(kernels: Sequence[int], strides: Sequence[int]) -> list[int]:
    """Receptive fields ``rf_1..rf_n`` of a plain chain of layers.

    Args:
        kernels: kernel sizes ``k_1..k_n`` (effective sizes for dilated kernels).
        strides: strides ``s_1..s_n``.

    Returns:
        ``[rf_1, ..., rf_n]`` in input pixels.
    """
    if len(kernels) != len(strides):
        raise ValueError(
            f"`kernels` and `strides` must have the same length. Received: kernels={list(kernels)!r}, "
            f"strides={list(strides)!r}"
        )
    rf, jump, out = 1, 1, []
    for k, s in zip(kernels, strides):
        if k < 1 or s < 1:
            raise ValueError(f"kernels and strides must be >= 1. Received: kernel={k!r}, stride={s!r}")
        rf, jump = _step(rf, jump, k, s)
        out.append(rf)
    return out


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one layer's output.

    Attributes:
        size: ``(height, width)`` in input pixels; ``(inf, inf)`` once globally pooled.
        jump: ``(height, width)`` distance in input pixels between adjacent output positions.
    """

    size: tuple[float, float]
    jump: tuple[int, int]

    @property
    def is_global(self) -> bool:
        return math.isinf(self.size[0])


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _history_names(obj: Any) -> Iterable[str]:
    """Names of the layers feeding a serialised call (``keras_history`` entries of its tensors)."""
    if isinstance(obj, dict):
        if "keras_history" in obj.get("config", {}) and obj.get("class_name") == "__keras_tensor__":
            yield obj["config"]["keras_history"][0]
        else:
            for value in obj.values():
                yield from _history_names(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _history_names(value)


def receptive_field(model: keras.Model, layer_name: Optional[str] = "cam_features") -> ReceptiveField:
    """Receptive field of ``layer_name``'s output in a functional model.

    Args:
        model: a functional ``keras.Model`` with one input (e.g. from ``build_classifier``).
        layer_name: the layer to report; ``None``: the model's last layer.

    Returns:
        ``ReceptiveField``; e.g. ResNet50 ``cam_features``: 483 pixels.
    """
    names = [layer.name for layer in model.layers]
    if layer_name is None:
        layer_name = names[-1]
    if layer_name not in names:
        raise ValueError(f"`layer_name` is not a layer of model {model.name!r}. Received: layer_name={layer_name!r}")
    inbound = {}
    for entry in model.get_config()["layers"]:
        inbound[entry["name"]] = list(dict.fromkeys(_history_names(entry.get("inbound_nodes", []))))
    state: dict[str, tuple[tuple[float, float], tuple[int, int]]] = {}
    for layer in model.layers:
        parents = [state[p] for p in inbound.get(layer.name, []) if p in state]
        if not parents:  # the input
            state[layer.name] = ((1, 1), (1, 1))
            continue
        local = [p for p in parents if not math.isinf(p[0][0])]
        if not local:
            state[layer.name] = ((math.inf, math.inf), parents[0][1])
            continue
        rf = tuple(max(p[0][a] for p in local) for a in (0, 1))
        jump = tuple(max(p[1][a] for p in local) for a in (0, 1))
        if isinstance(layer, _UNSUPPORTED):
            raise ValueError(
                f"receptive_field does not handle up-sampling layers. Received: layer {layer.name!r} "
                f"of type {type(layer).__name__}"
            )
        if isinstance(layer, _GLOBAL_TYPES):
            state[layer.name] = ((math.inf, math.inf), jump)
            continue
        if isinstance(layer, _CONV_TYPES):
            kernel, stride, dilation = _pair(layer.kernel_size), _pair(layer.strides), _pair(layer.dilation_rate)
            kernel = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
        elif isinstance(layer, _POOL_TYPES):
            kernel, stride = _pair(layer.pool_size), _pair(layer.strides)
        else:
            kernel, stride = (1, 1), (1, 1)
        stepped = [_step(rf[a], jump[a], kernel[a], stride[a]) for a in (0, 1)]
        state[layer.name] = ((stepped[0][0], stepped[1][0]), (stepped[0][1], stepped[1][1]))
    size, jump = state[layer_name]
    return ReceptiveField(size=size, jump=jump)
