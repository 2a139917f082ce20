"""cxr-cascade: Cascade-SEMEnet chest X-ray classification (Lv et al. 2020) in Keras 3.

Research software, not a medical device.
"""

__version__ = "0.1.0"
