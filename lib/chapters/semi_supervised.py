"""Chapter 3 glue: CIFAR-10-4K, Meta Pseudo Labels with UDA and its baselines trained from params,
the finetune, and the chapter's tables (the reference-recipe and SSL-methods tables are
:mod:`.mpl_reference`, the curves :mod:`.ssl_curves`).

* :func:`load_ssl_splits` -- the seeded, class-balanced CIFAR-10-4K split: 4,000 labelled (400 per
  class), 5,000 validation (model selection), 41,000 unlabelled (labels dropped), and the test set
  (reported once).
* :func:`train_ssl` / :func:`finetune` -- one call per row of the results table (methods in
  :mod:`lib.methods.ssl`, batches from :class:`lib.batches.SSLBatches`); :func:`train_seeds` trains a
  method again with each other of :func:`training_seeds` on the same split.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..evaluate.intervals import counted
from .. import data as D
from .. import storage
from ..augment import NORMALIZATION, cpu_threads, normalize
from ..batches import BatchLoader, SSLBatch, SSLBatches
from ..evaluate.classification import predict, topk_metrics
from ..methods.ssl import UDA, MetaPseudoLabels, SSLMethod, Supervised
from ..models import build_model, count_parameters
from ..randaugment import RandAugmentCIFAR
from ..train import (
    Run,
    decay_groups,
    make_optimizer,
    pick_device,
    train_and_test,
    warmup_cosine,
)
from ..train.device import channels_last, compiled_cell
from ..train.distributed import marked_runs
from .supervised import accuracy_interval as _accuracy_interval
from .supervised import seed_keys, seed_run_name
from .supervised import training_seeds as _training_seeds


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


TRAIN_KEYS = ("width", "bn_momentum", "teacher_dropout", "student_dropout", "block_dropout",
              "block_style", "total_steps", "batch_size", "mu", "teacher_lr", "student_lr",
              "momentum", "nesterov", "weight_decay", "weight_decay_exclude", "label_smoothing",
              "warmup_steps", "student_wait_steps", "uda_steps", "lambda_u", "threshold",
              "temperature", "ema", "grad_clip", "mpl_feedback", "randaug_ops",
              "randaug_magnitude", "cutout_size", "fill", "normalization", "seed", "amp")
FINETUNE_KEYS = ("finetune_epochs", "finetune_batch_size", "finetune_lr", "finetune_momentum",
                 "finetune_weight_decay", "finetune_label_smoothing", "finetune_dense_dropout",
                 "finetune_randaugment", "finetune_shuffle", "finetune_drop_last",
                 "finetune_eval_every_epochs")


@dataclass(kw_only=True)
class SSLRun(Run):
    """One trained row of the results table: validation-selected model, its test metrics, history,
    timing."""

    parameters: int
    tb_dir: Path | None
    seed: int        # training seed: initialisation, batch order and augmentation

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


def strong_augmentation(params: dict) -> RandAugmentCIFAR:
    """The strong view's RandAugmentCIFAR(``randaug_ops``, ``randaug_magnitude``) with its final
    Cutout of ``cutout_size`` pixels and grey ``fill``."""
    return RandAugmentCIFAR(params["randaug_ops"], params["randaug_magnitude"],
                            fill=params["fill"], final_cutout=params["cutout_size"])


def _mean_std(params: dict) -> tuple:
    if params["normalization"] not in NORMALIZATION:
        raise ValueError(f"params/03_semi_supervised.yaml: normalization "
                         f"{params['normalization']!r} is not one of {sorted(NORMALIZATION)}")
    return NORMALIZATION[params["normalization"]]


def _normalizer(params: dict):
    mean, std = _mean_std(params)
    return lambda x: normalize(x, mean=mean, std=std)


def ssl_batches(labelled_x, labelled_y, unlabelled_x, params: dict, device, *,
                unlabelled: bool = True, labelled_batch: int | None = None) -> SSLBatches:
    """The training stream of ``params``: labelled batches of ``batch_size``, and with
    ``unlabelled`` weak and strong views of ``batch_size * mu`` unlabelled images."""
    mean, std = _mean_std(params)
    return SSLBatches(labelled_x, labelled_y, unlabelled_x,
                      labelled_batch=labelled_batch or params["batch_size"],
                      unlabelled_batch=params["batch_size"] * params["mu"] if unlabelled else 0,
                      device=device, seed=params["seed"], strong=strong_augmentation(params),
                      fill=params["fill"], mean=mean, std=std,
                      channels_last=channels_last(device))


def _loaders(splits: SSLSplits, params: dict, device, *, unlabelled: bool,
             labelled_batch: int | None = None):
    cl = channels_last(device)
    batches = ssl_batches(splits.labelled_x, splits.labelled_y, splits.unlabelled_x, params,
                          device, unlabelled=unlabelled, labelled_batch=labelled_batch)
    norm = _normalizer(params)
    val, test = (BatchLoader(x, y, batch_size=params["eval_batch_size"], device=device,
                             train=False, channels_last=cl, normalize_fn=norm)
                 for x, y in ((splits.val_x, splits.val_y), (splits.test_x, splits.test_y)))
    return batches, val, test


def wrn(params: dict, dense_dropout: float) -> nn.Module:
    """WRN-28-2 at ``params``' width, BN momentum, block style and in-block dropout."""
    return build_model("wrn28_2", width=params["width"], dropout=params["block_dropout"],
                       dense_dropout=dense_dropout, bn_momentum=params["bn_momentum"],
                       block_style=params["block_style"])


def steps_of(kind: str, params: dict) -> int:
    """Training steps of method ``kind``: MPL's ``mpl_total_steps`` when set, else
    ``total_steps``."""
    return (kind == "mpl" and params.get("mpl_total_steps")) or params["total_steps"]


def build_method(kind: str, params: dict, *, total_steps: int | None = None) -> SSLMethod:
    """The method of ``kind`` (``mpl``, ``uda``, ``supervised``) with its networks, SGD optimizers
    and schedules."""
    if kind not in KINDS:
        raise ValueError(f"unknown SSL method {kind!r}; expected one of {KINDS}")
    total = total_steps or steps_of(kind, params)
    p = params

    def net(dense_dropout):
        return wrn(p, dense_dropout)

    def opt(model, lr):
        return make_optimizer(decay_groups(model, p["weight_decay"],
                                           exclude=p["weight_decay_exclude"]),
                              name="sgd", lr=lr, momentum=p["momentum"], nesterov=p["nesterov"])

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
            ema_decay=p["ema"], feedback=p["mpl_feedback"],
            distributed_feedback=p["mpl_distributed_feedback"], **common, **uda)
    else:
        model = net(p["teacher_dropout"])
        o = opt(model, p["teacher_lr"])
        sched = warmup_cosine(o, total_steps=total, warmup_steps=p["warmup_steps"])
        if kind == "uda":
            method = UDA(model, optimizer=o, scheduler=sched, ema_decay=p["ema"], **common, **uda)
        else:
            method = Supervised(model, optimizer=o, scheduler=sched, ema_decay=p["ema"], **common)
    return method


def training_seeds(params: dict) -> list[int]:
    """The training seeds of MPL, UDA and supervised: ``seed`` first, then the other ``seeds``
    (:func:`lib.chapters.supervised.training_seeds`; ``[]`` = ``seed`` alone)."""
    return _training_seeds(params, used_by="the finetune, the training log and the curves")


def _train_keys(kind: str, params: dict, seed: int) -> dict:
    """What shapes the training of ``kind`` with training ``seed`` (a seed other than ``params``'
    keys the split's seed too)."""
    return {**{k: params[k] for k in TRAIN_KEYS}, "total_steps": steps_of(kind, params),
            **seed_keys(seed, params)}


def ssl_folder(kind: str, splits: SSLSplits, params: dict, *, ckpt_root: Path,
               seed: int | None = None) -> Path:
    """The checkpoint folder :func:`train_ssl` trains ``kind`` in (with training ``seed``, default
    ``params['seed']``; another seed's run is named e.g. ``mpl-s1``)."""
    seed = params["seed"] if seed is None else seed
    return storage.run_dir(ckpt_root, seed_run_name(kind, seed, params), {
        "kind": kind, **_train_keys(kind, params, seed), "data": splits.source,
        "sizes": splits.sizes()})


def train_ssl(kind: str, splits: SSLSplits, params: dict, *, ckpt_root: Path,
              tb_root: Path | None = None, stop_after: int | None = None,
              seed: int | None = None) -> SSLRun:
    """Train ``kind`` through :func:`lib.train.fit`: validation top-1 of the evaluated network (MPL:
    the student's EMA; UDA: the teacher's EMA; supervised: its EMA) every ``eval_every`` steps picks
    ``best.pt``; the test set is evaluated once, on that checkpoint. Re-running with the same
    parameters reuses/resumes it. ``seed`` (default ``params['seed']``) seeds initialisation, batch
    order and augmentation, while the splits stay those given."""
    device = pick_device(params["device"])
    seed = params["seed"] if seed is None else seed
    name = seed_run_name(kind, seed, params)
    keys = _train_keys(kind, params, seed)
    ckpt_dir = ssl_folder(kind, splits, params, ckpt_root=ckpt_root, seed=seed)
    params = {**params, "seed": seed}
    method = build_method(kind, params)
    batches, val, test = _loaders(splits, params, device, unlabelled=kind != "supervised")
    return _run(name, method, batches.forever, val, test, params, device, ckpt_dir=ckpt_dir,
                tb_dir=(Path(tb_root) / name) if tb_root else None,
                total_steps=keys["total_steps"], eval_every=params["eval_every"],
                stop_after=stop_after, config={"kind": kind, **keys},
                data_parallel=kind in marked_runs(params, KINDS))


def train_seeds(first: SSLRun, splits: SSLSplits, params: dict, *, ckpt_root: Path,
                tb_root: Path | None = None) -> list[SSLRun]:
    """``first`` (one of :data:`KINDS`, trained with ``seed``) and the same method trained with
    each other of :func:`training_seeds`, in that order, on the same splits."""
    return [first] + [train_ssl(first.name, splits, params, ckpt_root=ckpt_root, tb_root=tb_root,
                                seed=s)
                      for s in training_seeds(params)[1:]]


def _run(kind, method, batches_fn, val, test, params, device, *, ckpt_dir, tb_dir, total_steps,
         eval_every, stop_after=None, config=None, data_parallel=False) -> SSLRun:
    """Train through :func:`lib.train.train_and_test`: validation top-1 of the evaluated network
    picks ``best.pt``, the test set is evaluated once on it. ``data_parallel``: on every rank of a
    multi-GPU launch together (BatchNorm synchronised by ``sync_batchnorm``)."""
    def evaluate():
        m = topk_metrics(*predict(method.eval_model, val, autocast_dtype=method.autocast_dtype))
        return {"val_acc": m["acc"], "val_top5": m["top5"], "val_loss": m["loss"]}

    def test_once():
        logits, labels = predict(method.eval_model, test, autocast_dtype=method.autocast_dtype)
        return {**topk_metrics(logits, labels), "logits": logits, "labels": labels}

    with cpu_threads(params["cpu_threads"] if device.type == "cpu" else 0):
        run = train_and_test(method, batches_fn, name=kind, test=test_once, total_steps=total_steps,
                             evaluate=evaluate, eval_every=eval_every, ckpt_dir=ckpt_dir,
                             tb_dir=tb_dir, device=device, amp=params["amp"], seed=params["seed"],
                             log_every=params["log_every"], stop_after=stop_after, config=config,
                             compile=params["compile"],
                             compile_min_steps=params["compile_min_steps"],
                             data_parallel=data_parallel, sync_batchnorm=params["sync_batchnorm"])
    return SSLRun(**vars(run), parameters=count_parameters(method.eval_model), tb_dir=tb_dir,
                  seed=params["seed"])


class _Finetune(Supervised):
    """Finetuning is supervised training on the labelled images without EMA, starting from the MPL
    student."""


def finetune_batches(splits: SSLSplits, params: dict, device) -> BatchLoader:
    """The reference's finetune data: the labelled images in a fixed order
    (``finetune_shuffle: false``), crop + flip + RandAugmentCIFAR (``finetune_randaugment``),
    batches of ``finetune_batch_size`` ending with the partial one (``finetune_drop_last:
    false``)."""
    p = params
    return BatchLoader(splits.labelled_x, splits.labelled_y, batch_size=p["finetune_batch_size"],
                       device=device, seed=p["seed"], channels_last=channels_last(device),
                       normalize_fn=_normalizer(p), fill=p["fill"],
                       strong=strong_augmentation(p) if p["finetune_randaugment"] else None,
                       shuffle=p["finetune_shuffle"], drop_last=p["finetune_drop_last"])


def finetune_method(student: nn.Module, params: dict) -> Supervised:
    """A copy of ``student`` without dense dropout (``finetune_dense_dropout``), trained with
    Nesterov SGD at the constant ``finetune_lr`` on the label-smoothed criterion, as the
    reference's ``finetune()``."""
    p = params
    torch.manual_seed(p["seed"])
    model = wrn(p, p["finetune_dense_dropout"])
    model.load_state_dict(student.state_dict())
    o = make_optimizer(model.parameters(), name="sgd", lr=p["finetune_lr"],
                       momentum=p["finetune_momentum"], weight_decay=p["finetune_weight_decay"],
                       nesterov=True)
    return _Finetune(model, optimizer=o, scheduler=None, ema_decay=0.0,
                     label_smoothing=p["finetune_label_smoothing"])


def finetune_folder(checkpoint: Path, best_step: int, params: dict, *, ckpt_root: Path) -> Path:
    """The checkpoint folder :func:`finetune` trains in, from the MPL ``checkpoint`` chosen at
    ``best_step``."""
    return storage.run_dir(ckpt_root, "finetune", {
        "from": str(checkpoint), "best_step": best_step,
        **{k: params[k] for k in FINETUNE_KEYS}, "fill": params["fill"],
        "normalization": params["normalization"]})


def finetune(run: SSLRun, splits: SSLSplits, params: dict, *, ckpt_root: Path,
             tb_root: Path | None = None) -> SSLRun:
    """SPEC 3.5's final step, as the reference runs it: the selected MPL student (its EMA) without
    its dense dropout, trained on the labelled images with the label-smoothed criterion and a tiny
    constant learning rate (presented: 625 epochs, batch 512, lr 3e-5, momentum 0.9); selected on
    validation again."""
    device = pick_device(params["device"])
    p = params
    loader = finetune_batches(splits, p, device)
    total = p["finetune_epochs"] * len(loader)
    method = finetune_method(run.model, p)
    _, val, test = _loaders(splits, p, device, unlabelled=False)
    ckpt_dir = finetune_folder(run.checkpoint, run.best_step, p, ckpt_root=ckpt_root)
    eval_every = max(1, p["finetune_eval_every_epochs"] * len(loader))
    def batches(start: int):
        return (SSLBatch(x, y, None, None) for x, y in loader.forever(start))

    return _run("finetune", method, batches, val, test, p, device, ckpt_dir=ckpt_dir,
                tb_dir=(Path(tb_root) / "finetune") if tb_root else None, total_steps=total,
                eval_every=eval_every, config={"kind": "finetune", "from": str(run.checkpoint)})


def seed_columns(n: int) -> tuple[str, str]:
    """The results table's mean and standard-deviation columns over ``n`` seeds."""
    return (f"top-1 test acc mean over {n} seeds (%)", f"top-1 test acc std over {n} seeds (pp)")


def results_table(runs: dict[str, SSLRun], presented: dict, *, profile: str, source: str,
                  n_test: int, std: dict | None = None,
                  seeds: dict[str, list[SSLRun]] | None = None) -> pd.DataFrame:
    """SPEC 3.6/3.7: paper, reference-code and presented values (with the paper's std over runs
    where ``std`` gives it), then this run's methods (test top-1 / top-5 of the
    validation-selected checkpoint).

    ``seeds`` maps a method to its runs over :func:`training_seeds` (:func:`train_seeds`). Where
    one has several, the table adds each seed's top-1, their mean and sample standard deviation and
    the seed count (rows of one run leave mean and std empty); the other columns stay those of the
    ``seed`` run. With one seed it is unchanged."""
    std = std or {}
    several = {k: v for k, v in (seeds or {}).items() if len(v) > 1}
    rows = [{"result": k, "top-1 test acc (%)": v, "± std (%)": std.get(k),
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
                     "device": r.device, "compiled": compiled_cell(r.compilation),
                     "data": source, "test images": n_test})
    if not several:
        return pd.DataFrame(rows)
    order = list(dict.fromkeys(run.seed for kind_runs in several.values() for run in kind_runs))
    mean_col, std_col = seed_columns(max(len(v) for v in several.values()))
    added = [*(f"top-1 test acc seed {s} (%)" for s in order), mean_col, std_col, "seeds"]
    for kind, row in zip(runs, rows[len(presented):]):
        acc = {run.seed: 100 * run.test["acc"] for run in several.get(kind, [runs[kind]])}
        values = np.array(list(acc.values()))
        row.update({f"top-1 test acc seed {s} (%)": round(acc[s], 2) if s in acc else None
                    for s in order})
        row.update({mean_col: round(values.mean(), 2) if len(acc) > 1 else None,
                    std_col: round(values.std(ddof=1), 2) if len(acc) > 1 else None,
                    "seeds": len(acc)})
    df = pd.DataFrame(rows).astype({"seeds": "Int64"})  # the cited rows: none
    cols = [c for c in df.columns if c not in added]
    at = cols.index("± std (%)") + 1
    return df[cols[:at] + added + cols[at:]]


def accuracy_interval(run: SSLRun | list[SSLRun]):
    """Test top-1 (%) of a run with its 95% bootstrap interval over the test images; of a list of
    runs (one method's seeds), their mean with a two-level interval over the seeds and the test
    images (:func:`lib.chapters.supervised.accuracy_interval`)."""
    return _accuracy_interval(run)


@counted("intervals")
def best_val_interval(runs: dict[str, SSLRun], n_val: int):
    """The best validation top-1 (%) of MPL and its finetune with its 95% Wilson interval over the
    ``n_val`` validation images (only the count correct is kept per evaluation)."""
    from scipy.stats import binomtest

    from ..evaluate.intervals import CONFIDENCE, Interval

    best = max(runs["mpl"].val_acc, runs["finetune"].val_acc)
    ci = binomtest(round(best * n_val), n_val).proportion_ci(CONFIDENCE, method="wilson")
    return Interval(100 * best, 100 * ci.low, 100 * ci.high)


LOG_COLUMNS = {"step": "step", "lr": "LR (student)", "train_lr_teacher": "LR (teacher)",
               "train_data_time": "data time (s)",
               "train_batch_time": "batch time (s)", "train_student_loss": "student loss",
               "train_teacher_loss": "teacher loss", "train_mask_ratio": "mask ratio",
               "train_mpl_h": "feedback h", "val_acc": "val top-1", "val_top5": "val top-5",
               "val_loss": "val loss"}


def presented_logs(presented: dict) -> pd.DataFrame:
    """SPEC 3.7: the values the slide's training logs print (lib.spec), one row per log line."""
    return pd.DataFrame([{"log line": k, "LR (student)": presented["mpl_log_lr"].get(k),
                          "top-1 (%)": presented["mpl_log_top1"][k],
                          "top-5 (%)": presented["mpl_log_top5"][k]}
                         for k in presented["mpl_log_top1"]])


def training_log(history: pd.DataFrame) -> pd.DataFrame:
    """SPEC 3.7: MPL's history per evaluation with the columns the presented log prints."""
    return history[list(LOG_COLUMNS)].rename(columns=LOG_COLUMNS).round(4)


def hyperparameter_table(params: dict, splits: SSLSplits, presented: dict) -> pd.DataFrame:
    """SPEC 3.5: every presented hyperparameter (``presented``: lib.spec's
    ``mpl_hyperparameters``) beside the resolved value this run used."""
    p = params
    n, bs = len(splits.labelled_y), p["finetune_batch_size"]
    ft_steps = -(-n // bs) if not p["finetune_drop_last"] else max(1, n // bs)
    ours = {
        ("common", "optimizer"): f"SGD, momentum {p['momentum']}, nesterov {p['nesterov']}",
        ("common", "model"): f"WRN-28-2 (width x{p['width']})",
        ("common", "weight decay"): p["weight_decay"],
        ("common", "label smoothing"): p["label_smoothing"],
        ("common", "training steps"): p["total_steps"] if steps_of("mpl", p) == p["total_steps"]
        else f"{steps_of('mpl', p)} (MPL); {p['total_steps']} (UDA, supervised)",
        ("common", "evaluation every (steps)"): p["eval_every"],
        ("student", "learning rate"): p["student_lr"],
        ("student", "batch size (labelled)"): p["batch_size"],
        ("student", "dropout"): f"{p['student_dropout']} (before the classifier)",
        ("teacher", "learning rate"): p["teacher_lr"],
        ("teacher", "batch size (labelled)"): p["batch_size"],
        ("teacher", "dropout"): f"{p['teacher_dropout']} (before the classifier)",
        ("teacher", "UDA steps"): p["uda_steps"],
        ("finetune", "epochs"): f"{p['finetune_epochs']} "
                                f"({p['finetune_epochs'] * ft_steps} steps)",
        ("finetune", "batch size"): p["finetune_batch_size"],
        ("finetune", "learning rate"): p["finetune_lr"],
        ("finetune", "momentum"): p["finetune_momentum"],
    }
    return pd.DataFrame([{"group": g, "hyperparameter": k, "presented": v, "this run": ours[g, k]}
                         for (g, k), v in presented.items()])


def randaugment_table(params: dict) -> pd.DataFrame:
    """The strong augmentation's op pool: each op's range and the value used at this magnitude."""
    return pd.DataFrame(strong_augmentation(params).table())


def plan(params: dict, *, profile_dir: str | Path) -> list:
    """Every run notebook 03 trains under ``params`` (:class:`lib.train.schedule.PlannedRun`): MPL,
    UDA and supervised only, their runs with the other :func:`training_seeds`, then MPL's finetune, whose folder is known once MPL has finished
    (it is keyed by the checkpoint MPL chose). Methods named in ``data_parallel`` train on all
    ranks together. Nothing is loaded until a run's folder or training is asked for."""
    from ..train.schedule import PlannedRun, lazy, roots, runs_named

    chapter = params["chapter"]
    ckpt_root, tb_root = roots(profile_dir, chapter)
    splits = lazy(lambda: load_ssl_splits(params))
    runs = runs_named(KINDS, params, splits, profile_dir=profile_dir, train=train_ssl,
                      locate=ssl_folder)
    for kind in KINDS:  # each method again with each other training seed, on the same split
        for s in training_seeds(params)[1:]:
            runs.append(PlannedRun(
                chapter, seed_run_name(kind, s, params), f"train {kind} seed {s}",
                train=lambda k=kind, s=s: train_ssl(k, splits(), params, ckpt_root=ckpt_root,
                                                    tb_root=tb_root, seed=s),
                locate=lambda k=kind, s=s: ssl_folder(k, splits(), params, ckpt_root=ckpt_root,
                                                      seed=s),
                data_parallel=kind in params["data_parallel"]))

    def finetune_run():  # MPL is finished by now: this loads it
        mpl = train_ssl("mpl", splits(), params, ckpt_root=ckpt_root)
        return finetune(mpl, splits(), params, ckpt_root=ckpt_root, tb_root=tb_root)

    def locate_finetune() -> Path | None:
        mpl = ssl_folder("mpl", splits(), params, ckpt_root=ckpt_root)
        last, best = mpl / "last.pt", mpl / "best.pt"
        if not last.is_file():
            return None
        ck = storage.load_checkpoint(last)
        if ck["step"] < steps_of("mpl", params):
            return None
        return finetune_folder(best if best.is_file() else last, int(ck["best"].get("step", 0)),
                               params, ckpt_root=ckpt_root)

    runs.append(PlannedRun(chapter, "finetune", "MPL finetune", train=finetune_run,
                           locate=locate_finetune, after=(f"{chapter}/mpl",)))
    return runs
