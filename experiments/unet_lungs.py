"""U-Net lung segmentation used to crop stage-2 training images to the lungs.

Paper:   Section 4.2 (no table): U-Net loss and validation mean IoU, Figure 15(a)
Command: cxr-cascade train unet_lungs --data /path/to/lung-masks
"""

from experiments.base import UNET, derive

CONFIG = derive(
    UNET,
    paper="Section 4.2 (no table): U-Net loss and validation mean IoU, Figure 15(a)",
)
