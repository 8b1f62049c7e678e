"""Classifier evaluation: logits over a loader (optional flip TTA), accuracy, top-k and loss."""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F


@torch.inference_mode()
def predict(model: nn.Module, loader, *, flip_tta: bool = False,
            autocast_dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, on CPU) and labels for every batch of ``loader``; ``flip_tta`` averages with
    the mirror."""
    model.eval()
    device = next(model.parameters()).device
    ctx = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype
           else contextlib.nullcontext())
    logits, labels = [], []
    with ctx:
        for x, y in loader.epoch(0):
            out = model(x).float()
            if flip_tta:
                out = 0.5 * (out + model(x.flip(3)).float())
            logits.append(out.cpu())
            labels.append(y.cpu())
    return torch.cat(logits), torch.cat(labels)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    return {"acc": (logits.argmax(1) == labels).float().mean().item(),
            "loss": F.cross_entropy(logits, labels).item()}


def topk_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 and top-5 accuracy (fractions) and mean cross-entropy."""
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    return {"acc": (top5[:, 0] == labels).float().mean().item(),
            "top5": (top5 == labels[:, None]).any(1).float().mean().item(),
            "loss": F.cross_entropy(logits, labels).item()}
