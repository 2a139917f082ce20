"""What the runner gets from the data on every Keras backend: `DataBundle`.

`training.data.prepare_data` fills it with `tf.data` pipelines on TensorFlow, and
`training.arrays.build_bundle` with in-memory `ArrayDataset`s on JAX / PyTorch.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:  # annotations only: the JAX/Torch path never loads TensorFlow
    import tensorflow as tf


@dataclasses.dataclass
class DataBundle:
    """Everything the runner needs from the data.

    Attributes:
        class_names: class order of the labels (empty for the U-Net).
        records: every record used, with `split` set (written to the run's split manifest).
        make_train: epoch (0-based) -> the training `tf.data.Dataset` for that epoch.
        val: validation data set (fixed order, no augmentation).
        test: test data set, or None.
        steps_per_epoch: training batches per epoch (cosine schedule length).
    """

    class_names: tuple[str, ...]
    records: list
    make_train: Callable[[int], tf.data.Dataset]
    val: tf.data.Dataset
    test: Optional[tf.data.Dataset]
    steps_per_epoch: int

    def split_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for record in self.records:
            row = counts.setdefault(record.split or "-", {})
            row[record.label] = row.get(record.label, 0) + 1
        return counts
