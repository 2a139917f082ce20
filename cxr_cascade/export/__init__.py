"""Export for TensorFlow Serving: SavedModels that take image file bytes (issue 7).

* `serving`: the endpoint functions (bytes in, all evaluation preprocessing in the graph).
* `archive`: `keras.export.ExportArchive` writer, atomic version folders.
* `models_config`: TF Serving's ``model_config_list`` file.
* `rest`: TF Serving's REST request/response format, in process.
* `runs`: reading training run directories; `exporter.export_models`: the whole export.
"""

from cxr_cascade.export.exporter import MODEL_NAMES, export_models
from cxr_cascade.export.runs import ExportStage, load_run

__all__ = ["MODEL_NAMES", "ExportStage", "export_models", "load_run"]
