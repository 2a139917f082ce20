"""Demo stage 1 (phantoms): SEME-ResNet50, the cascade's stage-1 design, at 64x64 for a 2-core CPU.

Paper:   Table 4, row SEME, ResNet50 (85.62 %), same network at a small input and a short, faster
         schedule (Adam with cosine annealing instead of SGD 1e-4 for 80 epochs); training curve as
         Figure 10(c). Phantom accuracy shows the machinery works, never that it diagnoses.
Command: cxr-cascade train demo_stage1 --data build/demo/phantoms/chest_xray

Measured (2026-11-26, `make demo`: phantoms --n 900 --size 256 --seed 0, 2 CPU cores): test
accuracy 95.8 % (n=168), macro F1 0.956, best epoch 14, 5.3 min with evaluation (~18 s/epoch).
With 600 phantoms and 20 epochs: 91.2 % (train 1.00, val 0.86: data-limited); with 240 ~50 %.
"""

from experiments.base import MOEX, SE_REDUCTION, STAGE1, derive

CONFIG = derive(
    STAGE1,
    backbone="resnet50",
    head="gap",
    se_reduction=SE_REDUCTION,
    moex=MOEX,
    preprocess={"image_size": 64},
    batch_size=16,
    epochs=14,
    optimizer="adam",
    learning_rate=1e-3,
    lr_min=1e-5,
    lr_schedule="cosine",
    paper="Table 4, row SEME, ResNet50 (demo scale); training curve as Figure 10(c)",
)
