"""Stage 1 recipe study, arm "clahe_all": CLAHE on every film at training and test time (none at random), else as the paper arm.

Hypothesis: the normal films of the test split differ in contrast from the training ones; one
fixed contrast normalisation for every film removes that difference instead of teaching the
network two appearances.
"""

from experiments.base import derive
from experiments.study_stage1_paper import CONFIG as PAPER_ARM

CONFIG = derive(PAPER_ARM, preprocess={"clahe": True}, augment={"clahe_fraction": 0.0})
