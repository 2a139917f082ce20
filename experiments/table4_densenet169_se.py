"""Stage 1: SE-DenseNet169 (GAP, squeeze-and-excitation after every dense block) at 512x512.

Paper:   Table 4, row SE, DenseNet169: accuracy 81.87 %, F1 0.82; training curve Figure 10(d)
Command: cxr-cascade train table4_densenet169_se --data /path/to/chest_xray
"""

from experiments.base import SE_REDUCTION, STAGE1, derive

CONFIG = derive(
    STAGE1,
    backbone="densenet169",
    head="gap",
    se_reduction=SE_REDUCTION,
    augment={"clahe_fraction": 0.0},
    paper="Table 4, row SE, DenseNet169: accuracy 81.87 %, F1 0.82; training curve Figure 10(d)",
)
