"""Which Keras dtype policy a config's `mixed_precision` means on this machine (any backend).

`precision_policy` is the one rule for TensorFlow's runtime (`training.strategy`) and the other
backends' (`training.backend`); it reads the GPU from the active Keras backend and the CPU's
bfloat16 support from /proc/cpuinfo.
"""

from __future__ import annotations

from typing import Optional

import keras


def has_gpu() -> bool:
    """A GPU visible to the current Keras backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        # lazy: only the active backend's library loads (the others may be absent)
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        # lazy: only the active backend's library loads (the others may be absent)
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        # lazy: only the active backend's library loads (the others may be absent)
        import torch

        return bool(torch.cuda.is_available())
    return False


# CPU flags under which `mixed_precision="auto"` trains in bfloat16: AMX's bf16 tiles, where
# oneDNN's bfloat16 convolutions were measured faster than float32 (6.1-6.3 vs 4.8-5.6 img/s,
# SEME-ResNet50 at 224 px). AVX512-BF16 alone is not enough: on a 2-core AVX512-BF16
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
