"""Networks, one file per architecture; the classifiers are registered by name (see
:mod:`.registry`).

Classifiers: :mod:`.resnet` (ResNet-18/34/50/101), :mod:`.wrn` (WRN-28-2), :mod:`.drn` (DRN-A-18,
DRN-B-26, DRN-C-26, DRN-D-22), :mod:`.efficientnet` (EfficientNet-B0). Generative networks:
:mod:`.vae`, :mod:`.dcgan`, :mod:`.unet`.
"""
from . import drn, resnet, wrn  # noqa: F401  (resnet registers itself on import)
from .registry import MODELS, build_model, count_parameters, flops_per_image, register

# MODELS keeps this order: ResNets, WRN-28-2, DRNs, EfficientNet-B0
register("wrn28_2")(wrn.wrn28_2)
register("drn_a_18")(drn.drn_a_18)
register("drn_b_26")(drn.drn_b_26)
register("drn_c_26")(drn.drn_c_26)
register("drn_d_22")(drn.drn_d_22)
from .efficientnet import EfficientNetB0  # noqa: E402  (registers efficientnet_b0)

__all__ = ["MODELS", "EfficientNetB0", "build_model", "count_parameters", "flops_per_image",
           "register"]
