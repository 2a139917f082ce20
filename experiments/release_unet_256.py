"""Release U-Net: lung masks at 256x256, quarter width, Adam with cosine annealing, float32, 3 epochs.

Paper:   Section 4.2 (no table): U-Net loss and validation mean IoU, Figure 15(a) (derived from
         `unet_lungs`)
Command: cxr-cascade train release_unet_256 --data ../shared/data/lung-masks --run-dir runs/unet
         (= make train-unet DATA=../shared/data/lung-masks UNET_EXP=release_unet_256)
Deviations from `unet_lungs` and why:
- unet_filters (16, 32, 64, 128, 256), a quarter of Ronneberger's widths, as `demo_unet`. Size:
  the full-width U-Net has 31.0M parameters (62.1 MB in the release's float16 format), which with
  stage 1 (26.1M, 52.6 MB) and stage 2 (13.2M, 27.1 MB) breaks the release's 100 MB budget
  (141.8 MB); half width is 7.8M (15.5 MB), quarter width 1.9M (3.9 MB). Time: train steps
  measured on this 2-core machine while shared (load average ~3.5; `train_on_batch` of the
  trainer's compiled model, batch 8, 256 px, bfloat16, 4 timed steps, 2026-11-30): half width
  2.0 img/s, quarter width 4.1 img/s, i.e. ~35 vs ~17 min per epoch of ~4,200 training pairs
  on the busy machine (less on an idle one). Half width would allow only 4 epochs in the budget.
- epochs 3 instead of 40: `make train-release` trains the U-Net and then stage 2 on one core
  (one TensorFlow thread) while stage 1 trains on the other; measured on the release run
  (2026-11-30, both chains running): 1.15-1.25 s per step of 8 pairs (~6.5 img/s), 11-11.6 min
  per epoch of 4,205 training pairs; the 3 epochs took 34 min with test evaluation, leaving
  stage 2 the rest of the ~1 h 40 min sitting.
  The cosine schedule spans the set epochs; with more time, `--set epochs=N`.
- mixed_precision off (float32): bfloat16 measured 1.38-1.48x slower than float32 for the
  ResNet50 family on this CPU (see `release_stage1_224`); the U-Net speeds above were taken in
  bfloat16 and float32 was not timed for them.
- Kept: Adam, cosine annealing 1e-3 -> 1e-6, batch 8, 256 px, val/test 0.1, monitor val_mean_iou.
Traded: width (capacity) and epochs for the time and size budgets; the goal (test mean IoU
>= 0.93) is measured by `cxr-cascade evaluate runs/unet`, not assumed.
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
