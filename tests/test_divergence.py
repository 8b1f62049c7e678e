"""A run that turns non-finite stops at the next log point or checkpoint with one line naming the run,
the step and the remedy, keeps its last good checkpoint, and can be resumed from it."""
import itertools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lib.storage import load_checkpoint
from lib.train import Diverged, Method, fit
from lib.train.divergence import nonfinite_logs, nonfinite_weights


class Regression(Method):
    """A linear regression whose loss is made NaN at step ``nan_at`` (1-based), or whose weights are
    made infinite after the update of step ``inf_weights_at``; ``taken`` counts the steps run."""

    def __init__(self, *, nan_at=None, inf_weights_at=None):
        super().__init__()
        torch.manual_seed(0)
        self.model = nn.Linear(4, 1)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)
        self.state = {"model": self.model, "optimizer": self.opt}
        self.nan_at, self.inf_weights_at, self.taken = nan_at, inf_weights_at, 0

    def train_step(self, batch):
        x, y = batch
        self.taken += 1
        loss = F.mse_loss(self.net("model")(x).squeeze(1), y)
        if self.taken == self.nan_at:
            loss = loss * math.nan
        self.optimise(loss, self.opt, model=self.model)
        if self.taken == self.inf_weights_at:
            with torch.no_grad():
                self.model.weight[0, 0] = math.inf
        return {"loss": loss.detach()}


def batches(start):
    # a pure function of the step, as lib.batches.BatchLoader's, so a resumed run sees the same data
    for step in itertools.count(start):
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(step))
        yield x, x @ torch.tensor([1.0, -2.0, 0.5, 3.0])


def run(method, ckpt_dir, **kw):
    def evaluate():  # any finite metric: it makes fit write best.pt
        return {"val_loss": float(method.model.weight.detach().abs().sum())}

    return fit(method, batches, total_steps=40, eval_every=10, log_every=5, evaluate=evaluate,
               select="val_loss", mode="min", ckpt_dir=ckpt_dir, device="cpu", seed=0,
               desc="tiny-regression", **kw)


def test_a_nan_loss_stops_the_run_at_the_next_log_point_and_keeps_the_last_good_checkpoint(tmp_path):
    clean = Regression()
    run(clean, tmp_path / "clean", stop_after=10)  # what the checkpoint at step 10 must hold

    method = Regression(nan_at=13)
    with pytest.raises(Diverged) as err:
        run(method, tmp_path / "nan")
    last, best = tmp_path / "nan" / "last.pt", tmp_path / "nan" / "best.pt"
    message = str(err.value)
    # checked at the log points 5, 10 (evaluation and checkpoint) and 15: seen at 15, finite at 10
    assert (err.value.step, err.value.finite_at, err.value.values) == (15, 10, ["train loss"])
    assert message.startswith("tiny-regression: training diverged: non-finite train loss at step 15 "
                              "(still finite at step 10)")
    assert f"the last good checkpoint {last} (step 10) was kept" in message
    assert "Remedy: lower the learning rate, clip gradient norms (grad_clip" in message
    assert "amp: off" in message and "\n" not in message
    assert err.value._render_traceback_() == [f"Diverged: {message}"]  # a notebook shows just this
    assert method.taken == 15  # stopped there: no further steps
    assert err.value.checkpoint == last and err.value.checkpoint_step == 10
    for path in (last, best):  # neither was overwritten by the diverged state
        ck = load_checkpoint(path)
        assert ck["step"] == 10 < method.nan_at
        weights = ck["method"]["model"]
        assert all(torch.isfinite(w).all() for w in weights.values())
        for k, w in clean.model.state_dict().items():
            assert torch.equal(weights[k], w), k


def test_a_rerun_resumes_from_the_kept_checkpoint(tmp_path):
    with pytest.raises(Diverged):
        run(Regression(nan_at=13), tmp_path / "a")
    resumed = Regression()  # the cause removed: resumes at step 10, as a run that never diverged
    result = run(resumed, tmp_path / "a")
    assert resumed.taken == 30 and result.finished
    reference = Regression()
    expected = run(reference, tmp_path / "b")
    for k, w in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], w), k
    cols = ["step", "train_loss", "val_loss", "lr"]
    assert result.history[cols].equals(expected.history[cols])


def test_non_finite_weights_are_caught_before_a_checkpoint_between_log_points(tmp_path):
    # the update of step 8 makes a weight infinite; step 8's loss (computed before it) is finite and
    # step 8 is no log point, but a checkpoint is due (ckpt_every=4): it is not written
    method = Regression(inf_weights_at=8)
    with pytest.raises(Diverged) as err:
        fit(method, batches, total_steps=40, log_every=5, ckpt_every=4, ckpt_dir=tmp_path,
            device="cpu", desc="tiny-regression")
    assert (err.value.step, err.value.finite_at, err.value.values) == (8, 5, ["model weights"])
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 4 and method.taken == 8
    assert f"{tmp_path / 'last.pt'} (step 4) was kept" in str(err.value)


def test_a_run_that_diverges_before_its_first_checkpoint_says_so(tmp_path):
    with pytest.raises(Diverged, match=r"at step 5 \(still finite at step 0\); stopped without "
                                       r"saving, no checkpoint was written before it\. Remedy"):
        run(Regression(nan_at=2), tmp_path)
    assert not (tmp_path / "last.pt").exists() and not (tmp_path / "best.pt").exists()


def test_the_checks_name_what_is_non_finite():
    sums = {"loss": torch.tensor(math.inf), "acc": torch.tensor(0.5), "lr": 0.1,
            "mpl_h": torch.tensor([1.0, math.nan]), "data_time": math.nan}
    assert nonfinite_logs(sums) == ["loss", "mpl_h", "data_time"]
    assert nonfinite_logs({"loss": torch.tensor(2.0), "lr": 0.1}) == []

    net, ema = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), nn.Linear(2, 2).bfloat16()
    state = {"model": net, "ema": ema, "optimizer": torch.optim.SGD(net.parameters(), lr=0.1)}
    assert nonfinite_weights(state) == []
    net[1].running_var[1] = math.inf  # a buffer counts too
    ema.bias.data[0] = math.nan       # and another dtype
    assert nonfinite_weights(state) == ["model", "ema"]
