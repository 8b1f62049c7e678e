"""Where and how a run computes: device choice, autocast dtype, seeding, and the ``compile``
parameter."""
from __future__ import annotations

import os
import random
import time

import numpy as np
import torch
import torch.nn as nn


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda, then mps, then cpu."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def amp_dtype(device: torch.device, amp: str | bool = "auto") -> torch.dtype | None:
    """Autocast dtype: ``auto`` is bf16 on a GPU that computes it natively, fp16 on one that does
    not (Colab's T4: methods then scale their losses with a GradScaler), and off elsewhere."""
    if amp in ("off", "none", False):
        return None
    native_bf16 = device.type == "cuda" and bf16_native()
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if native_bf16 else torch.float16
    if amp is True:
        amp = "fp16" if device.type == "cuda" and not native_bf16 else "bf16"
    if amp not in ("bf16", "fp16"):
        raise ValueError(f"amp must be auto, bf16, fp16, off, true or false, got {amp!r}")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def bf16_native() -> bool:
    """Whether the current GPU computes bf16 in hardware (emulated bf16 is slow, so it does not
    count)."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch versions without the argument
        return torch.cuda.is_bf16_supported()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    return device.type


def resolve_compile(value, device: torch.device, *, steps: int | None = None,
                    min_steps: int = 0) -> bool:
    """The ``compile`` parameter: ``auto`` compiles on CUDA (where bench/gpu_check.sh measures the
    gain) runs of at least ``min_steps`` optimiser steps (a compilation costs about a minute per
    graph, repaid only over a long run; the params files state each chapter's threshold) and
    nowhere else; ``true``/``false`` force it."""
    if value == "auto":
        return device.type == "cuda" and (steps is None or steps >= min_steps)
    if isinstance(value, bool):
        return value
    raise ValueError(f"compile must be auto, true or false, got {value!r}")


# torch.compile's backend; tests swap in a counting backend to check how many graphs a run builds
COMPILE_BACKEND = "inductor"


class OneGraph:
    """A compiled module that compiles exactly one graph: calls with the first call's input
    shapes, grad mode and train/eval mode run compiled; any other call (a partial last batch,
    MPL's no-grad pass of the student on the labelled images) runs the same module eagerly
    instead of compiling a second graph. ``eager_calls`` counts those."""

    def __init__(self, compiled, module: nn.Module):
        self.compiled, self.module = compiled, module
        self.key: tuple | None = None
        self.eager_calls = 0

    def __call__(self, *args, **kwargs):
        key = (torch.is_grad_enabled(), self.module.training,
               *(tuple(a.shape) for a in args if torch.is_tensor(a)))
        if self.key is None:
            self.key = key
        if key == self.key:
            return self.compiled(*args, **kwargs)
        self.eager_calls += 1
        return self.module(*args, **kwargs)


def maybe_compile(module: nn.Module, enabled: bool):
    """:class:`OneGraph` over ``torch.compile(module)`` when ``enabled``, else ``module``. A graph
    torch cannot compile falls back to eager execution with a warning instead of ending a long
    run."""
    if not enabled:
        return module
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    return OneGraph(torch.compile(module, backend=COMPILE_BACKEND), module)


def elapsed_since(t0: float, device: torch.device) -> float:
    """Seconds since ``time.perf_counter()`` returned ``t0``, after the device finished its queued
    work."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0
