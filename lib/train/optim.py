"""Optimisers and per-step learning-rate schedules, built from plain params."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def make_optimizer(params, *, name: str, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0, nesterov: bool = False,
                   betas=(0.9, 0.999)) -> torch.optim.Optimizer:
    """SGD (optionally Nesterov) or Adam/AdamW. :meth:`Method.setup` switches them to fused kernels
    on CUDA."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=nesterov)
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; expected 'sgd', 'adam' or 'adamw'")


def make_scheduler(optimizer, *, name: str, total_steps: int, steps_per_epoch: int = 1,
                   step_size_epochs: float = 30, gamma: float = 0.1, warmup_steps: int = 0):
    """Per-step LR schedule: ``constant``, ``step`` (StepLR in epochs), ``cosine`` or ``onecycle``
    (linear warm-up then linear decay to zero, the shape fast CIFAR-10 recipes use)."""
    if name == "constant":
        fn = lambda s: 1.0  # noqa: E731
    elif name == "step":
        size = max(1, int(step_size_epochs * steps_per_epoch))
        fn = lambda s: gamma ** (s // size)  # noqa: E731
    elif name == "cosine":
        fn = lambda s: (min(1.0, (s + 1) / warmup_steps) if s < warmup_steps else  # noqa: E731
                        0.5 * (1 + math.cos(math.pi * (s - warmup_steps)
                                            / max(1, total_steps - warmup_steps))))
    elif name == "onecycle":
        w = max(1, warmup_steps or int(0.2 * total_steps))
        fn = lambda s: ((s + 1) / w if s < w  # noqa: E731
                        else max(0.0, (total_steps - s) / max(1, total_steps - w)))
    else:
        raise ValueError(f"unknown scheduler {name!r}; expected constant, step, cosine or onecycle")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def warmup_cosine(optimizer, *, total_steps: int, warmup_steps: int, wait_steps: int = 0):
    """The MPL reference code's schedule (``get_cosine_schedule_with_warmup``): LR 0 for
    ``wait_steps``, then ``s / (wait + warmup)`` of the base LR until step ``wait + warmup`` (so
    the student, which waits, starts its warm-up part-way up), then a half-cosine to 0 at
    ``total_steps``."""
    def fn(s: int) -> float:
        if s < wait_steps:
            return 0.0
        if s < wait_steps + warmup_steps:
            return s / max(1, wait_steps + warmup_steps)
        progress = (s - wait_steps - warmup_steps) / max(1, total_steps - wait_steps - warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


NO_DECAY_RULES = ("bn", "bias-and-norm")


def decay_groups(model: nn.Module, weight_decay: float, *, exclude: str = "bn") -> list[dict]:
    """Two parameter groups, with and without weight decay. ``exclude="bn"``: the MPL reference's
    rule, no decay on parameters whose name contains ``bn`` (batch-norm scales and shifts; the
    classifier's bias still decays); ``"bias-and-norm"``: no decay on any 1-d parameter."""
    if exclude not in NO_DECAY_RULES:
        raise ValueError(f"unknown weight-decay exclusion {exclude!r}; expected one of "
                         f"{NO_DECAY_RULES}")
    decay, no_decay = [], []
    for name, prm in model.named_parameters():
        skip = "bn" in name if exclude == "bn" else prm.ndim <= 1
        (no_decay if skip else decay).append(prm)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]
