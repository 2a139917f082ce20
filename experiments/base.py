"""Shared settings of the paper's experiments (Lv et al. 2020, section 4); each experiment file
derives its `CONFIG` from one of these bases with `derive` and states only what differs.

Every value here is data: `cxr_cascade.config.load_experiment` validates it on load and
`cxr-cascade train NAME --set key=value` overrides any field (`--set preprocess.clip_limit=3`
for a field of a section). `preprocess` is what every image goes through (training, evaluation,
serving: `pipelines.config.PreprocessConfig`), `augment` what training adds
(`pipelines.config.AugmentConfig`); unset fields keep those classes' defaults (stretch resize,
CLAHE clip limit 2.0 on an 8x8 tile grid as OpenCV's, no shift, zoom or lung masking).
"""

from __future__ import annotations

from typing import Any

STAGE1_CLASSES = ("normal", "bacterial", "viral")
STAGE2_CLASSES = ("covid19", "viral")

# SE block reduction ratio r (Hu et al. 2018's default; the paper does not state r).
SE_REDUCTION = 16
# MoEx after the first convolution, PONO moments, exchange probability 1 and label weight 0.9:
# the MoEx reference's ImageNet ResNet-50 setting (the paper gives no values).
MOEX = {"prob": 1.0, "lam": 0.9, "epsilon": 1e-5, "position": "stem"}

# Section 4.1: dataset1 = Kermany (normal / bacterial / viral). SGD, lr 1e-4, momentum 0.9,
# 80 epochs; CLAHE on a random 40 % of the training images; GAP rows at 512x512.
STAGE1: dict[str, Any] = {
    "task": "stage1",
    "classes": STAGE1_CLASSES,
    "backbone": "resnet50",
    "head": "gap",
    "preprocess": {"image_size": 512},
    "augment": {"clahe_fraction": 0.4, "clahe_mode": "replace", "rotation_degrees": 0.0},
    "batch_size": 8,
    "epochs": 80,
    "optimizer": "sgd",
    "learning_rate": 1e-4,
    "momentum": 0.9,
    "lr_schedule": "constant",
    "val_fraction": 0.1,
    "monitor": "val_accuracy",
}

# Section 4.2: dataset2 = ieee8023 COVID-19 vs other viral pneumonia. Rotation +-30 degrees;
# CLAHE on all images, kept alongside the originals; U-Net lung crops of both added to the
# training set; MoEx; SGD with cosine annealing between 0.1 and 1e-8.
STAGE2: dict[str, Any] = {
    "task": "stage2",
    "classes": STAGE2_CLASSES,
    "stage2_negative": "ieee8023_viral",
    "backbone": "densenet169",
    "head": "gap",
    "preprocess": {"image_size": 512},
    "augment": {
        "clahe_fraction": 1.0,
        "clahe_mode": "add",
        "segmented_copies": True,
        "rotation_degrees": 30.0,
    },
    "batch_size": 8,
    "epochs": 80,
    "optimizer": "sgd",
    "learning_rate": 0.1,
    "lr_min": 1e-8,
    "momentum": 0.9,
    "lr_schedule": "cosine",
    "val_fraction": 0.15,
    "test_fraction": 0.15,
    "moex": MOEX,
    "monitor": "val_accuracy",
}

# Section 4.2: U-Net lung segmentation, Adam with cosine annealing, mean IoU on validation
# (Figure 15a). The paper gives no learning rates for it; 1e-3 -> 1e-6 is Adam's usual range.
UNET: dict[str, Any] = {
    "task": "unet",
    "preprocess": {"image_size": 256},
    "batch_size": 8,
    "epochs": 40,
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "lr_min": 1e-6,
    "lr_schedule": "cosine",
    "unet_filters": (64, 128, 256, 512, 1024),
    "val_fraction": 0.1,
    "test_fraction": 0.1,
    "monitor": "val_mean_iou",
}


def derive(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of `base` with `changes`; unknown keys are caught when the config is loaded.

    A section given as a dict (`preprocess={"image_size": 224}`) changes only the fields it
    names; the base's other fields of that section are kept.
    """
    config = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            value = {**config[key], **value}
        config[key] = value
    return config
