"""Release stage 1: SEME-ResNet50 at 224x224 on Kermany's official train split, 4 epochs, Adam + cosine, float32.

Paper:   Table 4, row SEME, ResNet50: accuracy 85.62 % at 512 px (its 224 px rows: 69.7-77.5 %);
         training curve Figure 10(c) (derived from `table4_resnet50_seme`)
Command: cxr-cascade train release_stage1_224 --data ../shared/data/chest_xray --run-dir runs/stage1
         (= make train-stage1 DATA=../shared/data/chest_xray STAGE1_EXP=release_stage1_224)
Data:    Kermany's official test split (624 films) stays test, untouched by training and model
         selection (the trainer's keep_official_test); validation comes from the official train
         split, grouped by patient. Checked on the shared copy (select_records + split,
         2026-11-30): train 4,637 (normal 1,192, bacterial 2,249, viral 1,196), validation 579,
         test 624 (234 / 242 / 148).
Deviations from `table4_resnet50_seme` and why:
- image_size 224 instead of 512: the shared Kermany copy is 224 px, and 512 px is ~5x slower.
- epochs 4 instead of 80, Adam 1e-3 with cosine annealing to 1e-5 instead of SGD 1e-4 constant:
  the paper's recipe is ~11 h at 224 px on this 2-core CPU. `make train-release` trains this
  model on one core (one TensorFlow thread) while the U-Net and then stage 2 train on the other,
  so that the whole release fits one ~2 h sitting: measured on the release run (2026-11-30,
  both chains running), 5 s per step of 16 images = 3.2 img/s, 23.5-25.8 min per epoch of 4,637
  images with validation; the 4 epochs took 1 h 37 min. SGD at a constant 1e-4 needed the
  paper's 80 epochs; Adam with a cosine decay converges in a short schedule (`demo_stage1`, same
  network, phantoms). The cosine schedule spans the set epochs; with more time, `--set epochs=N`.
- batch_size 16 instead of 8: fewer, larger steps are a little faster per image on the CPU.
- mixed_precision off (float32): the same bench measured bfloat16 steps 1.38x (SEME-ResNet50)
  to 1.48x (ResNet50) *slower* than float32 on this CPU, against the 1.15-1.3x speed-up the
  brief quoted; re-run the bench on a new machine before changing it.
- Kept: SEME (SE r=16, MoEx after the first convolution), GAP head, CLAHE on a random 40 % of
  training images, no class balancing (the paper's; Kermany's train split is 26 % / 49 % / 26 %).
Traded: the paper's long constant-LR schedule and input size for a run that fits the budget; a
lower ceiling than the 512 px row is expected (goal >= 0.80 accuracy, measured on the 624 films).
"""

from experiments.base import derive
from experiments.table4_resnet50_seme import CONFIG as PAPER_ROW

CONFIG = derive(
    PAPER_ROW,
    preprocess={"image_size": 224},
    batch_size=16,
    epochs=4,
    optimizer="adam",
    learning_rate=1e-3,
    lr_min=1e-5,
    lr_schedule="cosine",
    mixed_precision="off",
    description="Release stage 1: SEME-ResNet50 at 224x224, Kermany official split, 4 epochs (issue 11).",
    paper="Table 4, row SEME, ResNet50 (85.62 % at 512 px; 224 px rows 69.7-77.5 %); Figure 10(c)",
)
