"""Stage 1: SE-ResNet50 (GAP, squeeze-and-excitation in every residual block) at 512x512.

Paper:   Table 4, row SE, ResNet50: accuracy 81.59 %, F1 0.80; training curve Figure 10(c)
Command: cxr-cascade train table4_resnet50_se --data /path/to/chest_xray
"""

from experiments.base import SE_REDUCTION, STAGE1, derive

CONFIG = derive(
    STAGE1,
    backbone="resnet50",
    head="gap",
    se_reduction=SE_REDUCTION,
    augment={"clahe_fraction": 0.0},
    paper="Table 4, row SE, ResNet50: accuracy 81.59 %, F1 0.80; training curve Figure 10(c)",
)
