"""Stage 1 recipe study, arm "clahe_all": CLAHE on every film at training and test time (none at random), else as the paper arm.

Paper:   Table 4, row SEME, ResNet50 (recipe study, not a paper row); training curve Figure 10(c)
Command: cxr-cascade train study_stage1_clahe_all --data STUDY_MANIFEST --set seed=0 --set test_fraction=0
         (`make study-stage1` writes STUDY_MANIFEST: Kermany's official train split only)

Hypothesis: the normal films of the test split differ in contrast from the training ones; one
fixed contrast normalisation for every film removes that difference instead of teaching the
network two appearances.
"""

from experiments.base import derive
from experiments.study_stage1_paper import CONFIG as PAPER_ARM

CONFIG = derive(PAPER_ARM, preprocess={"clahe": True}, augment={"clahe_fraction": 0.0})
