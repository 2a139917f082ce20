"""Serving functions: image file bytes in, diagnosis out, every preprocessing step in the graph.

A SavedModel that expects its caller to decode, resize and CLAHE-equalise an X-ray in client code
invites train/serve skew (the client's resize or CLAHE differs subtly from the one the model was
evaluated with). The functions built here take the file's bytes and run the evaluation pipeline's
own preprocessing (`pipelines.preprocess`, passed in as a callable) inside the graph.

Each model gets two endpoints (see `cxr_cascade.export.archive`, which writes them with
`keras.export.ExportArchive`):

* ``serving_default(image_bytes)``: ``image_bytes`` tf.string ``[N]``, PNG or JPEG file contents
  (8 or 16 bit, gray or colour). Outputs (stable names):
  - classifiers: ``probabilities`` float32 ``[N, C]``, ``class_index`` int64 ``[N]``,
    ``class_name`` tf.string ``[N]``; the cascade adds ``stage1_probabilities`` ``[N, C1]`` and
    ``stage2_probabilities`` ``[N, C2]`` (stage 2 conditional on the refined stage-1 class), its
    ``probabilities`` are the products p1 * p2 (the scores; under rule "pneumonia" the pneumonia
    route's distribution) and its ``class_index`` is the decision of the export's rule (default
    the paper's hard gate, `CascadeDecision`: a `where` on the stage-1 argmax, no Python control
    flow);
  - the lung U-Net: ``mask_probabilities`` float32 ``[N, S, S, 1]`` and ``mask`` uint8 (0/1).
* ``serving_images(images)``: the same outputs from already preprocessed float32 images
  ``[N, S, S, 1]``, exactly the tensors the evaluation pipeline feeds the Keras model (the cascade
  takes ``stage1_images`` and ``stage2_images``, since the stages may differ in size, CLAHE and lung
  masking). These are the models' inputs as they are (lung masking included).
* ``preprocess(image_bytes)``: the preprocessed inputs themselves (``images``, or the cascade's
  ``stage1_images`` and ``stage2_images``), e.g. to draw Grad-CAM overlays on what the model saw.
* ``explain_images(images)`` (cascade: ``explain_stage1``, ``explain_stage2``): Grad-CAM
  ingredients, ``cam_features`` A, ``gradients`` dS_c/dA for the predicted class, ``logits`` and
  ``class_index``; `cxr_cascade.explain.gradcam.cam_from_gradients` turns them into heatmaps, so
  `cxr-cascade predict --heatmap` needs nothing but the exported models.

Training-only layers (MoEx, dropout, random augmentation) are cut out of the graph before export by
`inference_model`, so the exported functions contain no MoEx layer and no random op.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import keras
import tensorflow as tf

from cxr_cascade.models.cascade import CascadeCombine, CascadeDecision, check_rule, route_indices
from cxr_cascade.models.cascade import cascade_class_names as _cascade_class_names
from cxr_cascade.models.unet import unet_mask_fn as _unet_mask_fn
from pipelines.preprocess import preprocess_image_bytes
from pipelines.transforms import normalize_image_size

__all__ = [
    "BYTES_ENDPOINT",
    "Endpoints",
    "IMAGES_ENDPOINT",
    "PREPROCESS_ENDPOINT",
    "StagePreprocessing",
    "cascade_endpoints",
    "cascade_class_names",
    "cascade_probabilities",
    "classifier_endpoints",
    "decode_batch",
    "inference_model",
    "is_training_only",
    "unet_endpoints",
    "unet_mask_fn",
]

BYTES_ENDPOINT = "serving_default"
IMAGES_ENDPOINT = "serving_images"
PREPROCESS_ENDPOINT = "preprocess"

# Keras layers that only act when training=True; they are identities at inference and are removed
# so that the exported graph provably holds no random op.
_TRAINING_ONLY_CLASSES = frozenset(
    {
        "MomentExchange",  # cxr_cascade.models.moex
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "GaussianDropout",
        "GaussianNoise",
        "AlphaDropout",
        "ActivityRegularization",
        "RandomRotation",
        "RandomFlip",
        "RandomTranslation",
        "RandomZoom",
        "RandomContrast",
        "RandomBrightness",
        "RandomCrop",
    }
)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"

# One encoded image -> float32 [S, S, 1]; the evaluation pipeline's preprocessing.
PreprocessFn = Callable[[tf.Tensor], tf.Tensor]


def is_training_only(layer: keras.layers.Layer) -> bool:
    """True for layers that act only in training: MoEx (`MomentExchange`, or any class named
    *MoEx*), dropout, noise and random augmentation layers, and layers that say so with a
    ``training_only`` attribute (`RandomAffine`; `AdaptiveEqualization` with a ``fraction``)."""
    name = type(layer).__name__
    return (
        "moex" in name.lower()
        or name in _TRAINING_ONLY_CLASSES
        or getattr(layer, "training_only", False) is True
    )


def _rebuild(model: keras.Model, input_size: Optional[int] = None) -> tuple[keras.Model, dict]:
    """Reruns `model`'s functional graph on new inputs, bypassing training-only layers.

    Args:
        model: functional model with one image input ``[N, H, W, C]``.
        input_size: run the (fully convolutional) graph on ``[N, S, S, C]`` inputs instead.

    Returns the rebuilt model (weights shared) and {layer name: its output tensor in the rebuilt
    graph}, from which sub-models such as Grad-CAM's (cam_features, logits) are cut.
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_run_through_graph"):
        raise ValueError(
            "Only functional models can be exported (training-only layers are cut from the graph). "
            f"Received: model={type(model).__name__}"
        )
    outputs: dict = {}

    def call_function(layer, *args, **kwargs):
        if is_training_only(layer):
            out = args[0] if args else next(iter(kwargs.values()))
        else:
            out = layer(*args, **kwargs)
        outputs[layer.name] = out
        return out

    input_tensors = None
    if input_size is not None:
        spec = model.inputs[0]
        input_tensors = keras.Input(
            (input_size, input_size, spec.shape[-1]), dtype=spec.dtype, name=f"image_{input_size}"
        )
    rebuilt = keras.models.clone_model(
        model,
        input_tensors=input_tensors,
        clone_function=lambda layer: layer,
        call_function=call_function,
    )
    if type(rebuilt) is not keras.Model:
        # e.g. MoExClassifier, whose only difference is a training loss: serve a plain Model.
        rebuilt = keras.Model(rebuilt.input, rebuilt.output, name=model.name)
    return rebuilt, outputs


def inference_model(model: keras.Model) -> keras.Model:
    """The same functional graph with every training-only layer bypassed (weights shared).

    MoEx mixes feature moments of two images of a batch and is an identity at inference; dropout
    and random augmentation likewise. Rebuilding the graph without them (rather than trusting
    ``training=False``) keeps them and their random ops out of the SavedModel.

    Args:
        model: a functional Keras model (classifier or U-Net).

    Returns:
        A functional model with the same inputs, outputs and (shared) weights.
    """
    return _rebuild(model)[0]


@dataclasses.dataclass(frozen=True)
class StagePreprocessing:
    """How one model's input is made from file bytes, as at evaluation.

    Attributes:
        image_size: S, the model's input is ``[S, S, 1]``.
        preprocess: one encoded image (scalar tf.string) -> float32 ``[S, S, 1]``: decode,
            grayscale, resize, CLAHE (the evaluation pipeline's function).
        key: identifies the preprocessing, so that two stages with equal keys share one pass.
        models: Keras models the preprocessing calls (the lung U-Net), for variable tracking.
    """

    image_size: int
    preprocess: PreprocessFn
    key: str = ""
    models: tuple = ()

    @classmethod
    def from_config(
        cls, config, unet: Optional[keras.Model] = None
    ) -> "StagePreprocessing":
        """The evaluation pipeline's preprocessing: `pipelines.preprocess.preprocess_image_bytes`
        with `config` (a `pipelines.preprocess.PreprocessConfig`) and, when `unet` is given, lung
        masking by that U-Net (`unet_mask_fn`)."""
        height, width = normalize_image_size(config.image_size)
        if height != width:
            raise ValueError(
                "Exported models take square images. "
                f"Received: image_size={config.image_size}"
            )
        kwargs = config.as_kwargs()
        unet = _rebuild(unet, int(height))[0] if unet is not None else None
        mask_fn = unet_mask_fn(unet) if unet is not None else None

        def preprocess(image_bytes):
            return preprocess_image_bytes(image_bytes, mask_fn=mask_fn, **kwargs)

        key = repr(sorted(kwargs.items())) + (f"+unet:{id(unet)}" if unet is not None else "")
        return cls(int(height), preprocess, key, (unet,) if unet is not None else ())


def unet_mask_fn(unet: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """A `pipelines.preprocess` ``mask_fn`` from a lung U-Net (Lv et al. 2020, Sec. 3.2.3).

    `cxr_cascade.models.unet_mask_fn` (the one U-Net-as-mask function, which training and
    evaluation use too) on the U-Net with its training-only layers cut out. The U-Net runs at
    the classifier's size S itself (`StagePreprocessing.from_config` rebuilds it there), not
    through a resize.
    """
    return _unet_mask_fn(inference_model(unet))


def _check_magic(image_bytes: tf.Tensor) -> tf.Tensor:
    """Raises InvalidArgumentError (at run time) naming the first element that is not PNG/JPEG."""
    head8 = tf.strings.substr(image_bytes, 0, len(_PNG_MAGIC))
    head3 = tf.strings.substr(image_bytes, 0, len(_JPEG_MAGIC))
    ok = tf.logical_or(tf.equal(head8, _PNG_MAGIC), tf.equal(head3, _JPEG_MAGIC))
    first_bad = tf.argmin(tf.cast(ok, tf.int32), output_type=tf.int32)
    return tf.debugging.Assert(
        tf.reduce_all(ok),
        [
            "image_bytes: element",
            first_bad,
            "is not a PNG or JPEG file (unknown file signature; first bytes:",
            tf.strings.substr(image_bytes[first_bad], 0, 8),
            ")",
        ],
        summarize=8,
        name="check_image_bytes",
    )


def decode_batch(image_bytes: tf.Tensor, stage: StagePreprocessing) -> tf.Tensor:
    """Runs the evaluation preprocessing on a batch of file bytes.

    Args:
        image_bytes: tf.string ``[N]``, PNG or JPEG file contents.
        stage: the preprocessing of the model the batch is for.

    Returns:
        float32 ``[N, S, S, 1]``.

    Raises:
        tf.errors.InvalidArgumentError: at run time, for an element that is not a PNG or JPEG file
            ("image_bytes: element i is not a PNG or JPEG file ...") or that does not decode
            (TensorFlow's decoder message, e.g. "Invalid PNG data").
    """
    image_bytes = tf.convert_to_tensor(image_bytes, dtype=tf.string)
    size = stage.image_size
    with tf.control_dependencies([_check_magic(image_bytes)]):
        image_bytes = tf.identity(image_bytes)

    def one(data):
        image = tf.convert_to_tensor(stage.preprocess(data), dtype=tf.float32)
        return tf.ensure_shape(image, [size, size, 1])

    return tf.map_fn(
        one,
        image_bytes,
        fn_output_signature=tf.TensorSpec([size, size, 1], tf.float32),
        name="preprocess",
    )


def _class_outputs(probabilities: tf.Tensor, class_names: Sequence[str]) -> dict[str, tf.Tensor]:
    probabilities = tf.cast(probabilities, tf.float32)
    index = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
    names = tf.gather(tf.constant(list(class_names), dtype=tf.string), index)
    return {"probabilities": probabilities, "class_index": index, "class_name": names}


def _check_class_names(model: keras.Model, class_names: Sequence[str], what: str) -> list[str]:
    class_names = [str(c) for c in class_names]
    width = model.outputs[0].shape[-1]
    if width is not None and width != len(class_names):
        raise ValueError(
            f"`{what}` must name one class per output of the model ({width}). "
            f"Received: {what}={class_names}"
        )
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"`{what}` must not repeat a name. Received: {what}={class_names}")
    return class_names


def _images_spec(size: int, name: str = "images") -> tf.TensorSpec:
    return tf.TensorSpec([None, size, size, 1], tf.float32, name=name)


_BYTES_SPEC = tf.TensorSpec([None], tf.string, name="image_bytes")


Endpoint = tuple[Callable, list]


class Endpoints(dict):
    """{endpoint name: (function, input signature)} plus `models`: the rebuilt inference models
    (and any model the preprocessing uses) whose variables the archive must track. Tracking these,
    not the training models, keeps MoEx's seed state out of the SavedModel too."""

    def __init__(self, endpoints: dict, models: Sequence[keras.Model]):
        super().__init__(endpoints)
        self.models = list(models)


def _single_stage_endpoints(run: Callable, stage: StagePreprocessing) -> dict[str, Endpoint]:
    """The three standard endpoints of one model on one preprocessing.

    Args:
        run: preprocessed images float32 ``[N, S, S, 1]`` -> {output name: tensor}.
        stage: the preprocessing that turns encoded images into `run`'s input.

    Returns:
        {`BYTES_ENDPOINT`: encoded images -> outputs, `IMAGES_ENDPOINT`: preprocessed images ->
        outputs, `PREPROCESS_ENDPOINT`: encoded images -> ``{"images": ...}``}.
    """

    def serving_default(image_bytes):
        return run(decode_batch(image_bytes, stage))

    def serving_images(images):
        return run(images)

    def preprocess(image_bytes):
        return {"images": decode_batch(image_bytes, stage)}

    return {
        BYTES_ENDPOINT: (serving_default, [_BYTES_SPEC]),
        IMAGES_ENDPOINT: (serving_images, [_images_spec(stage.image_size)]),
        PREPROCESS_ENDPOINT: (preprocess, [_BYTES_SPEC]),
    }


def classifier_endpoints(
    model: keras.Model,
    class_names: Sequence[str],
    stage: StagePreprocessing,
) -> dict[str, Endpoint]:
    """Endpoints of one classifier (stage 1 or stage 2).

    Args:
        model: functional classifier ``[N, S, S, 1]`` -> softmax ``[N, C]``.
        class_names: C names, in the model's output order.
        stage: its preprocessing (S must equal the model's input size), lung masking included
            when the model was evaluated on lung-masked images.

    Returns:
        {endpoint name: (function, input signature)} for `ExportArchive.add_endpoint`.
    """
    model, tensors = _rebuild(model)
    class_names = _check_class_names(model, class_names, "class_names")
    _check_size(model, stage.image_size, "stage.image_size")

    def run(images):
        return _class_outputs(model(images, training=False), class_names)

    endpoints = _single_stage_endpoints(run, stage)
    explain = _explain_fn(model, tensors)
    if explain is not None:
        endpoints["explain_images"] = (explain, [_images_spec(stage.image_size)])
    return Endpoints(endpoints, [model, *stage.models])


def unet_endpoints(
    unet: keras.Model, stage: StagePreprocessing, threshold: float = 0.5
) -> dict[str, Endpoint]:
    """Endpoints of the lung U-Net: ``mask_probabilities`` and the binary ``mask``."""
    unet = inference_model(unet)
    _check_size(unet, stage.image_size, "stage.image_size")

    def run(images):
        prob = tf.cast(unet(images, training=False), tf.float32)
        return {"mask_probabilities": prob, "mask": tf.cast(prob > threshold, tf.uint8)}

    return Endpoints(_single_stage_endpoints(run, stage), [unet, *stage.models])


def _explain_fn(model: keras.Model, tensors: dict) -> Optional[Callable]:
    """Grad-CAM ingredients in the graph: ``A`` (cam_features), ``dS_c/dA`` for the predicted class
    c, the logits and c; `cxr_cascade.explain.gradcam.cam_from_gradients` turns them into maps
    (`cxr_cascade.explain.gradcam.GradCAM` computes the same from a Keras model).
    None when the model has no ``cam_features``/``logits`` layers.

    Args:
        model: the rebuilt inference model; tensors: its layer outputs (see `_rebuild`).
    """
    if "cam_features" not in tensors or "logits" not in tensors:
        return None
    grad_model = keras.Model(
        model.input, [tensors["cam_features"], tensors["logits"]], name=f"{model.name}_gradcam"
    )

    def explain(images):
        with tf.GradientTape() as tape:
            features, logits = grad_model(images, training=False)
            tape.watch(features)
            classes = tf.argmax(logits, axis=-1, output_type=tf.int32)
            score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
        grads = tape.gradient(score, features)
        return {
            "cam_features": tf.cast(features, tf.float32),
            "gradients": tf.cast(grads, tf.float32),
            "logits": tf.cast(logits, tf.float32),
            "class_index": tf.cast(classes, tf.int64),
        }

    return explain


def _check_size(model: keras.Model, size: int, what: str) -> None:
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[-1] != 1:
        raise ValueError(
            f"The model must take one-channel images [N, S, S, 1]. Received: input shape={shape}"
        )
    if shape[1] is not None and (shape[1], shape[2]) != (size, size):
        raise ValueError(
            f"`{what}` must match the model's input size {shape[1]}x{shape[2]}. "
            f"Received: {what}={size}"
        )


def cascade_class_names(
    stage1_names: Sequence[str], stage2_names: Sequence[str], refined: str
) -> list[str]:
    """The cascade's classes: stage 1's, with `refined` replaced in place by stage 2's classes
    (`cxr_cascade.evaluation.cascade.cascade_class_names`, shared with evaluation)."""
    return _cascade_class_names(stage1_names, stage2_names, refined)


def cascade_probabilities(p1: tf.Tensor, p2: tf.Tensor, refined_index: int, rule: str = "gate",
                          normal_index: int = 0, negative_index: int = 1) -> tf.Tensor:
    """The cascade's distribution (Lv et al. 2020, Fig. 1) by evaluation's own `CascadeCombine`:
    p(c2) = p1(refined) * p2(c2 | refined); the other stage-1 classes keep their probability.
    Rule "pneumonia": that route's distribution (`cxr_cascade.models.cascade`)."""
    layer = CascadeCombine(refined_index, rule, normal_index, negative_index)
    return layer([tf.cast(p1, tf.float32), tf.cast(p2, tf.float32)])


def cascade_endpoints(
    stage1: keras.Model,
    stage1_classes: Sequence[str],
    stage1_prep: StagePreprocessing,
    stage2: keras.Model,
    stage2_classes: Sequence[str],
    stage2_prep: StagePreprocessing,
    refined_class: str = "viral",
    combine: Optional[Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = None,
    rule: str = "gate",
) -> dict[str, Endpoint]:
    """Endpoints of Cascade-SEMEnet: stage 1 on every image, stage 2 refining `refined_class`.

    Both stages run on the whole batch (stage 2's output is conditional on the refined class, so
    computing it for all images keeps the graph static and the batch shape fixed).

    Args:
        stage1, stage2: functional classifiers.
        stage1_classes, stage2_classes: their class names in output order.
        stage1_prep, stage2_prep: each stage's evaluation preprocessing (sizes may differ).
        refined_class: the stage-1 class that stage 2 subdivides ("viral" in the paper).
        combine: ``(p1, p2) -> probabilities`` in `cascade_class_names` order; default
            `cascade_probabilities`. These are the scores; the decision does not read them.
        rule: the decision, ``class_index`` / ``class_name``: "gate" (the paper's section 3:
            stage 2 decides where stage 1's argmax is `refined_class`), "soft" (argmax of the
            products) or "pneumonia" (stage 2 decides where stage 1's argmax is any class but
            normal; its negative keeps stage 1's call), by evaluation's own `CascadeDecision`.
            Under "pneumonia" the default `combine` is that route's distribution too.
    """
    check_rule(rule)
    stage1, tensors1 = _rebuild(stage1)
    stage2, tensors2 = _rebuild(stage2)
    c1 = _check_class_names(stage1, stage1_classes, "stage1_classes")
    c2 = _check_class_names(stage2, stage2_classes, "stage2_classes")
    _check_size(stage1, stage1_prep.image_size, "stage1_prep.image_size")
    _check_size(stage2, stage2_prep.image_size, "stage2_prep.image_size")
    names = cascade_class_names(c1, c2, refined_class)
    route = route_indices(c1, c2, refined_class, rule)
    refined_index = route.pop("refined_index")
    if combine is None:
        combine = lambda p1, p2: cascade_probabilities(p1, p2, refined_index, rule, **route)  # noqa: E731
    share = bool(stage1_prep.key) and stage1_prep.key == stage2_prep.key

    def run(images1, images2):
        p1 = tf.cast(stage1(images1, training=False), tf.float32)
        p2 = tf.cast(stage2(images2, training=False), tf.float32)
        outputs = _class_outputs(combine(p1, p2), names)
        index = tf.cast(CascadeDecision(refined_index, rule, **route)([p1, p2]), tf.int64)
        outputs["class_index"] = index
        outputs["class_name"] = tf.gather(tf.constant(names, dtype=tf.string), index)
        outputs["stage1_probabilities"] = p1
        outputs["stage2_probabilities"] = p2
        return outputs

    def serving_default(image_bytes):
        images1 = decode_batch(image_bytes, stage1_prep)
        images2 = images1 if share else decode_batch(image_bytes, stage2_prep)
        return run(images1, images2)

    def serving_images(stage1_images, stage2_images):
        return run(stage1_images, stage2_images)

    def preprocess(image_bytes):
        images1 = decode_batch(image_bytes, stage1_prep)
        images2 = images1 if share else decode_batch(image_bytes, stage2_prep)
        return {"stage1_images": images1, "stage2_images": images2}

    spec1 = _images_spec(stage1_prep.image_size, "stage1_images")
    spec2 = _images_spec(stage2_prep.image_size, "stage2_images")
    endpoints = {
        BYTES_ENDPOINT: (serving_default, [_BYTES_SPEC]),
        IMAGES_ENDPOINT: (serving_images, [spec1, spec2]),
        PREPROCESS_ENDPOINT: (preprocess, [_BYTES_SPEC]),
    }
    for label, model, tensors, spec in (
        ("stage1", stage1, tensors1, spec1),
        ("stage2", stage2, tensors2, spec2),
    ):
        explain = _explain_fn(model, tensors)
        if explain is not None:
            endpoints[f"explain_{label}"] = (explain, [spec])
    return Endpoints(endpoints, [stage1, stage2, *stage1_prep.models, *stage2_prep.models])

