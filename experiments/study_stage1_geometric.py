"""Stage 1 recipe study, arm "geometric": rotation +-10 degrees, shift 5 %, zoom 10 % at training time, else as the paper arm.

Hypothesis: the network keys on where the body and the markers sit in the frame; small random
rotations, shifts and zooms make position an unreliable cue.
"""

from experiments.base import derive
from experiments.study_stage1_paper import CONFIG as PAPER_ARM

CONFIG = derive(PAPER_ARM, augment={"rotation_degrees": 10.0, "shift": 0.05, "zoom": 0.1})
