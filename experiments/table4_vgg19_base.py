"""Stage 1 baseline: VGG19 at 224x224 with its fully-connected head, no augmentation.

Paper:   Table 4, row base, VGG19: accuracy 69.69 %, F1 0.70; training curve Figure 10(a)
Command: cxr-cascade train table4_vgg19_base --data /path/to/chest_xray
"""

from experiments.base import STAGE1, derive

CONFIG = derive(
    STAGE1,
    backbone="vgg19",
    head="flatten",
    preprocess={"image_size": 224},
    augment={"clahe_fraction": 0.0},
    paper="Table 4, row base, VGG19: accuracy 69.69 %, F1 0.70; training curve Figure 10(a)",
)
