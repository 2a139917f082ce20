"""Stage 1: SEME-DenseNet169 (GAP + SE + MoEx after the first convolution) at 512x512, CLAHE on 40 % of training images.

Paper:   Table 4, row SEME, DenseNet169: accuracy 80.31 %, F1 0.81; training curve Figure 10(d)
Command: cxr-cascade train table4_densenet169_seme --data /path/to/chest_xray
"""

from experiments.base import MOEX, SE_REDUCTION, STAGE1, derive

CONFIG = derive(
    STAGE1,
    backbone="densenet169",
    head="gap",
    se_reduction=SE_REDUCTION,
    moex=MOEX,
    paper="Table 4, row SEME, DenseNet169: accuracy 80.31 %, F1 0.81; training curve Figure 10(d)",
)
