"""Demo stage 1 (phantoms): SEME-ResNet50, the cascade's stage-1 design, at 64x64 for a 2-core CPU.

Paper:   Table 4, row SEME, ResNet50 (85.62 %), same network at a small input and a short, faster
         schedule (Adam with cosine annealing instead of SGD 1e-4 for 80 epochs); training curve as
         Figure 10(c). Phantom accuracy shows the machinery works, never that it diagnoses.
Command: cxr-cascade train demo_stage1 --data build/demo/phantoms/chest_xray

Measured (2026-11-26, phantoms --n 600 --size 256 --seed 0, 2 shared CPU cores): test accuracy
91.2 %, macro F1 0.906, 11.3 CPU-minutes (16 epochs: 89.4 %). With --n 240 it overfits (~50 %).
"""

from experiments.base import MOEX, SE_REDUCTION, STAGE1, derive

CONFIG = derive(
    STAGE1,
    backbone="resnet50",
    head="gap",
    se_reduction=SE_REDUCTION,
    moex=MOEX,
    image_size=64,
    batch_size=16,
    epochs=20,
    optimizer="adam",
    learning_rate=1e-3,
    lr_min=1e-5,
    lr_schedule="cosine",
    description="Demo stage 1: SEME-ResNet50 at 64x64 on phantoms (normal / bacterial / viral).",
    paper="Table 4, row SEME, ResNet50 (demo scale); training curve as Figure 10(c)",
)
