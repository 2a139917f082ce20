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
from typing import Any, Optional

import keras

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


def has_gpu() -> bool:
    """A GPU visible to the current Keras backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return False


# CPU flags under which `mixed_precision="auto"` trains in bfloat16: AMX's bf16 tiles, where
# oneDNN's bfloat16 convolutions were measured faster than float32 (6.1-6.3 vs 4.8-5.6 img/s,
# SEME-ResNet50 at 224 px, issue 15). AVX512-BF16 alone is not enough: on a 2-core AVX512-BF16
# machine without AMX, bfloat16 training steps took 1.38-1.48x as long (`make bench-models`).
BF16_CPU_FLAGS = ("amx_bf16",)
# Flags that give a CPU native bfloat16 arithmetic of some kind (reported by `make bench-models`).
BF16_NATIVE_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset:
    """The CPU feature flags listed in `cpuinfo` (Linux); empty when it cannot be read."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def precision_policy(mode: str, *, gpu: Optional[bool] = None, flags: Optional[frozenset] = None) -> str:
    """The Keras dtype policy for a config's `mixed_precision` ("off", "float16", "bfloat16", "auto").

    "auto" is float16 on GPUs (tensor cores; Keras scales the loss), bfloat16 on CPUs where it
    was measured faster than float32 (`BF16_CPU_FLAGS`: AMX) and float32 on other CPUs, those
    with AVX512-BF16 but no AMX included (slower there in bfloat16, see `BF16_CPU_FLAGS`).

    Args:
        mode: the config value.
        gpu: whether a GPU is visible (None: ask the Keras backend, `has_gpu`).
        flags: the CPU feature flags (None: read /proc/cpuinfo via `cpu_flags`).
    """
    if mode == "off":
        return "float32"
    if mode == "float16":
        return "mixed_float16"
    if mode == "bfloat16":
        return "mixed_bfloat16"
    if mode == "auto":
        if gpu is None:
            gpu = has_gpu()
        if gpu:
            return "mixed_float16"
        flags = cpu_flags() if flags is None else flags
        return "mixed_bfloat16" if any(f in flags for f in BF16_CPU_FLAGS) else "float32"
    raise ValueError(
        f"Unknown mixed_precision. Allowed: off, float16, bfloat16, auto. Received: mixed_precision={mode!r}"
    )


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
        from cxr_cascade.training.strategy import setup_runtime as tf_setup

        return tf_setup(config)
    return _portable_runtime(config)


@contextlib.contextmanager
def process_settings() -> Any:
    """Restores the global settings a run changes (`strategy.process_settings` on TensorFlow)."""
    if is_tensorflow():
        from cxr_cascade.training.strategy import process_settings as tf_settings

        with tf_settings():
            yield
        return
    policy = keras.mixed_precision.global_policy().name
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)
