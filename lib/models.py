"""Classifier registry: every chapter-1 model by name, built for 32x32 CIFAR-10 inputs.

``build_model("resnet18", num_classes=10, width=1.0)`` returns an ``nn.Module``; ``MODELS`` lists the names.
``width`` scales every channel count (the smoke profile uses narrow models so a CPU proves every code path
in seconds; ``width=1.0`` is the real architecture). Each model exposes ``features(x)`` (the last
convolutional feature map) and ``classifier`` (the head after global average pooling), which CAM and
retrieval use.

ResNets are torchvision's builders with the CIFAR stem (3x3 stride-1 first convolution, no max-pool), as in
the presentation and the kuangliu/pytorch-cifar reference: ResNet-18 with 10 classes has 11,173,962 parameters.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from torchvision.models import resnet as tv_resnet

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
    """Forward FLOPs for one image, counted by ``torch.utils.flop_counter`` (a multiply-add counts as 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, image_size, image_size, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())


def _scaled(channels: int, width: float) -> int:
    return max(4, int(round(channels * width)))


class CifarResNet(tv_resnet.ResNet):
    """torchvision's ResNet with the CIFAR stem, and channel widths scaled by ``width``."""

    def __init__(self, block, layers, *, num_classes: int = 10, width: float = 1.0):
        super().__init__(block, layers, num_classes=num_classes)
        widths = [_scaled(c, width) for c in (64, 128, 256, 512)]
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = self._norm_layer(widths[0])
        self.maxpool = nn.Identity()
        self.layer1 = self._make_layer(block, widths[0], layers[0])
        self.layer2 = self._make_layer(block, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], stride=2)
        self.fc = nn.Linear(widths[3] * block.expansion, num_classes)
        for m in self.modules():  # torchvision's initialisation, re-applied to the rebuilt layers
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    @property
    def classifier(self) -> nn.Linear:
        return self.fc


for _name, _block, _layers in (("resnet18", tv_resnet.BasicBlock, [2, 2, 2, 2]),
                               ("resnet34", tv_resnet.BasicBlock, [3, 4, 6, 3]),
                               ("resnet50", tv_resnet.Bottleneck, [3, 4, 6, 3]),
                               ("resnet101", tv_resnet.Bottleneck, [3, 4, 23, 3])):
    register(_name)(lambda *, num_classes=10, width=1.0, _b=_block, _l=_layers:
                    CifarResNet(_b, _l, num_classes=num_classes, width=width))
