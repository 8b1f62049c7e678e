"""Chapter 3: semi-supervised learning on CIFAR-10-4K -- Meta Pseudo Labels with UDA, and its baselines.

What is here, in the order a run uses it:

* :func:`load_ssl_splits` -- the seeded, class-balanced CIFAR-10-4K split: 4,000 labelled (400 per class),
  5,000 validation (model selection), 41,000 unlabelled (labels dropped), and the test set (reported once).
* :func:`rand_augment` -- *per-sample* RandAugment on uint8 batches on the training device.
  ``torchvision.transforms.v2.RandAugment`` called on a batch tensor draws ONE op sequence for the whole batch,
  which removes most of the diversity UDA's consistency loss lives on; calling it once per image gives that
  diversity but costs ~0.7 ms per image (307 ms for 448 images, measured on this 2-core CPU, one thread). So each
  of the ``num_ops`` rounds draws an op and a sign *per image* from a seeded generator and applies torchvision's
  own op table (``RandAugment._AUGMENTATION_SPACE`` / ``_apply_image_or_video_transform``, same magnitudes) once
  per (op, sign) group: every image gets its own op sequence for at most ~2 x 27 batched calls per batch
  (measured: 48 ms for 448 images, against 119 ms for one shared op sequence and 67 ms for chunks of 8). On the
  CPU the augmentation runs single-threaded: with two threads on a busy machine, the many small ops spend more
  time synchronising threads than computing (measured 100x slower). A Cutout square
  (grey, as in the reference code's RandAugmentCIFAR) follows.
* :class:`SSLBatches` -- labelled ``(x, y)`` with weak augmentation (crop + flip) and unlabelled pairs
  ``(weak, strong)``; step ``s`` depends only on ``(seed, s)``, so resumed runs see the same batches.
* Methods trained by :func:`lib.train.fit`: :class:`MetaPseudoLabels` (teacher and student, both optimizers
  and schedulers, the student's EMA), :class:`UDA` (the MPL teacher's objective without the feedback term, one
  network) and :class:`Supervised` (labelled images only); all three checkpoint every stateful part.
* :func:`train_ssl` / :func:`finetune` -- one call per row of the results table; :func:`read_tensorboard` reads
  the logged scalars back for the curves (SPEC 3.8).

MPL follows Pham et al., "Meta Pseudo Labels" (CVPR 2021) and the structure of the public PyTorch reference
(kekmodel/MPL-pytorch): teacher loss = label-smoothed CE on labelled images + ramped UDA consistency on
confident unlabelled images + ``h * CE(T(x_strong), argmax T(x_strong))`` where
``h = L_student(x_l) before - after`` its step on the teacher's hard pseudo labels (the first-order estimate of
the dot product of the student's labelled and pseudo-labelled gradients, times its learning rate).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import data as D
from .models import build_model, count_parameters
from .params import params_hash
from .train import (EMA, Method, device_description, fit, load_checkpoint, make_optimizer, maybe_compile,
                    pick_device, predict, resolve_compile)

# ---------------------------------------------------------------------------------------------- split


@dataclass
class SSLSplits:
    """CIFAR-10-4K: labelled / unlabelled / validation parts of the training set, and the test set."""

    labelled_x: torch.Tensor
    labelled_y: torch.Tensor
    unlabelled_x: torch.Tensor
    unlabelled_y: torch.Tensor  # kept only to report pseudo-label accuracy diagnostics; never used for training
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str
    indices: dict = field(default_factory=dict, repr=False)  # indices into the training set, per part

    def sizes(self) -> dict[str, int]:
        return {"validation": len(self.val_y), "labelled": len(self.labelled_y),
                "unlabelled": len(self.unlabelled_x), "test": len(self.test_y)}


def make_ssl_split(labels: torch.Tensor, *, labelled: int, val: int, unlabelled: int, seed: int) -> dict:
    """Disjoint, class-balanced index sets ``{"val", "labelled", "unlabelled"}`` of ``labels``.

    ``unlabelled=-1`` takes every image left over (41,000 of CIFAR-10's 50,000); a positive size takes a
    class-balanced subset of that size (small profiles).
    """
    parts = D.stratified_split(labels, {"val": val, "labelled": labelled, "unlabelled": -1}, seed=seed)
    if unlabelled not in (-1, 0) and unlabelled < len(parts["unlabelled"]):
        keep = D.stratified_split(labels[parts["unlabelled"]], {"keep": unlabelled}, seed=seed + 1)["keep"]
        parts["unlabelled"] = parts["unlabelled"][keep].sort().values
    return parts


def load_ssl_splits(params: dict) -> SSLSplits:
    ds = D.load_cifar10(params["data"])
    parts = make_ssl_split(ds.train_y, labelled=params["labelled_size"], val=params["val_size"],
                           unlabelled=params["unlabelled_size"], seed=params["seed"])
    test_x, test_y = D.subsample(ds.test_x, ds.test_y, params["test_subset"], seed=params["seed"])
    tx, ty = ds.train_x, ds.train_y
    return SSLSplits(tx[parts["labelled"]], ty[parts["labelled"]], tx[parts["unlabelled"]], ty[parts["unlabelled"]],
                     tx[parts["val"]], ty[parts["val"]], test_x, test_y, source=ds.source, indices=parts)


def split_table(splits: SSLSplits, presented: dict, *, profile: str) -> pd.DataFrame:
    """SPEC 3.4: sizes and per-class counts of each part, beside the presented split."""
    rows = []
    parts = {"validation": splits.val_y, "labelled": splits.labelled_y, "unlabelled": splits.unlabelled_y,
             "test (reported once)": splits.test_y}
    for name, y in parts.items():
        counts = torch.bincount(y, minlength=10)
        rows.append({"part": name, "presented": presented.get(name.split(" ")[0]), "this run": len(y),
                     "per class (min-max)": f"{int(counts.min())}-{int(counts.max())}",
                     "labels used in training": {"labelled": "yes", "unlabelled": "no (images only)"}.get(
                         name, "no (evaluation only)"),
                     "profile": profile, "data": splits.source})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- augmentation
def _torchvision_randaugment(num_ops: int, magnitude: int, bins: int):
    from torchvision.transforms import v2

    ra = v2.RandAugment(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=bins)
    if not hasattr(ra, "_AUGMENTATION_SPACE") or not hasattr(ra, "_apply_image_or_video_transform"):
        raise RuntimeError("this torchvision's RandAugment lacks _AUGMENTATION_SPACE/_apply_image_or_video_transform; "
                           "install the torchvision pinned in requirements.txt")
    return ra


def rand_augment(x: torch.Tensor, *, num_ops: int, magnitude: int, generator: torch.Generator,
                 num_magnitude_bins: int = 31) -> torch.Tensor:
    """Per-sample RandAugment of a uint8 ``(B, 3, H, W)`` batch (see the module docstring for why and how).

    Op choice and sign come from ``generator`` (CPU), so the result is a pure function of the batch and seed.
    """
    if x.dtype != torch.uint8:
        raise TypeError(f"rand_augment expects uint8 images, got {x.dtype}")
    ra = _torchvision_randaugment(num_ops, magnitude, num_magnitude_bins)
    space = list(ra._AUGMENTATION_SPACE.items())
    b, _, h, w = x.shape
    for _ in range(num_ops):
        ops = torch.randint(len(space), (b,), generator=generator)
        negative = torch.rand(b, generator=generator) < 0.5
        out = x.clone()
        for k in ops.unique().tolist():
            name, (magnitudes_fn, signed) = space[k]
            mags = magnitudes_fn(num_magnitude_bins, h, w)
            mag = float(mags[magnitude]) if mags is not None else 0.0
            if name == "Identity":
                continue
            for neg in ((False, True) if signed and mag != 0.0 else (None,)):
                sel = ops == k if neg is None else (ops == k) & (negative == neg)
                idx = sel.nonzero().flatten().to(x.device)
                if len(idx):
                    out[idx] = ra._apply_image_or_video_transform(x[idx], name, -mag if neg else mag,
                                                                  interpolation=ra.interpolation, fill=ra._fill)
        x = out
    return x


def cutout(x: torch.Tensor, *, size: int, generator: torch.Generator, fill: int = 127) -> torch.Tensor:
    """A ``size`` x ``size`` grey square (clipped at the border) at a random centre of every image."""
    if size <= 0:
        return x
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b, 1), generator=generator).to(x.device)
    cx = torch.randint(0, w, (b, 1), generator=generator).to(x.device)
    r = torch.arange(h, device=x.device)[None]
    c = torch.arange(w, device=x.device)[None]
    rows = (r >= cy - size // 2) & (r < cy - size // 2 + size)  # (B, H)
    cols = (c >= cx - size // 2) & (c < cx - size // 2 + size)  # (B, W)
    mask = (rows[:, :, None] & cols[:, None, :])[:, None]
    return torch.where(mask, torch.full_like(x, fill), x)


@dataclass
class SSLBatch:
    """One training step's data: labelled images and labels, and two views of the unlabelled images."""

    x_l: torch.Tensor
    y_l: torch.Tensor
    x_uw: torch.Tensor | None  # weak view: crop + flip
    x_us: torch.Tensor | None  # strong view: crop + flip + RandAugment + Cutout


class SSLBatches:
    """Deterministic labelled + unlabelled batches on ``device``; ``forever(start_step)`` for :func:`fit`.

    The labelled stream is a :class:`lib.data.BatchLoader`; the unlabelled stream draws its own permutation,
    two independent crop/flip draws per image, and the RandAugment/Cutout choices from generators seeded by
    ``(seed, epoch)`` and ``(seed, step)``. ``unlabelled_batch=0`` yields labelled data only (supervised baseline).
    """

    def __init__(self, labelled_x, labelled_y, unlabelled_x, *, labelled_batch: int, unlabelled_batch: int,
                 device, seed: int, randaug_ops: int, randaug_magnitude: int, cutout_size: int,
                 channels_last: bool = False):
        self.device = torch.device(device)
        self.labelled = D.BatchLoader(labelled_x, labelled_y, batch_size=labelled_batch, device=self.device,
                                      seed=seed, channels_last=channels_last)
        if unlabelled_batch > len(unlabelled_x):
            raise ValueError(f"unlabelled batch {unlabelled_batch} is larger than the {len(unlabelled_x)} unlabelled "
                             "images; lower batch_size or mu, or raise unlabelled_size")
        self.ux = unlabelled_x.to(self.device) if unlabelled_batch else None
        self.ub, self.seed = unlabelled_batch, seed
        self.randaug_ops, self.randaug_magnitude, self.cutout_size = randaug_ops, randaug_magnitude, cutout_size
        self.channels_last = channels_last

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        x = D.normalize(x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def unlabelled_steps_per_epoch(self) -> int:
        return len(self.ux) // self.ub

    def unlabelled_views(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 weak and strong views of the unlabelled batch of ``step``."""
        per_epoch = self.unlabelled_steps_per_epoch()
        epoch, i = divmod(step, per_epoch)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7_919 * epoch + 17)
        n = len(self.ux)
        perm = torch.randperm(n, generator=g)
        offsets = torch.randint(0, 9, (2, n, 2), generator=g)
        flips = torch.rand(2, n, generator=g) < 0.5
        sl = slice(i * self.ub, (i + 1) * self.ub)
        xb = self.ux[perm[sl].to(self.device)]
        weak = D.random_crop_flip(xb, offsets[0, sl], flips[0, sl])
        strong = D.random_crop_flip(xb, offsets[1, sl], flips[1, sl])
        gs = torch.Generator().manual_seed(self.seed * 7_777_777 + step)
        with cpu_threads(1 if self.device.type == "cpu" else 0):  # many small ops: one thread is fastest
            strong = rand_augment(strong, num_ops=self.randaug_ops, magnitude=self.randaug_magnitude, generator=gs)
        strong = cutout(strong, size=self.cutout_size, generator=gs)
        return weak, strong

    def forever(self, start_step: int = 0) -> Iterator[SSLBatch]:
        labelled = self.labelled.forever(start_step)
        step = start_step
        while True:
            x_l, y_l = next(labelled)
            x_uw = x_us = None
            if self.ub:
                weak, strong = self.unlabelled_views(step)
                x_uw, x_us = self._finish(weak), self._finish(strong)
            yield SSLBatch(x_l, y_l, x_uw, x_us)
            step += 1


# ---------------------------------------------------------------------------------------------- schedules
def warmup_cosine(optimizer, *, total_steps: int, warmup_steps: int, wait_steps: int = 0):
    """The reference code's schedule: LR 0 for ``wait_steps``, linear warm-up over ``warmup_steps``, then a
    half-cosine to 0 at ``total_steps``."""
    def fn(s: int) -> float:
        if s < wait_steps:
            return 0.0
        if s < wait_steps + warmup_steps:
            return (s - wait_steps + 1) / max(1, warmup_steps)
        progress = (s - wait_steps - warmup_steps) / max(1, total_steps - wait_steps - warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


class StepCounter:
    """The number of steps a method has taken, checkpointed with it (the UDA weight ramps with it)."""

    def __init__(self):
        self.value = 0

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, sd: dict) -> None:
        self.value = int(sd["value"])


# ---------------------------------------------------------------------------------------------- losses
def uda_consistency(logits_weak: torch.Tensor, logits_strong: torch.Tensor, *, temperature: float,
                    threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """UDA (Xie et al. 2020): CE of the sharpened, detached weak-view prediction against the strong view, on
    images whose confidence reaches ``threshold``. Returns ``(loss, mask, hard labels of the weak view)``."""
    soft = torch.softmax(logits_weak.detach().float() / temperature, dim=-1)
    confidence, hard = soft.max(dim=-1)
    mask = (confidence >= threshold).float()
    loss = (-(soft * torch.log_softmax(logits_strong.float(), dim=-1)).sum(-1) * mask).mean()
    return loss, mask, hard


def mpl_feedback(student_loss_before: torch.Tensor, student_loss_after: torch.Tensor,
                 teacher_logits: torch.Tensor, pseudo_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The MPL teacher term ``h * CE(teacher_logits, pseudo_labels)`` with ``h = before - after``.

    ``h > 0`` when the student's labelled loss fell after learning the pseudo labels: minimising the term then
    *raises* the teacher's log-likelihood of those labels (a reward); ``h < 0`` lowers it. Returns ``(term, h)``.
    """
    h = (student_loss_before - student_loss_after).detach().float()
    return h * F.cross_entropy(teacher_logits.float(), pseudo_labels), h


# ---------------------------------------------------------------------------------------------- methods
class _SSLMethod(Method):
    """Shared parts: the EMA of the evaluated network, the step counter, timing logs and the batch size."""

    eval_name = "model"

    def batch_size(self, batch: SSLBatch) -> int:
        return len(batch.y_l) + (len(batch.x_uw) if batch.x_uw is not None else 0)

    @property
    def eval_model(self) -> nn.Module:
        ema = self.state.get("ema")
        return ema.module if ema is not None else self.state[self.eval_name]

    compile: bool | str = False

    def setup(self, device, autocast_dtype):
        super().setup(device, autocast_dtype)
        on = resolve_compile(self.compile, device)
        self._compiled = {name: maybe_compile(obj, on) for name, obj in self.state.items()
                          if isinstance(obj, nn.Module) and not isinstance(obj, EMA)}

    def _track_ema(self, model: nn.Module, decay: float) -> None:
        """An EMA of ``model`` (checkpointed with the method and evaluated in its place) when ``decay`` > 0."""
        self.ema = EMA(model, decay) if decay > 0 else None
        if self.ema is not None:
            self.state["ema"] = self.ema

    def net(self, name: str) -> nn.Module:
        """The network ``name`` as training calls it: compiled after :meth:`setup` when ``compile`` is on."""
        compiled = getattr(self, "_compiled", {}).get(name)
        return compiled if compiled is not None else self.state[name]


def _optimise(loss: torch.Tensor, model: nn.Module, optimizer, scheduler, *, grad_clip: float, ema=None) -> None:
    """One optimiser update of ``model`` from ``loss``: backward, optional norm clip, step, schedule, EMA."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip and grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    if ema is not None:
        ema.update(model)


class MetaPseudoLabels(_SSLMethod):
    """MPL with UDA: one :meth:`train_step` updates the student on the teacher's hard pseudo labels, then the
    teacher on labelled CE + UDA consistency + the student's feedback (SPEC 3.3, steps 0-3)."""

    eval_name = "student"

    def __init__(self, teacher: nn.Module, student: nn.Module, *, teacher_optimizer, student_optimizer,
                 teacher_scheduler=None, student_scheduler=None, ema_decay: float = 0.0, label_smoothing: float,
                 temperature: float, threshold: float, lambda_u: float, uda_steps: int, grad_clip: float = 0.0):
        super().__init__()
        self.teacher, self.student = teacher, student
        self.t_opt, self.s_opt, self.t_sched, self.s_sched = (teacher_optimizer, student_optimizer,
                                                              teacher_scheduler, student_scheduler)
        self.counter = StepCounter()
        self.state = {"teacher": teacher, "student": student, "teacher_optimizer": teacher_optimizer,
                      "student_optimizer": student_optimizer, "step": self.counter}
        if teacher_scheduler is not None:
            self.state["teacher_scheduler"] = teacher_scheduler
        if student_scheduler is not None:
            self.state["student_scheduler"] = student_scheduler
        self._track_ema(student, ema_decay)
        self.ls, self.temperature, self.threshold = label_smoothing, temperature, threshold
        self.lambda_u, self.uda_steps, self.grad_clip = lambda_u, uda_steps, grad_clip

    def lr(self):
        return self.t_opt.param_groups[0]["lr"]

    def train_step(self, batch: SSLBatch):
        x_l, y_l, x_uw, x_us = batch.x_l, batch.y_l, batch.x_uw, batch.x_us
        n_l = len(y_l)
        self.teacher.train()
        self.student.train()
        with self.autocast():
            # teacher on labelled, weak and strong views at once (one BN pass, as in the reference)
            t_logits = self.net("teacher")(torch.cat([x_l, x_uw, x_us]))
            t_logits_l = t_logits[:n_l]
            t_logits_uw, t_logits_us = t_logits[n_l:].chunk(2)
            t_loss_l = F.cross_entropy(t_logits_l.float(), y_l, label_smoothing=self.ls)
            t_loss_u, mask, pseudo = uda_consistency(t_logits_uw, t_logits_us, temperature=self.temperature,
                                                     threshold=self.threshold)
            weight_u = self.lambda_u * min(1.0, (self.counter.value + 1) / max(1, self.uda_steps))
            t_loss_uda = t_loss_l + weight_u * t_loss_u

            # 0) the student learns the teacher's hard pseudo labels on the strong view
            s_logits = self.net("student")(torch.cat([x_l, x_us]))
            s_loss_l_old = F.cross_entropy(s_logits[:n_l].detach().float(), y_l)
            s_loss = F.cross_entropy(s_logits[n_l:].float(), pseudo, label_smoothing=self.ls)
        _optimise(s_loss, self.student, self.s_opt, self.s_sched, grad_clip=self.grad_clip, ema=self.ema)

        # 1) feedback: how the student's labelled loss changed, applied to the teacher's own hard labels
        with self.autocast():
            with torch.no_grad():
                s_loss_l_new = F.cross_entropy(self.net("student")(x_l).float(), y_l)
            t_loss_mpl, h = mpl_feedback(s_loss_l_old, s_loss_l_new, t_logits_us,
                                         t_logits_us.detach().argmax(-1))
            # 2) + 3) labelled CE and UDA consistency
            t_loss = t_loss_uda + t_loss_mpl
        _optimise(t_loss, self.teacher, self.t_opt, self.t_sched, grad_clip=self.grad_clip)
        self.counter.value += 1
        return {"student_loss": s_loss.detach(), "teacher_loss": t_loss.detach(), "t_loss_l": t_loss_l.detach(),
                "t_loss_uda": t_loss_u.detach(), "t_loss_mpl": t_loss_mpl.detach(), "mpl_h": h,
                "mask_ratio": mask.mean().detach(), "uda_weight": torch.tensor(weight_u),
                "lr_teacher": torch.tensor(self.t_opt.param_groups[0]["lr"]),
                "lr_student": torch.tensor(self.s_opt.param_groups[0]["lr"])}


class UDA(_SSLMethod):
    """UDA-only baseline: the MPL teacher's objective (labelled CE + ramped consistency) without feedback."""

    eval_name = "teacher"

    def __init__(self, model: nn.Module, *, optimizer, scheduler=None, ema_decay: float = 0.0,
                 label_smoothing: float, temperature: float, threshold: float, lambda_u: float, uda_steps: int,
                 grad_clip: float = 0.0):
        super().__init__()
        self.model, self.opt, self.sched = model, optimizer, scheduler
        self.counter = StepCounter()
        self.state = {"teacher": model, "optimizer": optimizer, "step": self.counter}
        if scheduler is not None:
            self.state["scheduler"] = scheduler
        self._track_ema(model, ema_decay)
        self.ls, self.temperature, self.threshold = label_smoothing, temperature, threshold
        self.lambda_u, self.uda_steps, self.grad_clip = lambda_u, uda_steps, grad_clip

    def train_step(self, batch: SSLBatch):
        n_l = len(batch.y_l)
        self.model.train()
        with self.autocast():
            logits = self.net("teacher")(torch.cat([batch.x_l, batch.x_uw, batch.x_us]))
            loss_l = F.cross_entropy(logits[:n_l].float(), batch.y_l, label_smoothing=self.ls)
            logits_uw, logits_us = logits[n_l:].chunk(2)
            loss_u, mask, _ = uda_consistency(logits_uw, logits_us, temperature=self.temperature,
                                              threshold=self.threshold)
            weight_u = self.lambda_u * min(1.0, (self.counter.value + 1) / max(1, self.uda_steps))
            loss = loss_l + weight_u * loss_u
        _optimise(loss, self.model, self.opt, self.sched, grad_clip=self.grad_clip, ema=self.ema)
        self.counter.value += 1
        return {"teacher_loss": loss.detach(), "t_loss_l": loss_l.detach(), "t_loss_uda": loss_u.detach(),
                "mask_ratio": mask.mean().detach(), "uda_weight": torch.tensor(weight_u),
                "lr_teacher": torch.tensor(self.opt.param_groups[0]["lr"])}


class Supervised(_SSLMethod):
    """Supervised-only baseline on the labelled images, with the same network, schedule and EMA."""

    def __init__(self, model: nn.Module, *, optimizer, scheduler=None, ema_decay: float = 0.0,
                 label_smoothing: float, grad_clip: float = 0.0):
        super().__init__()
        self.model, self.opt, self.sched = model, optimizer, scheduler
        self.state = {"model": model, "optimizer": optimizer}
        if scheduler is not None:
            self.state["scheduler"] = scheduler
        self._track_ema(model, ema_decay)
        self.ls, self.grad_clip = label_smoothing, grad_clip

    def train_step(self, batch: SSLBatch):
        self.model.train()
        with self.autocast():
            logits = self.net("model")(batch.x_l)
            loss = F.cross_entropy(logits.float(), batch.y_l, label_smoothing=self.ls)
        _optimise(loss, self.model, self.opt, self.sched, grad_clip=self.grad_clip, ema=self.ema)
        return {"loss": loss.detach(), "acc": (logits.argmax(1) == batch.y_l).float().mean().detach(),
                "lr": torch.tensor(self.opt.param_groups[0]["lr"])}


# ---------------------------------------------------------------------------------------------- evaluation
def topk_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 and top-5 accuracy (fractions) and mean cross-entropy."""
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    return {"acc": (top5[:, 0] == labels).float().mean().item(),
            "top5": (top5 == labels[:, None]).any(1).float().mean().item(),
            "loss": F.cross_entropy(logits, labels).item()}


# ---------------------------------------------------------------------------------------------- runs
KINDS = ("mpl", "uda", "supervised")
TRAIN_LOSS = {"mpl": "student_loss", "uda": "teacher_loss", "supervised": "loss", "finetune": "loss"}
LABELS = {"mpl": "MPL (student)", "uda": "UDA only (teacher, no MPL feedback)",
          "supervised": "supervised only (labelled images)", "finetune": "MPL + finetune"}
TRAIN_KEYS = ("width", "bn_momentum", "teacher_dropout", "student_dropout", "total_steps", "batch_size", "mu",
              "teacher_lr", "student_lr", "momentum", "nesterov", "weight_decay", "label_smoothing", "warmup_steps",
              "student_wait_steps", "uda_steps", "lambda_u", "threshold", "temperature", "ema", "grad_clip",
              "randaug_ops", "randaug_magnitude", "cutout_size", "seed", "amp")


@dataclass
class SSLRun:
    """One trained row of the results table: validation-selected model, its test metrics, history, timing."""

    kind: str
    model: nn.Module
    history: pd.DataFrame
    best_step: int
    val_acc: float
    test: dict
    steps: int
    wall_time_s: float
    parameters: int
    device: str
    tb_dir: Path | None
    checkpoint: Path | None
    seconds_per_step: float = float("nan")


def _loaders(splits: SSLSplits, params: dict, device, *, unlabelled: bool, labelled_batch: int | None = None):
    cl = device.type == "cuda"
    batches = SSLBatches(splits.labelled_x, splits.labelled_y, splits.unlabelled_x,
                         labelled_batch=labelled_batch or params["batch_size"],
                         unlabelled_batch=params["batch_size"] * params["mu"] if unlabelled else 0,
                         device=device, seed=params["seed"], randaug_ops=params["randaug_ops"],
                         randaug_magnitude=params["randaug_magnitude"], cutout_size=params["cutout_size"],
                         channels_last=cl)
    val = D.BatchLoader(splits.val_x, splits.val_y, batch_size=params["eval_batch_size"], device=device,
                        train=False, channels_last=cl)
    test = D.BatchLoader(splits.test_x, splits.test_y, batch_size=params["eval_batch_size"], device=device,
                         train=False, channels_last=cl)
    return batches, val, test


def build_method(kind: str, params: dict, *, total_steps: int | None = None) -> _SSLMethod:
    """The method of ``kind`` (``mpl``, ``uda``, ``supervised``) with its networks, SGD optimizers and schedules."""
    if kind not in KINDS:
        raise ValueError(f"unknown SSL method {kind!r}; expected one of {KINDS}")
    total = total_steps or params["total_steps"]
    p = params

    def net(dropout):
        return build_model("wrn28_2", width=p["width"], dropout=dropout, bn_momentum=p["bn_momentum"])

    def opt(model, lr):
        return make_optimizer(_decay_groups(model, p["weight_decay"]), name="sgd", lr=lr, momentum=p["momentum"],
                              nesterov=p["nesterov"])

    torch.manual_seed(p["seed"])
    common = {"label_smoothing": p["label_smoothing"], "grad_clip": p["grad_clip"]}
    uda = {"temperature": p["temperature"], "threshold": p["threshold"], "lambda_u": p["lambda_u"],
           "uda_steps": p["uda_steps"]}
    if kind == "mpl":
        teacher, student = net(p["teacher_dropout"]), net(p["student_dropout"])
        t_opt, s_opt = opt(teacher, p["teacher_lr"]), opt(student, p["student_lr"])
        method = MetaPseudoLabels(
            teacher, student, teacher_optimizer=t_opt, student_optimizer=s_opt,
            teacher_scheduler=warmup_cosine(t_opt, total_steps=total, warmup_steps=p["warmup_steps"]),
            student_scheduler=warmup_cosine(s_opt, total_steps=total, warmup_steps=p["warmup_steps"],
                                            wait_steps=p["student_wait_steps"]),
            ema_decay=p["ema"], **common, **uda)
    else:
        model = net(p["teacher_dropout"])
        o = opt(model, p["teacher_lr"])
        sched = warmup_cosine(o, total_steps=total, warmup_steps=p["warmup_steps"])
        if kind == "uda":
            method = UDA(model, optimizer=o, scheduler=sched, ema_decay=p["ema"], **common, **uda)
        else:
            method = Supervised(model, optimizer=o, scheduler=sched, ema_decay=p["ema"], **common)
    method.compile = p["compile"]
    return method


def _decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights only, not on biases and BN parameters (as in the reference code)."""
    decay, no_decay = [], []
    for name, prm in model.named_parameters():
        (no_decay if prm.ndim <= 1 else decay).append(prm)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@contextlib.contextmanager
def cpu_threads(n: int):
    """Run the block with ``n`` torch CPU threads (0 = leave torch's setting), restoring the setting afterwards."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_ssl(kind: str, splits: SSLSplits, params: dict, *, ckpt_root: Path, tb_root: Path | None = None,
              stop_after: int | None = None) -> SSLRun:
    """Train ``kind`` through :func:`lib.train.fit`: validation top-1 of the evaluated network (MPL: the
    student's EMA; UDA: the teacher's EMA; supervised: its EMA) every ``eval_every`` steps picks ``best.pt``; the
    test set is evaluated once, on that checkpoint. Re-running with the same parameters reuses/resumes it."""
    device = pick_device(params["device"])
    key = params_hash({"kind": kind, **{k: params[k] for k in TRAIN_KEYS}, "data": splits.source,
                       "sizes": splits.sizes()})
    ckpt_dir = Path(ckpt_root) / f"{kind}-{key}"
    method = build_method(kind, params)
    batches, val, test = _loaders(splits, params, device, unlabelled=kind != "supervised")
    return _run(kind, method, batches.forever, val, test, params, device, ckpt_dir=ckpt_dir,
                tb_dir=(Path(tb_root) / kind) if tb_root else None, total_steps=params["total_steps"],
                eval_every=params["eval_every"], stop_after=stop_after,
                config={"kind": kind, **{k: params[k] for k in TRAIN_KEYS}})


def _run(kind, method, batches_fn, val, test, params, device, *, ckpt_dir, tb_dir, total_steps, eval_every,
         stop_after=None, config=None) -> SSLRun:
    with cpu_threads(params["cpu_threads"] if device.type == "cpu" else 0):
        return _run_inner(kind, method, batches_fn, val, test, params, device, ckpt_dir=ckpt_dir, tb_dir=tb_dir,
                          total_steps=total_steps, eval_every=eval_every, stop_after=stop_after, config=config)


def _run_inner(kind, method, batches_fn, val, test, params, device, *, ckpt_dir, tb_dir, total_steps, eval_every,
               stop_after=None, config=None) -> SSLRun:
    def evaluate():
        m = topk_metrics(*predict(method.eval_model, val, autocast_dtype=method.autocast_dtype))
        return {"val_acc": m["acc"], "val_top5": m["top5"], "val_loss": m["loss"]}

    result = fit(method, batches_fn, total_steps=total_steps, evaluate=evaluate, eval_every=eval_every,
                 ckpt_dir=ckpt_dir, tb_dir=tb_dir, device=device, amp=params["amp"], seed=params["seed"],
                 desc=kind, log_every=params["log_every"], stop_after=stop_after, config=config)
    if result.best_checkpoint is not None:  # the step chosen on validation, not the last one
        method.load_state_dict(load_checkpoint(result.best_checkpoint)["method"])
        method.setup(device, method.autocast_dtype)
    test_metrics = topk_metrics(*predict(method.eval_model, test, autocast_dtype=method.autocast_dtype))
    hist = result.history
    train_s = hist["elapsed_s"].iloc[-1] if len(hist) else float("nan")
    sps = float(hist["train_batch_time"].mean()) if "train_batch_time" in hist else float("nan")
    return SSLRun(kind=kind, model=method.eval_model, history=hist, best_step=int(result.best.get("step", 0)),
                  val_acc=float(result.best.get("value", float("nan"))), test=test_metrics,
                  steps=int(hist["step"].iloc[-1]) if len(hist) else 0, wall_time_s=float(train_s),
                  parameters=count_parameters(method.eval_model), device=device_description(device),
                  tb_dir=tb_dir, checkpoint=result.best_checkpoint, seconds_per_step=sps)


class _Finetune(Supervised):
    """Finetuning is supervised training on the labelled images without EMA, starting from the MPL student."""


def finetune(run: SSLRun, splits: SSLSplits, params: dict, *, ckpt_root: Path, tb_root: Path | None = None) -> SSLRun:
    """SPEC 3.5's final step: the selected MPL student (its EMA) trained on the labelled images alone with a tiny
    learning rate (presented: 625 epochs, batch 512, lr 3e-5, momentum 0.9); selected on validation again."""
    device = pick_device(params["device"])
    bs = params["finetune_batch_size"]
    steps_per_epoch = max(1, len(splits.labelled_y) // bs)
    total = params["finetune_epochs"] * steps_per_epoch
    torch.manual_seed(params["seed"])
    model = build_model("wrn28_2", width=params["width"], dropout=params["student_dropout"],
                        bn_momentum=params["bn_momentum"])
    model.load_state_dict(run.model.state_dict())
    o = make_optimizer(model.parameters(), name="sgd", lr=params["finetune_lr"], momentum=params["finetune_momentum"],
                       weight_decay=params["finetune_weight_decay"], nesterov=True)
    method = _Finetune(model, optimizer=o, scheduler=None, ema_decay=0.0, label_smoothing=0.0)
    method.compile = params["compile"]
    batches, val, test = _loaders(splits, params, device, unlabelled=False, labelled_batch=bs)
    key = params_hash({"from": str(run.checkpoint), "best_step": run.best_step,
                       **{k: params[k] for k in params if k.startswith("finetune_")}})
    eval_every = max(1, params["finetune_eval_every_epochs"] * steps_per_epoch)
    out = _run("finetune", method, batches.forever, val, test, params, device, ckpt_dir=Path(ckpt_root) / f"finetune-{key}",
               tb_dir=(Path(tb_root) / "finetune") if tb_root else None, total_steps=total, eval_every=eval_every,
               config={"kind": "finetune", "from": str(run.checkpoint)})
    return out


# ---------------------------------------------------------------------------------------------- tables
def results_table(runs: dict[str, SSLRun], presented: dict, *, profile: str, source: str, n_test: int) -> pd.DataFrame:
    """SPEC 3.6/3.7: paper, reference-code and presented values, then this run's methods (test top-1 / top-5 of
    the validation-selected checkpoint)."""
    rows = [{"result": k, "top-1 test acc (%)": v, "source": "MPL paper" if k.startswith("paper") else
             ("kekmodel/MPL-pytorch (300k steps)" if k.startswith("reference") else "presentation")}
            for k, v in presented.items()]
    for kind, r in runs.items():
        rows.append({"result": f"this run: {LABELS[kind]}", "top-1 test acc (%)": round(100 * r.test["acc"], 2),
                     "top-5 test acc (%)": round(100 * r.test["top5"], 2),
                     "best val top-1 (%)": round(100 * r.val_acc, 2), "selected step": r.best_step,
                     "steps": r.steps, "wall time (s)": round(r.wall_time_s, 1),
                     "s / step": round(r.seconds_per_step, 3), "source": f"this run ({profile})",
                     "device": r.device, "data": source, "test images": n_test})
    return pd.DataFrame(rows)


def hyperparameter_table(params: dict, splits: SSLSplits) -> pd.DataFrame:
    """SPEC 3.5: every presented hyperparameter beside the resolved value this run used."""
    p = params
    ft_steps = max(1, len(splits.labelled_y) // p["finetune_batch_size"])
    rows = [
        ("common", "optimizer", "SGD", f"SGD, momentum {p['momentum']}, nesterov {p['nesterov']}"),
        ("common", "model", "WRN-28-2", f"WRN-28-2 (width x{p['width']})"),
        ("common", "weight decay", 0.0005, p["weight_decay"]),
        ("common", "label smoothing", 0.15, p["label_smoothing"]),
        ("common", "training steps", 30000, p["total_steps"]),
        ("common", "evaluation every (steps)", 1000, p["eval_every"]),
        ("student", "learning rate", 0.05, p["student_lr"]),
        ("student", "batch size (labelled)", 128, p["batch_size"]),
        ("student", "dropout", 0.2, p["student_dropout"]),
        ("teacher", "learning rate", 0.05, p["teacher_lr"]),
        ("teacher", "batch size (labelled)", 128, p["batch_size"]),
        ("teacher", "dropout", 0.2, p["teacher_dropout"]),
        ("teacher", "UDA steps", 5000, p["uda_steps"]),
        ("finetune", "epochs", 625, f"{p['finetune_epochs']} ({p['finetune_epochs'] * ft_steps} steps)"),
        ("finetune", "batch size", 512, p["finetune_batch_size"]),
        ("finetune", "learning rate", 0.00003, p["finetune_lr"]),
        ("finetune", "momentum", 0.9, p["finetune_momentum"]),
        # not in the presented table; the reference code's values, as run
        ("reference code", "unlabelled batch ratio mu", None, f"{p['mu']} ({p['mu'] * p['batch_size']} images/step)"),
        ("reference code", "warm-up steps (student waits)", None, f"{p['warmup_steps']} ({p['student_wait_steps']})"),
        ("reference code", "UDA weight / threshold / temperature", None,
         f"{p['lambda_u']} / {p['threshold']} / {p['temperature']}"),
        ("reference code", "student EMA decay", None, p["ema"]),
        ("reference code", "batch-norm momentum", None, p["bn_momentum"]),
        ("reference code", "strong augmentation", None,
         f"per-sample RandAugment({p['randaug_ops']} ops, magnitude {p['randaug_magnitude']}/30) + "
         f"Cutout {p['cutout_size']}px"),
    ]
    return pd.DataFrame([{"group": g, "hyperparameter": k, "presented": v, "this run": r} for g, k, v, r in rows])


def reference_table(reference: dict) -> pd.DataFrame:
    """SPEC 3.1: the SSL methods table of the MPL paper (cited, not run here)."""
    cols = ("CIFAR-10-4K top-1", "SVHN-1K top-1", "ImageNet-10% top-1", "ImageNet-10% top-5")
    return pd.DataFrame([{"method": m, **dict(zip(cols, vals))} for m, vals in reference.items()])


# ---------------------------------------------------------------------------------------------- tensorboard
def read_tensorboard(tb_dir: str | Path) -> pd.DataFrame:
    """Every scalar in the event files under ``tb_dir`` as rows ``(run, tag, step, value)`` (``run`` is the
    sub-folder, e.g. ``mpl``), read with TensorBoard's own ``EventAccumulator``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb_dir = Path(tb_dir)
    rows = []
    for run_dir in sorted({p.parent for p in tb_dir.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        acc.Reload()
        run = run_dir.relative_to(tb_dir).as_posix() if run_dir != tb_dir else "."
        for tag in acc.Tags()["scalars"]:
            for ev in acc.Scalars(tag):
                rows.append({"run": run, "tag": tag, "step": ev.step, "value": ev.value})
    if not rows:
        raise FileNotFoundError(f"no TensorBoard scalars under {tb_dir}; train the chapter's methods first")
    return pd.DataFrame(rows).drop_duplicates(["run", "tag", "step"], keep="last").sort_values(["run", "tag", "step"])


def curves_figure(scalars: pd.DataFrame, *, runs: dict[str, str] | None = None, title: str = ""):
    """SPEC 3.8: validation top-1, top-5, loss and the training loss over steps, one line per method."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    runs = runs or {k: LABELS[k] for k in ("mpl", "uda", "supervised")}
    panels = [("(a) top-1 accuracy, validation (%)", lambda r: "eval/val_acc", 100),
              ("(b) top-5 accuracy, validation (%)", lambda r: "eval/val_top5", 100),
              ("(c) loss, validation", lambda r: "eval/val_loss", 1),
              ("(d) training loss (MPL: student)", lambda r: f"train/{TRAIN_LOSS.get(r, 'loss')}", 1)]
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), layout="constrained")
    for ax, (label, tag_of, scale) in zip(axes, panels):
        parts = []
        for run, name in runs.items():
            d = scalars[(scalars.run == run) & (scalars.tag == tag_of(run))]
            parts.append(d.assign(method=name, value=d.value * scale))
        df = pd.concat(parts) if parts else pd.DataFrame()
        if len(df):
            sns.lineplot(df, x="step", y="value", hue="method", ax=ax, marker="o" if df.step.nunique() < 30 else None)
        ax.set(title=label, xlabel="step", ylabel="")
        if ax is not axes[-1] and ax.get_legend():
            ax.get_legend().remove()
    if title:
        fig.suptitle(title)
    return fig
