"""Where training runs: TensorFlow distribution strategies, mixed precision, XLA, determinism.

- `default`: one device (the first GPU, else the CPU).
- `mirrored`: `tf.distribute.MirroredStrategy`, synchronous data parallelism over the local GPUs
  (or over logical CPU devices, which is how the tests exercise it).
- `multiworker`: `tf.distribute.MultiWorkerMirroredStrategy` across hosts; each process reads its
  role from the `TF_CONFIG` environment variable (cluster addresses + its own task).

The batch size in a config is the *global* batch: each replica sees `batch_size / replicas`.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any, Optional

import tensorflow as tf
import keras
from tensorflow.python.framework import config as tf_config  # no public getter exists

# Which CPUs train in bfloat16 under mixed_precision="auto" (AMX only) and why: training.precision,
# the one backend-neutral copy of the rule (its names are read from here too).
from cxr_cascade.training.precision import (  # noqa: F401
    BF16_CPU_FLAGS,
    BF16_NATIVE_CPU_FLAGS,
    cpu_flags,
    precision_policy,
)


@dataclass
class Runtime:
    """What `setup_runtime` decided: the strategy and the worker's role."""

    strategy: tf.distribute.Strategy
    name: str
    replicas: int
    is_chief: bool
    worker_index: int
    precision_policy: str
    jit_compile: bool


def _tf_config() -> Optional[dict[str, Any]]:
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}). Received: TF_CONFIG={text!r}") from None


def worker_role() -> tuple[bool, int]:
    """(is_chief, worker index) from TF_CONFIG; a process without TF_CONFIG is the chief."""
    config = _tf_config()
    if not config:
        return True, 0
    task = config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    cluster = config.get("cluster", {})
    if kind == "chief":
        return True, 0
    # Without an explicit chief, worker 0 is the chief (TensorFlow's convention).
    return ("chief" not in cluster and kind == "worker" and index == 0), index


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The `tf.distribute.Strategy` named `name` ("default", "mirrored" or "multiworker")."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        # Collective all-reduce across CPU devices needs a cross-device op that works on the host.
        cross = None if gpus else tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=cross)
    if name == "multiworker":
        config = _tf_config()
        if not config or "cluster" not in config or "task" not in config:
            raise ValueError(
                "strategy=multiworker needs TF_CONFIG with `cluster` and `task`, e.g. "
                '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}. '
                f"Received: TF_CONFIG={os.environ.get('TF_CONFIG')!r}"
            )
        return _patch_multiworker_reduce(tf.distribute.MultiWorkerMirroredStrategy())
    raise ValueError(
        f"Unknown strategy. Allowed: default, mirrored, multiworker. Received: strategy={name!r}"
    )


def _patch_multiworker_reduce(strategy: tf.distribute.Strategy) -> tf.distribute.Strategy:
    """Makes Keras 3's `fit` work under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Keras 3.15 calls `strategy.reduce` with (a) a nested batch `(x, y)` when it builds the model
    symbolically and (b) `axis=0` on per-replica *scalars* (loss, metrics); the collective
    strategy accepts neither. This instance-level wrapper reduces leaf by leaf and drops the axis
    for scalars, which is what Keras means in both cases (the mean over replicas).
    """
    original = strategy.reduce

    def rank(value) -> Optional[int]:
        parts = getattr(value, "values", None)
        tensor = parts[0] if parts else value
        shape = getattr(tensor, "shape", None)
        return None if shape is None else tf.TensorShape(shape).rank

    def reduce(reduce_op, value, axis=None):
        if tf.nest.is_nested(value):
            return tf.nest.map_structure(lambda leaf: reduce(reduce_op, leaf, axis), value)
        if axis is not None and rank(value) == 0:
            axis = None
        return original(reduce_op, value, axis=axis)

    strategy.reduce = reduce
    return strategy


def resolve_jit(mode: str) -> bool:
    """XLA for `model.compile(jit_compile=...)`: "auto" compiles on GPUs only."""
    if mode == "on":
        return True
    if mode == "off":
        return False
    return bool(tf.config.list_physical_devices("GPU"))


def enable_determinism(seed: int, deterministic: bool) -> None:
    """Seeds Python, NumPy and TensorFlow; with `deterministic`, forces deterministic TF kernels."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def process_settings() -> Any:
    """Restores the global dtype policy and op determinism that `setup_runtime` changes.

    Training is a library call too (tests, notebooks): it must not leave mixed precision or
    deterministic kernels switched on for whatever runs next in the process.
    """
    policy = keras.mixed_precision.global_policy().name
    deterministic = tf_config.is_op_determinism_enabled()
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)
        if not deterministic and tf_config.is_op_determinism_enabled():
            tf_config.disable_op_determinism()


def setup_runtime(config) -> Runtime:
    """Applies a config's runtime fields; call before building any model or dataset
    (inside `process_settings()` to undo the global changes afterwards)."""
    enable_determinism(config.seed, config.deterministic)
    policy = precision_policy(config.mixed_precision)
    keras.mixed_precision.set_global_policy(policy)
    strategy = make_strategy(config.strategy)
    is_chief, index = worker_role() if config.strategy == "multiworker" else (True, 0)
    return Runtime(
        strategy=strategy,
        name=config.strategy,
        replicas=strategy.num_replicas_in_sync,
        is_chief=is_chief,
        worker_index=index,
        precision_policy=policy,
        jit_compile=resolve_jit(config.jit_compile),
    )
