"""A convolutional VAE for 32x32 RGB (Kingma & Welling 2013), optionally class-conditional: the
label is an input of both encoder and decoder, so a sample's class can be fixed."""
from __future__ import annotations

import torch
import torch.nn as nn


class ConvVAE(nn.Module):
    """32x32 RGB VAE: 3 strided convs (32 -> 4) to ``latent`` Gaussian dims, mirrored by transposed
    convs."""

    def __init__(self, *, latent: int = 128, width: int = 64, num_classes: int = 10,
                 conditional: bool = True):
        super().__init__()
        self.latent, self.num_classes, self.conditional = latent, num_classes, conditional
        c = (width, 2 * width, 4 * width)
        cond = num_classes if conditional else 0
        self.encoder = nn.Sequential(
            nn.Conv2d(3 + cond, c[0], 4, 2, 1), nn.BatchNorm2d(c[0]), nn.LeakyReLU(0.2),
            nn.Conv2d(c[0], c[1], 4, 2, 1), nn.BatchNorm2d(c[1]), nn.LeakyReLU(0.2),
            nn.Conv2d(c[1], c[2], 4, 2, 1), nn.BatchNorm2d(c[2]), nn.LeakyReLU(0.2), nn.Flatten())
        self.to_stats = nn.Linear(c[2] * 16, 2 * latent)
        self.from_latent = nn.Linear(latent + cond, c[2] * 16)
        self.decoder = nn.Sequential(
            nn.Unflatten(1, (c[2], 4, 4)), nn.BatchNorm2d(c[2]), nn.ReLU(),
            nn.ConvTranspose2d(c[2], c[1], 4, 2, 1), nn.BatchNorm2d(c[1]), nn.ReLU(),
            nn.ConvTranspose2d(c[1], c[0], 4, 2, 1), nn.BatchNorm2d(c[0]), nn.ReLU(),
            nn.ConvTranspose2d(c[0], 3, 4, 2, 1))  # logits of pixel intensities in [0, 1]

    def _onehot(self, y: torch.Tensor | None, n: int, device) -> torch.Tensor | None:
        if not self.conditional:
            return None
        if y is None:
            raise ValueError("this VAE is class-conditional: pass labels")
        # as F.one_hot, without its range check (it reads the labels back to the host every step)
        classes = torch.arange(self.num_classes, device=device)
        return (y.to(device).view(n, 1) == classes).float()

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        oh = self._onehot(y, len(x), x.device)
        if oh is not None:
            x = torch.cat([x, oh[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar.clamp(-30, 20)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        oh = self._onehot(y, len(z), z.device)
        return self.decoder(self.from_latent(torch.cat([z, oh], 1) if oh is not None else z))

    def forward(self, x, y=None):
        mu, logvar = self.encode(x, y)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode(z, y), mu, logvar
