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


def conv_step(norm):
    def build():
        model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), norm(), nn.Flatten(),
                              nn.Linear(64 * 32 * 32, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        return Classifier(model, opt), (torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,)))
    return build


def test_a_float32_step_holds_more_activations_than_an_fp16_one():
    half = peak_memory.peak_memory(conv_step(nn.ReLU))
    full = peak_memory.peak_memory(conv_step(nn.ReLU), dtype=None)
    assert full["parameter"] == half["parameter"] and full["activation"] > half["activation"]


def test_modules_called_twice_in_a_step_are_followed():
    # DCGAN's step calls its discriminator on real, fake and generated images; torch's MemTracker stops there
    df = peak_memory.table("smoke", only=("resnet18", "dcgan"))
    assert list(df["workload"]) == ["resnet18", "dcgan"] and list(df["batch"]) == [64, 50]
    assert (df["fp16 step GB"] > 0).all() and (df["float32 step GB"] >= df["fp16 step GB"]).all()
    assert (df["T4 estimate GB"] >= df["fp16 step GB"]).all() and (df["under 14 GB"] == "yes").all()


def test_cuda_autocast_keeps_group_norm_in_float32_on_a_fake_gpu():
    step = conv_step(lambda: nn.GroupNorm(8, 64))
    cuda = peak_memory.forward_peak(step, peak_memory.CUDA)
    cpu = peak_memory.forward_peak(step, peak_memory.CPU)
    assert cuda > cpu  # the group norm's 16 x 64 x 32 x 32 output: 4 bytes an element on CUDA, 2 on the CPU
