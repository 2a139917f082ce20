"""Stage 2: MoEx-ResNet50 (GAP, no SE), COVID-19 vs other viral pneumonia.

Paper:   Table 5, row MoEx, ResNet50: accuracy 94.28 %, F1 0.94; training curve Figure 16(a)
Command: cxr-cascade train table5_moex_resnet50 --data /path/to/covid-chestxray-dataset --unet runs/unet_lungs/best.weights.h5
"""

from experiments.base import STAGE2, derive

CONFIG = derive(
    STAGE2,
    backbone="resnet50",
    se_reduction=None,
    paper="Table 5, row MoEx, ResNet50: accuracy 94.28 %, F1 0.94; training curve Figure 16(a)",
)
