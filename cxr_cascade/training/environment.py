"""What a run's result depends on besides its config: versions, devices and host, recorded in
the run folder's environment.json once per run and again on resume."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import sys
from datetime import datetime, timezone
from typing import Any

import keras
import numpy

__all__ = ["capture_environment"]

THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")


def capture_environment() -> dict[str, Any]:
    """Versions and devices a result depends on (recorded once per run, again on resume)."""
    info: dict[str, Any] = {
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "numpy": numpy.__version__,
        "cpu_count": os.cpu_count(),
        # thread limits a run was given (make train-release sets one TensorFlow thread per chain)
        "threads": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
    }
    if keras.backend.backend() != "tensorflow":
        info.update(_portable_devices(keras.backend.backend()))
        _optional_versions(info, (("scikit_learn", "sklearn"), ("pillow", "PIL")))
        return info
    import tensorflow as tf  # lazy: JAX / PyTorch runs never load TensorFlow

    info.update({
        "tensorflow": tf.__version__,
        "devices": [
            {"name": d.name, "type": d.device_type} for d in tf.config.list_logical_devices()
        ],
        "gpus": [],
        "tf_config": os.environ.get("TF_CONFIG"),
    })
    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(Exception):
            details = tf.config.experimental.get_device_details(gpu)
            info["gpus"].append({"name": gpu.name, **{k: str(v) for k, v in details.items()}})
    build = tf.sysconfig.get_build_info()
    info["cuda"] = build.get("cuda_version")
    info["cudnn"] = build.get("cudnn_version")
    _optional_versions(info, (("opencv", "cv2"), ("scikit_learn", "sklearn")))
    return info


def _optional_versions(info: dict[str, Any], modules) -> None:
    for key, module in modules:
        try:
            info[key] = __import__(module).__version__
        except ImportError:
            pass


def _portable_devices(backend: str) -> dict[str, Any]:
    """Versions and devices of a JAX or PyTorch backend (no TensorFlow imported)."""
    if backend == "jax":
        # lazy: only the active backend's library loads (the others may be absent)
        import jax

        return {
            "jax": jax.__version__,
            "devices": [{"name": str(d), "type": d.platform.upper()} for d in jax.devices()],
            "gpus": [{"name": d.device_kind} for d in jax.devices() if d.platform == "gpu"],
        }
    if backend == "torch":
        # lazy: only the active backend's library loads (the others may be absent)
        import torch

        gpus = [{"name": torch.cuda.get_device_name(i)} for i in range(torch.cuda.device_count())]
        return {"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": gpus}
    return {}
