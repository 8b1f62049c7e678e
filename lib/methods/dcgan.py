"""DCGAN's method: one GAN iteration per batch, the step owning both optimisers (non-saturating
loss).

The four steps of SPEC 2.1: sample noise and generate; update D on real and fake; update G through
D; repeat.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from ..augment import to_uint8
from ..models.dcgan import DCGANDiscriminator, DCGANGenerator
from ..train import Method, StepCounter
from ..train.device import elapsed_since


class DCGAN(Method):
    """One GAN iteration per batch; the step owns both optimisers (non-saturating loss)."""

    compiled = ("generator", "discriminator")

    def __init__(self, generator: DCGANGenerator, discriminator: DCGANDiscriminator,
                 opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer):
        super().__init__()
        self.G = generator
        self.D = discriminator
        self.opt_g = opt_g
        self.opt_d = opt_d
        self.steps = StepCounter()  # GAN iterations so far: the epoch a generator snapshot is from
        self.state = {"generator": generator, "discriminator": discriminator, "opt_g": opt_g,
                      "opt_d": opt_d, "steps": self.steps}

    def train_step(self, batch):
        real, _ = batch
        self.G.train()
        self.D.train()
        b = len(real)
        ones = torch.ones(b, device=real.device)
        zeros = torch.zeros(b, device=real.device)
        G, D = self.net("generator"), self.net("discriminator")
        # 1. sample noise and generate fakes
        z = torch.randn(b, self.G.nz, device=real.device)
        with self.autocast():
            fake = G(z)
            # 2. update D: real -> 1, fake -> 0
            d_real, d_fake = D(real).float(), D(fake.detach()).float()
            loss_d = (F.binary_cross_entropy_with_logits(d_real, ones)
                      + F.binary_cross_entropy_with_logits(d_fake, zeros))
        self.optimise(loss_d, self.opt_d, model=self.D)
        # 3. update G through the (updated) D: make D call the fakes real
        with self.autocast():
            d_gen = D(fake).float()
            loss_g = F.binary_cross_entropy_with_logits(d_gen, ones)
        self.optimise(loss_g, self.opt_g, model=self.G)
        # 4. the loop repeats with the next batch
        self.steps.value += 1
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(),
                "d_real": torch.sigmoid(d_real).mean().detach(),
                "d_fake": torch.sigmoid(d_fake).mean().detach()}

    @torch.inference_mode()
    def sample(self, n: int, *, batch_size: int = 500, seed: int = 0):
        """``n`` uint8 samples (generator in eval mode: batch-norm running statistics) and the
        seconds."""
        self.G.eval()
        gen = torch.Generator(device=self.device).manual_seed(seed)  # noise drawn on the device
        out, t0 = [], time.perf_counter()
        for i in range(0, n, batch_size):
            z = torch.randn(min(batch_size, n - i), self.G.nz, generator=gen, device=self.device)
            with self.autocast():
                out.append(to_uint8(self.G(z)))
        return torch.cat(out).cpu(), elapsed_since(t0, self.device)
