"""Model builders of cxr-cascade (Keras 3, backend-agnostic: keras.layers / keras.ops only).

* ``build_classifier(backbone, num_classes, ...)``: VGG19 / ResNet50 / DenseNet169 with GAP or
  flatten heads, optional squeeze-and-excitation and MoEx, He-uniform, trained from scratch.
* ``build_model(config)``: the network of an experiment config (either of the above).
* ``build_unet(...)``: lung-segmentation U-Net (``unet_mask_fn`` turns it into a mask function); ``DiceBCELoss`` and ``mean_iou`` to train it.
* ``MoEx`` settings, the ``MomentExchange`` layer and the ``MoExClassifier`` model.
* ``receptive_field(model)``: the paper's receptive-field recurrence over a model graph.
* ``AdaptiveEqualization`` (CLAHE, exact to OpenCV) and ``RandomAffine`` (rotation, shift, zoom):
  preprocessing layers in keras.ops that run inside the model, on its device
  (`cxr_cascade.models.preprocessing`).
"""

from cxr_cascade.models.composer import BACKBONE_SPECS, build_classifier
from cxr_cascade.models.losses import DiceBCELoss
from cxr_cascade.models.metrics import BalancedAccuracy, mean_iou
from cxr_cascade.models.moex import MoEx, MoExClassifier, MomentExchange, moment_exchange, pono_moments
from cxr_cascade.models.receptive_field import ReceptiveField, receptive_field, receptive_field_recurrence
from cxr_cascade.models.unet import build_unet, unet_mask_fn
from cxr_cascade.models.build import build_model
from cxr_cascade.models.preprocessing import AdaptiveEqualization, RandomAffine

__all__ = [
    "AdaptiveEqualization",
    "BACKBONE_SPECS",
    "DiceBCELoss",
    "MoEx",
    "MoExClassifier",
    "MomentExchange",
    "RandomAffine",
    "ReceptiveField",
    "build_classifier",
    "build_model",
    "build_unet",
    "unet_mask_fn",
    "BalancedAccuracy",
    "mean_iou",
    "moment_exchange",
    "pono_moments",
    "receptive_field",
    "receptive_field_recurrence",
]
