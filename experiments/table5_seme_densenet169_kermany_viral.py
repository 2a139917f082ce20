"""Stage 2: SEME-DenseNet169 with the negative class = ieee8023 non-COVID viral plus Kermany viral images: closest to the paper's counts, but the classes then differ by age (pediatric vs adult) and source, which a network can learn instead of the disease.

Paper:   Table 5, row SE-MoEx, DenseNet169: accuracy 97.14 %, F1 0.97; training curve Figure 16(b)
Command: cxr-cascade train table5_seme_densenet169_kermany_viral --data /path/to/covid-chestxray-dataset --data /path/to/chest_xray --unet runs/unet_lungs/best.weights.h5
"""

from experiments.base import SE_REDUCTION, STAGE2, derive

CONFIG = derive(
    STAGE2,
    backbone="densenet169",
    se_reduction=SE_REDUCTION,
    stage2_negative="ieee8023_plus_kermany_viral",
    paper="Table 5, row SE-MoEx, DenseNet169: accuracy 97.14 %, F1 0.97; training curve Figure 16(b)",
)
