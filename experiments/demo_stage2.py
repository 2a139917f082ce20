"""Demo stage 2 (phantoms): SEME-DenseNet169, the cascade's stage-2 design, at 64x64 for a 2-core CPU.

Paper:   Table 5, row SE-MoEx, DenseNet169 (97.14 %), same network and data recipe (rotation +-30
         degrees, CLAHE copies, U-Net-segmented copies of both) at a small input and a short
         schedule (Adam with cosine annealing instead of SGD 0.1 -> 1e-8); training curve as
         Figure 16(b). Phantom accuracy shows the machinery works, never that it diagnoses.
Command: cxr-cascade train demo_stage2 --data build/demo/phantoms/covid-chestxray-dataset --unet build/demo/runs/unet
"""

from experiments.base import MOEX, SE_REDUCTION, STAGE2, derive

CONFIG = derive(
    STAGE2,
    backbone="densenet169",
    se_reduction=SE_REDUCTION,
    moex=MOEX,
    image_size=64,
    batch_size=16,
    epochs=8,
    optimizer="adam",
    learning_rate=1e-3,
    lr_min=1e-5,
    lr_schedule="cosine",
    balance="sample_weight",
    description="Demo stage 2: SEME-DenseNet169 at 64x64 on phantoms (COVID-19 vs other viral).",
    paper="Table 5, row SE-MoEx, DenseNet169 (demo scale); training curve as Figure 16(b)",
)
