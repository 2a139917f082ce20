"""Shortcut audit: does a classifier look at the lungs, or at sources, text and markers?

Public COVID-19 X-ray models often learn where an image came from instead of what its lungs show
(DeGrave, Janizek & Lee, "AI for radiographic COVID-19 detection selects shortcuts over signal",
Nature Machine Intelligence 2021). The audit measures it five ways:

- ``swap``: the outside swap, the lungs held fixed and the film around them taken from a film of
  each class in turn: does the decision follow the outside?
- ``attention``: the share of Grad-CAM mass inside the lung mask against the lung's share of
  the image;
- ``ablation``: accuracy with the lungs blanked out, and with everything but the lungs blanked;
- ``probe``: how well the image's source can be decoded from the pooled ``cam_features``;
- ``pointing``: the pointing game on lesion masks (does the map's peak fall in the lesion?).

``report.run_audit`` runs them all, with patient-bootstrap CIs, and applies the calibrated rule
documented there (calibrated on phantoms against a clean control: ``demo``).
"""
