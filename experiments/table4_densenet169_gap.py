"""Stage 1: DenseNet169 with global average pooling at 512x512.

Paper:   Table 4, row GAP, DenseNet169: accuracy 80.94 %, F1 0.81; training curve Figure 10(d)
Command: cxr-cascade train table4_densenet169_gap --data /path/to/chest_xray
"""

from experiments.base import STAGE1, derive

CONFIG = derive(
    STAGE1,
    backbone="densenet169",
    head="gap",
    augment={"clahe_fraction": 0.0},
    paper="Table 4, row GAP, DenseNet169: accuracy 80.94 %, F1 0.81; training curve Figure 10(d)",
)
