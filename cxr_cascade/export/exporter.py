"""`export_models`: stage 1, stage 2, the lung U-Net and the cascade into one TF Serving folder.

Layout written (TF Serving's)::

    MODELS_DIR/
      models.config          model_config_list for every model in the folder
      stage1/<version>/      SavedModel: saved_model.pb, variables/
      stage2/<version>/
      lung_unet/<version>/
      cascade/<version>/     stage 1 + stage 2 (+ U-Net masking) in one graph

All models of one export share one version number (default: one more than any existing). Every
SavedModel is first written to a hidden temporary folder; only when all are complete are they
renamed into place, then ``models.config`` is rewritten (also write-then-rename).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

from cxr_cascade import __version__
from cxr_cascade.artifacts import Stage
from cxr_cascade.export import archive, models_config, serving

__all__ = ["MODEL_NAMES", "SERVING_NAMES", "export_models"]

PathLike = Union[str, os.PathLike]

MODEL_NAMES = ("stage1", "stage2", "lung_unet", "cascade")
# A trained model's task -> its name in TF Serving (and `export_models`' keyword).
SERVING_NAMES = {"stage1": "stage1", "stage2": "stage2", "unet": "lung_unet"}


def _prep(stage: Stage, unet: Optional[Stage]) -> serving.StagePreprocessing:
    if stage.segment and unet is None:
        raise ValueError(
            f"{stage.source or stage.task}: its evaluation lung-masks every image, so export needs "
            "the lung U-Net run too"
        )
    return serving.StagePreprocessing.from_config(
        stage.preprocess, unet=unet.model if (stage.segment and unet is not None) else None
    )


def _describe(stage: Stage) -> dict:
    pre = stage.preprocess
    return {
        "preprocess": pre.as_kwargs() if hasattr(pre, "as_kwargs") else pre,
        "lung_masked": bool(stage.segment),
        "source": stage.source,
        "weights": getattr(stage, "weights", ""),
    }


def _check_task(stage: Optional[Stage], task: str, what: str) -> None:
    if stage is not None and stage.task != task:
        raise ValueError(
            f"`{what}` must be a {task} run. Received: {stage.source or what} with task={stage.task!r}"
        )


def export_models(
    models_dir: PathLike,
    *,
    stage1: Optional[Stage] = None,
    stage2: Optional[Stage] = None,
    lung_unet: Optional[Stage] = None,
    version: Optional[int] = None,
    force: bool = False,
    refined_class: str = "viral",
    base_path: str = "/models",
    cascade: bool = True,
    only: Optional[Sequence[str]] = None,
    rule: str = "gate",
    chance_level: Optional[dict] = None,
) -> dict[str, Path]:
    """Exports the given models (and the cascade when both stages are given) for TF Serving.

    Args:
        models_dir: the TF Serving base folder (created if absent).
        stage1, stage2, lung_unet: trained models with their evaluation settings
            (`cxr_cascade.artifacts.load`).
        version: version number for every model written; default one more than the highest
            existing version of any of them.
        force: replace existing versions instead of refusing.
        refined_class: the stage-1 class that stage 2 subdivides.
        base_path: where the server sees `models_dir` (``/models`` in the docker image).
        cascade: also write the cascade when both stages are given.
        only: write just these of `MODEL_NAMES` (e.g. ``("cascade",)``); default all possible.
        rule: the cascade's decision, "gate" (the paper's, default), "soft" (argmax of p1 * p2) or
            "pneumonia" (stage 2 decides every film stage 1 calls bacterial or viral); recorded as
            ``decision_rule`` in its info file.
        chance_level: {"stage1" | "stage2": why it is no better than chance} (a release's
            ``chance_level`` marks), recorded in the info files so that `predict --models`
            warns as `predict` on the release does.

    Returns:
        {model name: version folder}.

    Raises:
        FileExistsError: a version folder exists and `force` is False (nothing is written).
        ValueError: nothing to export, wrong tasks, stage 2 needs the U-Net, bad class names.
    """
    marks = {role: reason for role, reason in (chance_level or {}).items() if reason}

    def _describe_marked(stage: Stage, role: str) -> dict:
        return {**_describe(stage), **({"chance_level": marks[role]} if role in marks else {})}

    _check_task(stage1, "stage1", "stage1")
    _check_task(stage2, "stage2", "stage2")
    _check_task(lung_unet, "unet", "lung_unet")
    jobs: dict[str, tuple] = {}
    if stage1 is not None:
        jobs["stage1"] = (
            serving.classifier_endpoints(stage1.model, stage1.class_names, _prep(stage1, lung_unet)),
            {"kind": "classifier", "class_names": list(stage1.class_names), **_describe_marked(stage1, "stage1")},
        )
    if stage2 is not None:
        jobs["stage2"] = (
            serving.classifier_endpoints(stage2.model, stage2.class_names, _prep(stage2, lung_unet)),
            {"kind": "classifier", "class_names": list(stage2.class_names), **_describe_marked(stage2, "stage2")},
        )
    if lung_unet is not None:
        jobs["lung_unet"] = (
            serving.unet_endpoints(lung_unet.model, _prep(lung_unet, None)),
            {"kind": "segmentation", **_describe(lung_unet)},
        )
    if cascade and stage1 is not None and stage2 is not None:
        jobs["cascade"] = (
            serving.cascade_endpoints(
                stage1.model,
                stage1.class_names,
                _prep(stage1, lung_unet),
                stage2.model,
                stage2.class_names,
                _prep(stage2, lung_unet),
                refined_class=refined_class,
                rule=rule,
            ),
            {
                "kind": "cascade",
                "class_names": serving.cascade_class_names(
                    stage1.class_names, stage2.class_names, refined_class
                ),
                "refined_class": refined_class,
                "decision_rule": rule,
                "stage1": {"class_names": list(stage1.class_names), **_describe_marked(stage1, "stage1")},
                "stage2": {"class_names": list(stage2.class_names), **_describe_marked(stage2, "stage2")},
            },
        )
    if only is not None:
        unknown = set(only) - set(MODEL_NAMES)
        if unknown:
            raise ValueError(
                f"`only` must name models of {MODEL_NAMES}. Received: only={list(only)}"
            )
        jobs = {name: job for name, job in jobs.items() if name in only}
    if not jobs:
        raise ValueError("Nothing to export: give at least one of stage1, stage2, lung_unet.")
    models_dir = Path(models_dir)
    if version is None:
        version = archive.next_version(models_dir, jobs)
    for name in jobs:  # refuse before writing anything
        archive._check_destination(models_dir, name, version, force)
    staged: list[archive.StagedModel] = []
    try:
        for name, (endpoints, info) in jobs.items():
            info = {"name": name, "version": version, "cxr_cascade": __version__, **info}
            staged.append(
                archive.stage_savedmodel(
                    models_dir, name, version, endpoints, endpoints.models, force, info
                )
            )
    except BaseException:
        for s in staged:
            s.discard()
        raise
    written = {name: s.commit() for name, s in zip(jobs, staged)}
    models_config.write_models_config(models_dir, base_path)
    return written
