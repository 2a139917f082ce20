"""Release U-Net: lung masks at 256x256, quarter width, Adam with cosine annealing, float32, 3 epochs.

Paper:   Section 4.2 (no table): U-Net loss and validation mean IoU, Figure 15(a) (derived from
         `unet_lungs`)
Command: cxr-cascade train release_unet_256 --data ../shared/data/lung-masks --run-dir runs/unet
         (= make train-unet DATA=../shared/data/lung-masks UNET_EXP=release_unet_256)
Deviations from `unet_lungs` and why (sizes and timings: experiments/results/release-v1/README.md):
- unet_filters (16, 32, 64, 128, 256), a quarter of Ronneberger's widths: the full-width U-Net
  alone would take 62 MB of the release's 100 MB in float16, and a quarter width trains about
  twice as fast as half width on a CPU.
- epochs 3 instead of 40, so that the U-Net and then stage 2 fit one sitting on one core while
  stage 1 trains on the other; the cosine schedule spans the set epochs (`--set epochs=N`).
- float32 (mixed_precision off): bfloat16 is slower than float32 on a CPU without AMX.
Kept: Adam, cosine annealing 1e-3 -> 1e-6, batch 8, 256 px, val/test 0.1, monitor val_mean_iou.
The goal (test mean IoU >= 0.93) is measured by `cxr-cascade evaluate runs/unet`, not assumed.
"""

from experiments.base import derive
from experiments.unet_lungs import CONFIG as PAPER_ROW

CONFIG = derive(
    PAPER_ROW,
    preprocess={"image_size": 256},
    unet_filters=(16, 32, 64, 128, 256),
    epochs=3,
    mixed_precision="off",
    paper="Section 4.2 (no table), U-Net mean IoU, Figure 15(a); release schedule",
)
