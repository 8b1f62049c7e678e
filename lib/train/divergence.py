"""A run whose training turns non-finite stops with :class:`Diverged`, keeping its last good
checkpoint: the checks :func:`lib.train.fit` makes where it already reads values back.

The rule, in every precision:

* a non-finite training log (the window of summed step logs the loop keeps on the device: losses,
  accuracies, gradient norms, ...) seen at a log point, an evaluation or a checkpoint is
  divergence;
* so is a non-finite weight (any floating parameter or buffer of the method's modules, EMA
  included), checked just before a checkpoint is written, so a diverged state never replaces the
  last good ``last.pt`` or ``best.pt``.

Under fp16 a GradScaler skips an update whose *scaled* gradients overflowed and halves its scale:
that is loss scaling at work, not divergence; :meth:`lib.train.Method.optimise` counts those
updates (``skipped_steps`` in the history and TensorBoard) and reports a skipped update's gradient
norm as 0. The *loss* comes from the forward pass, which scaling does not touch (autocast computes
cross-entropy and MSE in fp32), so a non-finite loss under fp16 is a forward overflow or a
diverged model, and stops the run like any other.

Nothing here runs per step: the loop calls these helpers only where the host already waits for the
device (a log point) or must (writing a checkpoint); each is one read-back.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn as nn

REMEDY = ("lower the learning rate, clip gradient norms (grad_clip, ddpm_grad_clip) or train in "
          "fp32 (amp: off), then rerun; with unchanged parameters a rerun resumes from the kept "
          "checkpoint")


class Diverged(RuntimeError):
    """Training produced a non-finite value. The message is one line: the run, the step it was
    seen at and the last step it was still finite at, what was non-finite (``values``: ``train
    <log>`` and ``<module> weights``), the checkpoint that was kept and the remedy."""

    def __init__(self, *, desc: str, step: int, finite_at: int, values: list[str],
                 checkpoint: Path | None, checkpoint_step: int | None):
        self.desc, self.step, self.finite_at, self.values = desc, step, finite_at, values
        self.checkpoint, self.checkpoint_step = checkpoint, checkpoint_step
        if checkpoint is None:
            kept = "no checkpoint was written before it"
        else:
            kept = f"the last good checkpoint {checkpoint} (step {checkpoint_step}) was kept"
        super().__init__(f"{desc}: training diverged: non-finite {', '.join(values)} at step "
                         f"{step} (still finite at step {finite_at}); stopped without saving, "
                         f"{kept}. Remedy: {REMEDY}.")

    def _render_traceback_(self):  # IPython/Jupyter (and so papermill's log) show this one line
        return [f"{type(self).__name__}: {self}"]


def nonfinite_logs(sums: dict[str, torch.Tensor | float]) -> list[str]:
    """Names of the summed training logs that are not finite, in their order: one read-back for
    all the tensors (a sum is non-finite as soon as one step's value was)."""
    tensors = {k: v for k, v in sums.items() if torch.is_tensor(v)}
    bad = set()
    if tensors:
        finite = torch.stack([v.detach().isfinite().all() for v in tensors.values()]).tolist()
        bad = {k for k, ok in zip(tensors, finite) if not ok}
    bad |= {k for k, v in sums.items() if not torch.is_tensor(v) and not math.isfinite(v)}
    return [k for k in sums if k in bad]


def nonfinite_weights(modules: dict[str, object]) -> list[str]:
    """Names of the modules in ``modules`` (a method's ``state``; other entries are ignored) with a
    non-finite floating parameter or buffer. The max-abs norm propagates NaN and is infinite for
    inf, so one fused ``torch._foreach_norm`` per dtype and one read-back decide it."""
    groups: dict[torch.dtype, tuple[list[str], list[torch.Tensor]]] = defaultdict(
        lambda: ([], []))
    for name, obj in modules.items():
        if isinstance(obj, nn.Module):
            for t in (*obj.parameters(), *obj.buffers()):
                if t.is_floating_point():
                    groups[t.dtype][0].append(name)
                    groups[t.dtype][1].append(t.detach())
    if not groups:
        return []
    names = [n for owners, _ in groups.values() for n in owners]
    finite = torch.cat([torch.stack(torch._foreach_norm(ts, ord=math.inf)).isfinite()
                        for _, ts in groups.values()]).tolist()
    bad = {n for n, ok in zip(names, finite) if not ok}
    return [n for n in modules if n in bad]
