"""Stage 1 recipe study, balanced arm: class-weighted loss (each class weighs the same), else as `study_stage1_paper_128`.

Paper:   Table 4, row SEME, ResNet50 (derived from `study_stage1_paper_128`)
Command: cxr-cascade train study_stage1_balanced_128 --data ../shared/data/chest_xray --run-dir runs/study/balanced-s0
Change:  `balance="sample_weight"`: each film's loss weighted N / (3 N_class) (normal 1.30,
         bacterial 0.69, viral 1.29 on the 4,637 training films), so that calling the majority
         class bacterial no longer pays. Why "sample_weight" and not "oversample": oversampling
         repeats the minority films up to the largest class (about 6,750 films per epoch instead
         of 4,637), which would break the study's equal budget of images per epoch.
"""

from experiments.base import derive
from experiments.study_stage1_paper_128 import CONFIG as REFERENCE

CONFIG = derive(
    REFERENCE,
    balance="sample_weight",
    description=(
        "Stage 1 recipe study, balanced arm: class-weighted loss (each class weighs the same), else "
        "as `study_stage1_paper_128`."
    ),
)
