"""WRN-28-2, the Wide ResNet that semi-supervised CIFAR-10 benchmarks use (Zagoruyko & Komodakis,
2016).

Layout as in the MPL reference code (kekmodel/MPL-pytorch ``models.py``): a 3x3 stem with 16
channels, three groups of four pre-activation basic blocks with ``16k, 32k, 64k`` channels
(``k = 2``), batch norm with momentum 0.001 (PyTorch convention; ``bn_momentum`` changes it for
short runs), leaky ReLU (slope 0.1), global average pooling, a dense dropout (``dense_dropout``,
the reference's "teacher/student dropout") and a linear head; ``dropout`` inside the blocks is 0 in
the reference. With 10 classes it has 1,467,610 parameters. ``width`` scales every channel count,
so the small profiles can run a narrower network through exactly the same code.

``block_style`` picks how the first block of groups 2 and 3 (the ones that change shape) feeds its
first convolution: ``"mpl-pytorch"`` (the reference) the raw input, leaving that block's first BN
unused; ``"tensorflow"`` (the original FixMatch/MPL TensorFlow code) BN-LReLU of the input.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


BLOCK_STYLES = ("mpl-pytorch", "tensorflow")


class BasicBlock(nn.Module):
    """Pre-activation block: BN-LReLU-conv3x3-BN-LReLU-dropout-conv3x3, with a 1x1 projection when
    shapes change."""

    def __init__(self, cin: int, cout: int, stride: int, *, dropout: float,
                 activate_before_residual: bool, bn_momentum: float = 0.001,
                 block_style: str = "mpl-pytorch"):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, momentum=bn_momentum)
        self.relu1 = nn.LeakyReLU(0.1, inplace=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, momentum=bn_momentum)
        self.relu2 = nn.LeakyReLU(0.1, inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.equal = cin == cout
        self.shortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
        self.activate_before_residual = activate_before_residual
        if block_style not in BLOCK_STYLES:
            raise ValueError(f"unknown WRN block_style {block_style!r}; expected one of "
                             f"{BLOCK_STYLES}")
        self.raw_projection = block_style == "mpl-pytorch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the shortcut of the first group's projecting block takes BN-LReLU(x) ("activate before
        # residual"), other projecting blocks the raw input; the residual branch starts from
        # BN-LReLU(x) except, in the reference's style, in those other projecting blocks
        act = self.relu1(self.bn1(x))
        shortcut_in = act if self.activate_before_residual and not self.equal else x
        first = x if (self.raw_projection and not self.equal
                      and not self.activate_before_residual) else act
        out = self.relu2(self.bn2(self.conv1(first)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        return out + (shortcut_in if self.equal else self.shortcut(shortcut_in))


class WideResNet(nn.Module):
    """WRN-``depth``-``widen``; ``features(x)`` is the last feature map, ``classifier`` the linear
    head."""

    def __init__(self, *, num_classes: int = 10, depth: int = 28, widen: int = 2,
                 dropout: float = 0.0, dense_dropout: float = 0.0, width: float = 1.0,
                 bn_momentum: float = 0.001, block_style: str = "mpl-pytorch"):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4 (e.g. 28), got {depth}")
        n = (depth - 4) // 6
        ch = [max(4, int(round(c * width))) for c in (16, 16 * widen, 32 * widen, 64 * widen)]
        self.conv1 = nn.Conv2d(3, ch[0], 3, padding=1, bias=False)
        groups = []
        for g, stride in enumerate((1, 2, 2)):
            blocks = [BasicBlock(ch[g] if i == 0 else ch[g + 1], ch[g + 1], stride if i == 0 else 1,
                                 dropout=dropout, activate_before_residual=(g == 0),
                                 bn_momentum=bn_momentum, block_style=block_style)
                      for i in range(n)]
            groups.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(ch[3], momentum=bn_momentum)
        # not in-place: its output is features(x), which Grad-CAM hooks
        self.relu = nn.LeakyReLU(0.1)
        self.drop = nn.Dropout(dense_dropout)
        self.fc = nn.Linear(ch[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.relu(self.bn(x))

    @property
    def classifier(self) -> nn.Linear:
        return self.fc

    @property
    def cam_layer(self) -> nn.Module:
        """The module whose output is ``features(x)``."""
        return self.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)))


def wrn28_2(*, num_classes: int = 10, width: float = 1.0, dropout: float = 0.0,
            dense_dropout: float = 0.0, bn_momentum: float = 0.001,
            block_style: str = "mpl-pytorch") -> WideResNet:
    return WideResNet(num_classes=num_classes, depth=28, widen=2, dropout=dropout,
                      dense_dropout=dense_dropout, width=width, bn_momentum=bn_momentum,
                      block_style=block_style)
