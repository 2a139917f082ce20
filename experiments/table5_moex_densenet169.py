"""Stage 2: MoEx-DenseNet169 (GAP, no SE), COVID-19 vs other viral pneumonia.

Paper:   Table 5, row MoEx, DenseNet169: accuracy 95.71 %, F1 0.96; training curve Figure 16(b)
Command: cxr-cascade train table5_moex_densenet169 --data /path/to/covid-chestxray-dataset --unet runs/unet_lungs/best.weights.h5
"""

from experiments.base import STAGE2, derive

CONFIG = derive(
    STAGE2,
    backbone="densenet169",
    se_reduction=None,
    paper="Table 5, row MoEx, DenseNet169: accuracy 95.71 %, F1 0.96; training curve Figure 16(b)",
)
