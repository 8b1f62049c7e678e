"""SPEC 3.2: the TwoMoon toy experiment -- supervised-only, pseudo-labelling and Meta Pseudo Labels
with small MLPs.

scikit-learn's two moons with a handful of labelled points per moon; every other point is
unlabelled. Three learners, all full-batch Adam on two-hidden-layer MLPs, seconds on a CPU:

* **supervised only** -- an MLP trained on the labelled points alone;
* **pseudo-labelling** -- that MLP as a fixed teacher; a student learns the labelled points plus the
  teacher's hard pseudo labels on every unlabelled point;
* **Meta Pseudo Labels** -- teacher and student trained together: each step the student learns the
  teacher's pseudo labels (sampled from the teacher's distribution, as in the paper), and the
  teacher learns from its labelled CE plus the student's feedback ``h * CE(T(x_u), pseudo)`` with
  ``h`` the drop of the student's labelled loss (:func:`lib.methods.ssl.mpl_feedback`, the same term
  the CIFAR-10 run uses).

Accuracy is measured on every point (labelled and unlabelled) against the true moon.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..evaluate.intervals import counted
from ..augment import cpu_threads
from ..methods.ssl import mpl_feedback


@dataclass
class TwoMoons:
    x: torch.Tensor         # (N, 2) float32, standardised
    y: torch.Tensor         # (N,) true moon, for evaluation only
    labelled: torch.Tensor  # indices of the labelled points

    @property
    def unlabelled(self) -> torch.Tensor:
        mask = torch.ones(len(self.y), dtype=torch.bool)
        mask[self.labelled] = False
        return mask.nonzero().flatten()


def make_two_moons(*, n_samples: int, noise: float, labels_per_class: int, seed: int) -> TwoMoons:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    x = (x - x.mean(0)) / x.std(0)
    rng = np.random.default_rng(seed)
    labelled = np.concatenate([rng.choice(np.flatnonzero(y == c), labels_per_class, replace=False)
                               for c in (0, 1)])
    return TwoMoons(torch.tensor(x, dtype=torch.float32), torch.tensor(y),
                    torch.tensor(np.sort(labelled)))


def mlp(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 2))


def train_supervised(data: TwoMoons, *, hidden: int, steps: int, lr: float, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = mlp(hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_l, y_l = data.x[data.labelled], data.y[data.labelled]
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x_l), y_l).backward()
        opt.step()
    return model.eval()


def train_pseudo_label(data: TwoMoons, *, hidden: int, steps: int, lr: float,
                       seed: int) -> nn.Module:
    teacher = train_supervised(data, hidden=hidden, steps=steps, lr=lr, seed=seed)
    x_u = data.x[data.unlabelled]
    with torch.no_grad():
        pseudo = teacher(x_u).argmax(1)
    x = torch.cat([data.x[data.labelled], x_u])
    y = torch.cat([data.y[data.labelled], pseudo])
    torch.manual_seed(seed + 1)
    student = mlp(hidden)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(student(x), y).backward()
        opt.step()
    return student.eval()


def train_mpl(data: TwoMoons, *, hidden: int, steps: int, lr: float, seed: int,
              feedback_weight: float = 1.0) -> tuple[nn.Module, nn.Module]:
    """Teacher and student trained together with the MPL feedback; returns ``(student, teacher)``.

    ``feedback_weight`` scales the feedback term: one full-batch step of a small MLP moves the
    student's labelled loss by ~1e-3, so unscaled the teacher's labelled CE drowns the signal.
    """
    torch.manual_seed(seed)
    teacher, student = mlp(hidden), mlp(hidden)
    t_opt = torch.optim.Adam(teacher.parameters(), lr=lr)
    s_opt = torch.optim.Adam(student.parameters(), lr=lr)
    x_l, y_l = data.x[data.labelled], data.y[data.labelled]
    x_u = data.x[data.unlabelled]
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        t_logits_u = teacher(x_u)
        pseudo = torch.multinomial(torch.softmax(t_logits_u.detach(), 1), 1, generator=g).flatten()
        with torch.no_grad():
            before = F.cross_entropy(student(x_l), y_l)
        s_opt.zero_grad()
        F.cross_entropy(student(x_u), pseudo).backward()
        s_opt.step()
        with torch.no_grad():
            after = F.cross_entropy(student(x_l), y_l)
        feedback, _ = mpl_feedback(before, after, t_logits_u, pseudo)
        t_opt.zero_grad()
        (F.cross_entropy(teacher(x_l), y_l) + feedback_weight * feedback).backward()
        t_opt.step()
    return student.eval(), teacher.eval()


@counted("two-moons seeds")
def seed_runs(params: dict, first: tuple | None = None) -> dict[str, np.ndarray]:
    """The three learners on ``twomoon_seeds`` two-moons sets (seeds ``seed``, ``seed + 1``, ...:
    each a new draw of the points, of the labelled ones and of the initialisation), for the
    interval of the 3.2 finding: ``methods``, ``seeds``, ``accuracy`` (methods x seeds) and
    ``correct`` (methods x seeds x points). ``first``: :func:`run`'s ``(data, models, table)`` for
    ``seed`` when already trained (the figure's run), reused instead of trained again."""
    correct = []
    for s in range(params["twomoon_seeds"]):
        data, models, _ = (first if s == 0 and first is not None
                           else run({**params, "seed": params["seed"] + s}))
        with torch.no_grad():
            correct.append([(m(data.x).argmax(1) == data.y).numpy() for m in models.values()])
    correct = np.array(correct).transpose(1, 0, 2)
    return {"methods": np.array(list(models)), "seeds": params["seed"] + np.arange(len(correct[0])),
            "accuracy": correct.mean(-1), "correct": correct}


def run(params: dict) -> tuple[TwoMoons, dict[str, nn.Module], pd.DataFrame]:
    """The three learners on one seeded two-moons set; returns data, models and an accuracy
    table."""
    data = make_two_moons(n_samples=params["twomoon_samples"], noise=params["twomoon_noise"],
                          labels_per_class=params["twomoon_labels_per_class"], seed=params["seed"])
    kw = {"hidden": params["twomoon_hidden"], "steps": params["twomoon_steps"],
          "lr": params["twomoon_lr"], "seed": params["seed"]}
    with cpu_threads(params["cpu_threads"]):
        models = {"supervised only": train_supervised(data, **kw),
                  "pseudo-labelling": train_pseudo_label(data, **kw),
                  "Meta Pseudo Labels (student)": train_mpl(
                      data, feedback_weight=params["twomoon_feedback_weight"], **kw)[0]}
    rows = []
    for name, m in models.items():
        with torch.no_grad():
            acc = (m(data.x).argmax(1) == data.y).float().mean().item()
        rows.append({"method": name, "accuracy on all points (%)": round(100 * acc, 1),
                     "labelled points": len(data.labelled),
                     "unlabelled points": len(data.unlabelled)})
    return data, models, pd.DataFrame(rows)


def boundaries_figure(data: TwoMoons, models: dict[str, nn.Module], table: pd.DataFrame):
    """One panel per learner: predicted probability of the upper moon, the 0.5 boundary, and the
    points."""
    import matplotlib.pyplot as plt

    lo, hi = data.x.min(0).values - 0.5, data.x.max(0).values + 0.5
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 200), torch.linspace(lo[1], hi[1], 200),
                            indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1)
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4.2), layout="constrained")
    acc = dict(zip(table["method"], table["accuracy on all points (%)"]))
    u, lab = data.unlabelled, data.labelled
    for ax, (name, m) in zip(np.atleast_1d(axes), models.items()):
        with torch.no_grad():
            p = torch.softmax(m(grid), 1)[:, 1].reshape(gx.shape)
        ax.contourf(gx, gy, p, levels=20, cmap="RdBu_r", alpha=0.35, vmin=0, vmax=1)
        ax.contour(gx, gy, p, levels=[0.5], colors="k", linewidths=2)
        ax.scatter(*data.x[u].T, c=data.y[u], cmap="coolwarm", s=6, alpha=0.5, vmin=0, vmax=1)
        ax.scatter(*data.x[lab].T, c=data.y[lab], cmap="coolwarm", s=160, marker="*",
                   edgecolors="k", vmin=0, vmax=1)
        ax.set(title=f"{name}: {acc[name]:.1f}%", xticks=[], yticks=[])
    fig.suptitle(f"Two moons, {len(lab)} labelled (stars) and {len(u)} unlabelled points; "
                 "black line = decision boundary, title = accuracy on all points")
    return fig
