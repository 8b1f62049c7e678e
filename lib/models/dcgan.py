"""DCGAN for 32x32 (Radford et al. 2015): G = transposed convolutions + batch norm + ReLU, tanh
output; D = strided convolutions + LeakyReLU(0.2), batch norm except on the first layer; N(0, 0.02)
initialisation."""
from __future__ import annotations

import torch.nn as nn


class DCGANGenerator(nn.Module):
    """z (``nz`` x 1 x 1) -> 4x4 -> 8x8 -> 16x16 -> 32x32 RGB; transposed convs, batch norm, ReLU,
    tanh."""

    def __init__(self, *, nz: int = 100, width: int = 64):
        super().__init__()
        self.nz = nz
        g = width
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, 4 * g, 4, 1, 0, bias=False),
            nn.BatchNorm2d(4 * g), nn.ReLU(True),
            nn.ConvTranspose2d(4 * g, 2 * g, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * g), nn.ReLU(True),
            nn.ConvTranspose2d(2 * g, g, 4, 2, 1, bias=False), nn.BatchNorm2d(g), nn.ReLU(True),
            nn.ConvTranspose2d(g, 3, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z):
        return self.net(z.view(len(z), self.nz, 1, 1))


class DCGANDiscriminator(nn.Module):
    """32x32 RGB -> 16 -> 8 -> 4 -> one logit; strided convs, LeakyReLU(0.2), batch norm after the
    first layer."""

    def __init__(self, *, width: int = 64):
        super().__init__()
        d = width
        self.net = nn.Sequential(
            nn.Conv2d(3, d, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
            nn.Conv2d(d, 2 * d, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * d), nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * d, 4 * d, 4, 2, 1, bias=False),
            nn.BatchNorm2d(4 * d), nn.LeakyReLU(0.2, True),
            nn.Conv2d(4 * d, 1, 4, 1, 0, bias=False), nn.Flatten())

    def forward(self, x):
        return self.net(x).view(-1)


def dcgan_init(module: nn.Module) -> None:
    """Radford et al.: conv weights ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
