"""Stage 1 recipe study, geometric arm: random rotation 15 degrees, shift 10 %, zoom 15 %, else as `study_stage1_paper_128`.

Paper:   Table 4, row SEME, ResNet50 (derived from `study_stage1_paper_128`)
Command: cxr-cascade train study_stage1_geometric_128 --data ../shared/data/chest_xray --run-dir runs/study/geometric-s0
Change:  `augment.rotation_degrees=15`, `augment.shift=0.1`, `augment.zoom=0.15` (training only;
         the paper uses no geometric augmentation at stage 1, 30 degrees at stage 2). Why (a
         hypothesis the study tests): if the framing of the pediatric films (arms, shoulders,
         how much abdomen) or their burned-in markers go with the class, moving the film
         weakens position as a cue.
"""

from experiments.base import derive
from experiments.study_stage1_paper_128 import CONFIG as REFERENCE

CONFIG = derive(
    REFERENCE,
    augment={"rotation_degrees": 15.0, "shift": 0.1, "zoom": 0.15},
    description=(
        "Stage 1 recipe study, geometric arm: random rotation 15 degrees, shift 10 %, zoom 15 %, "
        "else as `study_stage1_paper_128`."
    ),
)
