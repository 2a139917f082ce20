"""Segmentation loss for the U-Net: Dice + binary cross-entropy.

Dice (Milletari et al. 2016) handles the foreground/background imbalance of lung masks and
BCE gives well-behaved per-pixel gradients early in training; their sum is the usual
combination for lung-field U-Nets.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cxr_cascade")
class DiceBCELoss(keras.losses.Loss):
    """``bce_weight * BCE + dice_weight * (1 - soft Dice)``, per sample.

    Shapes: ``y_true`` and ``y_pred`` ``(batch, height, width, 1)`` (or any ``(batch, ...)``);
    ``y_true`` in {0, 1} (soft values allowed), ``y_pred`` probabilities (or logits with
    ``from_logits=True``). Computed in float32. Per sample:
    ``dice = (2 sum(t p) + smooth) / (sum t + sum p + smooth)``, ``bce`` the mean pixel BCE.

    Args:
        smooth: additive smoothing; makes an empty mask predicted empty score Dice 1.
        dice_weight: weight of the Dice term.
        bce_weight: weight of the BCE term.
        from_logits: whether ``y_pred`` are logits.
    """

    def __init__(
        self,
        smooth: float = 1.0,
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        from_logits: bool = False,
        reduction: str = "sum_over_batch_size",
        name: str = "dice_bce",
        **kwargs,
    ):
        for arg, value in (("smooth", smooth), ("dice_weight", dice_weight), ("bce_weight", bce_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`{arg}` must be a number >= 0. Received: {arg}={value!r}")
        super().__init__(reduction=reduction, name=name, **kwargs)
        self.smooth = float(smooth)
        self.dice_weight = float(dice_weight)
        self.bce_weight = float(bce_weight)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        batch = ops.shape(y_pred)[0]
        t = ops.reshape(y_true, (batch, -1))
        logits_or_p = ops.reshape(y_pred, (batch, -1))
        bce = ops.mean(
            keras.losses.binary_crossentropy(t[..., None], logits_or_p[..., None], from_logits=self.from_logits),
            axis=-1,
        )
        p = ops.sigmoid(logits_or_p) if self.from_logits else logits_or_p
        intersection = ops.sum(t * p, axis=-1)
        dice = (2.0 * intersection + self.smooth) / (ops.sum(t, axis=-1) + ops.sum(p, axis=-1) + self.smooth)
        return self.bce_weight * bce + self.dice_weight * (1.0 - dice)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "smooth": self.smooth,
                "dice_weight": self.dice_weight,
                "bce_weight": self.bce_weight,
                "from_logits": self.from_logits,
            }
        )
        return config
