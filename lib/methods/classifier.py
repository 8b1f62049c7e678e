"""Supervised classification with cross-entropy (optional label smoothing)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..train import Method


class Classifier(Method):
    """One optimiser step of cross-entropy per batch ``(images, labels)``."""

    compiled = ("model",)

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler=None, *,
                 label_smoothing: float = 0.0):
        super().__init__()
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.label_smoothing = label_smoothing
        self.state = {"model": model, "optimizer": optimizer}
        if scheduler is not None:
            self.state["scheduler"] = scheduler

    def train_step(self, batch):
        x, y = batch
        self.model.train()
        with self.autocast():
            logits = self.net("model")(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.optimise(loss, self.optimizer, model=self.model, scheduler=self.scheduler)
        return {"loss": loss.detach(), "acc": (logits.argmax(1) == y).float().mean().detach()}
