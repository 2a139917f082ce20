"""Stage 1 recipe study, arm "geometric": rotation +-10 degrees, shift 5 %, zoom 10 % at training time, else as the paper arm.

Paper:   Table 4, row SEME, ResNet50 (recipe study, not a paper row); training curve Figure 10(c)
Command: cxr-cascade train study_stage1_geometric --data STUDY_MANIFEST --set seed=0 --set test_fraction=0
         (`make study-stage1` writes STUDY_MANIFEST: Kermany's official train split only)

Hypothesis: the network keys on where the body and the markers sit in the frame; small random
rotations, shifts and zooms make position an unreliable cue.
"""

from experiments.base import derive
from experiments.study_stage1_paper import CONFIG as PAPER_ARM

CONFIG = derive(PAPER_ARM, augment={"rotation_degrees": 10.0, "shift": 0.05, "zoom": 0.1})
