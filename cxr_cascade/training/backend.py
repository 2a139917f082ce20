"""Which engine trains: TensorFlow (tf.distribute, tf.data) or any other Keras 3 backend.

The trainer (`runner.train`) is one loop for every Keras backend. What differs is chosen here
from `keras.backend.backend()`:

- "tensorflow": `training.strategy` (distribution strategies, op determinism) and `tf.data`
  pipelines (`pipelines.datasets`).
- "jax" / "torch" (accelerators without TensorFlow): one device, the global dtype policy and
  Keras's seeds; the data come from `training.arrays` (Pillow + NumPy, decoded once into memory).
  Nothing on this path imports TensorFlow or OpenCV.

On JAX, GPU kernels are deterministic only with `XLA_FLAGS=--xla_gpu_deterministic_ops=true` set
before JAX first uses a device; `setup_runtime` adds it when `config.deterministic` (the CLI calls
it before any array exists; on the CPU, XLA is deterministic anyway).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import keras

from cxr_cascade.training.precision import precision_policy

BACKENDS = ("tensorflow", "jax", "torch")


def is_tensorflow() -> bool:
    """True when Keras runs on TensorFlow (tf.distribute and tf.data are then used)."""
    return keras.backend.backend() == "tensorflow"


@dataclass
class PortableRuntime:
    """The `strategy.Runtime` fields the runner reads, for one device on a non-TF backend."""

    name: str
    precision_policy: str
    jit_compile: bool
    replicas: int = 1
    is_chief: bool = True
    worker_index: int = 0

    @property
    def strategy(self) -> "PortableRuntime":
        return self  # `with runtime.strategy.scope():` is a no-op off TensorFlow

    def scope(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


def _portable_runtime(config) -> PortableRuntime:
    backend = keras.backend.backend()
    if config.strategy != "default":
        raise ValueError(
            f"strategy={config.strategy!r} needs TensorFlow (tf.distribute); on the {backend} "
            "backend training runs on one device. Received: "
            f"strategy={config.strategy!r}, KERAS_BACKEND={backend}"
        )
    if config.deterministic and backend == "jax":
        # XLA reads XLA_FLAGS when JAX first touches a device (after `import keras`, before the
        # first array); later, the flag has no effect (and none is needed on the CPU).
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " --xla_gpu_deterministic_ops=true").strip()
    keras.utils.set_random_seed(config.seed)
    policy = precision_policy(config.mixed_precision)
    keras.mixed_precision.set_global_policy(policy)
    # JAX always compiles the train step with XLA; torch.compile is opt-in ("on").
    jit = config.jit_compile != "off" if backend == "jax" else config.jit_compile == "on"
    return PortableRuntime(name=f"default ({backend})", precision_policy=policy, jit_compile=jit)


def setup_runtime(config) -> Any:
    """`strategy.setup_runtime` on TensorFlow, else a one-device `PortableRuntime`."""
    if is_tensorflow():
        # lazy: training.strategy imports TensorFlow, absent where JAX / PyTorch train
        from cxr_cascade.training.strategy import setup_runtime as tf_setup

        return tf_setup(config)
    return _portable_runtime(config)


@contextlib.contextmanager
def process_settings() -> Any:
    """Restores the global settings a run changes (`strategy.process_settings` on TensorFlow)."""
    if is_tensorflow():
        # lazy: training.strategy imports TensorFlow, absent where JAX / PyTorch train
        from cxr_cascade.training.strategy import process_settings as tf_settings

        with tf_settings():
            yield
        return
    policy = keras.mixed_precision.global_policy().name
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)
