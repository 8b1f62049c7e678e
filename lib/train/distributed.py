"""Data-parallel training of one run over the ranks ``torchrun`` starts (``torch.distributed``).

A run marked data-parallel trains on every rank: each takes its contiguous slice of the global
batch (batches are a pure function of ``(seed, step)``, so every rank builds the single-process
batch and keeps its part), every update's gradients are averaged over the ranks (over equal
slices, so they equal the global batch's mean; :meth:`lib.train.Method.distribute` says why by
all-reduce and not by DistributedDataParallel), BatchNorm is synchronised where asked, and only
rank 0 writes checkpoints, TensorBoard and logs. A :class:`Shard` says which rank this is
of how many; ``Shard()`` (rank 0 of 1) is the single-process run, where every call here is a no-op.

Random draws that belong to examples (a diffusion model's timesteps and noise) are drawn at the
global batch's size from the generator every rank shares (seeded alike, restored from rank 0's
checkpoint) and sliced like the batch (:meth:`Shard.split`), so they equal the single-process
draws. Dropout draws its masks inside the modules at the slice's size, from that same generator:
each rank's slice gets the masks rank 0's would (as in the reference MPL code, which seeds every
rank alike), and they differ from the single-process masks.
"""
from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist
import torch.nn as nn


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the default group (0 without torch.distributed)."""
    return dist.get_rank() if initialized() else 0


def world() -> int:
    """The number of ranks in the default group (1 without torch.distributed)."""
    return dist.get_world_size() if initialized() else 1


def is_main() -> bool:
    return rank() == 0


@dataclasses.dataclass(frozen=True)
class Shard:
    """Rank ``rank`` of ``world`` ranks training one run together (``Shard()``: a single process)."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Whether this rank writes the run's files (checkpoints, TensorBoard, logs)."""
        return self.rank == 0

    def split(self, t: torch.Tensor, what: str = "batch") -> torch.Tensor:
        """This rank's contiguous chunk of ``t``'s first dimension (a view). The global batch must
        divide evenly, so every rank's mean loss weighs its rows as the global mean does."""
        if not self.active:
            return t
        if len(t) % self.world:
            raise ValueError(f"the global {what} of {len(t)} rows does not divide evenly over "
                             f"{self.world} ranks: choose batch sizes divisible by {self.world} "
                             "(each rank averages its own slice, so the slices must be equal)")
        n = len(t) // self.world
        return t[self.rank * n:(self.rank + 1) * n]

    def batch(self, batch):
        """:meth:`split` applied to every tensor of ``batch`` (a tensor, a tuple/list of them or a
        dataclass such as :class:`lib.batches.SSLBatch`); other values are kept."""
        if not self.active:
            return batch
        if torch.is_tensor(batch):
            return self.split(batch)
        if isinstance(batch, (tuple, list)):
            return type(batch)(self.batch(b) for b in batch)
        if dataclasses.is_dataclass(batch):
            return dataclasses.replace(batch, **{f.name: self.batch(getattr(batch, f.name))
                                                 for f in dataclasses.fields(batch)})
        return batch

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean of ``t`` over the ranks (a new tensor, no gradient); ``t`` itself with one."""
        if not self.active:
            return t
        out = t.detach().clone()
        dist.all_reduce(out)
        return out.div_(self.world)

    def mean_of_values(self, *logs: dict) -> None:
        """Replace every tensor value of the dicts ``logs`` by its mean over the ranks, in one
        collective (Python numbers, which every rank holds alike, are kept)."""
        if not self.active:
            return
        keys = [(d, k) for d in logs for k, v in d.items() if torch.is_tensor(v)]
        if not keys:
            return
        flat = torch.stack([d[k].detach().double().reshape(()) for d, k in keys])
        dist.all_reduce(flat)
        flat /= self.world
        for (d, k), v in zip(keys, flat.unbind()):
            d[k] = v.to(d[k].dtype)

    def average_gradients(self, parameters) -> None:
        """Replace the gradients of ``parameters`` by their mean over the ranks (parameters
        without a gradient are skipped, alike on every rank)."""
        if self.active:
            _flat_collective([p.grad for p in parameters if p.grad is not None],
                             lambda flat: dist.all_reduce(flat.div_(self.world)))

    def broadcast(self, modules: list[nn.Module]) -> None:
        """Rank 0's parameters and buffers of ``modules`` on every rank."""
        if self.active:
            with torch.no_grad():
                _flat_collective([t for m in modules for t in (*m.parameters(), *m.buffers())],
                                 lambda flat: dist.broadcast(flat, src=0))

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def from_main(self, obj):
        """Rank 0's ``obj`` on every rank (a picklable value: an evaluation's row, a test's
        metrics)."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def device(self, device: torch.device) -> torch.device:
        """A CUDA device without an index becomes this process's GPU (``LOCAL_RANK``, set by
        torchrun), which becomes the current device."""
        if device.type != "cuda" or not self.active:
            return device
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
        return device


def init_from_env(*, init_method: str | None = None) -> Shard:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ``MASTER_PORT``; or ``init_method``): NCCL where CUDA is available, gloo elsewhere. On CUDA,
    ``LOCAL_RANK``'s GPU becomes the current device first, so ``cuda`` (data, models) means this
    process's GPU. Returns this process's :class:`Shard` of the whole group."""
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not initialized():
        dist.init_process_group("nccl" if cuda else "gloo", init_method=init_method)
    return Shard(rank(), world())


def _flat_collective(tensors: list[torch.Tensor], collective) -> None:
    """Run ``collective`` in place on ``tensors`` flattened into one buffer per dtype (one call
    instead of one per tensor; any memory layout), then copy the result back into them."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        collective(flat)
        parts = flat.split([t.numel() for t in group])
        torch._foreach_copy_(group, [p.view(t.shape) for p, t in zip(parts, group)])


def data_parallel_shard(enabled: bool) -> Shard:
    """This process's :class:`Shard` of a run marked data-parallel (``enabled``) when
    torch.distributed runs several ranks; ``Shard()`` otherwise (a run of its own on this rank)."""
    return Shard(rank(), world()) if enabled and world() > 1 else Shard()


def marked_runs(params: dict, known: tuple[str, ...]) -> tuple[str, ...]:
    """The runs a chapter's ``data_parallel`` parameter marks, each one of ``known`` (the runs whose
    methods train data-parallel), or a clear error."""
    runs = tuple(params.get("data_parallel") or ())
    unknown = [r for r in runs if r not in known]
    if unknown:
        raise ValueError(f"data_parallel lists {unknown}; runs that can train data-parallel here: "
                         f"{list(known)}")
    return runs


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the sum of the ranks' gradients (the adjoint of a sum
    that every rank reads)."""

    @staticmethod
    def forward(ctx, t):
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad):
        return _SumOverRanks.apply(grad.contiguous())


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch: the mean and (biased)
    variance are summed over the ranks by two all-reduces of per-channel sums, whose backward sums
    the ranks' gradients (as torch's SyncBatchNorm's backward does). Running statistics move by
    ``momentum`` towards the global mean and unbiased variance, as torch's. In evaluation, or
    without a process group, it is plain BatchNorm.

    Not torch's ``nn.SyncBatchNorm``: its kernels exist only on accelerators (the tests run gloo
    ranks on a CPU), and on CUDA its forward reads the gathered batch counts back to the host to
    drop empty ranks (a host synchronisation per layer per step, and a data-dependent shape that
    does not compile as one graph). Here every rank's slice has the same size (the loop asserts
    it), so the count is known without asking.
    """

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and initialized()):
            return super().forward(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # a cumulative average, as torch's
                factor = 1.0 / float(self.num_batches_tracked)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = x.numel() // x.size(1) * world()
        xf = x.float()  # statistics in float32 under autocast too, as torch's BatchNorm
        mean = _SumOverRanks.apply(xf.sum(dims)) / count
        centred = xf - mean.view(shape)
        var = _SumOverRanks.apply((centred * centred).sum(dims)) / count
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                unbiased = var * (count / max(count - 1, 1))
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm layer replaced by a :class:`SyncBatchNorm` that keeps its
    parameter and buffer tensors (as torch's ``convert_sync_batchnorm``), so optimisers and EMA
    copies still hold them and the state dict's keys are those of plain BatchNorm (checkpoints
    load into either)."""
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        out = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, convert_sync_batchnorm(child))
    return out


def replicas_differ(modules: dict[str, nn.Module], shard: Shard) -> list[str]:
    """The names of ``modules`` whose parameters differ between ranks (an update that bypassed
    :meth:`lib.train.Method.optimise` would apply one rank's gradients only): one number per
    module, compared across ranks."""
    if not shard.active or not modules:
        return []
    sums = torch.stack([torch.stack([p.detach().double().sum() for p in m.parameters()]).sum()
                        for m in modules.values()])
    low, high = sums.clone(), sums.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    scale = high.abs().clamp(min=1.0)
    return [name for name, lo, hi, s in zip(modules, low, high, scale) if (hi - lo) > 1e-9 * s]
