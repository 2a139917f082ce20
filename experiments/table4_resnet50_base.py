"""Stage 1 baseline: ResNet50 at 224x224 with a flatten + fully-connected head, no augmentation.

Paper:   Table 4, row base, ResNet50: accuracy 72.81 %, F1 0.73; training curve Figure 10(a)
Command: cxr-cascade train table4_resnet50_base --data /path/to/chest_xray
"""

from experiments.base import STAGE1, derive

CONFIG = derive(
    STAGE1,
    backbone="resnet50",
    head="flatten",
    preprocess={"image_size": 224},
    augment={"clahe_fraction": 0.0},
    paper="Table 4, row base, ResNet50: accuracy 72.81 %, F1 0.73; training curve Figure 10(a)",
)
