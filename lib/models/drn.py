"""Dilated Residual Networks DRN-A-18, DRN-B-26, DRN-C-26 and DRN-D-22 (Yu, Koltun & Funkhouser,
CVPR 2017), written for this report.

No library ships DRNs, so this module rebuilds them after the paper and the authors' reference code
(github.com/fyu/drn, ``drn.py``), keeping its structure and its module layout. The paper's Figure
4 builds them from ResNet-18 in steps (the slide's Figure 3 shows their activation maps):

* **DRN-A-18** (:class:`DRNA`) is ResNet-18 (7x7 stem, max-pool, four groups of two BasicBlocks
  with 64, 128, 256, 512 channels) with the strides of groups 3 and 4 removed and their 3x3
  convolutions dilated instead: dilation 2 in group 3, 4 in group 4, so the last map is 8x finer.
  The first block of each dilated group starts at half its dilation (1 then 2; 2 then 4), as the
  paper describes; the reference ``DRN_A._make_layer`` leaves that block undilated. Dilation adds
  no weights: its parameter count is ResNet-18's (11,689,512 with 1,000 classes; a test checks it
  against torchvision's ResNet-18).
* DRN-B, DRN-C and DRN-D (:class:`DRN`) replace the stem and max-pool by a 7x7 stride-1 convolution
  (16 channels) and eight levels with channels (16, 32, 64, 128, 256, 512, 512, 512) and (1, 1, 2,
  2, 2, 2, 1, 1) blocks; levels 2-4 downsample by striding, levels 5 and 6 keep the resolution and
  use dilation 2 and 4 instead (the first block of a level uses the dilation of the level, as in
  the reference ``_make_layer(..., new_level=False)``); levels 7 (dilation 2) and 8 (dilation 1)
  remove the gridding artefacts of dilation.
* **DRN-B-26**: levels 1-2 and 7-8 are residual BasicBlocks.
* **DRN-C-26**: as DRN-B-26 but the BasicBlocks of levels 7-8 are *non-residual*. The skip adds no
  weights, so DRN-B-26 and DRN-C-26 have the same parameter count.
* **DRN-D-22** replaces the residual blocks of levels 1-2 and 7-8 by plain conv-BN-ReLU layers (one
  3x3 conv per "block" count) and uses BasicBlocks in levels 3-6 (reference
  ``drn_d_22 = DRN(BasicBlock, [1, 1, 2, 2, 2, 2, 1, 1], arch='D')``).
* classifier: global average pooling + a 1x1 convolution (``classifier``, a 1x1 ``nn.Conv2d`` that
  also reports ``in_features`` / ``out_features`` like ``nn.Linear`` so every model in
  ``lib.models`` has one interface; for DRN-A the reference uses an ``nn.Linear`` of the same size).

Strides. The ImageNet networks (``imagenet=True``) keep the reference's output stride 8: a 224x224
image ends on a 28x28 map; with 1,000 classes DRN-C-26 (and DRN-B-26) has 21,126,584 and DRN-D-22
16,393,752 parameters (the paper's 21.1 M and 16.4 M; a test checks them).

**CIFAR adaptation** (the default, ``imagenet=False``): with output stride 8 a 32x32 image would end
on 4x4, no finer than the CIFAR ResNets. The whole point of a DRN (and of SPEC 1.2's activation
maps) is a higher resolution last feature map, so one downsampling is dropped at the cheapest
place and every DRN ends on **8x8** (output stride 4). DRN-B/C/D: level 2 does not stride (levels
1-2 run at 32x32, level 3 at 16x16, levels 4-8 at 8x8), and the dilations of levels 5-8 (2, 4, 2,
1) are kept, so level 6's dilation-4 taps reach half-way across the 8x8 map. DRN-A: the max-pool
is dropped (the stride-2 stem gives 16x16, group 2 strides to 8x8, groups 3-4 run dilated at 8x8).
Nothing else changes (same channels, blocks and parameter count up to the classifier). ``width``
scales every channel count (``max(4, round(c * width))``), as for the ResNets.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .registry import scaled_channels

CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)
LAYERS = (1, 1, 2, 2, 2, 2, 1, 1)
A_CHANNELS = (64, 64, 128, 256, 512)  # DRN-A: stem, then groups 1-4 (ResNet-18's)
A_LAYERS = (2, 2, 2, 2)


def _conv3x3(cin: int, cout: int, *, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """The reference DRN BasicBlock: two dilated 3x3 convolutions; ``residual=False`` drops the skip
    (DRN-C 7-8)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1,
                 downsample: nn.Module | None = None, dilation: tuple[int, int] = (1, 1),
                 residual: bool = True):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride=stride, dilation=dilation[0])
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, dilation=dilation[1])
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


def residual_level(inplanes: int, planes: int, blocks: int, *, stride: int = 1,
                   dilation: int = 1, new_level: bool = True,
                   residual: bool = True) -> nn.Sequential:
    """``blocks`` BasicBlocks from ``inplanes`` to ``planes`` channels; the first one strides (with
    a 1x1 projection on the skip when the shape changes) and, on a new level, starts at half the
    dilation (the reference ``_make_layer``)."""
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes))
    first = (1, 1) if dilation == 1 else (dilation // 2 if new_level else dilation, dilation)
    mods = [BasicBlock(inplanes, planes, stride=stride, downsample=downsample, dilation=first,
                       residual=residual)]
    mods += [BasicBlock(planes, planes, dilation=(dilation, dilation), residual=residual)
             for _ in range(1, blocks)]
    return nn.Sequential(*mods)


def reference_init(model: nn.Module) -> None:
    """The reference initialisation: He-normal convolutions (fan-out), BatchNorm 1 / 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class PointwiseClassifier(nn.Conv2d):
    """The DRN head: a 1x1 convolution applied to the pooled features, exposing
    ``in_features``/``out_features``."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, kernel_size=1, bias=True)

    @property
    def in_features(self) -> int:
        return self.in_channels

    @property
    def out_features(self) -> int:
        return self.out_channels


class _Levels(nn.Module):
    """What every DRN shares: ``layer0`` ... ``layer<last>`` in order, average pooling and the
    pointwise classifier ``fc``."""

    last: int

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional feature map, before pooling: (B, 512*width, H/4, W/4) on
        CIFAR."""
        for i in range(self.last + 1):
            x = getattr(self, f"layer{i}")(x)
        return x

    @property
    def classifier(self) -> PointwiseClassifier:
        return self.fc

    @property
    def cam_layer(self) -> nn.Module:
        """The module whose output is ``features(x)``: Grad-CAM's target layer."""
        return getattr(self, f"layer{self.last}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.avgpool(self.features(x))).flatten(1)


class DRNA(_Levels):
    """DRN-A: ResNet with the strides of groups 3-4 replaced by dilation 2 and 4 (``layer0`` is the
    stem, ``layer1``-``layer4`` the groups); see the module docstring for the CIFAR adaptation."""

    last = 4

    def __init__(self, layers=A_LAYERS, *, num_classes: int = 10, width: float = 1.0,
                 imagenet: bool = False):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"a DRN-A has four groups; got layers={list(layers)}")
        ch = [scaled_channels(c, width) for c in A_CHANNELS]
        stem = [nn.Conv2d(3, ch[0], 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(ch[0]),
                nn.ReLU(inplace=True)]
        if imagenet:  # the CIFAR adaptation drops the max-pool: 32x32 -> 8x8 instead of 4x4
            stem.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.layer0 = nn.Sequential(*stem)
        self.layer1 = residual_level(ch[0], ch[1], layers[0])
        self.layer2 = residual_level(ch[1], ch[2], layers[1], stride=2)
        self.layer3 = residual_level(ch[2], ch[3], layers[2], dilation=2)
        self.layer4 = residual_level(ch[3], ch[4], layers[3], dilation=4)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = PointwiseClassifier(ch[4], num_classes)
        reference_init(self)


class DRN(_Levels):
    """DRN-B, DRN-C or DRN-D (``arch``) with BasicBlocks; see the module docstring for the CIFAR
    stride adaptation."""

    last = 8

    def __init__(self, layers=LAYERS, *, arch: str = "C", num_classes: int = 10, width: float = 1.0,
                 imagenet: bool = False):
        super().__init__()
        if arch not in ("B", "C", "D"):
            raise ValueError(f"unknown DRN arch {arch!r}; expected 'B', 'C' or 'D' (DRN-A is "
                             "lib.models.drn.DRNA)")
        if len(layers) != 8:
            raise ValueError(f"a DRN has eight levels; got layers={list(layers)}")
        self.arch, self.imagenet = arch, imagenet
        ch = [scaled_channels(c, width) for c in CHANNELS]
        self.inplanes = ch[0]
        # layer0 = the 7x7 stem (stride 1 in the reference DRN-C/D: resolution is reduced in
        # levels 2-4)
        self.layer0 = nn.Sequential(nn.Conv2d(3, ch[0], 7, stride=1, padding=3, bias=False),
                                    nn.BatchNorm2d(ch[0]), nn.ReLU(inplace=True))
        level2_stride = 2 if imagenet else 1  # the CIFAR adaptation: 32x32 -> 8x8 instead of 4x4
        if arch == "D":
            self.layer1 = self._make_conv_layers(ch[0], layers[0], stride=1)
            self.layer2 = self._make_conv_layers(ch[1], layers[1], stride=level2_stride)
        else:
            self.layer1 = self._make_layer(ch[0], layers[0], stride=1)
            self.layer2 = self._make_layer(ch[1], layers[1], stride=level2_stride)
        self.layer3 = self._make_layer(ch[2], layers[2], stride=2)
        self.layer4 = self._make_layer(ch[3], layers[3], stride=2)
        self.layer5 = self._make_layer(ch[4], layers[4], dilation=2, new_level=False)
        self.layer6 = self._make_layer(ch[5], layers[5], dilation=4, new_level=False)
        if arch == "D":  # degridding: plain convolution layers
            self.layer7 = self._make_conv_layers(ch[6], layers[6], dilation=2)
            self.layer8 = self._make_conv_layers(ch[7], layers[7], dilation=1)
        else:            # BasicBlocks with decreasing dilation, non-residual in DRN-C
            self.layer7 = self._make_layer(ch[6], layers[6], dilation=2, new_level=False,
                                           residual=arch == "B")
            self.layer8 = self._make_layer(ch[7], layers[7], dilation=1, new_level=False,
                                           residual=arch == "B")
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = PointwiseClassifier(ch[7], num_classes)
        reference_init(self)

    def _make_layer(self, planes: int, blocks: int, **kwargs) -> nn.Sequential:
        level = residual_level(self.inplanes, planes, blocks, **kwargs)
        self.inplanes = planes
        return level

    def _make_conv_layers(self, channels: int, convs: int, *, stride: int = 1,
                          dilation: int = 1) -> nn.Sequential:
        mods: list[nn.Module] = []
        for i in range(convs):
            mods += [_conv3x3(self.inplanes, channels, stride=stride if i == 0 else 1,
                              dilation=dilation),
                     nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
            self.inplanes = channels
        return nn.Sequential(*mods)


def drn_a_18(*, num_classes: int = 10, width: float = 1.0, imagenet: bool = False) -> DRNA:
    return DRNA(A_LAYERS, num_classes=num_classes, width=width, imagenet=imagenet)


def drn_b_26(*, num_classes: int = 10, width: float = 1.0, imagenet: bool = False) -> DRN:
    return DRN(LAYERS, arch="B", num_classes=num_classes, width=width, imagenet=imagenet)


def drn_c_26(*, num_classes: int = 10, width: float = 1.0, imagenet: bool = False) -> DRN:
    return DRN(LAYERS, arch="C", num_classes=num_classes, width=width, imagenet=imagenet)


def drn_d_22(*, num_classes: int = 10, width: float = 1.0, imagenet: bool = False) -> DRN:
    return DRN(LAYERS, arch="D", num_classes=num_classes, width=width, imagenet=imagenet)
