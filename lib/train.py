"""The one training loop of the report, and the classifier method that plugs into it.

A *method* owns its networks, optimizers and schedulers and implements ``train_step(batch) -> logs``
(one optimisation step; the logs are detached tensors, so the loop never forces a host sync inside a step).
:func:`fit` owns everything else: device, autocast, seeding, timing and throughput, TensorBoard, progress,
periodic evaluation, best-checkpoint selection on the validation metric, atomic checkpoints and resume.
Classifiers, the VAE, DCGAN (two optimizers), DDPM and Meta Pseudo Labels (teacher and student) all train
through it.

Resuming is exact on CPU: the checkpoint holds every state dict, all RNG states and the step, and batches
are a pure function of ``(seed, step)`` (see :class:`lib.data.BatchLoader`), so a run interrupted and resumed
ends with the same weights and metrics as one that never stopped.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import save_atomic


# ---------------------------------------------------------------------------------------------- device
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
    """Autocast dtype: ``auto`` is bf16 on CUDA (fp16 where bf16 is unsupported) and off elsewhere."""
    if amp in ("off", "none", False):
        return None
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp is True:
        amp = "fp16" if device.type == "cuda" and not torch.cuda.is_bf16_supported() else "bf16"
    if amp not in ("bf16", "fp16"):
        raise ValueError(f"amp must be auto, bf16, fp16, off, true or false, got {amp!r}")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


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


# ---------------------------------------------------------------------------------------------- methods
class Method:
    """Base of everything :func:`fit` trains.

    Subclasses register their stateful parts in ``self.state`` (modules, optimizers, schedulers, EMA
    models: anything with ``state_dict``/``load_state_dict``) and implement :meth:`train_step`.
    """

    device = torch.device("cpu")
    autocast_dtype: torch.dtype | None = None

    def __init__(self):
        self.state: dict[str, object] = {}

    def setup(self, device: torch.device, autocast_dtype: torch.dtype | None) -> None:
        """Called by the loop before training: move modules to ``device`` (channels_last on CUDA), move optimizer
        state after them and switch optimizers to torch's fused kernels on CUDA, remember the autocast dtype."""
        self.device, self.autocast_dtype = device, autocast_dtype
        for obj in self.state.values():
            if isinstance(obj, nn.Module):
                obj.to(device)
                if device.type == "cuda":
                    obj.to(memory_format=torch.channels_last)
        for obj in self.state.values():
            if isinstance(obj, torch.optim.Optimizer):
                move_optimizer(obj, fused=device.type == "cuda")

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self, batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def batch_size(self, batch) -> int:
        first = batch[0] if isinstance(batch, (tuple, list)) else batch
        return len(first)

    def lr(self) -> float | None:
        for obj in self.state.values():
            if isinstance(obj, torch.optim.Optimizer):
                return obj.param_groups[0]["lr"]
        return None

    def state_dict(self) -> dict:
        return {name: obj.state_dict() for name, obj in self.state.items()}

    def load_state_dict(self, sd: dict) -> None:
        missing = set(self.state) - set(sd)
        if missing:
            raise KeyError(f"checkpoint lacks {sorted(missing)}; it was written by a different method")
        for name, obj in self.state.items():
            obj.load_state_dict(sd[name])


class EMA(nn.Module):
    """Exponential moving average of a model's parameters (buffers are copied), as a module to evaluate."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        import copy

        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``ema += (1 - decay) * (model - ema)`` for every parameter, buffers copied: one multi-tensor kernel
        each instead of one per tensor (a U-Net has hundreds), as timm's ModelEmaV3 does."""
        torch._foreach_lerp_(list(self.module.parameters()), [p.detach() for p in model.parameters()], 1 - self.decay)
        buffers = list(self.module.buffers())
        if buffers:
            torch._foreach_copy_(buffers, list(model.buffers()))

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


class Classifier(Method):
    """Supervised classification with cross-entropy (optional label smoothing)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler=None, *,
                 label_smoothing: float = 0.0, compile: bool | str = False):
        super().__init__()
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.label_smoothing = label_smoothing
        self.state = {"model": model, "optimizer": optimizer}
        if scheduler is not None:
            self.state["scheduler"] = scheduler
        self._compile = compile
        self.forward = model

    def setup(self, device, autocast_dtype):
        super().setup(device, autocast_dtype)
        self.forward = maybe_compile(self.model, resolve_compile(self._compile, device))

    def train_step(self, batch):
        x, y = batch
        self.model.train()
        with self.autocast():
            logits = self.forward(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return {"loss": loss.detach(), "acc": (logits.argmax(1) == y).float().mean().detach()}


def make_optimizer(params, *, name: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                   nesterov: bool = False, betas=(0.9, 0.999)) -> torch.optim.Optimizer:
    """SGD (optionally Nesterov) or Adam/AdamW. :meth:`Method.setup` switches them to fused kernels on CUDA."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; expected 'sgd', 'adam' or 'adamw'")


def move_optimizer(optimizer: torch.optim.Optimizer, *, fused: bool) -> None:
    """Move ``optimizer``'s state (momenta, moments, step) to its parameters' device and, with ``fused``, switch
    it to torch's fused implementation (one kernel updates every parameter) where torch has one for its class
    and the parameters are floating point. Goes through ``load_state_dict``, so no state is lost and an
    optimizer created on the CPU before its model moved to the GPU still runs fused there."""
    sd = optimizer.state_dict()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if fused and "fused" in optimizer.defaults and params and all(p.is_floating_point() for p in params):
        for group in sd["param_groups"]:
            group["fused"], group["foreach"] = True, False
    optimizer.load_state_dict(sd)


def is_fused(optimizer: torch.optim.Optimizer) -> bool:
    return all(g.get("fused") for g in optimizer.param_groups)


def resolve_compile(value, device: torch.device) -> bool:
    """The ``compile`` parameter: ``auto`` compiles on CUDA (where bench/gpu_check.sh measures the gain) and
    nowhere else; ``true``/``false`` force it."""
    if value == "auto":
        return device.type == "cuda"
    if isinstance(value, bool):
        return value
    raise ValueError(f"compile must be auto, true or false, got {value!r}")


def maybe_compile(module: nn.Module, enabled: bool):
    """``torch.compile(module)`` when ``enabled``, else ``module``. A graph torch cannot compile falls back to
    eager execution with a warning instead of ending a long run."""
    if not enabled:
        return module
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    return torch.compile(module)


def make_scheduler(optimizer, *, name: str, total_steps: int, steps_per_epoch: int = 1,
                   step_size_epochs: float = 30, gamma: float = 0.1, warmup_steps: int = 0):
    """Per-step LR schedule: ``constant``, ``step`` (StepLR in epochs), ``cosine`` or ``onecycle`` (linear warm-up
    then linear decay to zero, the shape fast CIFAR-10 recipes use)."""
    if name == "constant":
        fn = lambda s: 1.0  # noqa: E731
    elif name == "step":
        size = max(1, int(step_size_epochs * steps_per_epoch))
        fn = lambda s: gamma ** (s // size)  # noqa: E731
    elif name == "cosine":
        fn = lambda s: (min(1.0, (s + 1) / warmup_steps) if s < warmup_steps else  # noqa: E731
                        0.5 * (1 + math.cos(math.pi * (s - warmup_steps) / max(1, total_steps - warmup_steps))))
    elif name == "onecycle":
        w = max(1, warmup_steps or int(0.2 * total_steps))
        fn = lambda s: (s + 1) / w if s < w else max(0.0, (total_steps - s) / max(1, total_steps - w))  # noqa: E731
    else:
        raise ValueError(f"unknown scheduler {name!r}; expected constant, step, cosine or onecycle")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


# ---------------------------------------------------------------------------------------------- evaluation
@torch.inference_mode()
def predict(model: nn.Module, loader, *, flip_tta: bool = False, autocast_dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, on CPU) and labels for every batch of ``loader``; ``flip_tta`` averages with the mirror."""
    model.eval()
    device = next(model.parameters()).device
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
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


# ---------------------------------------------------------------------------------------------- the loop
@dataclass
class FitResult:
    history: pd.DataFrame
    best: dict = field(default_factory=dict)
    last_checkpoint: Path | None = None
    best_checkpoint: Path | None = None
    finished: bool = True


def _progress_mode() -> str:
    return os.environ.get("CIFAR_REPORT_PROGRESS", "bar")


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


class StepTimer:
    """Seconds each step spent getting its batch (``data_time``) and in total (``batch_time``).

    On CUDA it records events on the stream and reads them only in :meth:`collect` (at logging and evaluation
    points), so timing never makes the host wait for the device inside a step; elsewhere it reads the clock.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.pending: list[tuple] = []

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def add(self, start, fetched, done) -> None:
        self.pending.append((start, fetched, done))

    def collect(self) -> tuple[float, float, int]:
        """Summed data seconds, summed step seconds and the number of steps since the last call."""
        marks, self.pending = self.pending, []
        if not marks:
            return 0.0, 0.0, 0
        if self.cuda:
            marks[-1][2].synchronize()
            return (sum(a.elapsed_time(b) for a, b, _ in marks) / 1e3,
                    sum(a.elapsed_time(c) for a, _, c in marks) / 1e3, len(marks))
        return sum(b - a for a, b, _ in marks), sum(c - a for a, _, c in marks), len(marks)


save_checkpoint = save_atomic  # checkpoints are written atomically: a crash never leaves a half-written one


def load_checkpoint(path: Path | str, *, what: str = "checkpoint") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    return torch.load(path, map_location="cpu", weights_only=False)


def fit(method: Method, batches: Callable[[int], Iterator], *, total_steps: int,
        evaluate: Callable[[], dict] | None = None, eval_every: int | None = None,
        steps_per_epoch: int | None = None, select: str = "val_acc", mode: str = "max",
        ckpt_dir: str | Path | None = None, ckpt_every: int | None = None, resume: bool = True,
        stop_after: int | None = None, tb_dir: str | Path | None = None, log_every: int = 50,
        device: str | torch.device = "auto", amp: str = "auto", seed: int = 0, desc: str = "train",
        config: dict | None = None) -> FitResult:
    """Train ``method`` for ``total_steps`` steps on ``batches(start_step)``.

    * ``evaluate()`` runs every ``eval_every`` steps and at the end; its dict joins the history row, and the
      ``select`` metric (``mode`` max/min) picks ``best.pt``. Pass a validation evaluator here, never the test set.
    * ``ckpt_dir`` holds ``last.pt`` (every ``ckpt_every`` steps, at each evaluation and at the end) and
      ``best.pt``; with ``resume`` an existing ``last.pt`` is continued. ``stop_after`` ends this call after
      that many steps (checkpointing first), which is how an interruption is simulated or a budget kept.
    * The returned history has one row per evaluation: step, epoch, averaged train logs, eval metrics, lr,
      images/s and elapsed seconds.
    """
    device = pick_device(device) if isinstance(device, str) else device
    dtype = amp_dtype(device, amp)
    seed_everything(seed)
    method.setup(device, dtype)
    ckpt_dir = Path(ckpt_dir) if ckpt_dir else None
    last_path = ckpt_dir / "last.pt" if ckpt_dir else None
    best_path = ckpt_dir / "best.pt" if ckpt_dir else None
    eval_every = eval_every or steps_per_epoch or total_steps
    steps_per_epoch = steps_per_epoch or eval_every

    step, rows, best, elapsed = 0, [], {}, 0.0
    sums: dict[str, torch.Tensor] = {}
    count, seen = 0, 0
    if resume and last_path and last_path.is_file():
        ck = load_checkpoint(last_path)
        method.load_state_dict(ck["method"])
        method.setup(device, dtype)
        _set_rng_state(ck["rng"])
        step, rows, best, elapsed = ck["step"], ck["history"], ck["best"], ck["elapsed"]
        sums = {k: v.to(device) for k, v in ck["window"]["sums"].items()}
        count, seen = ck["window"]["count"], ck["window"]["seen"]

    def payload():
        return {"method": method.state_dict(), "rng": _rng_state(), "step": step, "history": rows,
                "best": best, "elapsed": elapsed, "config": config or {}, "select": select,
                "window": {"sums": {k: v.cpu() for k, v in sums.items()}, "count": count, "seen": seen}}

    writer = None
    if tb_dir:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(tb_dir), purge_step=step if step else None)

    mode_ = _progress_mode()
    bar = None
    if mode_ == "bar" and step < total_steps:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=step, desc=desc, file=sys.stdout, dynamic_ncols=True)

    t_window = time.perf_counter()
    t_start = time.perf_counter()
    end = total_steps if stop_after is None else min(total_steps, step + stop_after)
    stream = batches(step)
    finished = step >= total_steps

    timer = StepTimer(device)

    def collect_times() -> dict[str, float]:
        data_s, batch_s, n = timer.collect()
        for k, v in (("data_time", data_s), ("batch_time", batch_s)):
            sums[k] = sums.get(k, 0) + torch.tensor(v, dtype=torch.float64)
        return {"data_time": data_s / max(n, 1), "batch_time": batch_s / max(n, 1)}

    while step < end:
        t_start_step = timer.mark()
        batch = next(stream)
        t_fetched = timer.mark()
        logs = method.train_step(batch)
        timer.add(t_start_step, t_fetched, timer.mark())
        step += 1
        seen += method.batch_size(batch)
        count += 1
        for k, v in logs.items():
            sums[k] = sums.get(k, 0) + (v.detach() if torch.is_tensor(v) else torch.tensor(float(v)))
        at_eval = step % eval_every == 0 or step == total_steps
        if step % log_every == 0 or at_eval or step == end or len(timer.pending) >= 1000:
            times = collect_times()  # the only place the host waits for the device, besides logging below
            if writer is not None and step % log_every == 0:
                for k, v in {**logs, **times}.items():
                    writer.add_scalar(f"train/{k}", float(v), step)
                if method.lr() is not None:
                    writer.add_scalar("train/lr", method.lr(), step)
        if bar is not None and (step % max(1, log_every // 5) == 0 or step == end):
            bar.set_postfix({k: f"{float(v):.3f}" for k, v in logs.items()}, refresh=False)
        if bar is not None:
            bar.update(1)
        if at_eval:  # collect_times above waited for this step's last event: the clock below is the device's too
            now = time.perf_counter()
            row = {"step": step, "epoch": step / steps_per_epoch}
            row.update({f"train_{k}": (v / count).item() for k, v in sums.items()})
            row["lr"] = method.lr()
            row["images_per_s"] = seen / max(now - t_window, 1e-9)
            elapsed += now - t_start
            t_start = now
            if evaluate is not None:
                row.update(evaluate())
            elapsed += time.perf_counter() - t_start
            t_start = time.perf_counter()
            row["elapsed_s"] = elapsed
            rows.append(row)
            if writer is not None:
                for k, v in row.items():
                    if k not in ("step",) and v is not None and np.isscalar(v):
                        writer.add_scalar(f"eval/{k}" if not k.startswith("train_") else f"epoch/{k}", v, step)
            if mode_ == "log":
                shown = ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float) and k != "epoch")
                print(f"{desc}: step {step}/{total_steps} (epoch {row['epoch']:.2f}) {shown}", flush=True)
            metric = row.get(select)
            if metric is not None and (not best or (metric > best["value"] if mode == "max" else metric < best["value"])):
                best = {"metric": select, "value": metric, "step": step}
                if best_path:
                    save_checkpoint(payload(), best_path)
            sums, count, seen, t_window = {}, 0, 0, time.perf_counter()
        if last_path and ((ckpt_every and step % ckpt_every == 0) or at_eval or step == end):
            elapsed += time.perf_counter() - t_start
            t_start = time.perf_counter()
            save_checkpoint(payload(), last_path)
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.flush()
        writer.close()
    finished = finished or step >= total_steps
    return FitResult(pd.DataFrame(rows), best, last_path, best_path if best_path and best_path.is_file() else None,
                     finished)
