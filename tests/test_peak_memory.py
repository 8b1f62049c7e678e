"""bench/peak_memory.py: a training step's peak memory, followed under fake tensors on the CPU."""
import sys

import pytest
import torch
import torch.nn as nn
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import peak_memory  # noqa: E402

from lib.methods.classifier import Classifier  # noqa: E402


def linear_step(batch):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 1000))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return Classifier(model, opt), (torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,)))


def test_a_step_holds_weights_gradients_and_momentum():
    peak = peak_memory.peak_memory(lambda: linear_step(2))
    weights = (3072 * 1000 + 1000) * 4
    assert peak["parameter"] == weights and peak["gradient"] == weights and peak["optstate"] == weights
    assert peak["total"] >= 3 * weights and peak["ema copy"] == 0
    bigger = peak_memory.peak_memory(lambda: linear_step(64))
    assert bigger["activation"] > peak["activation"] and bigger["parameter"] == weights


def test_the_smoke_profiles_workloads_fit_and_name_their_batches():
    df = peak_memory.table("smoke", only=("resnet18", "vae"))
    assert list(df["workload"]) == ["resnet18", "vae"] and list(df["batch"]) == [64, 50]
    assert (df["peak GB"] > 0).all() and (df["under 14 GB"] == "yes").all()
