"""Stage 1: SEME-ResNet50 (GAP + SE + MoEx after the first convolution) at 512x512, CLAHE on 40 % of training images.

Paper:   Table 4, row SEME, ResNet50: accuracy 85.62 %, F1 0.86; training curve Figure 10(c) (the stage-1 model of the cascade)
Command: cxr-cascade train table4_resnet50_seme --data /path/to/chest_xray
"""

from experiments.base import MOEX, SE_REDUCTION, STAGE1, derive

CONFIG = derive(
    STAGE1,
    backbone="resnet50",
    head="gap",
    se_reduction=SE_REDUCTION,
    moex=MOEX,
    paper="Table 4, row SEME, ResNet50: accuracy 85.62 %, F1 0.86; training curve Figure 10(c) (the stage-1 model of the cascade)",
)
