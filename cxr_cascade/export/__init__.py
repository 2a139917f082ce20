"""Export for TensorFlow Serving: SavedModels that take image file bytes.

* `serving`: the endpoint functions (bytes in, all evaluation preprocessing in the graph).
* `archive`: `keras.export.ExportArchive` writer, atomic version folders.
* `models_config`: TF Serving's ``model_config_list`` file.
* `rest`: TF Serving's REST request/response format, in process.
* `exporter.export_models`: the whole export of trained models (`cxr_cascade.artifacts.load`).
* `release`: a release's export (`export_release`, `release_models_dir`, cached).
"""

from cxr_cascade.export.exporter import MODEL_NAMES, SERVING_NAMES, export_models

__all__ = ["MODEL_NAMES", "SERVING_NAMES", "export_models"]
