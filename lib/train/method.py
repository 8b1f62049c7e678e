"""What every trainable method shares: state for checkpoints, device set-up, the optimiser step,
EMA, compile.

A method registers its stateful parts in ``self.state`` (modules, optimisers, schedulers, EMA,
counters: anything with ``state_dict``/``load_state_dict``), names in ``compiled`` the modules
:func:`lib.train.fit` compiles, and implements ``train_step(batch) -> logs``. Inside the step it
calls its networks through :meth:`Method.net` and updates them through :meth:`Method.optimise`;
nothing else is needed to get AMP, fused optimisers, channels_last, compilation, EMA and exact
resume.
"""
from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn as nn

from .device import OneGraph, channels_last, compile_record, maybe_compile, resolve_compile
from .distributed import Shard, convert_sync_batchnorm


class EMA(nn.Module):
    """Exponential moving average of a model's parameters (buffers are copied), as a module to
    evaluate.

    With ``warmup`` the decay at update ``n`` is ``min(decay, (1 + n) / (10 + n))`` (as in common
    DDPM code), so short runs are not frozen near the initial weights.
    """

    def __init__(self, model: nn.Module, decay: float, *, warmup: bool = False):
        super().__init__()
        self.decay, self.warmup = decay, warmup
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, *, step: int | None = None) -> None:
        """``ema += (1 - decay) * (model - ema)`` for every parameter, buffers copied: one
        multi-tensor kernel each instead of one per tensor (a U-Net has hundreds), as timm's
        ModelEmaV3 does."""
        decay = self.decay
        if self.warmup and step is not None:
            decay = min(decay, (1 + step) / (10 + step))
        targets = list(self.module.parameters())
        torch._foreach_lerp_(targets, [p.detach() for p in model.parameters()], 1 - decay)
        buffers = list(self.module.buffers())
        if buffers:
            torch._foreach_copy_(buffers, list(model.buffers()))

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


class StepCounter:
    """The number of steps a method has taken, checkpointed with it (e.g. a loss weight ramps with
    it)."""

    def __init__(self):
        self.value = 0

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, sd: dict) -> None:
        self.value = int(sd["value"])


class Method:
    """Base of everything :func:`lib.train.fit` trains (see the module docstring)."""

    # names in ``state`` of the modules to compile when ``compile`` is on
    compiled: tuple[str, ...] = ()
    device = torch.device("cpu")
    autocast_dtype: torch.dtype | None = None
    compile: bool | str = False
    # which rank of how many trains this run (data-parallel: :meth:`distribute`)
    shard = Shard()

    def __init__(self):
        self.state: dict[str, object] = {}
        self.ema: EMA | None = None
        self._nets: dict[str, nn.Module] = {}
        self._scalers: dict[str, torch.amp.GradScaler] = {}  # optimiser name -> scaler (fp16 only)
        self._skipped: torch.Tensor | None = None  # fp16: updates the scalers skipped, on the device

    def distribute(self, shard: Shard, *, sync_batchnorm: bool = False) -> None:
        """Train data-parallel as rank ``shard.rank`` of ``shard.world`` (called by the loop before
        :meth:`setup`): :meth:`setup` gives every rank rank 0's modules, :meth:`optimise` averages
        each update's gradients over the ranks, and with ``sync_batchnorm`` the BatchNorm layers
        of the ``compiled`` modules (the networks a step trains) compute statistics over the
        global batch.

        Gradients are averaged by one all-reduce per update rather than by wrapping the modules in
        DistributedDataParallel: a DDP wrapper does not compile as one graph (torch.compile with
        ``fullgraph``: "Unsupported method call"), and the compiled modules are the ones the long
        data-parallel runs train; it also keeps MPL's two updates per step two plain
        ``optimise`` calls. The cost: communication starts after the backward pass instead of
        overlapping it."""
        self.shard = shard
        if sync_batchnorm and shard.active:
            for name in self.compiled:
                if convert_sync_batchnorm(self.state[name]) is not self.state[name]:
                    raise TypeError(f"{name} is a BatchNorm layer itself; wrap it in a module")

    def setup(self, device: torch.device, autocast_dtype: torch.dtype | None, *,
              compile: bool | str | None = None) -> None:
        """Called by the loop before training: move modules to ``device`` (channels_last on CUDA and CPU),
        move optimiser state after them and switch optimisers to torch's fused kernels on CUDA,
        compile the ``compiled`` modules (``compile``: auto / true / false; None keeps the previous
        choice), and, under fp16 autocast, give each optimiser a gradient scaler."""
        self.device, self.autocast_dtype = device, autocast_dtype
        if compile is not None:
            self.compile = compile
        cuda = device.type == "cuda"
        fmt = self.memory_format(device)
        for obj in self.state.values():
            if isinstance(obj, nn.Module):
                obj.to(device)
                if fmt is not None:
                    obj.to(memory_format=fmt)
        optimizers = {k: o for k, o in self.state.items() if isinstance(o, torch.optim.Optimizer)}
        for opt in optimizers.values():
            move_optimizer(opt, fused=cuda)
        if self.shard.active:  # every rank starts from rank 0's weights and buffers
            self.shard.broadcast([m for m in self.state.values() if isinstance(m, nn.Module)])
        on = resolve_compile(self.compile, device)
        self._nets = {name: self._compiled_net(name, on) for name in self.compiled}
        if autocast_dtype == torch.float16:  # keep scalers a resumed checkpoint restored
            self._scalers = {k: self._scalers.get(k) or torch.amp.GradScaler(device.type)
                             for k in optimizers}
            skipped = self._skipped if self._skipped is not None else torch.zeros((), dtype=torch.long)
            self._skipped = skipped.to(device)
        else:
            self._scalers, self._skipped = {}, None

    def _compiled_net(self, name: str, on: bool):
        old = self._nets.get(name)
        if on and isinstance(old, OneGraph) and old.module is self.state[name]:
            return old  # a second setup (resume, the reload before testing) keeps graph and record
        return maybe_compile(self.state[name], on, name=name)

    def compilation(self) -> dict[str, dict]:
        """``{module name: record}`` of the ``compiled`` modules: compiled, graphs, eager_calls,
        error (see :class:`lib.train.device.OneGraph`)."""
        return {name: compile_record(self._nets.get(name)) for name in self.compiled}

    def memory_format(self, device: torch.device) -> torch.memory_format | None:
        """The layout :meth:`setup` gives the method's modules on ``device`` (None: leave it):
        channels_last where :func:`lib.train.device.channels_last` says convolutions run fastest
        in it."""
        return torch.channels_last if channels_last(device) else None

    def net(self, name: str) -> nn.Module:
        """The network ``name`` as training calls it: compiled after :meth:`setup` when ``compile``
        is on."""
        compiled = self._nets.get(name)
        return compiled if compiled is not None else self.state[name]

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def track_ema(self, model: nn.Module, decay: float, *, warmup: bool = False) -> None:
        """Keep an EMA of ``model`` (checkpointed as ``state["ema"]``) when ``decay`` > 0;
        :meth:`optimise` with ``ema=True`` updates it."""
        self.ema = EMA(model, decay, warmup=warmup) if decay > 0 else None
        if self.ema is not None:
            self.state["ema"] = self.ema

    @property
    def skipped_steps(self) -> torch.Tensor | None:
        """Under fp16, the optimiser updates the gradient scalers skipped (inf/NaN gradients) so far,
        summed over the method's optimisers, as a tensor on the device (reading it waits for the
        device: the loop does so only where it logs); None without loss scaling."""
        return self._skipped

    def optimise(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, *, model: nn.Module,
                 scheduler=None, clip: float = 0.0, ema: bool = False) -> torch.Tensor | None:
        """One update of ``model`` from ``loss``: zero the gradients, backward (scaled under fp16),
        average them over the ranks when training data-parallel, clip their norm at ``clip``
        (> 0), step, advance ``scheduler``, update the EMA (its warm-up counts the scheduler's
        steps). Returns the gradient norm before clipping, or None without clipping; under fp16
        an update the scaler skipped is counted in :attr:`skipped_steps` and its (non-finite)
        norm returned as 0, since no gradient was applied."""
        name = next((k for k, o in self.state.items() if o is optimizer), None)
        scaler = self._scalers.get(name)
        optimizer.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        self.shard.average_gradients(model.parameters())  # each rank's loss: a mean over its slice
        norm = None
        if clip and clip > 0:
            if scaler is not None:
                scaler.unscale_(optimizer)
            norm = nn.utils.clip_grad_norm_(model.parameters(), clip)
        if scaler is not None:
            # update() lowers the scale (backoff) exactly when this update was skipped: counted on
            # the device, with no read-back (scaler.get_scale() would wait for the device)
            scale = scaler._get_scale_async().clone()
            scaler.step(optimizer)
            scaler.update()
            skipped = scaler._get_scale_async() < scale
            self._skipped += skipped
            if norm is not None:
                norm = norm.masked_fill(skipped, 0.0)
        else:
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema and self.ema is not None:
            self.ema.update(model, step=scheduler.last_epoch if scheduler is not None else None)
        return norm

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
        sd = {name: obj.state_dict() for name, obj in self.state.items()}
        if self._scalers:
            sd["grad_scalers"] = {name: s.state_dict() for name, s in self._scalers.items()}
            sd["skipped_steps"] = self._skipped.clone()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        missing = set(self.state) - set(sd)
        if missing:
            raise KeyError(f"checkpoint lacks {sorted(missing)}; it was written by a "
                           "different method")
        for name, obj in self.state.items():
            obj.load_state_dict(sd[name])
        for name, scaler_sd in sd.get("grad_scalers", {}).items():
            self._scalers.setdefault(
                name, torch.amp.GradScaler(self.device.type)).load_state_dict(scaler_sd)
        if "skipped_steps" in sd:
            self._skipped = sd["skipped_steps"].clone()


def move_optimizer(optimizer: torch.optim.Optimizer, *, fused: bool) -> None:
    """Move ``optimizer``'s state (momenta, moments, step) to its parameters' device and, with
    ``fused``, switch it to torch's fused implementation (one kernel updates every parameter) where
    torch has one for its class and the parameters are floating point. Goes through
    ``load_state_dict``, so no state is lost and an optimizer created on the CPU before its model
    moved to the GPU still runs fused there.

    A fused optimiser is also marked as handling loss scaling itself, as torch marks one built
    fused: ``GradScaler.step`` then hands it the scale and the found-inf flag, and its kernel skips
    an overflowed update on the device. Unmarked, ``GradScaler.step`` reads the flag back to the
    host (``.item()``) to decide whether to call ``step``: one host synchronisation per optimiser
    per fp16 step (torch/amp/grad_scaler.py: ``step`` checks ``_step_supports_amp_scaling``, which
    only ``SGD.__init__``/``Adam.__init__`` with ``fused=True`` set)."""
    sd = optimizer.state_dict()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    floating = params and all(p.is_floating_point() for p in params)
    if fused and "fused" in optimizer.defaults and floating:
        for group in sd["param_groups"]:
            group["fused"], group["foreach"] = True, False
    optimizer.load_state_dict(sd)
    on = bool(optimizer.param_groups) and all(g.get("fused") for g in optimizer.param_groups)
    optimizer._step_supports_amp_scaling = on
    if on and isinstance(optimizer, torch.optim.SGD):
        _create_momentum_buffers(optimizer)


def _create_momentum_buffers(optimizer: torch.optim.SGD) -> None:
    """Give fused SGD zero momentum buffers before its first step. Its first step makes them with
    ``torch.empty_like`` and its kernel returns early when the scaler found inf, so a skipped
    first update (common: the scale starts at 2**16) would leave uninitialised memory as momentum
    (torch/optim/sgd.py ``_fused_sgd``, FusedSgdKernel.cu). With dampening 0 (the project's SGD
    never sets it), a zero buffer gives the first update exactly the first-step rule
    (``buf = momentum * 0 + g = g``); other dampenings keep torch's lazy buffers."""
    for group in optimizer.param_groups:
        if group["momentum"] == 0 or group["dampening"] != 0:
            continue
        for p in group["params"]:
            state = optimizer.state[p]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
