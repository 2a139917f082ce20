"""Release stage 2: SEME-DenseNet169 at 224x224, COVID-19 vs ieee8023 other viral, class-weighted, CLAHE + U-Net copies.

Paper:   Table 5, row SE-MoEx, DenseNet169 (derived from `table5_seme_densenet169`)
Command: cxr-cascade train release_stage2_224 --data ../shared/data/covid-chestxray-dataset --unet runs/unet --run-dir runs/stage2
         (= make train-stage2; train release_unet_256 first)
Negative class "ieee8023_viral": ieee8023's frontal films of other viral pneumonias, so that both
classes are adult films of one collection and neither age nor source separates them (Kermany's
pediatric viral films would be a shortcut; bacterial films would change what the class means).
The cost is a tiny negative class (about 20:1), hence balance "sample_weight" (loss weights
N / (2 N_class)) and model selection by "val_balanced_accuracy", which an all-COVID-19 model
cannot win. Deviations from the paper row: 224 px instead of 512, Adam 1e-3 with cosine
annealing to 1e-6 over 4 epochs instead of SGD 0.1 -> 1e-8 over 80, batch 16, float32.
Kept: SE (r=16) + MoEx, GAP head, CLAHE and lung-masked copies (section 4.2), patient-grouped
val/test of 0.15 each. Split counts, timings and the reasons measured for each choice:
experiments/results/release-v1/README.md.
"""

from experiments.base import derive
from experiments.table5_seme_densenet169 import CONFIG as PAPER_ROW

CONFIG = derive(
    PAPER_ROW,
    stage2_negative="ieee8023_viral",
    balance="sample_weight",
    monitor="val_balanced_accuracy",
    preprocess={"image_size": 224},
    batch_size=16,
    epochs=4,
    optimizer="adam",
    learning_rate=1e-3,
    lr_min=1e-6,
    lr_schedule="cosine",
    mixed_precision="off",
    paper="Table 5, row SE-MoEx, DenseNet169: accuracy 97.14 %, F1 0.97; Figure 16(b)",
)
