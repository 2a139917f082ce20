"""``build_classifier``: stem -> [MoEx] -> stages -> head, for every network of Lv et al. 2020.

One composer for all table rows (VGG19/ResNet50/DenseNet169, base/GAP/SE/SEME): options are
typed and ``None`` means off. Trained from scratch with He-uniform initialisation.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras

from cxr_cascade.models._common import check_input_shape, check_positive_int
from cxr_cascade.models.densenet import DENSENET169
from cxr_cascade.models.heads import apply_head
from cxr_cascade.models.moex import MoEx, MoExClassifier, MomentExchange
from cxr_cascade.models.resnet import RESNET50
from cxr_cascade.models.spec import BackboneSpec, BlockOptions
from cxr_cascade.models.vgg import VGG19
from cxr_cascade.registry import BACKBONES, HEADS

# The implementation of each name in `registry.BACKBONES` (a test checks both agree).
BACKBONE_SPECS: dict[str, BackboneSpec] = {spec.name: spec for spec in (VGG19, RESNET50, DENSENET169)}


def _model_name(backbone: str, head: str, se: bool, moex: bool) -> str:
    prefix = "seme_" if se and moex else "se_" if se else "moex_" if moex else ""
    return f"{prefix}{backbone}" + ("_flatten" if head == "flatten" else "")


def build_classifier(
    backbone: str,
    num_classes: int,
    input_shape: Sequence[Optional[int]] = (512, 512, 1),
    head: str = "gap",
    se_reduction: Optional[int] = None,
    moex: Optional[MoEx] = None,
    se_placement: Optional[str] = None,
    fc_units: Optional[Sequence[int]] = None,
    name: Optional[str] = None,
    preprocessing: Optional[Sequence[keras.layers.Layer]] = None,
) -> keras.Model:
    """Build one classifier as a single flat functional graph.

    Args:
        backbone: ``"vgg19"``, ``"resnet50"`` or ``"densenet169"``.
        num_classes: number of classes (3 for stage 1, 2 for stage 2).
        input_shape: ``(height, width, channels)``; any channel count; height/width >= 32
            (``None`` allowed with the ``gap`` head).
        head: ``"gap"`` (global average pooling -> dense softmax; the paper's GAP rows at 512x512)
            or ``"flatten"`` (the original fully-connected heads; the paper's base rows at 224x224).
        se_reduction: squeeze-and-excitation ratio ``r`` (paper: 16); ``None``: no SE.
            ResNet50 and DenseNet169 only.
        moex: ``MoEx(...)`` settings; ``None``: no moment exchange.
        se_placement: ResNet50: ``"residual"``; DenseNet169: ``"dense_block"`` (default) or
            ``"conv_block"``. ``None``: the backbone's default.
        fc_units: hidden Dense widths of the flatten head; ``None``: the original
            (VGG19 ``(4096, 4096)``, ResNet50/DenseNet169 none).
        name: model name; default e.g. ``"seme_resnet50"``.
        preprocessing: layers applied in order between the input and the stem, in the same flat
            graph (e.g. `cxr_cascade.models.preprocessing.RandomAffine`); ``None``: none.

    Returns:
        A ``keras.Model`` (``MoExClassifier`` when ``moex`` is set) mapping float images
        ``(batch, H, W, C)`` to float32 probabilities ``(batch, num_classes)``, with layers
        ``cam_features`` (last feature map), ``logits`` and ``probabilities``.

    Raises:
        ValueError: naming the offending argument and the value received.
    """
    if not isinstance(backbone, str) or backbone not in BACKBONES:
        raise ValueError(f"`backbone` must be one of {sorted(BACKBONES)}. Received: backbone={backbone!r}")
    spec = BACKBONE_SPECS[backbone]
    check_positive_int("num_classes", num_classes)
    if head not in HEADS:
        raise ValueError(f"`head` must be one of {list(HEADS)}. Received: head={head!r}")
    shape = check_input_shape(
        input_shape, spec.min_size, f"backbone={backbone!r}", allow_none=(head == "gap")
    )
    if se_reduction is not None:
        if not spec.se_placements:
            raise ValueError(
                f"`se_reduction` is not supported for backbone={backbone!r} (the paper adds SE to ResNet50 "
                f"and DenseNet169 only); use None. Received: se_reduction={se_reduction!r}"
            )
        check_positive_int("se_reduction", se_reduction)
        se_placement = spec.se_placements[0] if se_placement is None else se_placement
        if se_placement not in spec.se_placements:
            raise ValueError(
                f"`se_placement` must be one of {list(spec.se_placements)} for backbone={backbone!r}. "
                f"Received: se_placement={se_placement!r}"
            )
    elif se_placement is not None:
        raise ValueError(f"`se_placement` needs `se_reduction`. Received: se_placement={se_placement!r}")
    if moex is not None:
        if not isinstance(moex, MoEx):
            raise ValueError(f"`moex` must be a MoEx(...) instance or None. Received: moex={moex!r}")
        position = spec.tap_names[0] if moex.position is None else moex.position
        if position not in spec.tap_names:
            raise ValueError(
                f"`moex.position` must be one of {list(spec.tap_names)} for backbone={backbone!r}. "
                f"Received: position={moex.position!r}"
            )
    if fc_units is None:
        fc_units = spec.fc_units
    else:
        fc_units = tuple(check_positive_int("fc_units", u) for u in fc_units)

    options = BlockOptions(se_reduction=se_reduction, se_placement=se_placement)

    def tap(x, tap_name):
        if moex is not None and tap_name == position:
            x = MomentExchange(moex.prob, moex.lam, moex.epsilon, moex.seed, name="moex")(x)
        return x

    inputs = keras.Input(shape=shape, name="image")
    x = inputs
    for layer in preprocessing or ():
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                f"`preprocessing` must be a sequence of Keras layers. Received: preprocessing={preprocessing!r}"
            )
        x = layer(x)
    x = tap(spec.apply_stem(x, options), spec.tap_names[0])
    for index, row in enumerate(spec.stages):
        x = tap(spec.apply_stage(x, row, index, options), spec.tap_names[index + 1])
    if spec.apply_finish is not None:
        x = spec.apply_finish(x, options)
    outputs = apply_head(x, num_classes, head, fc_units)

    name = name or _model_name(backbone, head, se_reduction is not None, moex is not None)
    model_cls = MoExClassifier if moex is not None else keras.Model
    return model_cls(inputs, outputs, name=name)


__all__ = ["BACKBONE_SPECS", "build_classifier"]
