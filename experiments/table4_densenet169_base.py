"""Stage 1 baseline: DenseNet169 at 224x224 with a flatten + fully-connected head, no augmentation.

Paper:   Table 4, row base, DenseNet169: accuracy 77.50 %, F1 0.78; training curve Figure 10(a)
Command: cxr-cascade train table4_densenet169_base --data /path/to/chest_xray
"""

from experiments.base import STAGE1, derive

CONFIG = derive(
    STAGE1,
    backbone="densenet169",
    head="flatten",
    preprocess={"image_size": 224},
    augment={"clahe_fraction": 0.0},
    paper="Table 4, row base, DenseNet169: accuracy 77.50 %, F1 0.78; training curve Figure 10(a)",
)
