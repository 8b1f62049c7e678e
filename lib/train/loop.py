"""The one training loop, :func:`fit`, and :func:`train_and_test` around it: train, restore the step
chosen on validation, evaluate once, return a :class:`Run`.

:func:`fit` owns device, autocast, seeding, compilation, timing and throughput, TensorBoard,
progress, periodic evaluation, best-checkpoint selection on the validation metric, atomic
checkpoints and resume. Resuming is exact on CPU: the checkpoint holds every state dict, all RNG
states and the step, and batches are a pure function of ``(seed, step)`` (see
:class:`lib.batches.BatchLoader`), so a run interrupted and resumed ends with the same weights and
metrics as one that never stopped.
"""
from __future__ import annotations

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

from ..storage import (
    UnreadableFile,
    load_checkpoint,
    newest_readable,
    recover,
    save_atomic,
)
from .device import (
    COMPILE_RECORDS,
    amp_dtype,
    device_description,
    pick_device,
    resolve_compile,
    seed_everything,
)
from .distributed import data_parallel_shard, replicas_differ
from .divergence import Diverged, nonfinite_logs, nonfinite_weights
from .method import Method


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
    """Every RNG state as tensors and plain values: checkpoints load with ``weights_only=True``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    st = {"torch": torch.get_rng_state(), "python": random.getstate(),
          "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                    "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


class StepTimer:
    """Seconds each step spent getting its batch (``data_time``) and in total (``batch_time``).

    On CUDA it records events on the stream and reads them only in :meth:`collect` (at logging and
    evaluation points), so timing never makes the host wait for the device inside a step; elsewhere
    it reads the clock.
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


def fit(method: Method, batches: Callable[[int], Iterator], *, total_steps: int,
        evaluate: Callable[[], dict] | None = None, eval_every: int | None = None,
        steps_per_epoch: int | None = None, select: str = "val_acc", mode: str = "max",
        ckpt_dir: str | Path | None = None, ckpt_every: int | None = None, resume: bool = True,
        stop_after: int | None = None, tb_dir: str | Path | None = None, log_every: int = 50,
        device: str | torch.device = "auto", amp: str = "auto", seed: int = 0, desc: str = "train",
        config: dict | None = None, compile: bool | str = False,
        compile_min_steps: int = 0, data_parallel: bool = False,
        sync_batchnorm: bool = False) -> FitResult:
    """Train ``method`` for ``total_steps`` steps on ``batches(start_step)``.

    * ``evaluate()`` runs every ``eval_every`` steps and at the end; its dict joins the history row,
      and the ``select`` metric (``mode`` max/min) picks ``best.pt``. Pass a validation evaluator
      here, never the test set.
    * ``ckpt_dir`` holds ``last.pt`` (every ``ckpt_every`` steps, at each evaluation and at the end)
      and ``best.pt``; with ``resume`` an existing ``last.pt`` is continued. ``stop_after`` ends
      this call after that many steps (checkpointing first), which is how an interruption is
      simulated or a budget kept.
    * ``compile`` (auto / true / false) compiles the modules the method names in ``compiled``;
      ``auto`` only on CUDA and only when ``total_steps`` >= ``compile_min_steps``.
    * The returned history has one row per evaluation: step, epoch, averaged train logs, eval
      metrics, lr, images/s and elapsed seconds; under fp16 loss scaling also ``skipped_steps``,
      the optimiser updates the scalers skipped so far.
    * A non-finite training log (checked at every log point) or weight (checked before every
      checkpoint) raises :class:`lib.train.Diverged` without saving, so ``last.pt`` and ``best.pt``
      keep the last good state (the rule, fp16 included: :mod:`lib.train.divergence`).
    * ``data_parallel``: when torch.distributed runs several ranks, every rank trains this run on
      its slice of each global batch, gradients averaged (:mod:`lib.train.distributed`;
      ``sync_batchnorm`` synchronises BatchNorm). Training logs are averaged over the ranks; rank 0
      evaluates and writes checkpoints, TensorBoard and progress while the others wait. The
      checkpoints are those of a single process, so a run resumes on any number of ranks. Without
      it (or with one rank) the run is this process's own.
    """
    device = pick_device(device) if isinstance(device, str) else device
    shard = data_parallel_shard(data_parallel)
    device = shard.device(device)
    dtype = amp_dtype(device, amp)
    seed_everything(seed)
    compile = resolve_compile(compile, device, steps=total_steps, min_steps=compile_min_steps)
    if shard.active:
        method.distribute(shard, sync_batchnorm=sync_batchnorm)
    method.setup(device, dtype, compile=compile)
    ckpt_dir = Path(ckpt_dir) if ckpt_dir else None
    last_path = ckpt_dir / "last.pt" if ckpt_dir else None
    best_path = ckpt_dir / "best.pt" if ckpt_dir else None
    eval_every = eval_every or steps_per_epoch or total_steps
    steps_per_epoch = steps_per_epoch or eval_every

    step, rows, best, elapsed = 0, [], {}, 0.0
    sums: dict[str, torch.Tensor | float] = {}
    count, seen = 0, 0
    # the newest readable checkpoint of this run: last.pt, else best.pt (unreadable ones moved
    # aside, by rank 0 before the other ranks look)
    ck = newest_readable([last_path, best_path]) if resume and ckpt_dir and shard.main else None
    shard.barrier()
    if resume and ckpt_dir and not shard.main:
        ck = newest_readable([last_path, best_path])
    if ck is not None:
        method.load_state_dict(ck["method"])
        method.setup(device, dtype, compile=compile)
        _set_rng_state(ck["rng"])
        step, rows, best, elapsed = ck["step"], ck["history"], ck["best"], ck["elapsed"]
        # sums of Python numbers were saved as float64 scalars: they come back as Python floats
        sums = {k: float(v) if v.dtype == torch.float64 else v.to(device)
                for k, v in ck["window"]["sums"].items()}
        count, seen = ck["window"]["count"], ck["window"]["seen"]
    # the last step the training logs were seen finite at, and the step of the last good checkpoint
    finite_at, kept_step = step, (step if ck is not None else None)

    def payload():
        return {"method": method.state_dict(), "rng": _rng_state(), "step": step, "history": rows,
                "best": best, "elapsed": elapsed, "config": config or {}, "select": select,
                "window": {"sums": {k: v.cpu() if torch.is_tensor(v)
                                    else torch.tensor(v, dtype=torch.float64)
                                    for k, v in sums.items()},
                           "count": count, "seen": seen}}

    writer = None
    if tb_dir and shard.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(tb_dir), purge_step=step if step else None)

    mode_ = _progress_mode()
    bar = None
    if mode_ == "bar" and step < total_steps and shard.main:
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
            sums[k] = sums.get(k, 0) + v
        return {"data_time": data_s / max(n, 1), "batch_time": batch_s / max(n, 1)}

    def diverged(values: list[str]) -> Diverged:
        # close what the run opened, so the log and TensorBoard keep what led up to it
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        kept = next((p for p in (last_path, best_path) if p and p.is_file()), None)
        return Diverged(desc=desc, step=step, finite_at=finite_at, values=values,
                        checkpoint=kept if kept_step is not None else None,
                        checkpoint_step=kept_step)

    while step < end:
        t_start_step = timer.mark()
        batch = next(stream)
        seen += method.batch_size(batch)  # the global batch
        batch = shard.batch(batch)
        t_fetched = timer.mark()
        logs = method.train_step(batch)
        timer.add(t_start_step, t_fetched, timer.mark())
        step += 1
        count += 1
        for k, v in logs.items():
            # Python numbers (learning rates, ramp weights) stay Python: no host tensor per step
            sums[k] = sums.get(k, 0) + (v.detach() if torch.is_tensor(v) else float(v))
        at_eval = step % eval_every == 0 or step == total_steps
        at_log = step % log_every == 0 or at_eval or step == end or len(timer.pending) >= 1000
        saving = bool(last_path) and (bool(ckpt_every and step % ckpt_every == 0) or at_eval
                                      or step == end)
        skipped = method.skipped_steps
        if at_log or saving:  # every rank logs and checks the global batch's means
            shard.mean_of_values(sums, logs)
        if at_log:
            # the only place the host waits for the device, besides logging below
            times = collect_times()
            if writer is not None and step % log_every == 0:
                for k, v in {**logs, **times}.items():
                    writer.add_scalar(f"train/{k}", float(v), step)
                if method.lr() is not None:
                    writer.add_scalar("train/lr", method.lr(), step)
                if skipped is not None:
                    writer.add_scalar("train/skipped_steps", int(skipped), step)
            if bar is not None:  # read back only here, where the host already waited
                bar.set_postfix({k: f"{float(v):.3f}" for k, v in logs.items()}, refresh=False)
        if bar is not None:
            bar.update(1)
        if at_log or saving:  # only where the host waits anyway: logging, or a checkpoint to write
            bad = [f"train {k}" for k in nonfinite_logs(sums)]
            if saving:
                bad += [f"{name} weights" for name in nonfinite_weights(method.state)]
            if bad:
                raise diverged(bad)
            finite_at = step
        # collect_times above waited for this step's last event: the clock below is the device's too
        if at_eval:
            now = time.perf_counter()
            row = {"step": step, "epoch": step / steps_per_epoch}
            row.update({f"train_{k}": float(v / count) for k, v in sums.items()})
            row["lr"] = method.lr()
            row["images_per_s"] = seen / max(now - t_window, 1e-9)
            if skipped is not None:
                row["skipped_steps"] = int(skipped)
            elapsed += now - t_start
            t_start = now
            if evaluate is not None and shard.main:
                row.update(evaluate())
            elapsed += time.perf_counter() - t_start
            t_start = time.perf_counter()
            row["elapsed_s"] = elapsed
            row = shard.from_main(row)  # rank 0's evaluation, in every rank's history
            rows.append(row)
            if writer is not None:
                for k, v in row.items():
                    if k not in ("step",) and v is not None and np.isscalar(v):
                        writer.add_scalar(f"eval/{k}" if not k.startswith("train_")
                                          else f"epoch/{k}", v, step)
            if mode_ == "log" and shard.main:
                shown = ", ".join(f"{k}={v:.4g}" for k, v in row.items()
                                  if (isinstance(v, float) and k != "epoch")
                                  or k == "skipped_steps")
                print(f"{desc}: step {step}/{total_steps} (epoch {row['epoch']:.2f}) {shown}",
                      flush=True)
            metric = row.get(select)
            if metric is not None and (not best or (metric > best["value"] if mode == "max"
                                                    else metric < best["value"])):
                best = {"metric": select, "value": metric, "step": step}
                if best_path and shard.main:
                    save_atomic(payload(), best_path)
            sums, count, seen, t_window = {}, 0, 0, time.perf_counter()
        if saving:
            elapsed += time.perf_counter() - t_start
            t_start = time.perf_counter()
            differ = replicas_differ({k: method.state[k] for k in method.compiled}, shard)
            if differ:
                raise RuntimeError(f"{desc}: the ranks' copies of {differ} differ at step {step}: "
                                   "an update bypassed Method.optimise, which averages the "
                                   "gradients over the ranks")
            if shard.main:
                save_atomic(payload(), last_path)
            shard.barrier()  # the other ranks go on once the checkpoint is written
            kept_step = step
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.flush()
        writer.close()
    finished = finished or step >= total_steps
    return FitResult(pd.DataFrame(rows), best, last_path,
                     best_path if best_path and best_path.is_file() else None, finished)


@dataclass(kw_only=True)
class Run:
    """A trained method, evaluated once on the test set at the step chosen on validation."""

    name: str
    method: Method
    history: pd.DataFrame
    # {"metric", "value", "step"} of the validation-selected evaluation; {} if none
    best: dict
    test: dict                # what ``test()`` returned for the selected step
    wall_time_s: float
    device: str
    checkpoint: Path | None   # best.pt when a validation metric selected one, else last.pt
    # {module: {compiled, graphs, eager_calls, error}} of this process's steps (device.OneGraph)
    compilation: dict = field(default_factory=dict)

    @property
    def best_value(self) -> float:
        return float(self.best.get("value", float("nan")))

    @property
    def best_step(self) -> int:
        return int(self.best.get("step", 0))

    @property
    def steps(self) -> int:
        return int(self.history["step"].iloc[-1]) if len(self.history) else 0


def train_and_test(method: Method, batches: Callable[[int], Iterator], *, name: str,
                   test: Callable[[], dict] | None = None, **fit_kwargs) -> Run:
    """:func:`fit`, then reload the checkpoint the validation metric chose (not the last step), then
    ``test()`` once. ``fit_kwargs`` go to :func:`fit` (``desc`` defaults to ``name``)."""
    fit_kwargs.setdefault("desc", name)
    result = fit(method, batches, **fit_kwargs)
    checkpoint = result.best_checkpoint or result.last_checkpoint
    if result.best_checkpoint is not None:
        try:
            method.load_state_dict(load_checkpoint(result.best_checkpoint)["method"])
            method.setup(method.device, method.autocast_dtype)
        except UnreadableFile as err:
            recover(result.best_checkpoint, str(err), "testing the last step instead of the one "
                                                      "chosen on validation")
            checkpoint = result.last_checkpoint
    hist = result.history
    wall = float(hist["elapsed_s"].iloc[-1]) if len(hist) else math.nan
    compilation = method.compilation()
    COMPILE_RECORDS.append({"run": name, "modules": compilation})
    shard = method.shard  # data-parallel: rank 0 tests, every rank returns its metrics
    return Run(name=name, method=method, history=hist, best=result.best,
               test=shard.from_main(test() if test and shard.main else {}),
               wall_time_s=wall, device=device_description(method.device),
               checkpoint=checkpoint, compilation=compilation)
