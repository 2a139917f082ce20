"""Stage 1: ResNet50 with global average pooling at 512x512.

Paper:   Table 4, row GAP, ResNet50: accuracy 74.06 %, F1 0.74; training curve Figure 10(c)
Command: cxr-cascade train table4_resnet50_gap --data /path/to/chest_xray
"""

from experiments.base import STAGE1, derive

CONFIG = derive(
    STAGE1,
    backbone="resnet50",
    head="gap",
    augment={"clahe_fraction": 0.0},
    paper="Table 4, row GAP, ResNet50: accuracy 74.06 %, F1 0.74; training curve Figure 10(c)",
)
