"""The VAE's method: the model returns its own loss (negative ELBO per image), one Adam step on it.

Batches are ``(images in [-1, 1], labels)``; the likelihood is Bernoulli on pixels in [0, 1].
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from ..augment import to_signed, to_uint8
from ..batches import BatchLoader
from ..models.vae import ConvVAE
from ..train import Method
from ..train.device import elapsed_since


def vae_loss(model: ConvVAE, x: torch.Tensor, y: torch.Tensor | None, *,
             beta: float = 1.0) -> dict[str, torch.Tensor]:
    """Negative ELBO per image: Bernoulli reconstruction of pixels in [0, 1]
    + beta * KL(q(z|x) || N(0, I))."""
    logits, mu, logvar = model(x, y)
    target = (x + 1) / 2
    rec = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="sum") / len(x)
    kl = 0.5 * (mu.float().pow(2) + logvar.float().exp() - 1 - logvar.float()).sum() / len(x)
    return {"loss": rec + beta * kl, "reconstruction": rec, "kl": kl}


class VAE(Method):
    """The VAE's step: the model returns its own loss (negative ELBO), one Adam step on it."""

    compiled = ("model",)

    def __init__(self, model: ConvVAE, optimizer: torch.optim.Optimizer, *, beta: float = 1.0):
        super().__init__()
        self.model = model
        self.optimizer = optimizer
        self.beta = beta
        self.state = {"model": model, "optimizer": optimizer}

    def train_step(self, batch):
        x, y = batch
        self.model.train()
        with self.autocast():
            logs = vae_loss(self.net("model"), x, y, beta=self.beta)
        self.optimise(logs["loss"], self.optimizer, model=self.model)
        return {k: v.detach() for k, v in logs.items()}

    @torch.inference_mode()
    def evaluate(self, loader: BatchLoader) -> dict[str, float]:
        """Mean negative ELBO per image on ``loader`` (validation), for picking the best
        checkpoint."""
        self.model.eval()
        total, n = 0.0, 0
        for x, y in loader.epoch(0):
            total += vae_loss(self.model, x, y, beta=self.beta)["loss"].item() * len(x)
            n += len(x)
        return {"val_loss": total / n}

    @torch.inference_mode()
    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor, *,
                    batch_size: int = 500) -> torch.Tensor:
        """uint8 reconstructions (decoder mean at the posterior mean) of uint8 images, labels
        preserved."""
        self.model.eval()
        out = []
        for i in range(0, len(images), batch_size):
            x = to_signed(images[i:i + batch_size].to(self.device))
            y = labels[i:i + batch_size].to(self.device)
            mu, _ = self.model.encode(x, y)
            out.append(to_uint8(torch.sigmoid(self.model.decode(mu, y).float()) * 2 - 1).cpu())
        return torch.cat(out)

    @torch.inference_mode()
    def sample(self, n: int, *, labels: torch.Tensor | None = None, batch_size: int = 500,
               seed: int = 0):
        """``n`` uint8 samples from the prior (classes cycled 0..9 unless ``labels`` fix them) and
        the seconds."""
        self.model.eval()
        gen = torch.Generator(device=self.device).manual_seed(seed)  # noise drawn on the device
        if labels is None and self.model.conditional:
            labels = torch.arange(n, device=self.device) % self.model.num_classes
        out, t0 = [], time.perf_counter()
        for i in range(0, n, batch_size):
            b = min(batch_size, n - i)
            z = torch.randn(b, self.model.latent, generator=gen, device=self.device)
            y = labels[i:i + b] if labels is not None else None
            out.append(to_uint8(torch.sigmoid(self.model.decode(z, y).float()) * 2 - 1))
        return torch.cat(out).cpu(), elapsed_since(t0, self.device)
