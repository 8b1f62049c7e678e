"""ResNet-18/34/50/101: torchvision's builders with the CIFAR stem (3x3 stride-1 first convolution,
no max-pool), as in the presentation and kuangliu/pytorch-cifar. Their last feature map is 4x4 for a
32x32 input."""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models import resnet as tv_resnet

from .registry import register, scaled_channels


class CifarResNet(tv_resnet.ResNet):
    """torchvision's ResNet with the CIFAR stem, and channel widths scaled by ``width``."""

    def __init__(self, block, layers, *, num_classes: int = 10, width: float = 1.0):
        super().__init__(block, layers, num_classes=num_classes)
        widths = [scaled_channels(c, width) for c in (64, 128, 256, 512)]
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

    @property
    def cam_layer(self) -> nn.Module:
        """The module whose output is ``features(x)``: Grad-CAM's target layer."""
        return self.layer4


for _name, _block, _layers in (("resnet18", tv_resnet.BasicBlock, [2, 2, 2, 2]),
                               ("resnet34", tv_resnet.BasicBlock, [3, 4, 6, 3]),
                               ("resnet50", tv_resnet.Bottleneck, [3, 4, 6, 3]),
                               ("resnet101", tv_resnet.Bottleneck, [3, 4, 23, 3])):
    register(_name)(lambda *, num_classes=10, width=1.0, _b=_block, _l=_layers:
                    CifarResNet(_b, _l, num_classes=num_classes, width=width))
