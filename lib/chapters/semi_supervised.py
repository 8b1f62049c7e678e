"""Chapter 3 glue: CIFAR-10-4K, Meta Pseudo Labels with UDA and its baselines trained from params,
the finetune, and the chapter's tables and curves.

* :func:`load_ssl_splits` -- the seeded, class-balanced CIFAR-10-4K split: 4,000 labelled (400 per
  class), 5,000 validation (model selection), 41,000 unlabelled (labels dropped), and the test set
  (reported once).
* :func:`train_ssl` / :func:`finetune` -- one call per row of the results table (methods in
  :mod:`lib.methods.ssl`, batches from :class:`lib.batches.SSLBatches`); :func:`read_tensorboard`
  reads the logged scalars back for the curves (SPEC 3.8).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.nn as nn

from .. import data as D
from .. import storage
from ..augment import cpu_threads
from ..batches import BatchLoader, SSLBatches
from ..evaluate.classification import predict, topk_metrics
from ..methods.ssl import UDA, MetaPseudoLabels, SSLMethod, Supervised
from ..models import build_model, count_parameters
from ..train import (
    Run,
    decay_groups,
    make_optimizer,
    pick_device,
    train_and_test,
    warmup_cosine,
)


@dataclass
class SSLSplits:
    """CIFAR-10-4K: labelled / unlabelled / validation parts of the training set, and the test
    set."""

    labelled_x: torch.Tensor
    labelled_y: torch.Tensor
    unlabelled_x: torch.Tensor
    # kept only to report pseudo-label accuracy diagnostics; never used for training
    unlabelled_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str
    # indices into the training set, per part
    indices: dict = field(default_factory=dict, repr=False)

    def sizes(self) -> dict[str, int]:
        return {"validation": len(self.val_y), "labelled": len(self.labelled_y),
                "unlabelled": len(self.unlabelled_x), "test": len(self.test_y)}


def make_ssl_split(labels: torch.Tensor, *, labelled: int, val: int, unlabelled: int,
                   seed: int) -> dict:
    """Disjoint, class-balanced index sets ``{"val", "labelled", "unlabelled"}`` of ``labels``.

    ``unlabelled=-1`` takes every image left over (41,000 of CIFAR-10's 50,000); a positive size
    takes a class-balanced subset of that size (small profiles).
    """
    parts = D.stratified_split(labels, {"val": val, "labelled": labelled, "unlabelled": -1},
                               seed=seed)
    if unlabelled not in (-1, 0) and unlabelled < len(parts["unlabelled"]):
        keep = D.stratified_split(labels[parts["unlabelled"]], {"keep": unlabelled},
                                  seed=seed + 1)["keep"]
        parts["unlabelled"] = parts["unlabelled"][keep].sort().values
    return parts


def load_ssl_splits(params: dict) -> SSLSplits:
    ds = D.load_cifar10(params["data"])
    parts = make_ssl_split(ds.train_y, labelled=params["labelled_size"], val=params["val_size"],
                           unlabelled=params["unlabelled_size"], seed=params["seed"])
    test_x, test_y = D.subsample(ds.test_x, ds.test_y, params["test_subset"], seed=params["seed"])
    tx, ty = ds.train_x, ds.train_y
    return SSLSplits(tx[parts["labelled"]], ty[parts["labelled"]], tx[parts["unlabelled"]],
                     ty[parts["unlabelled"]], tx[parts["val"]], ty[parts["val"]], test_x, test_y,
                     source=ds.source, indices=parts)


def split_table(splits: SSLSplits, presented: dict, *, profile: str) -> pd.DataFrame:
    """SPEC 3.4: sizes and per-class counts of each part, beside the presented split."""
    rows = []
    parts = {"validation": splits.val_y, "labelled": splits.labelled_y,
             "unlabelled": splits.unlabelled_y, "test (reported once)": splits.test_y}
    for name, y in parts.items():
        counts = torch.bincount(y, minlength=10)
        rows.append({"part": name, "presented": presented.get(name.split(" ")[0]),
                     "this run": len(y),
                     "per class (min-max)": f"{int(counts.min())}-{int(counts.max())}",
                     "labels used in training": {"labelled": "yes",
                                                 "unlabelled": "no (images only)"}.get(
                         name, "no (evaluation only)"),
                     "profile": profile, "data": splits.source})
    return pd.DataFrame(rows)


KINDS = ("mpl", "uda", "supervised")


TRAIN_LOSS = {"mpl": "student_loss", "uda": "teacher_loss", "supervised": "loss",
              "finetune": "loss"}


LABELS = {"mpl": "MPL (student)", "uda": "UDA only (teacher, no MPL feedback)",
          "supervised": "supervised only (labelled images)", "finetune": "MPL + finetune"}


TRAIN_KEYS = ("width", "bn_momentum", "teacher_dropout", "student_dropout", "total_steps",
              "batch_size", "mu", "teacher_lr", "student_lr", "momentum", "nesterov",
              "weight_decay", "label_smoothing", "warmup_steps", "student_wait_steps", "uda_steps",
              "lambda_u", "threshold", "temperature", "ema", "grad_clip", "randaug_ops",
              "randaug_magnitude", "cutout_size", "seed", "amp")


@dataclass(kw_only=True)
class SSLRun(Run):
    """One trained row of the results table: validation-selected model, its test metrics, history,
    timing."""

    parameters: int
    tb_dir: Path | None

    @property
    def kind(self) -> str:
        return self.name

    @property
    def model(self) -> nn.Module:
        return self.method.eval_model

    @property
    def val_acc(self) -> float:
        return self.best_value

    @property
    def seconds_per_step(self) -> float:
        hist = self.history
        return (float(hist["train_batch_time"].mean()) if "train_batch_time" in hist
                else float("nan"))


def _loaders(splits: SSLSplits, params: dict, device, *, unlabelled: bool,
             labelled_batch: int | None = None):
    cl = device.type == "cuda"
    batches = SSLBatches(splits.labelled_x, splits.labelled_y, splits.unlabelled_x,
                         labelled_batch=labelled_batch or params["batch_size"],
                         unlabelled_batch=params["batch_size"] * params["mu"] if unlabelled else 0,
                         device=device, seed=params["seed"], randaug_ops=params["randaug_ops"],
                         randaug_magnitude=params["randaug_magnitude"],
                         cutout_size=params["cutout_size"], channels_last=cl)
    val = BatchLoader(splits.val_x, splits.val_y, batch_size=params["eval_batch_size"],
                        device=device, train=False, channels_last=cl)
    test = BatchLoader(splits.test_x, splits.test_y, batch_size=params["eval_batch_size"],
                         device=device, train=False, channels_last=cl)
    return batches, val, test


def build_method(kind: str, params: dict, *, total_steps: int | None = None) -> SSLMethod:
    """The method of ``kind`` (``mpl``, ``uda``, ``supervised``) with its networks, SGD optimizers
    and schedules."""
    if kind not in KINDS:
        raise ValueError(f"unknown SSL method {kind!r}; expected one of {KINDS}")
    total = total_steps or params["total_steps"]
    p = params

    def net(dropout):
        return build_model("wrn28_2", width=p["width"], dropout=dropout,
                           bn_momentum=p["bn_momentum"])

    def opt(model, lr):
        return make_optimizer(decay_groups(model, p["weight_decay"]), name="sgd", lr=lr,
                              momentum=p["momentum"], nesterov=p["nesterov"])

    torch.manual_seed(p["seed"])
    common = {"label_smoothing": p["label_smoothing"], "grad_clip": p["grad_clip"]}
    uda = {"temperature": p["temperature"], "threshold": p["threshold"], "lambda_u": p["lambda_u"],
           "uda_steps": p["uda_steps"]}
    if kind == "mpl":
        teacher, student = net(p["teacher_dropout"]), net(p["student_dropout"])
        t_opt, s_opt = opt(teacher, p["teacher_lr"]), opt(student, p["student_lr"])
        method = MetaPseudoLabels(
            teacher, student, teacher_optimizer=t_opt, student_optimizer=s_opt,
            teacher_scheduler=warmup_cosine(t_opt, total_steps=total,
                                            warmup_steps=p["warmup_steps"]),
            student_scheduler=warmup_cosine(s_opt, total_steps=total,
                                            warmup_steps=p["warmup_steps"],
                                            wait_steps=p["student_wait_steps"]),
            ema_decay=p["ema"], **common, **uda)
    else:
        model = net(p["teacher_dropout"])
        o = opt(model, p["teacher_lr"])
        sched = warmup_cosine(o, total_steps=total, warmup_steps=p["warmup_steps"])
        if kind == "uda":
            method = UDA(model, optimizer=o, scheduler=sched, ema_decay=p["ema"], **common, **uda)
        else:
            method = Supervised(model, optimizer=o, scheduler=sched, ema_decay=p["ema"], **common)
    return method


def train_ssl(kind: str, splits: SSLSplits, params: dict, *, ckpt_root: Path,
              tb_root: Path | None = None, stop_after: int | None = None) -> SSLRun:
    """Train ``kind`` through :func:`lib.train.fit`: validation top-1 of the evaluated network (MPL:
    the student's EMA; UDA: the teacher's EMA; supervised: its EMA) every ``eval_every`` steps picks
    ``best.pt``; the test set is evaluated once, on that checkpoint. Re-running with the same
    parameters reuses/resumes it."""
    device = pick_device(params["device"])
    ckpt_dir = storage.run_dir(ckpt_root, kind, {
        "kind": kind, **{k: params[k] for k in TRAIN_KEYS}, "data": splits.source,
        "sizes": splits.sizes()})
    method = build_method(kind, params)
    batches, val, test = _loaders(splits, params, device, unlabelled=kind != "supervised")
    return _run(kind, method, batches.forever, val, test, params, device, ckpt_dir=ckpt_dir,
                tb_dir=(Path(tb_root) / kind) if tb_root else None,
                total_steps=params["total_steps"], eval_every=params["eval_every"],
                stop_after=stop_after, config={"kind": kind, **{k: params[k] for k in TRAIN_KEYS}})


def _run(kind, method, batches_fn, val, test, params, device, *, ckpt_dir, tb_dir, total_steps,
         eval_every, stop_after=None, config=None) -> SSLRun:
    """Train through :func:`lib.train.train_and_test`: validation top-1 of the evaluated network
    picks ``best.pt``, the test set is evaluated once on it."""
    def evaluate():
        m = topk_metrics(*predict(method.eval_model, val, autocast_dtype=method.autocast_dtype))
        return {"val_acc": m["acc"], "val_top5": m["top5"], "val_loss": m["loss"]}

    def test_once():
        return topk_metrics(*predict(method.eval_model, test, autocast_dtype=method.autocast_dtype))

    with cpu_threads(params["cpu_threads"] if device.type == "cpu" else 0):
        run = train_and_test(method, batches_fn, name=kind, test=test_once, total_steps=total_steps,
                             evaluate=evaluate, eval_every=eval_every, ckpt_dir=ckpt_dir,
                             tb_dir=tb_dir, device=device, amp=params["amp"], seed=params["seed"],
                             log_every=params["log_every"], stop_after=stop_after, config=config,
                             compile=params["compile"])
    return SSLRun(**vars(run), parameters=count_parameters(method.eval_model), tb_dir=tb_dir)


class _Finetune(Supervised):
    """Finetuning is supervised training on the labelled images without EMA, starting from the MPL
    student."""


def finetune(run: SSLRun, splits: SSLSplits, params: dict, *, ckpt_root: Path,
             tb_root: Path | None = None) -> SSLRun:
    """SPEC 3.5's final step: the selected MPL student (its EMA) trained on the labelled images
    alone with a tiny learning rate (presented: 625 epochs, batch 512, lr 3e-5, momentum 0.9);
    selected on validation again."""
    device = pick_device(params["device"])
    bs = params["finetune_batch_size"]
    steps_per_epoch = max(1, len(splits.labelled_y) // bs)
    total = params["finetune_epochs"] * steps_per_epoch
    torch.manual_seed(params["seed"])
    model = build_model("wrn28_2", width=params["width"], dropout=params["student_dropout"],
                        bn_momentum=params["bn_momentum"])
    model.load_state_dict(run.model.state_dict())
    o = make_optimizer(model.parameters(), name="sgd", lr=params["finetune_lr"],
                       momentum=params["finetune_momentum"],
                       weight_decay=params["finetune_weight_decay"], nesterov=True)
    method = _Finetune(model, optimizer=o, scheduler=None, ema_decay=0.0, label_smoothing=0.0)
    batches, val, test = _loaders(splits, params, device, unlabelled=False, labelled_batch=bs)
    ckpt_dir = storage.run_dir(ckpt_root, "finetune", {
        "from": str(run.checkpoint), "best_step": run.best_step,
        **{k: params[k] for k in params if k.startswith("finetune_")}})
    eval_every = max(1, params["finetune_eval_every_epochs"] * steps_per_epoch)
    out = _run("finetune", method, batches.forever, val, test, params, device, ckpt_dir=ckpt_dir,
               tb_dir=(Path(tb_root) / "finetune") if tb_root else None, total_steps=total,
               eval_every=eval_every, config={"kind": "finetune", "from": str(run.checkpoint)})
    return out


def results_table(runs: dict[str, SSLRun], presented: dict, *, profile: str, source: str,
                  n_test: int) -> pd.DataFrame:
    """SPEC 3.6/3.7: paper, reference-code and presented values, then this run's methods (test top-1
    / top-5 of the validation-selected checkpoint)."""
    rows = [{"result": k, "top-1 test acc (%)": v,
             "source": "MPL paper" if k.startswith("paper") else
             ("kekmodel/MPL-pytorch (300k steps)" if k.startswith("reference") else "presentation")}
            for k, v in presented.items()]
    for kind, r in runs.items():
        rows.append({"result": f"this run: {LABELS[kind]}",
                     "top-1 test acc (%)": round(100 * r.test["acc"], 2),
                     "top-5 test acc (%)": round(100 * r.test["top5"], 2),
                     "best val top-1 (%)": round(100 * r.val_acc, 2), "selected step": r.best_step,
                     "steps": r.steps, "wall time (s)": round(r.wall_time_s, 1),
                     "s / step": round(r.seconds_per_step, 3), "source": f"this run ({profile})",
                     "device": r.device, "data": source, "test images": n_test})
    return pd.DataFrame(rows)


LOG_COLUMNS = {"step": "step", "lr": "LR (teacher)", "train_data_time": "data time (s)",
               "train_batch_time": "batch time (s)", "train_student_loss": "student loss",
               "train_teacher_loss": "teacher loss", "train_mask_ratio": "mask ratio",
               "train_mpl_h": "feedback h", "val_acc": "val top-1", "val_top5": "val top-5",
               "val_loss": "val loss"}


def training_log(history: pd.DataFrame) -> pd.DataFrame:
    """SPEC 3.7: MPL's history per evaluation with the columns the presented log prints."""
    return history[list(LOG_COLUMNS)].rename(columns=LOG_COLUMNS).round(4)


def hyperparameter_table(params: dict, splits: SSLSplits) -> pd.DataFrame:
    """SPEC 3.5: every presented hyperparameter beside the resolved value this run used."""
    p = params
    ft_steps = max(1, len(splits.labelled_y) // p["finetune_batch_size"])
    rows = [
        ("common", "optimizer", "SGD", f"SGD, momentum {p['momentum']}, nesterov {p['nesterov']}"),
        ("common", "model", "WRN-28-2", f"WRN-28-2 (width x{p['width']})"),
        ("common", "weight decay", 0.0005, p["weight_decay"]),
        ("common", "label smoothing", 0.15, p["label_smoothing"]),
        ("common", "training steps", 30000, p["total_steps"]),
        ("common", "evaluation every (steps)", 1000, p["eval_every"]),
        ("student", "learning rate", 0.05, p["student_lr"]),
        ("student", "batch size (labelled)", 128, p["batch_size"]),
        ("student", "dropout", 0.2, p["student_dropout"]),
        ("teacher", "learning rate", 0.05, p["teacher_lr"]),
        ("teacher", "batch size (labelled)", 128, p["batch_size"]),
        ("teacher", "dropout", 0.2, p["teacher_dropout"]),
        ("teacher", "UDA steps", 5000, p["uda_steps"]),
        ("finetune", "epochs", 625,
         f"{p['finetune_epochs']} ({p['finetune_epochs'] * ft_steps} steps)"),
        ("finetune", "batch size", 512, p["finetune_batch_size"]),
        ("finetune", "learning rate", 0.00003, p["finetune_lr"]),
        ("finetune", "momentum", 0.9, p["finetune_momentum"]),
        # not in the presented table; the reference code's values, as run
        ("reference code", "unlabelled batch ratio mu", None,
         f"{p['mu']} ({p['mu'] * p['batch_size']} images/step)"),
        ("reference code", "warm-up steps (student waits)", None,
         f"{p['warmup_steps']} ({p['student_wait_steps']})"),
        ("reference code", "UDA weight / threshold / temperature", None,
         f"{p['lambda_u']} / {p['threshold']} / {p['temperature']}"),
        ("reference code", "student EMA decay", None, p["ema"]),
        ("reference code", "batch-norm momentum", None, p["bn_momentum"]),
        ("reference code", "strong augmentation", None,
         f"per-sample RandAugment({p['randaug_ops']} ops, magnitude {p['randaug_magnitude']}/30) + "
         f"Cutout {p['cutout_size']}px"),
    ]
    return pd.DataFrame([{"group": g, "hyperparameter": k, "presented": v, "this run": r}
                         for g, k, v, r in rows])


def reference_table(reference: dict) -> pd.DataFrame:
    """SPEC 3.1: the SSL methods table of the MPL paper (cited, not run here)."""
    cols = ("CIFAR-10-4K top-1", "SVHN-1K top-1", "ImageNet-10% top-1", "ImageNet-10% top-5")
    return pd.DataFrame([{"method": m, **dict(zip(cols, vals))} for m, vals in reference.items()])


def read_tensorboard(tb_dir: str | Path) -> pd.DataFrame:
    """Every scalar in the event files under ``tb_dir`` as rows ``(run, tag, step, value)`` (``run``
    is the sub-folder, e.g. ``mpl``), read with TensorBoard's own ``EventAccumulator``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb_dir = Path(tb_dir)
    rows = []
    for run_dir in sorted({p.parent for p in tb_dir.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        acc.Reload()
        run = run_dir.relative_to(tb_dir).as_posix() if run_dir != tb_dir else "."
        for tag in acc.Tags()["scalars"]:
            for ev in acc.Scalars(tag):
                rows.append({"run": run, "tag": tag, "step": ev.step, "value": ev.value})
    if not rows:
        raise FileNotFoundError(f"no TensorBoard scalars under {tb_dir}; train the chapter's "
                                "methods first")
    return (pd.DataFrame(rows).drop_duplicates(["run", "tag", "step"], keep="last")
            .sort_values(["run", "tag", "step"]))


def curves_figure(scalars: pd.DataFrame, *, runs: dict[str, str] | None = None, title: str = ""):
    """SPEC 3.8: validation top-1, top-5, loss and the training loss over steps, one line per
    method."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    runs = runs or {k: LABELS[k] for k in ("mpl", "uda", "supervised")}
    panels = [("(a) top-1 accuracy, validation (%)", lambda r: "eval/val_acc", 100),
              ("(b) top-5 accuracy, validation (%)", lambda r: "eval/val_top5", 100),
              ("(c) loss, validation", lambda r: "eval/val_loss", 1),
              ("(d) training loss (MPL: student)", lambda r: f"train/{TRAIN_LOSS.get(r, 'loss')}",
               1)]
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), layout="constrained")
    for ax, (label, tag_of, scale) in zip(axes, panels):
        parts = []
        for run, name in runs.items():
            d = scalars[(scalars.run == run) & (scalars.tag == tag_of(run))]
            parts.append(d.assign(method=name, value=d.value * scale))
        df = pd.concat(parts) if parts else pd.DataFrame()
        if len(df):
            sns.lineplot(df, x="step", y="value", hue="method", ax=ax,
                         marker="o" if df.step.nunique() < 30 else None)
        ax.set(title=label, xlabel="step", ylabel="")
        if ax is not axes[-1] and ax.get_legend():
            ax.get_legend().remove()
    if title:
        fig.suptitle(title)
    return fig
