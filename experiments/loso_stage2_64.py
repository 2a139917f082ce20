"""Stage 2 source study: SEME-DenseNet169 at 64x64, COVID-19 vs ieee8023 other viral; a REDUCED-SCALE study.

Paper:   Table 5, row SE-MoEx, DenseNet169; Figure 16(b) (derived from `release_stage2_224`, itself from
         `table5_seme_densenet169`); not a reproduction of any paper number.
Purpose: issue 12 part 3, a leave-one-source-out stage-2 evaluation next to the patient-split one:
         is COVID-19 separated by the films or by where they were published? Results and the exact
         commands: experiments/results/stage2_sources_64px/README.md.
Command: cxr-cascade train loso_stage2_64 --data ../shared/data/covid-chestxray-dataset --quiet
The study's commands (DATA=../shared/data/covid-chestxray-dataset):
  cxr-cascade data index --format ieee8023 --out ieee.csv $DATA
  cxr-cascade train loso_stage2_64 --data $DATA --run-dir runs/loso64_patient --quiet
  cxr-cascade data split ieee.csv --leave-one-source-out folds \
      --sources ieee8023/pubs.rsna.org,ieee8023/eurorad.org,ieee8023/ncbi.nlm.nih.gov
  cxr-cascade train loso_stage2_64 --data folds/ieee8023_pubs.rsna.org.csv --run-dir runs/loso64_rsna --quiet
  cxr-cascade evaluate runs/loso64_rsna --by source --out results/rsna
Deviations from `release_stage2_224` and why (all for time: one training must take a few
minutes on 2 shared CPU cores, four trainings in one session):
- image_size 64 instead of 224; epochs 8 instead of 10 (cosine over the 8 epochs; ~30 s per
  epoch here).
- MoEx off and `monitor="val_loss"`: the first trial of this file (4 epochs, MoEx on, best
  val_accuracy) kept its epoch-2 weights, which call all 67 films of the patient-split test
  COVID-19 (accuracy 0.955 = 64/67, macro F1 0.489, AUC 0.42): with 3 other-viral validation
  films, val_accuracy is maximal for the majority-class model, and a from-scratch network under
  MoEx (every batch's features and labels mixed) had not started to learn in 4 epochs. Such a
  model says nothing about sources. val_loss is continuous, so it does not tie at the majority
  model (it is unweighted, so it still leans to COVID-19).
- No U-Net lung-masked copies (`segmented_copies=False`): no trained U-Net run was at hand
  and they double the epoch. CLAHE copies kept.
- mixed_precision off (float32; bfloat16's speed at 64 px on this CPU was not measured).
Kept: SE (r=16), GAP head, Adam 1e-3 -> 1e-6 cosine, batch 16, class weighting
("sample_weight"), the ieee8023 other-viral negative class, patient-grouped validation.
A model this small and short is a probe of what the data lets a model separate, not a
candidate for release; its accuracy is not comparable with the paper's 97 %.
"""

from experiments.base import derive
from experiments.release_stage2_224 import CONFIG as RELEASE_STAGE2

CONFIG = derive(
    RELEASE_STAGE2,
    preprocess={"image_size": 64},
    augment={"segmented_copies": False},
    epochs=8,
    moex=None,
    monitor="val_loss",
    mixed_precision="off",
    paper="Table 5, row SE-MoEx, DenseNet169; Figure 16(b) (reduced-scale probe, not a reproduction)",
)
