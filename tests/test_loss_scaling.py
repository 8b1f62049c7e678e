"""fp16 loss scaling: with fused optimisers the GradScaler path takes no host synchronisation per step,
updates it skips are counted (``skipped_steps``) without stopping the run, and a skipped first update
leaves fused SGD's momentum well defined. torch runs autocast fp16, GradScaler and the fused SGD/Adam
kernels on the CPU, so all of it is checked here."""
import itertools
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lib.train import Method, StepCounter, fit, move_optimizer
from lib.train.syncs import HostSyncCounter

sys.path.insert(0, str(Path(__file__).parent))
from test_sync_guard import method_and_batches  # noqa: E402

CPU = torch.device("cpu")


class Scaled(Method):
    """A small MLP trained under the method's autocast; at the 1-based steps in ``overflow_at`` a
    gradient hook makes the (scaled) gradients infinite while the loss stays finite, as an fp16
    overflow in the backward pass does."""

    def __init__(self, *, optimizer="sgd", clip=0.0, overflow_at=()):
        super().__init__()
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
        params = self.model.parameters()
        self.opt = (torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True)
                    if optimizer == "sgd" else torch.optim.Adam(params, lr=1e-2))
        self.counter = StepCounter()  # checkpointed: a resumed run overflows at the same steps
        self.state = {"model": self.model, "optimizer": self.opt, "step": self.counter}
        self.clip, self.overflow_at = clip, set(overflow_at)
        self.model[0].weight.register_hook(
            lambda g: g * math.inf if self.taken in self.overflow_at else g)

    @property
    def taken(self):
        return self.counter.value

    def train_step(self, batch):
        x, y = batch
        self.counter.value += 1
        with self.autocast():
            loss = F.mse_loss(self.net("model")(x).squeeze(1).float(), y)
        norm = self.optimise(loss, self.opt, model=self.model, clip=self.clip)
        logs = {"loss": loss.detach()}
        if norm is not None:
            logs["grad_norm"] = norm.detach()
        return logs


TARGET = torch.tensor([0.05, -0.1, 0.02, 0.15])  # small: no gradient overflows at the initial 2**16 scale


def batches(start):
    for step in itertools.count(start):
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(step))
        yield x, x @ TARGET


def fp16_method(fused, **kw):
    method = Scaled(**kw)
    method.setup(CPU, torch.float16)
    move_optimizer(method.opt, fused=fused)  # what Method.setup does on CUDA
    return method


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_a_fused_switch_marks_the_optimiser_as_handling_loss_scaling(name):
    model = nn.Linear(3, 2)
    opt = (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if name == "sgd"
           else torch.optim.Adam(model.parameters()))
    move_optimizer(opt, fused=False)
    assert not opt._step_supports_amp_scaling
    move_optimizer(opt, fused=True)
    assert all(g["fused"] for g in opt.param_groups) and opt._step_supports_amp_scaling
    if name == "sgd":  # defined momentum before the first step: zeros
        assert all(torch.equal(opt.state[p]["momentum_buffer"], torch.zeros_like(p))
                   for p in model.parameters())


@pytest.mark.parametrize("clip", [0.0, 1.0])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_an_fp16_optimise_step_has_no_host_synchronisation(optimizer, clip):
    method = fp16_method(True, optimizer=optimizer, clip=clip)
    stream = batches(0)
    method.train_step(next(stream))  # lazy state
    with HostSyncCounter() as counter:
        for _ in range(2):
            method.train_step(next(stream))
    assert counter.ops == {} and counter.host_tensors == {}
    # the counter sees the read-back GradScaler.step makes for an optimiser not marked fused
    method.opt._step_supports_amp_scaling = False
    with HostSyncCounter() as counter:
        method.train_step(next(stream))
    assert counter.ops == {"aten::_local_scalar_dense": 1}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("kind", ["supervised", "dcgan"])
def test_the_methods_fp16_steps_have_no_host_synchronisation(kind):
    # an SGD method (WRN) and a two-optimiser Adam method, each optimiser with its own scaler
    method, stream = method_and_batches(kind)
    method.setup(CPU, torch.float16)
    assert method._scalers
    for opt in method.state.values():
        if isinstance(opt, torch.optim.Optimizer):
            move_optimizer(opt, fused=True)
    method.train_step(next(stream))
    with HostSyncCounter() as counter:
        method.train_step(next(stream))
    assert counter.ops == {}, counter.ops


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_skipped_updates_are_counted_and_leave_the_weights_and_momentum_alone(optimizer):
    # the first update is skipped too (the common case: the scale starts at 2**16)
    fused, plain = (fp16_method(f, optimizer=optimizer, overflow_at={1, 3}) for f in (True, False))
    for method in (fused, plain):
        stream = batches(0)
        for step in range(1, 6):
            before = [p.detach().clone() for p in method.model.parameters()]
            method.train_step(next(stream))
            same = all(torch.equal(a, p) for a, p in zip(before, method.model.parameters()))
            assert same == (step in (1, 3)), step
        assert int(method.skipped_steps) == 2
    # the fused kernel, handed the scaler's flag, trains as the scaler skipping step() does
    for p, q in zip(fused.model.parameters(), plain.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_a_skipped_updates_gradient_norm_is_reported_as_zero():
    method = fp16_method(True, clip=1.0, overflow_at={2})
    stream = batches(0)
    norms = [float(method.train_step(next(stream))["grad_norm"]) for _ in range(3)]
    assert norms[0] > 0 and norms[1] == 0 and norms[2] > 0


def test_fit_logs_skipped_steps_and_does_not_stop_on_them(tmp_path):
    from lib.chapters.ssl_curves import read_tensorboard

    def train(ckpt, **kw):
        method = Scaled(clip=1.0, overflow_at={1, 3, 12})
        result = fit(method, batches, total_steps=20, eval_every=10, log_every=5, amp="fp16",
                     device="cpu", ckpt_dir=ckpt, **kw)
        return method, result

    method, result = train(tmp_path / "a", tb_dir=tmp_path / "tb")
    assert result.finished and method.taken == 20  # finite losses: loss scaling, not divergence
    assert result.history["skipped_steps"].tolist() == [2, 3]  # so far, at steps 10 and 20
    assert result.history["train_grad_norm"].notna().all()
    scalars = read_tensorboard(tmp_path / "tb")
    skipped = scalars[scalars.tag == "train/skipped_steps"]
    assert skipped.step.tolist() == [5, 10, 15, 20] and skipped.value.tolist() == [2, 2, 3, 3]
    # the count is checkpointed with the scalers: a resumed run reports the same
    train(tmp_path / "b", stop_after=7)
    resumed, again = train(tmp_path / "b")
    assert resumed.taken == 20 and again.history["skipped_steps"].tolist() == [2, 3]
    for p, q in zip(method.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
