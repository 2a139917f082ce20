"""Release stage 2 for the pneumonia rule: SEME-DenseNet169 at 224x224, COVID-19 vs every other ieee8023 pneumonia, class-weighted.

Paper:   Table 5, row SE-MoEx, DenseNet169 (derived from `release_stage2_224`, itself from
         `table5_seme_densenet169`); the paper has no such negative class
Command: cxr-cascade train release_stage2_pneumonia_224 --data ../shared/data/covid-chestxray-dataset --unet runs/unet --run-dir runs/stage2_pneumonia
         then cxr-cascade evaluate runs/stage1 --stage2 runs/stage2_pneumonia --rule pneumonia ...
Why: the cascade's rule "pneumonia" sends every film stage 1 calls bacterial or viral to stage 2
(release v1's stage 1 calls most adult COVID-19 films bacterial, so the paper's gate never lets
them reach stage 2). Stage 2 then has to tell COVID-19 from every pneumonia stage 1 may pass on,
not only from other viral ones. Negative class (config `stage2_negative`, one of STAGE2_NEGATIVES):
"ieee8023_other_pneumonia", the ieee8023 frontal films (PA, AP, AP Supine) of every non-COVID
pneumonia, trained as stage 2's class "viral" (the cascade reads it as "not COVID-19: keep stage
1's call"; each film keeps its own label in splits.csv). Counts in the shared copy
(`select_records`, checked with tests/test_stage2_negatives.py): 81 films, viral 21 (SARS 16,
Varicella 4, Influenza 1), bacterial 31 (Streptococcus 11, Klebsiella 7, Mycoplasma 4, E.Coli 4,
Legionella 3, "Bacterial" 2), fungal 12 (Pneumocystis), cause not stated 17 ("Pneumonia" 10,
ARDS 4: sepsis and a snake bite, Lipoid 3), against 427 COVID-19 films. "No Finding" (19) and
lateral views stay out (45 patients in the negative class). The split this config makes
(select_records + split, dedup near, seed 0; checked 2026-12-04): train COVID-19 299 / negative 57
(viral 15, bacterial 22, fungal 8, not stated 12), validation 64 / 11, test 64 / 13 (viral 3,
bacterial 5, fungal 2, not stated 3). All classes are adult films of the same collection, so
neither age nor source separates them; 13 negative test films still give wide CIs.
Class imbalance (about 5:1): balance "sample_weight" and model selection on
"val_balanced_accuracy", as `release_stage2_224`. The evaluation must show per-class recall and
the confusion matrix beside the class counts.
Kept from `release_stage2_224`: SE (r=16) + MoEx, GAP head, 224 px, CLAHE copies and U-Net
lung-masked copies, Adam 1e-3 cosine to 1e-6, batch 16, float32, 4 epochs (about 1,600 training
images per epoch with the copies); with more time, `--set epochs=N`.
"""

from experiments.base import derive
from experiments.release_stage2_224 import CONFIG as OTHER_VIRAL

CONFIG = derive(
    OTHER_VIRAL,
    stage2_negative="ieee8023_other_pneumonia",
)
