"""Evaluation: metrics with patient-level bootstrap CIs, calibration, figures, reports, the cascade.

Submodules are imported by name (``from cxr_cascade.evaluation import metrics``) so that importing
the metrics does not pull in Keras or matplotlib.
"""
