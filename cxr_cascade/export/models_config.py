"""TF Serving's ``--model_config_file``: a ``model_config_list`` for every model in MODELS_DIR.

The file is protobuf text format (``tensorflow_serving.config.ModelServerConfig``)::

    model_config_list {
      config {
        name: "cascade"
        base_path: "/models/cascade"
        model_platform: "tensorflow"
      }
    }

``base_path`` is where the model folder is seen *by the server*: with the docker image and
``-v MODELS_DIR:/models`` that is ``/models/<name>``, the default prefix here. TF Serving serves the
highest version of each model (its default "latest" policy).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Union

from pipelines.atomic import atomic_write_text

__all__ = ["discover_models", "parse_models_config", "render_models_config", "write_models_config"]

PathLike = Union[str, os.PathLike]

CONFIG_NAME = "models.config"


def discover_models(models_dir: PathLike) -> list[str]:
    """Names of the sub-folders of `models_dir` that hold at least one SavedModel version."""
    root = Path(models_dir)
    names = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.is_dir() and not folder.name.startswith("."):
            if any(
                v.is_dir() and v.name.isdigit() and (v / "saved_model.pb").is_file()
                for v in folder.iterdir()
            ):
                names.append(folder.name)
    return names


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_models_config(names: Iterable[str], base_path: str = "/models") -> str:
    """The ``model_config_list`` text for `names`, each at ``base_path/<name>``."""
    base_path = base_path.rstrip("/") or "/"
    lines = ["model_config_list {"]
    for name in names:
        lines += [
            "  config {",
            f"    name: {_quote(name)}",
            f"    base_path: {_quote(base_path.rstrip('/') + '/' + name)}",
            '    model_platform: "tensorflow"',
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_models_config(models_dir: PathLike, base_path: str = "/models") -> Path:
    """(Re)writes ``models_dir/models.config`` for every model found there (write, then rename)."""
    root = Path(models_dir)
    text = render_models_config(discover_models(root), base_path)
    target = root / CONFIG_NAME
    atomic_write_text(target, text)
    return target


_ENTRY_RE = re.compile(
    r"config\s*\{\s*name:\s*\"(?P<name>[^\"]*)\"\s*base_path:\s*\"(?P<base>[^\"]*)\"\s*"
    r"model_platform:\s*\"(?P<platform>[^\"]*)\"\s*\}"
)


def parse_models_config(text: str) -> dict[str, str]:
    """{name: base_path} from text written by `render_models_config` (for checks and tests)."""
    if not text.lstrip().startswith("model_config_list"):
        raise ValueError("Not a model_config_list file: it must start with `model_config_list {`.")
    return {m["name"]: m["base"] for m in _ENTRY_RE.finditer(text)}
