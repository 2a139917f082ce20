"""What the GPU step trains, in which remote run, with which settings (shared by pack, remote, rebuild).

Two remote runs (a run: at most 9 minutes, 64 MiB up including the code tree, at most 8 files
of 16 MiB and 64 MiB together back):

    run a: U-Net (lung-masks, 256 px) + stage 1 (Kermany, 224 px). 4,724 of the lung-mask images
           are byte-identical to Kermany train images, so the packed data holds them once.
           Back: the U-Net's model.keras (float32, ~8 MB) + stage 1's weights in float16
           (~53 MB; its float32 model.keras, ~105 MB, cannot come back).
    run b: stage 2 (ieee8023, 224 px), with run a's U-Net (rebuilt here) carried up for the
           segmented copies. Back: stage 2's model.keras (float32, ~55 MB).

Every training runs `cxr-cascade train EXPERIMENT --backend jax` with the release's experiment
file, plus `DEVICE_OVERRIDES` (bfloat16; the classifiers' random augmentation in the model) and
`epochs` sized on the remote from a measured step (`remote.size_epochs`), capped by the paper
row's epoch count (`Stage.target`): the release files' 3-4 epochs were the CPU's budget.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

PLAN_FILE = "plan.json"
ORIGINS_FILE = "origins.json"
DEVICE_FILE = "device.json"
UNET_RUN_DIR = "unet-run"
# A model.keras over the return limit travels as the release's weight format under these names.
HALF_WEIGHTS_FILE = "weights.f16.npz"
HALF_ARCHITECTURE_FILE = "architecture.json"


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training: release experiment, data folder (under the data root), the paper row whose
    epoch count caps it, and whether it needs the U-Net (stage 2's segmented copies)."""

    name: str
    experiment: str
    data: str
    target: str
    needs_unet: bool = False


STAGES = {
    "unet": Stage("unet", "release_unet_256", "lung-masks", "unet_lungs"),
    "stage1": Stage("stage1", "release_stage1_224", "chest_xray", "table4_resnet50_seme"),
    "stage2": Stage("stage2", "release_stage2_224", "covid-chestxray-dataset",
                    "table5_seme_densenet169", needs_unet=True),
}
RUNS = {"a": ("unet", "stage1"), "b": ("stage2",)}

# bfloat16 everywhere; the classifiers' random CLAHE / rotation as layers on the GPU (the U-Net
# refuses augment.placement="model"; it has no random augmentation to move).
DEVICE_OVERRIDES = ("mixed_precision=bfloat16",)
CLASSIFIER_OVERRIDES = ("augment.placement=model",)


def stage_overrides(stage: str, user: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The `--set` list of `stage` on the device: the device's settings, then the user's."""
    extra = CLASSIFIER_OVERRIDES if stage != "unet" else ()
    return [*DEVICE_OVERRIDES, *extra, *user]


def stages_of(run: str, experiments: Mapping[str, str] | None = None) -> list[Stage]:
    """The stages of remote run `run`, each with its experiment from `experiments` (stage name ->
    experiment name, e.g. ``{"stage1": "release_stage1_v2_224"}``) or the release's default.
    The experiment must be of the stage's task (checked where it is loaded, `pack`)."""
    names = check_run(run)
    experiments = dict(experiments or {})
    unknown = sorted(set(experiments) - set(names))
    if unknown:
        raise ValueError(f"`experiments` of run {run!r} may name {list(names)}. "
                         f"Received: experiments={experiments!r}")
    return [dataclasses.replace(STAGES[n], experiment=experiments.get(n, STAGES[n].experiment))
            for n in names]


def check_run(run: str) -> tuple[str, ...]:
    if run not in RUNS:
        raise ValueError(f"`run` must be one of {sorted(RUNS)}. Received: run={run!r}")
    return RUNS[run]
