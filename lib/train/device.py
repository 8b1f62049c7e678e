"""Where and how a run computes: device choice, autocast dtype, seeding, and the ``compile``
parameter."""
from __future__ import annotations

import contextlib
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


def channels_last(device: torch.device | str) -> bool:
    """Whether convolution networks and their batches use the channels_last layout on ``device``:
    on CUDA (where convolutions run fastest in it) and on CPUs, where oneDNN's convolutions train
    the quick profile's quarter-width ResNets, EfficientNet-B0 and WRN 1.3-1.7x faster in it and
    the DRNs about as fast (0.89-1.11x; ``python bench/train_speed.py --layouts --width 0.25``);
    MPS keeps torch's default."""
    return torch.device(device).type in ("cuda", "cpu")


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


# torch.compile's backend (a name or a callable); tests swap in a recording or a failing one
COMPILE_BACKEND = "inductor"
SLOWER = "running eagerly: expect 2-3x slower steps"
# a module that compiles nothing: compile off by rule, or not a module the method compiles
NOT_COMPILED = {"compiled": False, "graphs": 0, "eager_calls": 0, "error": None}
# one {"run", "modules"} per run this process trained; a chapter's provenance lists its own
COMPILE_RECORDS: list[dict] = []


class OneGraph:
    """A compiled module that compiles exactly one graph and cannot fail silently.

    Calls with the first call's input shapes, grad mode and train/eval mode run compiled; any other
    call (a partial last batch, MPL's no-grad pass of the student on the labelled images) runs the
    same module eagerly instead of compiling a second graph. Dynamo still compiles again where its
    own guards differ within one key: DCGAN's discriminator sees real images, detached fakes (of
    autocast's dtype) and fakes that need gradients, so it builds three graphs under autocast.

    Compilation happens inside a call, before its graph runs (the backward pass too, see
    :func:`_backward_now`). When it fails -- at the first call, or at a later recompilation --
    the module runs eagerly for the rest of the run and one line says so; :meth:`record` keeps the
    error with the counts ``graphs`` (built) and ``eager_calls`` (calls that ran eagerly).
    """

    def __init__(self, module: nn.Module, *, name: str = "module", backend=None):
        import torch._dynamo

        self.module, self.name = module, name
        self.key: tuple | None = None
        self.graphs = self.eager_calls = 0
        self.error: str | None = None
        self.ran = False  # a compiled call has returned: later errors that are not dynamo's are real
        self.backend_error: Exception | None = None
        inner = torch._dynamo.lookup_backend(backend if backend is not None else COMPILE_BACKEND)

        def counting(gm, example_inputs):
            try:
                with _backward_now():
                    compiled = inner(gm, example_inputs)
            except Exception as err:
                self.backend_error = err
                raise
            self.graphs += 1
            return compiled

        # dynamic=False: only the first call's shapes ever reach the compiled module (see above),
        # so dynamic shapes would buy nothing and cost symbolic guards, slower kernels and
        # recompiles. fullgraph=True: a graph break raises (and is caught in __call__) instead of
        # quietly splitting the module into graphs with eager code between them.
        self.compiled = torch.compile(module, backend=counting, fullgraph=True, dynamic=False)

    def __call__(self, *args, **kwargs):
        key = (torch.is_grad_enabled(), self.module.training,
               *(tuple(a.shape) for a in args if torch.is_tensor(a)))
        if self.key is None:
            self.key = key
        if key == self.key and self.error is None:
            try:
                out = self.compiled(*args, **kwargs)
            except Exception as err:
                if self.ran and not isinstance(err, _dynamo_errors()):
                    raise  # an error of the computation itself, not of its compilation
                self._give_up(err)
            else:
                self.ran = True
                if self.backend_error is not None:  # dynamo ran it eagerly (suppress_errors)
                    self._give_up(self.backend_error)
                    self.eager_calls += 1
                return out
        self.eager_calls += 1
        return self.module(*args, **kwargs)

    def _give_up(self, err: Exception) -> None:
        inner = self.backend_error or getattr(err, "inner_exception", None) or err
        lines = str(inner).strip().splitlines()
        self.error = f"{type(inner).__name__}: {lines[0][:200] if lines else ''}".rstrip(": ")
        print(f"torch.compile failed for {self.name} ({type(self.module).__name__}): "
              f"{self.error}; {SLOWER}", flush=True)

    def record(self) -> dict:
        """``{"compiled", "graphs", "eager_calls", "error"}``: compiled is False after an error."""
        return {"compiled": self.error is None, "graphs": self.graphs,
                "eager_calls": self.eager_calls, "error": self.error}


def _dynamo_errors() -> tuple[type, ...]:
    """What dynamo raises when tracing or compiling fails (before the graph runs)."""
    import torch._dynamo.exc as exc

    return tuple(getattr(exc, n) for n in ("TorchDynamoException", "FailOnRecompileLimitHit")
                 if hasattr(exc, n))


def _backward_now():
    """Compile each graph's backward pass with its forward pass (AOTAutograd otherwise compiles it
    at the first ``backward()``, outside the call that :class:`OneGraph` guards), so a backward
    that cannot compile fails inside that call too. Torch versions without the switch keep the
    lazy backward."""
    import torch._functorch.config as cfg

    if hasattr(cfg, "force_non_lazy_backward_lowering"):
        return cfg.patch(force_non_lazy_backward_lowering=True)
    return contextlib.nullcontext()


def maybe_compile(module: nn.Module, enabled: bool, *, name: str = "module"):
    """:class:`OneGraph` over ``module`` when ``enabled``, else ``module``."""
    return OneGraph(module, name=name) if enabled else module


def compile_record(net) -> dict:
    """What :meth:`OneGraph.record` says of ``net``; :data:`NOT_COMPILED` for a plain module."""
    return net.record() if isinstance(net, OneGraph) else dict(NOT_COMPILED)


def compiled_cell(modules: dict[str, dict]) -> str:
    """The "compiled" cell of a run in a chapter's table, from its ``{module: record}``: "yes",
    "no" (compile off by rule), "no: <module>: <error>" where a compilation failed, or "not run
    here: finished run reused" where compile was on but the run had no step left to take."""
    errors = [f"{name}: {r['error']}" for name, r in modules.items() if r["error"]]
    if errors:
        return "no: " + "; ".join(errors)
    if not any(r["compiled"] for r in modules.values()):
        return "no"
    if not any(r["graphs"] for r in modules.values()):
        return "not run here: finished run reused"
    return "yes"


def elapsed_since(t0: float, device: torch.device) -> float:
    """Seconds since ``time.perf_counter()`` returned ``t0``, after the device finished its queued
    work."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0
