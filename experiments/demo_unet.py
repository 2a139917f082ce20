"""Demo U-Net (phantoms): lung segmentation at 64x64 with a quarter-width U-Net for a 2-core CPU.

Paper:   Section 4.2, U-Net loss and validation mean IoU as Figure 15(a); Adam with cosine
         annealing as the paper, widths (16, 32, 64, 128, 256) instead of (64, ..., 1024).
         Measured: experiments/results/demo/.
Command: cxr-cascade train demo_unet --data build/demo/phantoms/lung-masks
"""

from experiments.base import UNET, derive

CONFIG = derive(
    UNET,
    preprocess={"image_size": 64},
    batch_size=8,
    epochs=6,
    unet_filters=(16, 32, 64, 128, 256),
    paper="Section 4.2 (no table), U-Net mean IoU (demo scale); curves as Figure 15(a)",
)
