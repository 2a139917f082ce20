"""Release stage 1: SEME-ResNet50 at 224x224 on Kermany's official train split, 4 epochs, Adam + cosine, float32.

Paper:   Table 4, row SEME, ResNet50; training curve Figure 10(c) (derived from `table4_resnet50_seme`)
Command: cxr-cascade train release_stage1_224 --data ../shared/data/chest_xray --run-dir runs/stage1
         (= make train-stage1)
Data:    Kermany's official test split stays test, untouched by training and model selection
         (keep_official_test); validation comes from the official train split, grouped by patient.
Deviations from the paper row: 224 px instead of 512 (the shared copy's size), 4 epochs of Adam
1e-3 with cosine annealing to 1e-5 instead of 80 of SGD 1e-4 constant (a schedule that fits the
release's budget), batch 16 instead of 8, float32 (bfloat16 is slower on the CPU it trains on).
Kept: SEME (SE r=16, MoEx after the first convolution), GAP head, CLAHE on a random 40 % of
training images, no class balancing. Split counts, timings and the measurements behind each
choice: experiments/results/release-v1/README.md.
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
    paper="Table 4, row SEME, ResNet50 (85.62 % at 512 px; 224 px rows 69.7-77.5 %); Figure 10(c)",
)
