"""Stage 2: SEME-ResNet50, COVID-19 vs other viral pneumonia.

Paper:   Table 5, row SE-MoEx, ResNet50: accuracy 92.85 %, F1 0.93; training curve Figure 16(a)
Command: cxr-cascade train table5_seme_resnet50 --data /path/to/covid-chestxray-dataset --unet runs/unet_lungs/best.weights.h5
"""

from experiments.base import SE_REDUCTION, STAGE2, derive

CONFIG = derive(
    STAGE2,
    backbone="resnet50",
    se_reduction=SE_REDUCTION,
    paper="Table 5, row SE-MoEx, ResNet50: accuracy 92.85 %, F1 0.93; training curve Figure 16(a)",
)
