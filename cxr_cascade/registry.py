"""Every list of valid names, defined once: what config validation, the model builders and the
command line's ``choices=`` all read.

Plain Python (no Keras, no TensorFlow), at the bottom of the package beside `cxr_cascade.config`,
so the config and the CLI can read the names without building anything. The model side holds
one implementation per name (`cxr_cascade.models.composer.BACKBONE_SPECS`,
`models.heads.HEAD_BUILDERS`, `models.build.TASK_BUILDERS`, `models.cascade.RULE_DECISIONS`);
`unmatched` compares a list of names with its implementations, and a test runs it for each pair,
so a name without an implementation (or one the other way) fails the suite.

Names of the input pipelines (balance, resize, CLAHE modes, ...) are defined in
`pipelines.config`, which cannot import `cxr_cascade`; they are re-exported here so one module
lists every name.

Example:
    >>> from cxr_cascade import registry
    >>> registry.BACKBONES
    ('vgg19', 'resnet50', 'densenet169')
    >>> registry.unmatched("backbone", registry.BACKBONES, {"vgg19": 1, "resnet50": 2})
    ["backbone 'densenet169' is registered but has no implementation"]
"""

from __future__ import annotations

from typing import Iterable

from pipelines.config import (
    AUGMENT_PLACEMENTS,
    BALANCE_MODES,
    CLAHE_MODES,
    FILL_MODES,
    NO_BALANCE,
    RESIZE_MODES,
)

__all__ = [
    "AUGMENT_PLACEMENTS",
    "BACKBONES",
    "BALANCE_MODES",
    "CASCADE_RULES",
    "CASCADE_RULES_HELP",
    "CLAHE_MODES",
    "CLASSIFIER_TASKS",
    "DEDUP_MODES",
    "DEFAULT_CASCADE_RULE",
    "FILL_MODES",
    "HEADS",
    "JIT_COMPILE",
    "KERAS_BACKENDS",
    "LR_SCHEDULES",
    "MIXED_PRECISION",
    "MONITORS",
    "NO_BALANCE",
    "OOD_SETS",
    "OPTIMIZERS",
    "PHANTOM_FORMATS",
    "PHANTOM_SHORTCUTS",
    "RESIZE_MODES",
    "STAGE2_NEGATIVES",
    "STAGE2_NEGATIVE_CLASS",
    "STAGE2_NEGATIVE_LABELS",
    "STRATEGIES",
    "TASKS",
    "unmatched",
]

# What a run trains: the cascade's two classifiers and the lung-segmentation U-Net.
TASKS = ("stage1", "stage2", "unet")
CLASSIFIER_TASKS = ("stage1", "stage2")
BACKBONES = ("vgg19", "resnet50", "densenet169")
# "gap": global average pooling (the paper's GAP rows); "flatten": the original dense heads.
HEADS = ("gap", "flatten")

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "cosine")
MONITORS = ("val_accuracy", "val_balanced_accuracy", "val_loss", "val_mean_iou")
STRATEGIES = ("default", "mirrored", "multiworker")
MIXED_PRECISION = ("off", "float16", "bfloat16", "auto")
JIT_COMPILE = ("auto", "on", "off")
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
# Duplicates kept in one split: none, byte-identical ones, or near ones (perceptual hash).
DEDUP_MODES = ("off", "exact", "near")

# Stage 2's negative class: the record labels that train as stage 2's "viral" class, which the
# cascade reads as "not COVID-19: keep stage 1's call". ieee8023 non-COVID viral films only;
# those plus Kermany's viral films (closest to the paper's counts, but confounded by age and
# source); or every non-COVID pneumonia in ieee8023 (viral, bacterial, fungal, and the films whose
# cause it does not state: "Pneumonia", "ARDS", "Lipoid"; "No Finding" and tuberculosis stay
# out), the negative class of the cascade's pneumonia rule, where stage 2 sees every film stage 1
# calls bacterial or viral. Labels other than "viral" are taken from ieee8023 only (frontal
# views, as its reader keeps), and keep their own label in the run's splits.csv.
STAGE2_NEGATIVE_LABELS: dict[str, tuple[str, ...]] = {
    "ieee8023_viral": ("viral",),
    "ieee8023_plus_kermany_viral": ("viral",),
    "ieee8023_other_pneumonia": ("viral", "bacterial", "fungal", "unknown"),
}
STAGE2_NEGATIVES = tuple(STAGE2_NEGATIVE_LABELS)
STAGE2_NEGATIVE_CLASS = "viral"

# The cascade's decision rules (`cxr_cascade.models.cascade`): the paper's hard gate, the argmax
# of the products p1 * p2, and the pneumonia route (stage 2 sees every film stage 1 calls
# bacterial or viral).
CASCADE_RULES = ("gate", "soft", "pneumonia")
DEFAULT_CASCADE_RULE = "gate"
# One line per rule for every command that takes --rule.
CASCADE_RULES_HELP = (
    "gate (the paper's: stage 2 decides the films stage 1 calls viral), soft (argmax of the "
    "products p1 * p2, which stay the scores) or pneumonia (stage 2 decides every film stage 1 "
    "calls bacterial or viral)"
)

# Stage 1's out-of-distribution sets (`cxr_cascade.evaluation.ood`):
# data set name -> (normal labels, pneumonia labels) of the records it contributes
OOD_SETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ieee8023": (("normal",), ("bacterial", "fungal")),
}

# What `cxr_cascade.phantoms` writes: its data set layouts and the label-correlated shortcuts it
# can plant. Defined here, not in `phantoms` (which needs OpenCV), so that the light CLI parser
# can list them.
PHANTOM_FORMATS = ("kermany", "ieee8023", "lung-masks")
PHANTOM_SHORTCUTS = ("marker", "text")


def unmatched(kind: str, names: Iterable[str], implementations: Iterable[str]) -> list[str]:
    """The differences between registered `names` and the names that have `implementations`.

    Args:
        kind: what the names are ("backbone"), for the messages.
        names: the registered names.
        implementations: the names an implementation is kept under (a mapping's keys).

    Returns:
        One line per name registered without implementation or implemented without registration,
        in registration order then implementation order; empty when both sides agree.
    """
    names, implemented = list(names), list(implementations)
    problems = [f"{kind} {n!r} is registered but has no implementation" for n in names
                if n not in implemented]
    problems += [f"{kind} {n!r} has an implementation but is not registered" for n in implemented
                 if n not in names]
    return problems
