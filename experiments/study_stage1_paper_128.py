"""Stage 1 recipe study, reference arm: the release stage 1 recipe (the paper's SEME-ResNet50) at 128x128, 6 epochs.

Paper:   Table 4, row SEME, ResNet50 (derived from `release_stage1_224`, itself from
         `table4_resnet50_seme`)
Command: cxr-cascade train study_stage1_paper_128 --data ../shared/data/chest_xray --run-dir runs/study/paper-s0
         (seed 1: --set seed=1 --run-dir runs/study/paper-s1); see experiments/results/study-stage1/README.md
Study:   release v1's stage 1 recalls 84 of 234 normal test films (0.359) against 0.789 validation
         accuracy. Three variants, each one change against this arm, aim at that collapse:
         `study_stage1_clahe_128` (CLAHE on every film, training and test),
         `study_stage1_balanced_128` (class-weighted loss), `study_stage1_geometric_128`
         (rotation, shift and zoom). Equal budgets: same network, size, batch, optimiser,
         schedule, epochs and images per epoch; 2 seeds each. Selection on validation only
         (balanced accuracy and normal recall of the best epoch); Kermany's 624 test films are
         evaluated once, for the chosen recipe.
Deviations from `release_stage1_224`: image_size 128 (about 3x cheaper per image than 224), 6
epochs instead of 4 (the cosine schedule spans them). Everything else is kept: SE r=16 + MoEx,
GAP head, Adam 1e-3 cosine to 1e-5, batch 16, float32, CLAHE on a random 40 % of the training
films, no class balancing, monitor val_accuracy.
"""

from experiments.base import derive
from experiments.release_stage1_224 import CONFIG as RELEASE

CONFIG = derive(
    RELEASE,
    preprocess={"image_size": 128},
    epochs=6,
    description=(
        "Stage 1 recipe study, reference arm: the release stage 1 recipe (the paper's "
        "SEME-ResNet50) at 128x128, 6 epochs."
    ),
)
