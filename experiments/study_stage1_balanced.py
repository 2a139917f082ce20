"""Stage 1 recipe study, arm "balanced": classes weighted to equal total weight in the loss (balance=sample_weight), else as the paper arm.

Paper:   Table 4, row SEME, ResNet50 (recipe study, not a paper row); training curve Figure 10(c)
Command: cxr-cascade train study_stage1_balanced --data STUDY_MANIFEST --set seed=0 --set test_fraction=0
         (`make study-stage1` writes STUDY_MANIFEST: Kermany's official train split only)

Hypothesis: bacterial films are 49 % of the training split; a loss that weights each class
equally stops the network from defaulting to "bacterial" for films it is unsure of.
"""

from experiments.base import derive
from experiments.study_stage1_paper import CONFIG as PAPER_ARM

CONFIG = derive(PAPER_ARM, balance="sample_weight")
