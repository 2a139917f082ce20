"""Stage 1 recipe study, CLAHE arm: CLAHE on every film at training and test time, else as `study_stage1_paper_128`.

Paper:   Table 4, row SEME, ResNet50 (derived from `study_stage1_paper_128`)
Command: cxr-cascade train study_stage1_clahe_128 --data ../shared/data/chest_xray --run-dir runs/study/clahe-s0
Change:  `preprocess.clahe=True` (every film equalised, in training, evaluation and the export's
         serving graph alike) instead of CLAHE on a random 40 % of the training films only
         (`augment.clahe_fraction` 0: every film is already equalised). Why: the pediatric
         normal films differ from the pneumonia ones in contrast and exposure as much as in
         content; equalising every film removes contrast as a cue the model can lean on, and
         the random 40 % gives a train/test mismatch (test films are never equalised).
"""

from experiments.base import derive
from experiments.study_stage1_paper_128 import CONFIG as REFERENCE

CONFIG = derive(
    REFERENCE,
    preprocess={"clahe": True},
    augment={"clahe_fraction": 0.0},
    description=(
        "Stage 1 recipe study, CLAHE arm: CLAHE on every film at training and test time, else as "
        "`study_stage1_paper_128`."
    ),
)
