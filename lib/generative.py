"""Chapter 2 glue: a convolutional VAE and DCGAN as methods of the one training loop, training of all three
generative models (DDPM lives in :mod:`lib.diffusion`) from params, FID scoring, and the chapter's figures.

* :class:`VAE` (Kingma & Welling 2013): conv encoder -> Gaussian latent -> transposed-conv decoder, optionally
  class-conditional (the label is an input of both encoder and decoder, so a sample's class can be fixed).
  Its method returns its own loss, the negative ELBO per image (Bernoulli likelihood of pixels in [0, 1]).
* :class:`DCGAN` (Radford et al. 2015) for 32x32: G = transposed convolutions + batch norm + ReLU, tanh output;
  D = strided convolutions + LeakyReLU(0.2), batch norm except on the first layer; N(0, 0.02) initialisation.
  Its step owns both optimisers (the four steps of SPEC 2.1: sample noise and generate; update D on real and
  fake; update G through D; repeat).

All three take batches ``(images in [-1, 1], labels)`` from :class:`lib.data.BatchLoader` with horizontal flips
only (no crop padding, which would teach the models black borders), and checkpoint/resume through
:func:`lib.train.fit`. :func:`train_generator` keys each checkpoint folder by everything that shapes training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import data as D
from .diffusion import DDPM, build_unet, to_uint8
from .models import count_parameters
from .params import params_hash
from .train import Method, device_description, fit, load_checkpoint, make_optimizer, pick_device

GENERATORS = ("vae", "dcgan", "ddpm")


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1] (the generative models' input range; also a BatchLoader normalize_fn)."""
    return x.float() / 127.5 - 1.0


# ---------------------------------------------------------------------------------------------- VAE
class ConvVAE(nn.Module):
    """32x32 RGB VAE: 3 strided convs (32 -> 4) to ``latent`` Gaussian dims, mirrored by transposed convs."""

    def __init__(self, *, latent: int = 128, width: int = 64, num_classes: int = 10, conditional: bool = True):
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
        return F.one_hot(y.to(device), self.num_classes).float().view(n, -1)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
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


def vae_loss(model: ConvVAE, x: torch.Tensor, y: torch.Tensor | None, *, beta: float = 1.0) -> dict[str, torch.Tensor]:
    """Negative ELBO per image: Bernoulli reconstruction of pixels in [0, 1] + beta * KL(q(z|x) || N(0, I))."""
    logits, mu, logvar = model(x, y)
    target = (x + 1) / 2
    rec = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="sum") / len(x)
    kl = 0.5 * (mu.float().pow(2) + logvar.float().exp() - 1 - logvar.float()).sum() / len(x)
    return {"loss": rec + beta * kl, "reconstruction": rec, "kl": kl}


class VAE(Method):
    """The VAE's step: the model returns its own loss (negative ELBO), one Adam step on it."""

    def __init__(self, model: ConvVAE, optimizer: torch.optim.Optimizer, *, beta: float = 1.0):
        super().__init__()
        self.model, self.optimizer, self.beta = model, optimizer, beta
        self.state = {"model": model, "optimizer": optimizer}

    def train_step(self, batch):
        x, y = batch
        self.model.train()
        with self.autocast():
            logs = vae_loss(self.model, x, y, beta=self.beta)
        self.optimizer.zero_grad(set_to_none=True)
        logs["loss"].backward()
        self.optimizer.step()
        return {k: v.detach() for k, v in logs.items()}

    @torch.inference_mode()
    def evaluate(self, loader: D.BatchLoader) -> dict[str, float]:
        """Mean negative ELBO per image on ``loader`` (validation), for picking the best checkpoint."""
        self.model.eval()
        total, n = 0.0, 0
        for x, y in loader.epoch(0):
            total += vae_loss(self.model, x, y, beta=self.beta)["loss"].item() * len(x)
            n += len(x)
        return {"val_loss": total / n}

    @torch.inference_mode()
    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
        """uint8 reconstructions (decoder mean at the posterior mean) of uint8 images, labels preserved."""
        self.model.eval()
        out = []
        for i in range(0, len(images), batch_size):
            x = to_signed(images[i:i + batch_size].to(self.device))
            y = labels[i:i + batch_size].to(self.device)
            mu, _ = self.model.encode(x, y)
            out.append(to_uint8(torch.sigmoid(self.model.decode(mu, y).float()) * 2 - 1).cpu())
        return torch.cat(out)

    @torch.inference_mode()
    def sample(self, n: int, *, labels: torch.Tensor | None = None, batch_size: int = 500, seed: int = 0):
        """``n`` uint8 samples from the prior (classes cycled 0..9 unless ``labels`` fix them) and the seconds."""
        import time

        self.model.eval()
        gen = torch.Generator().manual_seed(seed)
        if labels is None and self.model.conditional:
            labels = torch.arange(n) % self.model.num_classes
        out, t0 = [], time.perf_counter()
        for i in range(0, n, batch_size):
            b = min(batch_size, n - i)
            z = torch.randn(b, self.model.latent, generator=gen).to(self.device)
            y = labels[i:i + b] if labels is not None else None
            out.append(to_uint8(torch.sigmoid(self.model.decode(z, y).float()) * 2 - 1).cpu())
        return torch.cat(out), _elapsed(t0, self.device)


def _elapsed(t0: float, device: torch.device) -> float:
    import time

    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------- DCGAN
class DCGANGenerator(nn.Module):
    """z (``nz`` x 1 x 1) -> 4x4 -> 8x8 -> 16x16 -> 32x32 RGB; transposed convs, batch norm, ReLU, tanh."""

    def __init__(self, *, nz: int = 100, width: int = 64):
        super().__init__()
        self.nz = nz
        g = width
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, 4 * g, 4, 1, 0, bias=False), nn.BatchNorm2d(4 * g), nn.ReLU(True),
            nn.ConvTranspose2d(4 * g, 2 * g, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * g), nn.ReLU(True),
            nn.ConvTranspose2d(2 * g, g, 4, 2, 1, bias=False), nn.BatchNorm2d(g), nn.ReLU(True),
            nn.ConvTranspose2d(g, 3, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z):
        return self.net(z.view(len(z), self.nz, 1, 1))


class DCGANDiscriminator(nn.Module):
    """32x32 RGB -> 16 -> 8 -> 4 -> one logit; strided convs, LeakyReLU(0.2), batch norm after the first layer."""

    def __init__(self, *, width: int = 64):
        super().__init__()
        d = width
        self.net = nn.Sequential(
            nn.Conv2d(3, d, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
            nn.Conv2d(d, 2 * d, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * d), nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * d, 4 * d, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * d), nn.LeakyReLU(0.2, True),
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


class DCGAN(Method):
    """One GAN iteration per batch; the step owns both optimisers (non-saturating loss)."""

    def __init__(self, generator: DCGANGenerator, discriminator: DCGANDiscriminator,
                 opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer):
        super().__init__()
        self.G, self.D, self.opt_g, self.opt_d = generator, discriminator, opt_g, opt_d
        self.state = {"generator": generator, "discriminator": discriminator, "opt_g": opt_g, "opt_d": opt_d}

    def train_step(self, batch):
        real, _ = batch
        self.G.train()
        self.D.train()
        b = len(real)
        ones, zeros = torch.ones(b, device=real.device), torch.zeros(b, device=real.device)
        # 1. sample noise and generate fakes
        z = torch.randn(b, self.G.nz, device=real.device)
        with self.autocast():
            fake = self.G(z)
            # 2. update D: real -> 1, fake -> 0
            d_real, d_fake = self.D(real).float(), self.D(fake.detach()).float()
            loss_d = F.binary_cross_entropy_with_logits(d_real, ones) + F.binary_cross_entropy_with_logits(d_fake, zeros)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        # 3. update G through the (updated) D: make D call the fakes real
        with self.autocast():
            d_gen = self.D(fake).float()
            loss_g = F.binary_cross_entropy_with_logits(d_gen, ones)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        # 4. the loop repeats with the next batch
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(),
                "d_real": torch.sigmoid(d_real).mean().detach(), "d_fake": torch.sigmoid(d_fake).mean().detach()}

    @torch.inference_mode()
    def sample(self, n: int, *, batch_size: int = 500, seed: int = 0):
        """``n`` uint8 samples (generator in eval mode: batch-norm running statistics) and the seconds."""
        import time

        self.G.eval()
        gen = torch.Generator().manual_seed(seed)
        out, t0 = [], time.perf_counter()
        for i in range(0, n, batch_size):
            z = torch.randn(min(batch_size, n - i), self.G.nz, generator=gen).to(self.device)
            with self.autocast():
                out.append(to_uint8(self.G(z)).cpu())
        return torch.cat(out), _elapsed(t0, self.device)


# ---------------------------------------------------------------------------------------------- training
@dataclass
class TrainedGenerator:
    """A trained generative model, how it was trained, and a seeded sampler returning (uint8 images, seconds)."""

    name: str
    method: Method
    history: pd.DataFrame
    settings: dict
    parameters: int
    wall_time_s: float
    device: str
    sample: Callable = field(repr=False)
    checkpoint: Path | None = None


def generator_settings(kind: str, params: dict) -> dict:
    """The ``<kind>_*`` keys of the params (lr, batch size, epochs, widths ...) without the prefix."""
    if kind not in GENERATORS:
        raise ValueError(f"unknown generative model {kind!r}; expected one of {GENERATORS}")
    return {k[len(kind) + 1:]: v for k, v in params.items() if k.startswith(kind + "_")}


def build_method(kind: str, s: dict, *, total_steps: int, seed: int, compile: bool | str = False) -> tuple[Method, int]:
    """The method for ``kind`` with settings ``s`` (see :func:`generator_settings`), and its parameter count.
    ``compile`` (the chapter's param: auto / true / false) applies to the DDPM U-Net, the costly one."""
    torch.manual_seed(seed)
    if kind == "vae":
        model = ConvVAE(latent=s["latent"], width=s["width"], conditional=s["conditional"])
        opt = make_optimizer(model.parameters(), name="adam", lr=s["lr"])
        return VAE(model, opt, beta=s["beta"]), count_parameters(model)
    if kind == "dcgan":
        G, Dn = DCGANGenerator(nz=s["nz"], width=s["width"]), DCGANDiscriminator(width=s["width"])
        dcgan_init(G)
        dcgan_init(Dn)
        betas = (s["beta1"], 0.999)
        opt_g = make_optimizer(G.parameters(), name="adam", lr=s["lr"], betas=betas)
        opt_d = make_optimizer(Dn.parameters(), name="adam", lr=s["lr"], betas=betas)
        return DCGAN(G, Dn, opt_g, opt_d), count_parameters(G) + count_parameters(Dn)
    unet = build_unet(channels=s["channels"], multipliers=tuple(s["multipliers"]),
                      layers_per_block=s["layers_per_block"], attention_resolutions=tuple(s["attention_resolutions"]),
                      dropout=s["dropout"])
    opt = make_optimizer(unet.parameters(), name="adam", lr=s["lr"])
    warmup = max(1, min(s["warmup_steps"], total_steps // 10))  # Ho et al.: linear warm-up (5,000 steps), then constant
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warmup))
    return (DDPM(unet, opt, sched, ema_decay=s["ema_decay"], grad_clip=s["grad_clip"], compile=compile),
            count_parameters(unet))


def train_generator(kind: str, splits, params: dict, *, ckpt_root: Path, tb_root: Path | None = None) -> TrainedGenerator:
    """Train ``kind`` (vae | dcgan | ddpm) on the training split with its ``<kind>_*`` params through :func:`fit`.

    The checkpoint folder is keyed by the settings, seed, data source and split sizes: re-running the notebook
    reuses a finished run or resumes an interrupted one, and a changed parameter never resumes a stale run.
    The VAE keeps its best epoch by validation loss; DCGAN and DDPM have no validation metric and use the last
    step (DDPM samples from the EMA weights).
    """
    s = generator_settings(kind, params)
    device = pick_device(params["device"])
    loader = D.BatchLoader(splits.train_x, splits.train_y, batch_size=s["batch_size"], device=device,
                           seed=params["seed"], padding=0, normalize_fn=to_signed)  # flips only
    steps_per_epoch = len(loader)
    total = max(1, round(s["epochs"] * steps_per_epoch))
    key = params_hash({"kind": kind, "settings": s, "seed": params["seed"], "data": splits.source,
                       "sizes": splits.sizes(), "total": total})
    ckpt_dir = Path(ckpt_root) / f"{kind}-{key}"
    method, n_params = build_method(kind, s, total_steps=total, seed=params["seed"],
                                    compile=params["compile"])
    evaluate, select, mode = None, "val_loss", "min"
    if kind == "vae":
        val = D.BatchLoader(splits.val_x, splits.val_y, batch_size=params["eval_batch_size"], device=device,
                            train=False, normalize_fn=to_signed)
        evaluate = lambda: method.evaluate(val)  # noqa: E731
    result = fit(method, loader.forever, total_steps=total, evaluate=evaluate, steps_per_epoch=steps_per_epoch,
                 eval_every=max(1, round(s.get("eval_every_epochs", 1) * steps_per_epoch)), select=select, mode=mode,
                 ckpt_dir=ckpt_dir, tb_dir=(Path(tb_root) / kind) if tb_root else None, device=device,
                 amp=params["amp"], seed=params["seed"], desc=kind, log_every=max(1, steps_per_epoch // 4),
                 config={"kind": kind, "settings": s, "data": splits.source})
    if kind == "vae" and result.best_checkpoint is not None:  # the epoch chosen on validation loss
        method.load_state_dict(load_checkpoint(result.best_checkpoint)["method"])
        method.setup(method.device, method.autocast_dtype)
    hist = result.history
    bs = params["sample_batch_size"]
    if kind == "ddpm":
        sample = lambda n, *, sampler="ddim", steps=None, seed=0: method.sample(  # noqa: E731
            n, sampler=sampler, steps=steps or (s["ddim_steps"] if sampler == "ddim" else None), batch_size=bs,
            seed=seed)
    else:
        sample = lambda n, *, seed=0, **_: method.sample(n, batch_size=bs, seed=seed)  # noqa: E731
    return TrainedGenerator(name=kind, method=method, history=hist, settings={**s, "steps": total},
                            parameters=n_params, wall_time_s=float(hist["elapsed_s"].iloc[-1]),
                            device=device_description(device), sample=sample, checkpoint=result.last_checkpoint)


# ---------------------------------------------------------------------------------------------- evaluation
def nearest_neighbours(samples: torch.Tensor, train: torch.Tensor, *, k: int = 3,
                       chunk: int = 10000) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(n, k)`` and L2 pixel distances of each sample's ``k`` nearest training images (uint8 inputs);
    a sample that equals a training image betrays memorisation."""
    q = samples.flatten(1).float() / 255
    best_d, best_i = None, None
    for start in range(0, len(train), chunk):
        t = train[start:start + chunk].flatten(1).float() / 255
        d = torch.cdist(q, t, compute_mode="donot_use_mm_for_euclid_dist")  # exact: a copy is at 0
        d, i = d.topk(min(k, d.shape[1]), dim=1, largest=False)
        i = i + start
        if best_d is not None:
            d, i = torch.cat([best_d, d], 1), torch.cat([best_i, i], 1)
            d, order = d.topk(k, dim=1, largest=False)
            i = i.gather(1, order)
        best_d, best_i = d, i
    return best_i, best_d


@torch.inference_mode()
def class_histogram(classifier: nn.Module, images: torch.Tensor, *, batch_size: int = 500) -> np.ndarray:
    """Counts of each class predicted by ``classifier`` (chapter-1 normalisation) over uint8 ``images``."""
    classifier.eval()
    device = next(classifier.parameters()).device
    counts = torch.zeros(len(D.CLASSES), dtype=torch.long)
    for i in range(0, len(images), batch_size):
        pred = classifier(D.normalize(images[i:i + batch_size].to(device))).argmax(1).cpu()
        counts += torch.bincount(pred, minlength=len(D.CLASSES))
    return counts.numpy()


def fid_row(name: str, stats, reference, *, presented: float | None = None, **extra) -> dict:
    """One row of the 2.4 table: FID of ``stats`` against the reference statistics, with its sample counts."""
    from .fid import frechet_distance

    return {"model": name, "FID": round(frechet_distance(stats, reference), 2), "images scored": stats.n,
            "reference images": reference.n, "presented FID (5k)": presented, **extra}


# ---------------------------------------------------------------------------------------------- augmentation (2.2)
def reconstruction_splits(vae: VAE, splits, *, mode: str):
    """The chapter-1 :class:`~lib.supervised.Splits` with the training images replaced by VAE reconstructions
    (``mode="reconstructions"``) or extended with them (``mode="real+reconstructions"``); labels preserved,
    validation and test stay real."""
    from dataclasses import replace

    rec = vae.reconstruct(splits.train_x, splits.train_y)
    if mode == "reconstructions":
        return replace(splits, train_x=rec, source=f"{splits.source}, VAE reconstructions of the training split")
    if mode == "real+reconstructions":
        return replace(splits, train_x=torch.cat([splits.train_x, rec]), train_y=torch.cat([splits.train_y] * 2),
                       source=f"{splits.source}, real + VAE reconstructions of the training split")
    raise ValueError(f"unknown mode {mode!r}; expected 'reconstructions' or 'real+reconstructions'")


def classifier_params(params: dict) -> dict:
    """The keys :func:`lib.supervised.train_classifier` reads, from this chapter's ``classifier_*`` params."""
    out = dict(params)
    out["width"] = params["classifier_width"]
    out["epochs"] = params["classifier_epochs"]
    out["recipe"] = "classifier"
    return out


# ---------------------------------------------------------------------------------------------- figures
def sample_grid(images: dict[str, torch.Tensor], *, nrow: int = 8, title: str = ""):
    """One panel of uint8 samples per model, side by side."""
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    fig, axes = plt.subplots(1, len(images), figsize=(4.2 * len(images), 4.6), layout="constrained", squeeze=False)
    for ax, (name, x) in zip(axes[0], images.items()):
        grid = make_grid(x[: nrow * nrow], nrow=nrow, padding=1, pad_value=255)
        ax.imshow(grid.permute(1, 2, 0).numpy())
        ax.set(title=name, xticks=[], yticks=[])
    if title:
        fig.suptitle(title)
    return fig


def neighbours_figure(samples: dict[str, torch.Tensor], train: torch.Tensor, *, per_model: int = 4, k: int = 3):
    """Rows: a sample, then its ``k`` nearest training images by pixel L2 distance (memorisation check)."""
    import matplotlib.pyplot as plt

    rows = [(name, x[j]) for name, x in samples.items() for j in range(min(per_model, len(x)))]
    fig, axes = plt.subplots(len(rows), k + 1, figsize=(1.5 * (k + 1), 1.5 * len(rows)), layout="constrained",
                             squeeze=False)
    for r, (name, img) in enumerate(rows):
        idx, dist = nearest_neighbours(img[None], train, k=k)
        axes[r, 0].imshow(img.permute(1, 2, 0).numpy())
        axes[r, 0].set_ylabel(name, fontsize=8)
        for c in range(k):
            axes[r, c + 1].imshow(train[idx[0, c]].permute(1, 2, 0).numpy())
            axes[r, c + 1].set_title(f"L2 {dist[0, c]:.2f}", fontsize=7)
        for ax in axes[r]:
            ax.set(xticks=[], yticks=[])
    axes[0, 0].set_title("sample", fontsize=8)
    return fig


def histogram_figure(counts: dict[str, np.ndarray], *, title: str = ""):
    """Share of samples per predicted class, one bar group per model (a flat profile = diverse samples)."""
    import matplotlib.pyplot as plt

    rows = [{"model": m, "class": D.CLASSES[i], "share (%)": 100 * c / max(1, cnt.sum())}
            for m, cnt in counts.items() for i, c in enumerate(cnt)]
    df = pd.DataFrame(rows)
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(11, 3.6), layout="constrained")
    sns.barplot(df, x="class", y="share (%)", hue="model", ax=ax)
    ax.axhline(10, color="k", lw=0.8, ls="--", label="uniform (10%)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------------------------- chapter steps
@dataclass
class Samples:
    """Images drawn from one model with one sampler, and the wall time it took."""

    label: str
    model: str
    sampler: str
    images: torch.Tensor = field(repr=False)
    seconds: float

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / max(1, len(self.images))


def draw_samples(trained: dict[str, TrainedGenerator], params: dict) -> dict[str, Samples]:
    """``fid_images`` samples per model (DDPM with DDIM), plus ``ddpm_ancestral_images`` with the ancestral
    sampler; each timed. Seeds are fixed, so re-running draws the same images."""
    n, seed = params["fid_images"], params["seed"]
    out = {}
    for kind, label in (("vae", "VAE"), ("dcgan", "DCGAN")):
        if kind in trained:
            x, sec = trained[kind].sample(n, seed=seed)
            out[label] = Samples(label, kind, "one decoder/generator pass", x, sec)
    if "ddpm" in trained:
        steps = params["ddpm_ddim_steps"]
        x, sec = trained["ddpm"].sample(n, sampler="ddim", steps=steps, seed=seed)
        out[f"DDPM, DDIM {steps} steps"] = Samples(f"DDPM, DDIM {steps} steps", "ddpm", f"DDIM, {steps} steps", x, sec)
        steps, m = params["ddpm_ancestral_steps"], params["ddpm_ancestral_images"]
        if m > 0:
            x, sec = trained["ddpm"].sample(m, sampler="ddpm", steps=steps, seed=seed)
            label = f"DDPM, ancestral {steps} steps"
            out[label] = Samples(label, "ddpm", f"ancestral, {steps} steps", x, sec)
    return out


def real_statistics(params: dict, *, device: str | torch.device = "cpu") -> dict:
    """Cached Inception statistics of real images: the reference (``fid_reference_images`` training images,
    0 = all 50,000) and the two floors (``fid_images`` other training images, and test images)."""
    from .fid import cached_statistics

    ds = D.load_cifar10(params["data"])
    n_ref, n, seed, bs = params["fid_reference_images"], params["fid_images"], params["seed"], params["fid_batch_size"]
    ref_x, _ = D.subsample(ds.train_x, ds.train_y, n_ref, seed=seed)
    train_x, _ = D.subsample(ds.train_x, ds.train_y, n, seed=seed + 1)
    test_x, _ = D.subsample(ds.test_x, ds.test_y, n, seed=seed)
    kw = dict(source=ds.source, seed=seed, batch_size=bs, device=device)
    return {"reference": cached_statistics(ref_x, split="train-reference", **kw),
            "train": cached_statistics(train_x, split="train-floor", **kw),
            "test": cached_statistics(test_x, split="test-floor", **kw), "source": ds.source}


def fid_table(samples: dict[str, Samples], trained: dict[str, TrainedGenerator], real: dict, params: dict, *,
              presented: dict, device: str | torch.device = "cpu") -> pd.DataFrame:
    """SPEC 2.4: FID of each model's samples against the training-set reference, beside the real-image floors,
    the presented FID, the setting as run, parameters, training time and sampling time (per image and
    extrapolated to 5,000 images)."""
    from .fid import statistics

    ref, n_fid = real["reference"], params["fid_images"]
    floor = fid_row("floor: real training images", real["train"], ref)["FID"]
    rows = [fid_row("floor: real training images", real["train"], ref),
            fid_row("floor: real test images", real["test"], ref)]
    for label, smp in samples.items():
        if len(smp.images) < n_fid:  # too few to score at the same sample size (FID depends on it)
            continue
        t = trained[smp.model]
        s = t.settings
        rows.append(fid_row(label, statistics(smp.images, batch_size=params["fid_batch_size"], device=device), ref,
                            presented=presented.get(smp.model), **{
                                "FID floor (train)": floor, "lr": s["lr"], "batch": s["batch_size"],
                                "epochs": s["epochs"], "steps": s["steps"], "parameters": t.parameters,
                                "training time (s)": round(t.wall_time_s, 1),
                                "sampler": smp.sampler, "sampling s / image": round(smp.seconds_per_image, 4),
                                "s to sample 5,000 (extrapolated)": round(5000 * smp.seconds_per_image, 1)}))
    df = pd.DataFrame(rows)
    df["profile"], df["data"], df["device"] = params["profile"], real["source"], trained[next(iter(trained))].device
    return df


def sampling_times(samples: dict[str, Samples]) -> pd.DataFrame:
    """Seconds per image of every sampler (whether or not its sample was large enough for FID)."""
    return pd.DataFrame([{"model / sampler": s.label, "images drawn": len(s.images), "seconds": round(s.seconds, 2),
                          "s / image": round(s.seconds_per_image, 4),
                          "s to sample 5,000 (extrapolated)": round(5000 * s.seconds_per_image, 1)}
                         for s in samples.values()])


def augmentation_experiment(vae: VAE, splits, params: dict, *, ckpt_root: Path, tb_root: Path | None = None,
                            presented: tuple[float, float] = (60.0, 70.0)):
    """SPEC 2.2: the chapter-1 classifier trained on real images, on VAE reconstructions (labels kept), and on
    both; selected on real validation images, tested once on real test images. Returns (table, trained runs)."""
    from .supervised import train_classifier

    cp = classifier_params(params)
    runs = {"real images": splits,
            "VAE reconstructions": reconstruction_splits(vae, splits, mode="reconstructions"),
            "real + VAE reconstructions": reconstruction_splits(vae, splits, mode="real+reconstructions")}
    trained, rows = {}, []
    for label, sp in runs.items():
        run = f"{params['classifier_model']}-" + label.replace(" + ", "-and-").replace(" ", "-").lower()
        t = train_classifier(params["classifier_model"], sp, cp, ckpt_root=ckpt_root, tb_root=tb_root, run_name=run)
        trained[label] = t
        rows.append({"training images": label, "n train": len(sp.train_y),
                     "test acc (%)": round(100 * t.test_acc, 2), "best val acc (%)": round(100 * t.val_acc, 2),
                     "presented (%)": f"{presented[0]:.0f}-{presented[1]:.0f}" if "VAE" in label else None,
                     "model": f"{params['classifier_model']} (width {cp['width']})", "epochs": t.epochs,
                     "wall time (s)": round(t.wall_time_s, 1), "test images": len(sp.test_y),
                     "profile": params["profile"], "data": splits.source})
    return pd.DataFrame(rows), trained


def histogram_classifier(profile_dir: Path, fallback) -> tuple[nn.Module, str]:
    """Chapter 1's ResNet-18 (best checkpoint of this profile) when it exists, else ``fallback`` (the 2.2
    classifier trained on real images in this chapter), with a line saying which one is used."""
    from .supervised import load_classifier

    try:
        model, info = load_classifier(profile_dir, "resnet18")
        return model, (f"chapter-1 ResNet-18 (width {info['width']}, test acc {100 * info['test_acc']:.2f}%, "
                       f"profile {info['profile']})")
    except FileNotFoundError as err:
        return fallback.model.cpu().eval(), (f"chapter-1 checkpoint not found ({err}); using the 2.2 classifier "
                                             f"trained on real images here (test acc {100 * fallback.test_acc:.2f}%)")


def sample_class_counts(classifier: nn.Module, samples: dict[str, Samples], trained: dict[str, TrainedGenerator], *,
                        real: torch.Tensor, n: int, seed: int) -> dict[str, np.ndarray]:
    """Predicted-class counts of ``n`` real test images and of ``n`` fresh samples of the VAE and DCGAN (cheap to
    draw); DDPM rows reuse their already drawn samples (slow to draw more)."""
    counts = {"real test images": class_histogram(classifier, real[:n])}
    for s in samples.values():
        images = s.images if s.model == "ddpm" else trained[s.model].sample(n, seed=seed)[0]
        counts[s.label] = class_histogram(classifier, images)
    return counts
