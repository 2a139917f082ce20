"""A run's per-epoch randomness, all of it a pure function of the experiment's seed and the epoch.

The resume contract (`cxr_cascade.training.runner`) needs epoch `e` to draw the same numbers
however the run got there. `epoch_seed` is the one seed of an epoch: it orders and augments the
epoch's training data (`training.data`, `training.arrays`) and seeds Python's and NumPy's global
generators (`seed_host_rngs`). The model's own Keras seed generators (MoEx pairing, dropout,
random augmentation layers) are set by `reset_model_seeds` from the same `(seed, epoch)`.
"""

from __future__ import annotations

import random

import numpy as np


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of 0-based `epoch` of a run seeded `seed`: an int in ``[0, 2**31 - 1)``."""
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**31 - 1)


def seed_host_rngs(seed: int, epoch: int) -> None:
    """Seeds Python's and NumPy's global generators with `epoch_seed(seed, epoch)`.

    Python and NumPy only: `keras.utils.set_random_seed` would also call `tf.random.set_seed`,
    which clears TensorFlow's kernel cache, so every epoch's `fit` would re-instantiate and
    re-optimise the train-step graph. The graph needs no TF global seed: data draws are stateless
    from `epoch_seed` and in-model generators are reset by `reset_model_seeds`.
    """
    value = epoch_seed(seed, epoch)
    random.seed(value)
    np.random.seed(value)


def reset_model_seeds(model, seed: int, epoch: int) -> None:
    """Sets every in-model Keras seed generator's state to ``[key, epoch]``, one key per
    generator (``seed * 1_000_003 + i``, `model.variables` order).

    Keras seed-generator states are model variables that `save_weights` does not store; resetting
    them per epoch makes epoch `e`'s randomness independent of how the run got there.
    """
    index = 0
    for variable in model.variables:
        if variable.path.endswith("seed_generator_state"):
            value = np.array([seed * 1_000_003 + index, epoch], dtype=variable.dtype)
            variable.assign(value)
            index += 1
