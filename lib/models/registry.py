"""Every network of the report. The classifier registry: every chapter-1/3 classifier by name, for
32x32 inputs.

``build_model("resnet18", num_classes=10, width=1.0)`` returns an ``nn.Module``; ``MODELS`` lists
the names. ``width`` scales every channel count (the smoke profile uses narrow models so a CPU
proves every code path in seconds; ``width=1.0`` is the real architecture). Each model exposes
``features(x)`` (the last convolutional feature map) and ``classifier`` (the head after global
average pooling), which CAM and retrieval use.

Each model also has ``cam_layer``, the module whose output is ``features(x)`` (Grad-CAM's target
layer).

ResNets are torchvision's builders with the CIFAR stem (3x3 stride-1 first convolution, no
max-pool), as in the presentation and the kuangliu/pytorch-cifar reference: ResNet-18 with 10
classes has 11,173,962 parameters. Their last feature map is 4x4 for a 32x32 input.

DRN-A-18, DRN-B-26, DRN-C-26 and DRN-D-22 are written in ``lib.models.drn`` after Yu, Koltun &
Funkhouser (2017); on 32x32 inputs their last feature map is 8x8 (output stride 4; see
``lib.models.drn`` for the stride adaptation). ``imagenet=True`` builds the paper's ImageNet strides
(output stride 8) for checking against its parameter counts.

EfficientNet-B0 is timm's ``efficientnet_b0`` (4,020,358 parameters with 10 classes). Trained from
scratch (default) its stem convolution has stride 1 instead of 2, so a 32x32 image ends on a 2x2 map
instead of 1x1 (total stride 16). ``pretrained=True`` instead loads timm's ImageNet weights
(``timm/efficientnet_b0.ra_in1k`` from the Hugging Face Hub, stride-2 stem unchanged) for
fine-tuning at 224 px: the model then resizes each normalised 32x32 batch to 224x224 (bilinear) and
re-normalises it from the CIFAR statistics to ImageNet's inside ``forward``/``features``, so the
data pipeline stays the same (last feature map 7x7). Where the weights cannot be downloaded it fails
with a message saying how to get them or to use ``pretrained: false``. ``resize_to=224`` (without
``pretrained``) builds the same ImageNet-shaped model with random weights, for reloading a
fine-tuned checkpoint offline. ``drop_rate`` / ``drop_path_rate`` are timm's dropout options
(default 0).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    def deco(fn):
        MODELS[name] = fn
        return fn
    return deco


def build_model(name: str, *, num_classes: int = 10, width: float = 1.0, **kwargs) -> nn.Module:
    """Build a registered model; unknown names fail with the list of known ones."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes=num_classes, width=width, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_image(model: nn.Module, image_size: int = 32) -> int:
    """Forward FLOPs for one image, counted by ``torch.utils.flop_counter`` (a multiply-add counts
    as 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, image_size, image_size, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())


def scaled_channels(channels: int, width: float) -> int:
    """A channel count scaled by ``width`` (at least 4)."""
    return max(4, int(round(channels * width)))
