"""Release stage 2 for the pneumonia rule: SEME-DenseNet169 at 224x224, COVID-19 vs every other ieee8023 pneumonia, class-weighted.

Paper:   Table 5, row SE-MoEx, DenseNet169 (derived from `release_stage2_224`, itself from
         `table5_seme_densenet169`); the paper has no such negative class
Command: cxr-cascade train release_stage2_pneumonia_224 --data ../shared/data/covid-chestxray-dataset --unet runs/unet --run-dir runs/stage2_pneumonia
         then cxr-cascade evaluate runs/stage1 --stage2 runs/stage2_pneumonia --rule pneumonia ...
Why: the cascade's rule "pneumonia" sends every film stage 1 calls bacterial or viral to stage 2,
so stage 2 has to tell COVID-19 from every pneumonia stage 1 may pass on, not only from other
viral ones. Negative class (`stage2_negative="ieee8023_other_pneumonia"`): the ieee8023 frontal
films of every non-COVID pneumonia, trained as stage 2's class "viral" (the cascade reads it as
"not COVID-19: keep stage 1's call"; each film keeps its own label in splits.csv); "No Finding"
and lateral views stay out. Class counts and the split: experiments/results/stage2-negatives/.
All classes are adult films of one collection, so neither age nor source separates them.
Class imbalance (about 5:1): balance "sample_weight" and selection on "val_balanced_accuracy", as
`release_stage2_224`; the evaluation shows per-class recall and the confusion matrix beside the
class counts.
Kept from `release_stage2_224`: SE (r=16) + MoEx, GAP head, 224 px, CLAHE and U-Net lung-masked
copies, Adam 1e-3 cosine to 1e-6, batch 16, float32, 4 epochs (`--set epochs=N`).
"""

from experiments.base import derive
from experiments.release_stage2_224 import CONFIG as OTHER_VIRAL

CONFIG = derive(
    OTHER_VIRAL,
    stage2_negative="ieee8023_other_pneumonia",
)
