"""DDPM (Ho, Jain & Abbeel 2020) as a method of the one training loop, and its DDPM / DDIM samplers.

The network is diffusers' ``UNet2DModel`` in Ho et al.'s layout
(:func:`lib.models.unet.build_unet`).

Training is epsilon prediction with the simple loss
``||eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t)||^2`` (Ho et al., Algorithm 1),
T = 1000 linear betas 1e-4 -> 0.02, gradient clipping at 1 and an EMA of the weights, which is what
samples. :class:`DDPM` returns its own loss (:meth:`DDPM.loss`), so any loop could train it; here
:func:`lib.train.fit` does. Sampling is either the 1000-step ancestral sampler (Algorithm 2,
diffusers' ``DDPMScheduler``) or DDIM (Song et al. 2021, ``DDIMScheduler``, eta = 0) with far fewer
steps, its timesteps spaced "leading" (0, T/n, ..., T - T/n: the DDIM paper's uniform skip) or
"trailing" (T - 1, ..., T/n - 1: Lin et al. 2023, which starts from the last training timestep).
"""
from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..augment import to_uint8
from ..train import Method

DDIM_SPACINGS = ("leading", "trailing")


def linear_betas(num_steps: int = 1000, start: float = 1e-4, end: float = 0.02) -> torch.Tensor:
    """Ho et al. 2020, section 4: betas increasing linearly from ``start`` to ``end`` over
    ``num_steps``."""
    return torch.linspace(start, end, num_steps, dtype=torch.float64)


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """``abar_t = prod_{s <= t} (1 - beta_s)``."""
    return torch.cumprod(1.0 - betas, dim=0)


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
             abar: torch.Tensor) -> torch.Tensor:
    """Forward noising in closed form, ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)``
    (Ho et al., eq. 4)."""
    a = abar.to(x0.device)[t].to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


class DDPM(Method):
    """Denoising diffusion: one optimiser step of the simple epsilon loss per batch, then an EMA
    update.

    Batches are ``(images in [-1, 1], labels)``; labels are ignored (unconditional, as in Ho et
    al.).
    """

    compiled = ("unet",)

    def __init__(self, unet: nn.Module, optimizer: torch.optim.Optimizer, lr_scheduler=None, *,
                 num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 ema_decay: float = 0.9999, grad_clip: float = 1.0, channels_last: bool = False):
        super().__init__()
        self.channels_last = channels_last
        self.unet = unet
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.num_timesteps = num_timesteps
        self.beta_start = beta_start
        self.beta_end = beta_end
        self.abar = alphas_cumprod(linear_betas(num_timesteps, beta_start, beta_end)).float()
        self.grad_clip = grad_clip
        self.state = {"unet": unet}
        self.track_ema(unet, ema_decay, warmup=True)  # samples come from the EMA
        self.state["optimizer"] = optimizer
        if lr_scheduler is not None:
            self.state["lr_scheduler"] = lr_scheduler

    def setup(self, device, autocast_dtype, *, compile=None):
        super().setup(device, autocast_dtype, compile=compile)
        self.abar = self.abar.to(device)  # the noise schedule lives on the device, moved once

    def memory_format(self, device):
        """The U-Nets' layout is this method's own choice on every device (CUDA GroupNorm computes
        in NCHW, so contiguous is the default), so bench/gpu_check.sh can time both anywhere."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def loss(self, x0: torch.Tensor) -> torch.Tensor:
        """The simple loss of Ho et al. (Algorithm 1) on a batch of images in [-1, 1].

        Timesteps and noise are drawn for the global batch and sliced like it when training
        data-parallel (:meth:`lib.train.distributed.Shard.split`), so every rank's rows get the
        draws a single process would give them."""
        n = len(x0) * self.shard.world
        t = self.shard.split(torch.randint(0, self.num_timesteps, (n,), device=x0.device))
        noise = self.shard.split(torch.randn(n, *x0.shape[1:], device=x0.device, dtype=x0.dtype))
        if not x0.is_contiguous():  # channels_last images: noise in their layout
            noise = noise.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            eps = self.net("unet")(q_sample(x0, t, noise, self.abar), t).sample
        return F.mse_loss(eps.float(), noise)

    def train_step(self, batch):
        x, _ = batch
        self.unet.train()
        loss = self.loss(x)
        grad_norm = self.optimise(loss, self.optimizer, model=self.unet,
                                  scheduler=self.lr_scheduler, clip=self.grad_clip, ema=True)
        logs = {"loss": loss.detach()}
        if grad_norm is not None:
            logs["grad_norm"] = grad_norm.detach()
        return logs

    def schedulers_config(self) -> dict:
        return {"num_train_timesteps": self.num_timesteps, "beta_start": self.beta_start,
                "beta_end": self.beta_end, "beta_schedule": "linear"}

    def sample(self, n: int, *, sampler: str = "ddpm", steps: int | None = None,
               spacing: str = "leading", batch_size: int = 256,
               seed: int = 0) -> tuple[torch.Tensor, float]:
        """``n`` uint8 images from the EMA network with ``sampler`` (``ddpm``: ancestral, ``steps``
        = T by default; ``ddim``: deterministic DDIM, eta 0, timesteps spaced by ``spacing``), and
        the seconds it took."""
        return sample_diffusion(self.ema.module, n, sampler=sampler,
                                steps=steps or self.num_timesteps, spacing=spacing,
                                batch_size=batch_size, seed=seed,
                                autocast_dtype=self.autocast_dtype, **self.schedulers_config())


def make_scheduler(sampler: str, steps: int, *, spacing: str = "leading", **config):
    """diffusers' scheduler for ``sampler`` (``ddpm``: ancestral; ``ddim``: DDIM with timesteps
    spaced by ``spacing``, "leading" or "trailing"), set to ``steps`` steps."""
    from diffusers import DDIMScheduler, DDPMScheduler

    cfg = dict(config, clip_sample=True)
    if sampler == "ddpm":
        sched = DDPMScheduler(**cfg)
    elif sampler == "ddim":
        if spacing not in DDIM_SPACINGS:
            raise ValueError(f"unknown DDIM spacing {spacing!r}; expected one of {DDIM_SPACINGS}")
        sched = DDIMScheduler(**cfg, timestep_spacing=spacing)
    else:
        raise ValueError(f"unknown sampler {sampler!r}; expected 'ddpm' or 'ddim'")
    sched.set_timesteps(steps)
    return sched


@torch.inference_mode()
def sample_diffusion(unet: nn.Module, n: int, *, sampler: str, steps: int, batch_size: int,
                     seed: int, num_train_timesteps: int, beta_start: float, beta_end: float,
                     beta_schedule: str = "linear", spacing: str = "leading",
                     autocast_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, float]:
    """Draw ``n`` images in batches with diffusers' DDPM (ancestral) or DDIM scheduler; returns
    uint8 images on the CPU and the wall time in seconds. Seeded: the same call gives the same
    images."""
    sched = make_scheduler(sampler, steps, spacing=spacing,
                           num_train_timesteps=num_train_timesteps, beta_start=beta_start,
                           beta_end=beta_end, beta_schedule=beta_schedule)
    device = next(unet.parameters()).device
    was_training = unet.training
    unet.eval()
    gen = torch.Generator(device=device).manual_seed(seed)  # noise drawn on the device
    ctx = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype
           else torch.autocast("cpu", enabled=False))
    out = []
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(0, n, batch_size):
        b = min(batch_size, n - i)
        x = torch.randn(b, 3, unet.config.sample_size, unet.config.sample_size, generator=gen,
                        device=device)
        for t in sched.timesteps:
            with ctx:
                eps = unet(x, t).sample.float()
            kw = {"eta": 0.0} if sampler == "ddim" else {}
            x = sched.step(eps, t, x, generator=gen, **kw).prev_sample
        out.append(to_uint8(x))
    images = torch.cat(out).cpu()  # the only wait for the device, after the last batch
    seconds = time.perf_counter() - t0
    unet.train(was_training)
    return images, seconds
