"""Release U-Net: lung masks at 256x256, half width, Adam with cosine annealing, bfloat16, 6 epochs.

Paper:   Section 4.2 (no table): U-Net loss and validation mean IoU, Figure 15(a) (derived from
         `unet_lungs`)
Command: cxr-cascade train release_unet_256 --data ../shared/data/lung-masks --run-dir runs/unet
         (= make train-unet DATA=../shared/data/lung-masks UNET_EXP=release_unet_256)
Deviations from `unet_lungs` and why:
- unet_filters (32, 64, 128, 256, 512), half of Ronneberger's widths: the full-width U-Net has
  31.0M parameters (62.1 MB in the release's float16 format), which with stage 1 (26.1M, 52.6 MB)
  and stage 2 (13.2M, 27.1 MB) breaks the release's 100 MB budget (141.8 MB); half width is 7.8M
  (15.5 MB; total 95.2 MB) and a quarter of the FLOPs. Lung masks are a coarse target.
- epochs 6 instead of 40 (time): the budget is ~2.5 h on the 2-core CPU. Estimate to be checked
  against the first epoch's `seconds` in history.csv: ~4,200 training pairs per epoch at the
  train-step speed measured for this network (see experiments/results/release-v1 when trained);
  if an epoch takes longer than 25 min, rerun with `TRAIN_ARGS="--set epochs=5"`.
- mixed_precision bfloat16 (1.15-1.3x faster than float32 on this CPU, issue 11); the Dice/IoU
  metrics and the output layer stay float32.
- Kept: Adam, cosine annealing 1e-3 -> 1e-6, batch 8, 256 px, val/test 0.1, monitor val_mean_iou.
Traded: fewer epochs and half the width for a release that fits the time and size budgets; the
goal (test mean IoU >= 0.93) is measured, not assumed.
"""

from experiments.base import UNET, derive

CONFIG = derive(
    UNET,
    preprocess={"image_size": 256},
    unet_filters=(32, 64, 128, 256, 512),
    epochs=6,
    mixed_precision="bfloat16",
    description="Release U-Net: lung masks at 256x256, half width, 6 epochs, bfloat16 (issue 11).",
    paper="Section 4.2 (no table), U-Net mean IoU, Figure 15(a); release schedule",
)
