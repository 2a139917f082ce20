"""Training metrics: the U-Net's mean IoU; a classifier's balanced accuracy (mean per-class recall)."""

from __future__ import annotations

import keras


def mean_iou(threshold: float = 0.5, name: str = "mean_iou") -> keras.metrics.Metric:
    """Mean over {background, lung} of the intersection-over-union, accumulated over batches.

    Predictions are binarised at ``threshold``; the confusion matrix is summed over every pixel
    seen since the last reset (dataset-level IoU, as ``keras.metrics.BinaryIoU`` and scikit-learn's
    ``jaccard_score(average="macro")`` define it).

    Args:
        threshold: probability above which a pixel is lung, in (0, 1).
        name: metric name in logs.

    Returns:
        A ``keras.metrics.BinaryIoU`` over class ids (0, 1).
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
        raise ValueError(f"`threshold` must be a number in (0, 1). Received: threshold={threshold!r}")
    return keras.metrics.BinaryIoU(target_class_ids=(0, 1), threshold=float(threshold), name=name)


@keras.saving.register_keras_serializable(package="cxr_cascade")
class BalancedAccuracy(keras.metrics.Metric):
    """Mean over classes of the recall (sensitivity), accumulated over batches.

    The accuracy a majority-class model cannot game: with 64 COVID-19 and 3 other-viral
    validation films, calling everything COVID-19 scores accuracy 0.955 but balanced accuracy
    0.5. Classes absent from the labels seen so far are left out of the mean, as
    ``sklearn.metrics.balanced_accuracy_score`` does. Sample weights are ignored on purpose (the
    training's class weights would otherwise re-balance the count twice).

    Args:
        num_classes: number of classes (>= 2).
        name: metric name in logs.

    Inputs: ``y_true`` integer labels ``[N]`` (or ``[N, 1]``), ``y_pred`` scores ``[N, C]``.
    Result: a float32 scalar in [0, 1].
    """

    def __init__(self, num_classes: int, name: str = "balanced_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an integer >= 2. Received: num_classes={num_classes!r}")
        self.num_classes = num_classes
        self.hits = self.add_variable(shape=(num_classes,), initializer="zeros", name="hits")
        self.support = self.add_variable(shape=(num_classes,), initializer="zeros", name="support")

    def update_state(self, y_true, y_pred, sample_weight=None):
        ops = keras.ops
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        predicted = ops.cast(ops.argmax(ops.reshape(y_pred, (-1, self.num_classes)), axis=-1), "int32")
        true_hot = ops.one_hot(labels, self.num_classes, dtype="float32")
        correct = ops.cast(ops.equal(labels, predicted), "float32")
        self.support.assign_add(ops.sum(true_hot, axis=0))
        self.hits.assign_add(ops.sum(true_hot * correct[:, None], axis=0))

    def result(self):
        ops = keras.ops
        present = ops.cast(self.support > 0, "float32")
        recall = self.hits / ops.maximum(self.support, 1.0)
        return ops.sum(recall * present) / ops.maximum(ops.sum(present), 1.0)

    def reset_state(self):
        self.hits.assign(keras.ops.zeros((self.num_classes,)))
        self.support.assign(keras.ops.zeros((self.num_classes,)))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
