"""Demo stage 1 (phantoms): SEME-ResNet50, the cascade's stage-1 design, at 64x64 for a 2-core CPU.

Paper:   Table 4, row SEME, ResNet50 (85.62 %), same network at a small input and a short, faster
         schedule (Adam with cosine annealing instead of SGD 1e-4 for 80 epochs); training curve as
         Figure 10(c). Phantom accuracy shows the machinery works, never that it diagnoses
         (measured: experiments/results/demo/).
Command: cxr-cascade train demo_stage1 --data build/demo/phantoms/chest_xray
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
