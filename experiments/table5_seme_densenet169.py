"""Stage 2: SEME-DenseNet169, COVID-19 vs ieee8023 non-COVID viral pneumonia (SARS, influenza, varicella, ...).

Paper:   Table 5, row SE-MoEx, DenseNet169: accuracy 97.14 %, F1 0.97; training curve Figure 16(b) (the stage-2 model of the cascade)
Command: cxr-cascade train table5_seme_densenet169 --data /path/to/covid-chestxray-dataset --unet runs/unet_lungs/best.weights.h5
"""

from experiments.base import SE_REDUCTION, STAGE2, derive

CONFIG = derive(
    STAGE2,
    backbone="densenet169",
    se_reduction=SE_REDUCTION,
    paper="Table 5, row SE-MoEx, DenseNet169: accuracy 97.14 %, F1 0.97; training curve Figure 16(b) (the stage-2 model of the cascade)",
)
