"""Stage 2 source study: SEME-DenseNet169 at 64x64, COVID-19 vs ieee8023 other viral; a REDUCED-SCALE study.

Paper:   Table 5, row SE-MoEx, DenseNet169; Figure 16(b) (derived from `release_stage2_224`, itself from
         `table5_seme_densenet169`); not a reproduction of any paper number.
Purpose: a leave-one-source-out stage-2 evaluation next to the patient-split one: is COVID-19
         separated by the films or by where they were published? Results, the fold commands and
         the trial that led to this recipe: experiments/results/stage2_sources_64px/README.md.
Command: cxr-cascade train loso_stage2_64 --data ../shared/data/covid-chestxray-dataset --quiet
Deviations from `release_stage2_224` and why (one training must take minutes on 2 CPU cores):
- image_size 64, 8 epochs (cosine over the 8).
- MoEx off and `monitor="val_loss"`: with 3 other-viral validation films, val_accuracy is
  maximal for the majority-class model, and a from-scratch network under MoEx had not started
  to learn in a few epochs; val_loss is continuous, so it does not tie at the majority model.
- No U-Net lung-masked copies (they double the epoch); CLAHE copies kept.
- float32 (mixed_precision off).
A model this small and short probes what the data lets a model separate; it is not a release
candidate and its accuracy is not comparable with the paper's 97 %.
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
