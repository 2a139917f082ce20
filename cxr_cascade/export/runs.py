"""What export needs from a training run: `cxr_cascade.runs.load_stage`, under its export names.

`load_run` and `ExportStage` are `cxr_cascade.runs.load_stage` and `cxr_cascade.runs.Stage`
(one loader for every consumer); `evaluation_preprocess_config` reads an experiment's
`preprocess` section.
"""

from __future__ import annotations

from typing import Any

from cxr_cascade.runs import Stage as ExportStage
from cxr_cascade.runs import load_stage as load_run

__all__ = ["ExportStage", "evaluation_preprocess_config", "load_run"]


def evaluation_preprocess_config(config) -> tuple[Any, bool]:
    """The evaluation pipeline's `PreprocessConfig` and lung-masking flag of an experiment.

    At evaluation `pipelines.datasets.build_dataset(training=False)` reads each image through
    `config.preprocess` only: the CLAHE copies and lung-segmented copies of the paper
    (`config.augment`) are training-time additions, so the exported model sees what the test
    split saw. `config` is an `ExperimentConfig` or its dict (a run's `config.json`, old flat
    keys included).
    """
    from cxr_cascade.config import from_dict

    if isinstance(config, dict):
        config = from_dict(config)
    return config.preprocess, bool(config.preprocess.segment)
