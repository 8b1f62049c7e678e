"""DDPM (Ho, Jain & Abbeel 2020) as a method of the one training loop, and its DDPM / DDIM samplers.

The network is diffusers' ``UNet2DModel``; :func:`build_unet` with the defaults of ``params/02_generative.yaml``'s
full profile is Ho et al.'s CIFAR-10 model (channels 128, multipliers (1, 2, 2, 2), two residual blocks per
resolution, single-head self-attention at 16x16, dropout 0.1: 35,746,307 parameters, the paper's 35.7 M).
The smaller profiles use a narrow U-Net of the same shape.

Training is epsilon prediction with the simple loss ``||eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,
t)||^2`` (Ho et al., Algorithm 1), T = 1000 linear betas 1e-4 -> 0.02, gradient clipping at 1 and an EMA of
the weights, which is what samples. :class:`DDPM` returns its own loss (:meth:`DDPM.loss`), so any loop could
train it; here :func:`lib.train.fit` does. Sampling is either the 1000-step ancestral sampler (Algorithm 2,
diffusers' ``DDPMScheduler``) or DDIM (Song et al. 2021, ``DDIMScheduler``, eta = 0) with far fewer steps.
"""
from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from .train import EMA, Method, maybe_compile, resolve_compile


def linear_betas(num_steps: int = 1000, start: float = 1e-4, end: float = 0.02) -> torch.Tensor:
    """Ho et al. 2020, section 4: betas increasing linearly from ``start`` to ``end`` over ``num_steps``."""
    return torch.linspace(start, end, num_steps, dtype=torch.float64)


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """``abar_t = prod_{s <= t} (1 - beta_s)``."""
    return torch.cumprod(1.0 - betas, dim=0)


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """Forward noising in closed form, ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)`` (Ho et al., eq. 4)."""
    a = abar.to(x0.device)[t].to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def build_unet(*, channels: int = 128, multipliers=(1, 2, 2, 2), layers_per_block: int = 2,
               attention_resolutions=(16,), dropout: float = 0.1, image_size: int = 32) -> nn.Module:
    """diffusers' ``UNet2DModel`` laid out as Ho et al.'s U-Net (see the module docstring)."""
    from diffusers import UNet2DModel

    res = [image_size // 2 ** i for i in range(len(multipliers))]
    down = tuple("AttnDownBlock2D" if r in attention_resolutions else "DownBlock2D" for r in res)
    up = tuple("AttnUpBlock2D" if r in attention_resolutions else "UpBlock2D" for r in reversed(res))
    return UNet2DModel(sample_size=image_size, in_channels=3, out_channels=3, layers_per_block=layers_per_block,
                       block_out_channels=tuple(channels * m for m in multipliers), down_block_types=down,
                       up_block_types=up, dropout=dropout, attention_head_dim=None,
                       norm_num_groups=min(32, channels))


class DDPM(Method):
    """Denoising diffusion: one optimiser step of the simple epsilon loss per batch, then an EMA update.

    Batches are ``(images in [-1, 1], labels)``; labels are ignored (unconditional, as in Ho et al.).
    """

    def __init__(self, unet: nn.Module, optimizer: torch.optim.Optimizer, lr_scheduler=None, *,
                 num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 ema_decay: float = 0.9999, grad_clip: float = 1.0, compile: bool | str = False):
        super().__init__()
        self.unet, self.optimizer, self.lr_scheduler = unet, optimizer, lr_scheduler
        self.compile, self.net = compile, unet  # ``net`` is the (possibly compiled) U-Net the loss runs
        self.ema, self.ema_decay = EMA(unet, ema_decay), ema_decay
        self.num_timesteps, self.beta_start, self.beta_end = num_timesteps, beta_start, beta_end
        self.abar = alphas_cumprod(linear_betas(num_timesteps, beta_start, beta_end)).float()
        self.grad_clip = grad_clip
        self.state = {"unet": unet, "ema": self.ema, "optimizer": optimizer}
        if lr_scheduler is not None:
            self.state["lr_scheduler"] = lr_scheduler

    def loss(self, x0: torch.Tensor) -> torch.Tensor:
        """The simple loss of Ho et al. (Algorithm 1) on a batch of images in [-1, 1]."""
        t = torch.randint(0, self.num_timesteps, (len(x0),), device=x0.device)
        noise = torch.randn_like(x0)
        with self.autocast():
            eps = self.net(q_sample(x0, t, noise, self.abar), t).sample
        return F.mse_loss(eps.float(), noise)

    def setup(self, device, autocast_dtype):
        super().setup(device, autocast_dtype)
        self.net = maybe_compile(self.unet, resolve_compile(self.compile, device))

    def train_step(self, batch):
        x, _ = batch
        self.unet.train()
        loss = self.loss(x)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.unet.parameters(), self.grad_clip)
        self.optimizer.step()
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        # EMA warm-up (as in common DDPM code): decay min(d, (1 + n) / (10 + n)), so short runs are not frozen
        # near the initial weights; n is the scheduler's step count, which the checkpoint holds
        n = self.lr_scheduler.last_epoch if self.lr_scheduler is not None else 10**9
        self.ema.decay = min(self.ema_decay, (1 + n) / (10 + n))
        self.ema.update(self.unet)
        return {"loss": loss.detach(), "grad_norm": grad_norm.detach()}

    def schedulers_config(self) -> dict:
        return {"num_train_timesteps": self.num_timesteps, "beta_start": self.beta_start,
                "beta_end": self.beta_end, "beta_schedule": "linear"}

    def sample(self, n: int, *, sampler: str = "ddpm", steps: int | None = None, batch_size: int = 256,
               seed: int = 0) -> tuple[torch.Tensor, float]:
        """``n`` uint8 images from the EMA network with ``sampler`` (``ddpm``: ancestral, ``steps`` = T by
        default; ``ddim``: deterministic DDIM, eta 0), and the seconds it took."""
        return sample_diffusion(self.ema.module, n, sampler=sampler, steps=steps or self.num_timesteps,
                                batch_size=batch_size, seed=seed, autocast_dtype=self.autocast_dtype,
                                **self.schedulers_config())


@torch.inference_mode()
def sample_diffusion(unet: nn.Module, n: int, *, sampler: str, steps: int, batch_size: int, seed: int,
                     num_train_timesteps: int, beta_start: float, beta_end: float, beta_schedule: str = "linear",
                     autocast_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, float]:
    """Draw ``n`` images in batches with diffusers' DDPM (ancestral) or DDIM scheduler; returns uint8 images on
    the CPU and the wall time in seconds. Seeded: the same call gives the same images."""
    from diffusers import DDIMScheduler, DDPMScheduler

    cfg = dict(num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
               beta_schedule=beta_schedule, clip_sample=True)
    if sampler == "ddpm":
        sched = DDPMScheduler(**cfg)
    elif sampler == "ddim":
        sched = DDIMScheduler(**cfg)
    else:
        raise ValueError(f"unknown sampler {sampler!r}; expected 'ddpm' or 'ddim'")
    sched.set_timesteps(steps)
    device = next(unet.parameters()).device
    was_training = unet.training
    unet.eval()
    gen = torch.Generator().manual_seed(seed)
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else torch.autocast("cpu", enabled=False)
    out = []
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(0, n, batch_size):
        b = min(batch_size, n - i)
        x = torch.randn(b, 3, unet.config.sample_size, unet.config.sample_size, generator=gen).to(device)
        for t in sched.timesteps:
            with ctx:
                eps = unet(x, t).sample.float()
            kw = {"eta": 0.0} if sampler == "ddim" else {}
            x = sched.step(eps, t, x, generator=gen, **kw).prev_sample
        out.append(to_uint8(x).cpu())
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    unet.train(was_training)
    return torch.cat(out), seconds


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 in [0, 255]."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
