"""Grad-CAM (Selvaraju et al., ICCV 2017) and Grad-CAM++ (Chattopadhay et al., WACV 2018).

Both explain one class score ``S_c`` (the pre-softmax ``logits`` output) through the last feature
map ``A`` (layer ``cam_features``, shape ``[h, w, K]``) of a flat functional classifier:

- Grad-CAM: ``w_k = mean_ij dS_c/dA_ijk`` and ``L = ReLU(sum_k w_k A_k)``.
- Grad-CAM++: ``w_k = sum_ij alpha_ijk ReLU(dS_c/dA_ijk)`` with
  ``alpha = g^2 / (2 g^2 + sum_ab A_abk g^3)``, ``g = dS_c/dA``; the closed form follows from
  taking ``exp(S_c)`` as the score of a piecewise-linear network, whose higher derivatives are
  powers of the first (their eq. 19), and ``alpha = 0`` where the denominator vanishes.

Maps are upsampled bilinearly to the input size and divided by their maximum, so they lie in
[0, 1] with 1 the most important pixel (an all-zero map stays zero). The model is called with
``training=False``, so MoEx and dropout are identities. This module uses ``tf.GradientTape``
directly (the brief allows TensorFlow here); the model itself is plain Keras.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import keras

METHODS = ("gradcam", "gradcam++")


def build_grad_model(
    model: keras.Model, feature_layer: str = "cam_features", logits_layer: str = "logits"
) -> keras.Model:
    """``keras.Model(inputs, [A, logits])``; works because the classifier graph is flat."""
    names = {layer.name for layer in model.layers}
    for arg, name in (("feature_layer", feature_layer), ("logits_layer", logits_layer)):
        if name not in names:
            raise ValueError(
                f"`{arg}` must name a layer of the model {model.name!r} (a flat functional "
                f"classifier with `cam_features` and `logits`). Received: {arg}={name!r}"
            )
    # A single input is passed as a tensor, not a list (keras warns on a structure mismatch).
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(
        inputs,
        [model.get_layer(feature_layer).output, model.get_layer(logits_layer).output],
        name=f"{model.name}_gradcam",
    )


class GradCAM:
    """Grad-CAM / Grad-CAM++ maps of a classifier.

    Args:
        model: flat functional classifier with layers ``cam_features`` and ``logits``.
        method: ``"gradcam"`` or ``"gradcam++"``.
        feature_layer, logits_layer: layer names, defaults as built by
            ``cxr_cascade.models.build_classifier``.

    Call with images ``[B, H, W, C]`` float32 and ``class_index`` (``None``: the predicted class
    of each image; an int: that class for all; a sequence: one per image). Returns
    ``(maps [B, H, W] float32 in [0, 1], class_index [B] int)``.
    """

    def __init__(self, model: keras.Model, method: str = "gradcam",
                 feature_layer: str = "cam_features", logits_layer: str = "logits"):
        if method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")
        self.model = model
        self.method = method
        self.grad_model = build_grad_model(model, feature_layer, logits_layer)

    def feature_maps_and_gradients(self, images, class_index=None):
        """Raw ``A [B, h, w, K]``, ``dS_c/dA`` of the same shape, logits ``[B, C]``, classes ``[B]``."""
        images = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
        if images.shape.rank != 4:
            raise ValueError(
                f"`images` must have shape [B, H, W, C]. Received: images.shape={tuple(images.shape)}"
            )
        with tf.GradientTape() as tape:
            features, logits = self.grad_model(images, training=False)
            classes = _resolve_classes(class_index, logits)
            score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
        grads = tape.gradient(score, features)
        return features.numpy(), grads.numpy(), logits.numpy(), classes.numpy()

    def __call__(self, images, class_index=None, batch_size: int = 16,
                 upsample: bool = True, normalise: bool = True):
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4:
            raise ValueError(f"`images` must have shape [B, H, W, C]. Received: images.shape={images.shape}")
        per_image = None
        if class_index is not None and not np.isscalar(class_index):
            per_image = np.asarray(class_index, dtype=np.int64)
            if per_image.shape != (len(images),):
                raise ValueError(
                    "`class_index` must be None, an int or one int per image. "
                    f"Received: class_index with shape {per_image.shape} for {len(images)} images"
                )
        maps, classes = [], []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            ci = class_index if per_image is None else per_image[start : start + batch_size]
            features, grads, _, cls = self.feature_maps_and_gradients(batch, ci)
            cam = cam_from_gradients(features, grads, self.method)
            if upsample:
                cam = tf.image.resize(cam[..., None], images.shape[1:3], method="bilinear")[..., 0].numpy()
            if normalise:
                cam = normalise_maps(cam)
            maps.append(cam.astype(np.float32))
            classes.append(cls)
        return np.concatenate(maps), np.concatenate(classes)


def _resolve_classes(class_index, logits) -> tf.Tensor:
    batch = tf.shape(logits)[0]
    num_classes = int(logits.shape[-1])
    if class_index is None:
        return tf.argmax(logits, axis=-1, output_type=tf.int32)
    values = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (int(batch),))
    if values.min() < 0 or values.max() >= num_classes:
        raise ValueError(
            f"`class_index` must be in [0, {num_classes}). Received: class_index={class_index}"
        )
    return tf.constant(values, dtype=tf.int32)


def cam_from_gradients(features: np.ndarray, grads: np.ndarray, method: str = "gradcam") -> np.ndarray:
    """Class activation maps ``[B, h, w]`` (ReLU applied, not normalised) from ``A`` and ``dS/dA``."""
    if method == "gradcam":
        weights = grads.mean(axis=(1, 2))  # [B, K]
    elif method == "gradcam++":
        g2 = grads**2
        g3 = g2 * grads
        sum_a = features.sum(axis=(1, 2), keepdims=True)
        denom = 2.0 * g2 + sum_a * g3
        alpha = np.divide(g2, denom, out=np.zeros_like(g2), where=denom != 0)
        weights = (alpha * np.maximum(grads, 0.0)).sum(axis=(1, 2))
    else:
        raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")
    cam = np.einsum("bijk,bk->bij", features, weights)
    return np.maximum(cam, 0.0)


def normalise_maps(maps: np.ndarray) -> np.ndarray:
    """Divide each map by its maximum (maps are non-negative); all-zero maps stay zero."""
    maps = np.maximum(np.asarray(maps, dtype=np.float32), 0.0)
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, *([1] * (maps.ndim - 1)))
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def gradcam(model: keras.Model, images, class_index=None, method: str = "gradcam",
            batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """One-shot ``GradCAM(model, method)(images, class_index)``; see ``GradCAM``."""
    return GradCAM(model, method)(images, class_index, batch_size=batch_size)
