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


def resolve_compile(value, device: torch.device) -> bool:
    """The ``compile`` parameter: ``auto`` compiles on CUDA (where bench/gpu_check.sh measures the
    gain) and nowhere else; ``true``/``false`` force it."""
    if value == "auto":
        return device.type == "cuda"
    if isinstance(value, bool):
        return value
    raise ValueError(f"compile must be auto, true or false, got {value!r}")


def maybe_compile(module: nn.Module, enabled: bool):
    """``torch.compile(module)`` when ``enabled``, else ``module``. A graph torch cannot compile
    falls back to eager execution with a warning instead of ending a long run."""
    if not enabled:
        return module
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    return torch.compile(module)


def elapsed_since(t0: float, device: torch.device) -> float:
    """Seconds since ``time.perf_counter()`` returned ``t0``, after the device finished its queued
    work."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0
