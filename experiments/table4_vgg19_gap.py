"""Stage 1: VGG19 with global average pooling at 512x512.

Paper:   Table 4, row GAP, VGG19: accuracy 77.81 %, F1 0.78; training curve Figure 10(b)
Command: cxr-cascade train table4_vgg19_gap --data /path/to/chest_xray
"""

from experiments.base import STAGE1, derive

CONFIG = derive(
    STAGE1,
    backbone="vgg19",
    head="gap",
    augment={"clahe_fraction": 0.0},
    paper="Table 4, row GAP, VGG19: accuracy 77.81 %, F1 0.78; training curve Figure 10(b)",
)
