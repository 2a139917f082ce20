"""The one preprocessing function shared by training, evaluation and serving.

``preprocess_image_bytes(image_bytes, image_size=..., resize_mode=..., clahe=..., ...)`` turns the
bytes of an image file into the float32 ``[S, S, 1]`` tensor the classifiers read:

    decode (pipelines.decode: gray float in [0, 1])
      -> resize (stretch, or aspect-preserving with zero padding)
      -> optional CLAHE (OpenCV-exact, on the 8-bit quantised image; Lv et al. 2020 Sec. 3.1)
      -> optional lung masking (a given mask, or a segmentation model's output; Sec. 3.2.3)

It is pure TensorFlow, so `build_dataset(training=False)` maps it over files and an exported model
calls the very same function inside a `tf.function` whose input is a batch of ``tf.string``
(`preprocess_batch_bytes`); a test checks both give bit-identical tensors. Random augmentation
(rotation, random CLAHE) is *not* here: it belongs to training only (`pipelines.datasets`).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import tensorflow as tf

from pipelines import decode as _decode
from pipelines import transforms as T
from pipelines.config import PreprocessConfig

__all__ = [
    "PreprocessConfig",
    "preprocess_image",
    "preprocess_image_bytes",
    "preprocess_batch_bytes",
]

BoolLike = Union[bool, tf.Tensor]
MaskFn = Optional[Callable[[tf.Tensor], tf.Tensor]]


def _static_bool(value: BoolLike) -> Optional[bool]:
    if isinstance(value, bool):
        return value
    if isinstance(value, tf.Tensor):
        static = tf.get_static_value(value)
        return None if static is None else bool(static)
    raise ValueError(f"Expected a bool or a scalar bool tensor. Received: {value!r}")


def _maybe(flag: BoolLike, fn: Callable[[tf.Tensor], tf.Tensor], image: tf.Tensor) -> tf.Tensor:
    """``fn(image)`` if flag else ``image``; a tf.cond only when the flag is a run-time tensor."""
    static = _static_bool(flag)
    if static is not None:
        return fn(image) if static else image
    out = tf.cond(tf.cast(flag, tf.bool), lambda: fn(image), lambda: tf.identity(image))
    out.set_shape(image.shape)
    return out


def preprocess_image(
    image: tf.Tensor,
    *,
    image_size,
    resize_mode: str = "stretch",
    clahe: BoolLike = False,
    clip_limit: float = 2.0,
    tile_grid_size: Sequence[int] = (8, 8),
    mask: Optional[tf.Tensor] = None,
    mask_fn: MaskFn = None,
    segment: Optional[BoolLike] = None,
    clahe_backend: str = "tf",
) -> tf.Tensor:
    """Resize, CLAHE and lung masking of a decoded image (the part after `decode_image`).

    Args:
        image: float32 ``[H, W, 1]`` in ``[0, 1]`` (as `pipelines.decode.decode_image` returns).
        image_size: output ``S`` or ``(height, width)``.
        resize_mode: "stretch" or "pad".
        clahe: apply CLAHE (Python bool, or a scalar bool tensor decided per element).
        clip_limit, tile_grid_size: CLAHE settings (OpenCV's).
        mask: optional lung mask ``[H, W, 1]`` at the image's source size, values {0, 1}; it is
            resized with the image's geometry and thresholded at 0.5.
        mask_fn: optional segmentation model: float ``[S, S, 1]`` resized image (before CLAHE)
            -> lung probability ``[S, S, 1]``, thresholded at 0.5; e.g. a Keras U-Net wrapped as
            ``lambda x: unet(x[None], training=False)[0]``. Used when `mask` is None.
        segment: apply the mask (bool or scalar bool tensor); default: True when a mask or
            mask_fn is given.
        clahe_backend: "tf" (graph ops, exportable) or "cv2" (benchmarks only).

    Returns:
        float32 ``[height, width, 1]`` in ``[0, 1]``.
    """
    image = T.resize(image, image_size, resize_mode)
    lung = None
    if mask is not None:
        lung = T.resize_mask(mask, image_size, resize_mode)
    elif mask_fn is not None:
        lung = tf.cast(tf.convert_to_tensor(mask_fn(image), tf.float32) > 0.5, tf.float32)
        lung = tf.reshape(lung, tf.shape(image))
    if segment is None:
        segment = lung is not None
    elif lung is None and _static_bool(segment) is not False:
        raise ValueError("`segment` needs a `mask` or a `mask_fn`. Received: mask=None, mask_fn=None")
    image = _maybe(
        clahe,
        lambda x: T.apply_clahe(x, clip_limit, tile_grid_size, backend=clahe_backend),
        image,
    )
    if lung is not None:
        image = _maybe(segment, lambda x: T.apply_mask(x, lung), image)
    return image


def preprocess_image_bytes(
    image_bytes: tf.Tensor,
    *,
    image_size,
    resize_mode: str = "stretch",
    clahe: BoolLike = False,
    clip_limit: float = 2.0,
    tile_grid_size: Sequence[int] = (8, 8),
    mask: Optional[tf.Tensor] = None,
    mask_fn: MaskFn = None,
    segment: Optional[BoolLike] = None,
    clahe_backend: str = "tf",
) -> tf.Tensor:
    """Decodes one image file's bytes and preprocesses it: the shared eval/serving function.

    Args:
        image_bytes: scalar tf.string (JPEG, PNG 8/16 bit; see `pipelines.image_policy`).
        Others: as `preprocess_image`.

    Returns:
        float32 ``[height, width, 1]`` in ``[0, 1]``.
    """
    return preprocess_image(
        _decode.decode_image(image_bytes),
        image_size=image_size,
        resize_mode=resize_mode,
        clahe=clahe,
        clip_limit=clip_limit,
        tile_grid_size=tile_grid_size,
        mask=mask,
        mask_fn=mask_fn,
        segment=segment,
        clahe_backend=clahe_backend,
    )


def preprocess_batch_bytes(image_bytes: tf.Tensor, **kwargs) -> tf.Tensor:
    """`preprocess_image_bytes` over a batch: tf.string ``[N]`` -> float32 ``[N, height, width, 1]``.

    This is what a serving signature calls, e.g.::

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(images):
            return model(preprocess_batch_bytes(images, image_size=512, clahe=True))
    """
    height, width = T.normalize_image_size(kwargs["image_size"])
    return tf.map_fn(
        lambda b: preprocess_image_bytes(b, **kwargs),
        tf.convert_to_tensor(image_bytes, tf.string),
        fn_output_signature=tf.TensorSpec([height, width, 1], tf.float32),
    )
