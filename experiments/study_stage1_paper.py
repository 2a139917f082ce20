"""Stage 1 recipe study, arm "paper": the release recipe (SEME-ResNet50, CLAHE on a random 40 % of training films) at 128 px.

Paper:   Table 4, row SEME, ResNet50 (recipe study, not a paper row); training curve Figure 10(c)
Command: cxr-cascade train study_stage1_paper --data STUDY_MANIFEST --set seed=0 --set test_fraction=0
         (`make study-stage1` writes STUDY_MANIFEST: Kermany's official train split only)

The study compares this arm with three variants aimed at v1's normal-recall collapse (0.359 on
Kermany's test against 0.789 validation accuracy), at equal budgets: 128 px, 2 epochs (Adam,
cosine), batch 16, seeds 0 and 1 (`--set seed=1`). The arm is chosen on validation
(val_accuracy and normal recall), never on the test split. `make study-stage1` trains every arm;
the write-up is experiments/results/study-stage1/.
"""

from experiments.base import derive
from experiments.release_stage1_224 import CONFIG as RELEASE

CONFIG = derive(
    RELEASE,
    preprocess={"image_size": 128},
    epochs=2,
    paper="Table 4, row SEME, ResNet50 (recipe study at 128 px, not a paper row); Figure 10(c)",
)
