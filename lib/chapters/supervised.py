"""Chapter 1 glue: data splits from params, a classifier trained by the one loop, and its
evaluation.

The notebook calls :func:`load_splits` once and :func:`train_classifier` per model; everything a
table needs (accuracy, parameters, FLOPs, wall time, device, epochs, history, logits) comes back in
a :class:`Trained`. Training is cached by its checkpoint: re-running the notebook with the same
parameters resumes or reuses it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import storage
from ..augment import Cutout
from ..batches import BatchLoader
from .. import data as D
from ..evaluate.classification import classification_metrics, predict
from ..methods.classifier import Classifier
from ..models import build_model, count_parameters, flops_per_image
from ..evaluate import intervals
from ..evaluate.intervals import Interval, counted
from ..spec import PRESENTED, REFERENCE
from ..train import Run, make_optimizer, make_scheduler, pick_device, train_and_test
from ..train.device import channels_last, compiled_cell

RECIPE_KEYS = ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "batch_size", "scheduler",
               "step_size_epochs", "gamma", "warmup_epochs", "label_smoothing", "flip_tta", "cutout")


@dataclass
class Splits:
    """Train / validation / test tensors (uint8 images, int64 labels) and a description of their
    source."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str
    classes: tuple = D.CLASSES

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_y), "validation": len(self.val_y), "test": len(self.test_y)}


def load_splits(params: dict) -> Splits:
    """CIFAR-10 from ``params['data']``, a seeded class-balanced validation split carved from train,
    and optional class-balanced subsets (``train_subset``, ``test_subset``) for the small
    profiles."""
    ds = D.load_cifar10(params["data"])
    train_x, train_y = D.subsample(ds.train_x, ds.train_y, params["train_subset"],
                                   seed=params["seed"])
    parts = D.stratified_split(train_y, {"val": params["val_size"], "train": -1},
                               seed=params["seed"])
    test_x, test_y = D.subsample(ds.test_x, ds.test_y, params["test_subset"], seed=params["seed"])
    return Splits(train_x[parts["train"]], train_y[parts["train"]], train_x[parts["val"]],
                  train_y[parts["val"]], test_x, test_y, source=ds.source)


def model_epochs(params: dict, name: str) -> int:
    """Epochs of model ``name``: its ``model_epochs`` entry, else ``epochs``."""
    return (params.get("model_epochs") or {}).get(name, params["epochs"])


def epochs_text(params: dict) -> str:
    """``epochs`` and each model's own count, e.g. ``40, resnet18 60``."""
    own = "".join(f", {m} {e}" for m, e in (params.get("model_epochs") or {}).items())
    return f"{params['epochs']}{own}"


def recipe(params: dict, name: str | None = None) -> dict:
    """The training recipe ``name`` (default ``params['recipe']``) as plain keys: ``presented_lr``
    -> ``lr``."""
    name = name or params["recipe"]
    keys = {k: params.get(f"{name}_{k}") for k in RECIPE_KEYS}
    missing = [f"{name}_{k}" for k, v in keys.items() if v is None]
    if missing:
        raise KeyError(f"recipe {name!r} is missing keys {missing} in "
                       f"params/{params.get('chapter')}.yaml")
    return keys


@dataclass(kw_only=True)
class Trained(Run):
    """A chapter-1 classifier run: the model chosen on validation, its test logits, recipe and
    size."""

    recipe: dict
    recipe_name: str
    epochs: int
    parameters: int
    flops: int
    seed: int        # training seed: initialisation, batch order and augmentation

    @property
    def model(self) -> torch.nn.Module:
        return self.method.model

    @property
    def val_acc(self) -> float:
        return self.best_value

    @property
    def test_acc(self) -> float:
        return self.test["acc"]

    @property
    def test_logits(self) -> torch.Tensor:
        return self.test["logits"]

    @property
    def test_labels(self) -> torch.Tensor:
        return self.test["labels"]


def training_seeds(params: dict, *,
                   used_by: str = "the CAM, the confusion matrix and chapter 4") -> list[int]:
    """The training seeds of the accuracy table's models: ``seed`` first, then the other ``seeds``
    in their order (``[]`` = ``seed`` alone). ``used_by`` names what uses the ``seed`` run only (for
    the error)."""
    seed, seeds = params["seed"], list(params.get("seeds") or [params["seed"]])
    where = f"params/{params.get('chapter', '01_supervised')}.yaml"
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int)]
    if bad:
        raise ValueError(f"seeds must be integers, got {bad} in {where}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {seeds} repeat a seed in {where}: each seed trains one run")
    if seed not in seeds:
        raise ValueError(f"seeds {seeds} must include seed ({seed}) in {where}: its run is the one "
                         f"{used_by} use; e.g. seeds: "
                         f"{[seed, *seeds]}")
    return [seed] + [s for s in seeds if s != seed]


def seed_run_name(name: str, seed: int, params: dict) -> str:
    """The run name of ``name`` trained with ``seed``: ``name`` itself for the chapter's ``seed``,
    else e.g. ``resnet18-s1``."""
    return name if seed == params["seed"] else f"{name}-s{seed}"


def seed_keys(seed: int, params: dict) -> dict:
    """The checkpoint-key entries of a run trained with ``seed``: the seed, and for a seed other
    than the chapter's, the split's seed too (the split stays the one ``params['seed']`` gives)."""
    return {"seed": seed, **({"split_seed": params["seed"]} if seed != params["seed"] else {})}


def classifier_folder(name: str, splits: Splits, params: dict, *, ckpt_root: Path,
                      recipe_name: str | None = None, epochs: int | None = None,
                      overrides: dict | None = None, run_name: str | None = None,
                      model_kwargs: dict | None = None, seed: int | None = None) -> Path:
    """The checkpoint folder :func:`train_classifier` trains in with the same arguments: keyed by
    everything that shapes training (a training ``seed`` other than the split's keys both)."""
    rec = {**recipe(params, recipe_name), **(overrides or {})}
    keyed = {k: v for k, v in rec.items() if k != "cutout" or v}  # no Cutout: keyed as before it existed
    seed = params["seed"] if seed is None else seed
    return storage.run_dir(ckpt_root, run_name or seed_run_name(name, seed, params), {
        "model": name, "width": params["width"], "epochs": epochs or model_epochs(params, name),
        "recipe": keyed, **seed_keys(seed, params), "data": splits.source,
        "sizes": splits.sizes(), **({"model_kwargs": model_kwargs} if model_kwargs else {})})


def train_classifier(name: str, splits: Splits, params: dict, *, ckpt_root: Path,
                     tb_root: Path | None = None, recipe_name: str | None = None,
                     epochs: int | None = None, overrides: dict | None = None,
                     run_name: str | None = None, model_kwargs: dict | None = None,
                     seed: int | None = None) -> Trained:
    """Train registered model ``name`` with a recipe, select the best epoch on validation, report
    test once.

    ``overrides`` replaces recipe keys (e.g. ``{"batch_size": 32, "lr": 1e-4}`` for the sweep);
    ``model_kwargs`` go to :func:`lib.models.build_model` (e.g. ``{"pretrained": True}``); ``seed``
    (default ``params['seed']``) seeds initialisation, batch order and augmentation, while the
    splits stay those given. The checkpoint folder is keyed by everything that shapes training, so
    a changed parameter never resumes a stale run.
    """
    rec = {**recipe(params, recipe_name), **(overrides or {})}
    epochs = epochs or model_epochs(params, name)
    device = pick_device(params["device"])
    layout_cl = channels_last(device)
    seed = params["seed"] if seed is None else seed
    run_name = run_name or seed_run_name(name, seed, params)
    ckpt_dir = classifier_folder(name, splits, params, ckpt_root=ckpt_root, recipe_name=recipe_name,
                                 epochs=epochs, overrides=overrides, run_name=run_name,
                                 model_kwargs=model_kwargs, seed=seed)
    torch.manual_seed(seed)
    model = build_model(name, width=params["width"], **(model_kwargs or {}))
    n_params, flops = count_parameters(model), flops_per_image(model)

    def loader(x, y, **kw):
        return BatchLoader(x, y, device=device, channels_last=layout_cl, **kw)

    train = loader(splits.train_x, splits.train_y, batch_size=rec["batch_size"],
                   seed=seed, strong=Cutout(rec["cutout"]) if rec["cutout"] else None)
    val = loader(splits.val_x, splits.val_y, batch_size=params["eval_batch_size"], train=False)
    steps_per_epoch = len(train)
    total = epochs * steps_per_epoch
    opt = make_optimizer(model.parameters(), name=rec["optimizer"], lr=rec["lr"],
                         momentum=rec["momentum"], weight_decay=rec["weight_decay"],
                         nesterov=rec["nesterov"])
    sched = make_scheduler(opt, name=rec["scheduler"], total_steps=total,
                           steps_per_epoch=steps_per_epoch,
                           step_size_epochs=rec["step_size_epochs"], gamma=rec["gamma"],
                           warmup_steps=int(rec["warmup_epochs"] * steps_per_epoch))
    method = Classifier(model, opt, sched, label_smoothing=rec["label_smoothing"])

    def logits_of(data):
        return predict(model, data, flip_tta=rec["flip_tta"], autocast_dtype=method.autocast_dtype)

    def evaluate():
        m = classification_metrics(*logits_of(val))
        return {"val_acc": m["acc"], "val_loss": m["loss"]}

    def test():
        logits, labels = logits_of(loader(splits.test_x, splits.test_y,
                                          batch_size=params["eval_batch_size"], train=False))
        return {"acc": classification_metrics(logits, labels)["acc"], "logits": logits,
                "labels": labels}

    run = train_and_test(method, train.forever, name=run_name, test=test, total_steps=total,
                         evaluate=evaluate, steps_per_epoch=steps_per_epoch, ckpt_dir=ckpt_dir,
                         tb_dir=(Path(tb_root) / run_name) if tb_root else None, device=device,
                         amp=params["amp"], seed=seed,
                         log_every=max(1, steps_per_epoch // 4), compile=params["compile"],
                         compile_min_steps=params["compile_min_steps"],
                         config={"model": name, "width": params["width"], "epochs": epochs,
                                 "recipe": rec})
    storage.record_checkpoint(ckpt_root, run_name, {
        "model": name, "width": params["width"],
        "checkpoint": str(run.checkpoint.relative_to(ckpt_root)) if run.best else None,
        "val_acc": run.best.get("value"), "test_acc": run.test["acc"], "data": splits.source,
        "profile": params["profile"], "epochs": epochs})
    return Trained(**vars(run), recipe=rec, recipe_name=recipe_name or params["recipe"],
                   epochs=epochs, parameters=n_params, flops=flops, seed=seed)


def train_seeds(first: Trained, splits: Splits, params: dict, *, ckpt_root: Path,
                tb_root: Path | None = None) -> list[Trained]:
    """``first`` (a model of the accuracy table, trained with ``seed``) and the same model trained
    with each other of :func:`training_seeds`, in that order, on the same splits."""
    return [first] + [train_classifier(first.name, splits, params, ckpt_root=ckpt_root,
                                       tb_root=tb_root, seed=s)
                      for s in training_seeds(params)[1:]]


def train_pretrained(name: str, splits: Splits, params: dict, *, ckpt_root: Path,
                     tb_root: Path | None = None) -> tuple[Trained | None, str]:
    """SPEC 1.1: ImageNet-pretrained ``name`` fine-tuned at 224 px with the ``finetune`` recipe for
    ``pretrained_epochs``, as ``(run, "")``; ``(None, message)`` with the loader's exact message
    when the weights cannot be had (offline), so the chapter reports the row as not run."""
    from ..models.efficientnet import PretrainedWeightsUnavailable

    try:
        run = train_classifier(name, splits, ckpt_root=ckpt_root, tb_root=tb_root,
                               **pretrained_arguments(params, name))
    except PretrainedWeightsUnavailable as err:
        return None, str(err)
    return run, ""


def pretrained_arguments(params: dict, name: str) -> dict:
    """The :func:`train_classifier` arguments (after the splits) of the pretrained ``name``."""
    return {"params": {**params, "width": 1.0}, "recipe_name": "finetune",
            "epochs": params["pretrained_epochs"], "run_name": pretrained_run_name(name),
            "model_kwargs": {"pretrained": True}}


def pretrained_run_name(name: str) -> str:
    return f"{name}-imagenet-{PRESENTED['efficientnet_pretrained_resolution']}"


def not_run_rows(not_run: dict[str, str], *, profile: str, source: str) -> pd.DataFrame:
    """Rows of the accuracy table for runs that could not start: ``{run name: message}``."""
    return pd.DataFrame([{"model": name, "status": "not run: no weights", "note": message,
                          "profile": profile, "data": source} for name, message in not_run.items()])


def load_classifier(profile_dir: str | Path, run_name: str = "resnet18", *,
                    device: str = "cpu") -> tuple:
    """The best chapter-1 checkpoint of ``run_name`` under ``outputs/<profile>``, as
    ``(model in eval mode, info)``.

    Fails with the command to run first when chapter 1 has not produced it.
    """
    path, info = storage.indexed_checkpoint(profile_dir, run_name)
    model = build_model(info["model"], width=info["width"])
    model.load_state_dict(storage.load_checkpoint(path)["method"]["model"])
    model = model.to(device).eval()
    if channels_last(device):  # the layout it trained in (lib.train.device.channels_last)
        model = model.to(memory_format=torch.channels_last)
    return model, info


def seed_columns(n: int) -> tuple[str, str]:
    """The accuracy table's mean and standard-deviation columns over ``n`` seeds."""
    return (f"test acc mean over {n} seeds (%)", f"test acc std over {n} seeds (pp)")


def accuracy_table(results: list[Trained], presented: dict[str, float], *, profile: str,
                   source: str, n_test: int,
                   seeds: dict[str, list[Trained]] | None = None) -> pd.DataFrame:
    """SPEC 1.4: test accuracy of each model (chosen on validation) beside the presented value.

    ``seeds`` maps a row's run name to its runs over :func:`training_seeds` (:func:`train_seeds`).
    Where one has several, the table adds each seed's test accuracy, their mean and sample standard
    deviation and the seed count (rows of one run leave mean and std empty); the reproduced,
    difference and other columns stay those of the ``seed`` run. With one seed it is unchanged.
    """
    several = {k: v for k, v in (seeds or {}).items() if len(v) > 1}
    rows = []
    for r in results:
        pres = presented.get(r.name)
        rows.append({
            "model": r.name, "status": "run", "recipe": r.recipe_name,
            "presented test acc (%)": pres,
            "reproduced test acc (%)": round(100 * r.test_acc, 2),
            "difference (pp)": None if pres is None else round(100 * r.test_acc - pres, 2),
            "best val acc (%)": round(100 * r.val_acc, 2), "epochs": r.epochs,
            "parameters": r.parameters, "GFLOPs / image": round(r.flops / 1e9, 3),
            "wall time (s)": round(r.wall_time_s, 1), "device": r.device,
            "compiled": compiled_cell(r.compilation),
            "profile": profile, "data": source, "test images": n_test,
        })
    if not several:
        return pd.DataFrame(rows)
    order = list(dict.fromkeys(run.seed for runs in several.values() for run in runs))
    count = max(len(runs) for runs in several.values())
    mean_col, std_col = seed_columns(count)
    for r, row in zip(results, rows):
        runs = several.get(r.name, [r])
        acc = {run.seed: 100 * run.test_acc for run in runs}
        row.update({f"test acc seed {s} (%)": round(acc[s], 2) if s in acc else None
                    for s in order})
        values = np.array(list(acc.values()))
        row.update({mean_col: round(values.mean(), 2) if len(runs) > 1 else None,
                    std_col: round(values.std(ddof=1), 2) if len(runs) > 1 else None,
                    "seeds": len(runs)})
    df = pd.DataFrame(rows)
    cols = list(df.columns)
    added = cols[cols.index("test images") + 1:]
    at = cols.index("difference (pp)")
    return df[cols[:at] + added + cols[at:cols.index("test images") + 1]]


NOT_ON_SLIDE = "not on the slide"
CHOICE = "project's choice"
TRANSFORMS_AS_RUN = ("batched RandomCrop(32, padding=4) + horizontal flip on the training device, "
                     "Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))")


def _scheduler(rec: dict) -> str:
    return {"step": "StepLR", "onecycle": f"one-cycle (warm-up {rec['warmup_epochs']} epochs, "
                                          "linear decay)",
            "cosine": f"cosine (warm-up {rec['warmup_epochs']} epochs)",
            "constant": "constant"}[rec["scheduler"]]


def hyperparameter_table(recipes: dict[str, dict], *, epochs: dict[str, str],
                         presented: dict = PRESENTED["hyperparameters"]) -> pd.DataFrame:
    """SPEC 1.8: the presented hyperparameters beside each recipe as run.

    ``recipes`` maps a recipe name (``presented``, ``strong``) to its keys (:func:`recipe`);
    ``epochs`` maps it to what it trained (e.g. ``"30 (accuracy table), 10 (1.7 sweep)"``). The
    slide names five values; every other value of the presented recipe (StepLR step size and gamma,
    momentum, weight decay, epochs, ...) is marked as the project's choice.
    """
    def opt(r):
        return f"{r['optimizer'].upper()} + {'Nesterov ' if r['nesterov'] else ''}momentum"

    rows = {  # hyperparameter: (presented value or None, value of a recipe)
        "learning rate": (presented["learning rate"], lambda r: r["lr"]),
        "batch size": (presented["batch size"], lambda r: r["batch_size"]),
        "scheduler": (presented["scheduler"], _scheduler),
        "StepLR step size (epochs)": (None, lambda r: r["step_size_epochs"]
                                      if r["scheduler"] == "step" else "-"),
        "StepLR gamma": (None, lambda r: r["gamma"] if r["scheduler"] == "step" else "-"),
        "optimizer": (presented["optimizer"], opt),
        "momentum": (None, lambda r: r["momentum"]),
        "transforms": (presented["transforms"], lambda r: TRANSFORMS_AS_RUN),
        "weight decay": (None, lambda r: r["weight_decay"]),
        "label smoothing": (None, lambda r: r["label_smoothing"]),
        "test-time flip": (None, lambda r: r["flip_tta"]),
        "Cutout (px)": (None, lambda r: r["cutout"] or "off"),
        "epochs": (None, None),
    }
    out = []
    for name, (pres, value) in rows.items():
        row = {"hyperparameter": name, "presented": NOT_ON_SLIDE if pres is None else pres}
        for rname, rec in recipes.items():
            v = epochs[rname] if value is None else value(rec)
            mark = pres is None and rname == "presented" and v != "-"
            column = ("presented recipe" if rname == "presented"
                      else f"{rname} recipe ({CHOICE})")
            row[f"{column}, as run"] = f"{v} ({CHOICE})" if mark else v
        out.append(row)
    return pd.DataFrame(out)


def recipe_runs(params: dict) -> dict[str, str]:
    """What each recipe trained in this profile, with epochs: the accuracy table's recipe, the
    other one's ResNet-18 baseline row, and the 1.7 sweep (always the presented recipe)."""
    other = "presented" if params["recipe"] == "strong" else "strong"
    seeds = len(training_seeds(params))
    each = f", each model with {seeds} seeds" if seeds > 1 else ""
    runs = {params["recipe"]: [f"{epochs_text(params)} (accuracy table{each})"], other: []}
    if params["recipe_baseline"]:
        runs[other].append(f"{model_epochs(params, 'resnet18')} (ResNet-18 {other}-recipe row)")
    runs["presented"].append(f"{params['sweep_epochs']} (1.7 sweep)")
    return {name: "; ".join(v) or "not run in this profile" for name, v in runs.items()}


RESNET_REFERENCE_NAMES = {"resnet18": "ResNet18", "resnet50": "ResNet50", "resnet101": "ResNet101"}


def resnet_margin_table(reproduced: dict[str, float], *, presented: dict = PRESENTED,
                        reference: dict = REFERENCE["pytorch_cifar"]) -> pd.DataFrame:
    """SPEC 1.5: the slide's "+0.7%" remark computed: each ResNet's test accuracy (presented, and
    ``reproduced`` by this run, in %) minus the pytorch-cifar row of the same depth, and the mean
    over the depths."""
    rows = []
    for model, ref_name in RESNET_REFERENCE_NAMES.items():
        ref, pres, ours = reference[ref_name], presented["accuracy"][model], reproduced.get(model)
        rows.append({"model": model, "pytorch-cifar (%)": ref, "presented (%)": pres,
                     "presented - pytorch-cifar (pp)": round(pres - ref, 2),
                     "this run (%)": ours, "this run - pytorch-cifar (pp)":
                     None if ours is None else round(ours - ref, 2)})
    df = pd.DataFrame(rows)
    ours = df["this run - pytorch-cifar (pp)"].dropna()
    mean = {"model": "mean", "presented - pytorch-cifar (pp)":
            round(df["presented - pytorch-cifar (pp)"].mean(), 2),
            "this run - pytorch-cifar (pp)": round(ours.mean(), 2) if len(ours) else None}
    df = pd.concat([df, pd.DataFrame([mean])], ignore_index=True)
    df["the slide's remark (pp)"] = presented["resnet_margin_over_pytorch_cifar"]
    return df


ALL_BUT_CAT = "all but cat (mean per-class accuracy)"


def classification_report_table(logits: torch.Tensor, labels: torch.Tensor, classes,
                                presented: dict = PRESENTED) -> pd.DataFrame:
    """SPEC 1.10: per-class precision / recall / f1 / support (scikit-learn) beside the presented
    values, then accuracy, macro and weighted averages, and the slide's "all but cat" row.

    "평균 95%의 ACC" of the nine classes other than cat is per-class *accuracy*: the recall of each
    class (its correctly classified share), averaged over the nine; it sits in the recall column.
    """
    from sklearn.metrics import classification_report

    rep = classification_report(labels.numpy(), logits.argmax(1).numpy(),
                                labels=list(range(len(classes))), target_names=list(classes),
                                output_dict=True, zero_division=0)
    pres_cls = presented["class_report"]
    n_pres = presented["class_report_total_support"]

    def row(name, r, pres, pres_support):
        return {"class": name, "precision": round(r["precision"], 3),
                "recall": round(r["recall"], 3), "f1": round(r["f1-score"], 3),
                "support": int(r["support"]), "presented precision": pres[0],
                "presented recall": pres[1], "presented f1": pres[2],
                "presented support": pres_support}

    none = (None, None, None)
    rows = [row(c, rep[c], pres_cls.get(c, none),
                presented["class_report_support"] if c in pres_cls else None) for c in classes]
    rows.append({"class": "accuracy", "f1": round(rep["accuracy"], 3), "support": len(labels),
                 "presented f1": presented["class_report_accuracy"],
                 "presented support": n_pres})
    rows += [row(avg, rep[avg], pres, n_pres)
             for avg, pres in presented["class_report_summary"].items()]
    others = [c for c in classes if c != "cat"]
    if len(others) == len(classes):
        raise ValueError(f"no class named 'cat' among {list(classes)}: the 1.10 'all but cat' "
                         "row needs it")
    rows.append({"class": ALL_BUT_CAT,
                 "recall": round(sum(rep[c]["recall"] for c in others) / len(others), 3),
                 "support": sum(int(rep[c]["support"]) for c in others),
                 "presented recall": presented["all_but_cat_average"],
                 "presented support": (len(others) * presented["class_report_support"]
                                       if set(others) <= set(pres_cls) else None)})
    return pd.DataFrame(rows)


def class_report_comparisons(table: pd.DataFrame) -> dict[str, float]:
    """``{key of lib.spec.presented_numbers: value}`` for every presented number of the 1.10
    table."""
    t = table.set_index("class")
    out = {"1.10/accuracy": t.loc["accuracy", "f1"],
           "1.10/all_but_cat": t.loc[ALL_BUT_CAT, "recall"]}
    for name in [c for c in t.index if c in PRESENTED["class_report"]
                 or c in PRESENTED["class_report_summary"]]:
        for metric in ("precision", "recall", "f1"):
            out[f"1.10/{name.replace(' ', '_')}/{metric}"] = t.loc[name, metric]
    return out


def run_id(run) -> str:
    """What produced a run's results: its checkpoint folder's name (run name and the hash of every
    setting that shaped it), or the run name where it saved no checkpoint."""
    return run.checkpoint.parent.name if run.checkpoint is not None else run.name


def seed_correct(runs: list) -> np.ndarray:
    """Each test image's correctness (0/1) under each of ``runs`` (one model's seeds, tested on
    the same images, checked; any :class:`lib.train.Run` whose test kept logits and labels):
    ``(runs, images)``."""
    for r in runs[1:]:
        if not torch.equal(r.test["labels"], runs[0].test["labels"]):
            raise ValueError(f"{r.name} was tested on other images than {runs[0].name}")
    return np.stack([(r.test["logits"].argmax(1) == r.test["labels"]).numpy() for r in runs])


def mean_accuracy(runs: list) -> float:
    """Mean test accuracy (%) of ``runs`` (one model's seeds)."""
    return float(np.mean([100 * r.test_acc for r in runs]))


@counted("intervals")
def accuracy_interval(run) -> Interval:
    """Test accuracy (%) of a run with its 95% bootstrap interval over the test images; of a list
    of runs (one model's seeds), their mean accuracy with a two-level interval that covers the seeds
    and the test images (:func:`lib.evaluate.intervals.seeds_bootstrap`)."""
    runs = list(run) if isinstance(run, (list, tuple)) else [run]
    correct = seed_correct(runs)
    if len(runs) == 1:
        return intervals.mean_interval(correct[0]).scaled(100)
    return intervals.seeds_bootstrap((correct,), lambda c, axis: c.mean(axis))[0].scaled(100)


@counted("intervals")
def class_report_intervals(logits: torch.Tensor, labels: torch.Tensor,
                           classes) -> dict[str, Interval]:
    """The 95% interval over the test images of every number :func:`class_report_comparisons`
    gives, keyed the same way (one paired bootstrap for all of them), at the table's 3 decimals."""
    classes = list(classes)
    if "cat" not in classes:
        raise ValueError(f"no class named 'cat' among {classes}: the 1.10 'all but cat' row needs it")
    cat = classes.index("cat")
    names = intervals.report_metric_names(classes) + ["all but cat"]

    def stat(y, pred, axis):
        m = intervals.report_metrics(y, pred, axis=axis, classes=len(classes))
        recalls = m[1:3 * len(classes):3]
        return np.concatenate([m, np.delete(recalls, cat, axis=0).mean(0)[None]])

    ivs = intervals.bootstrap((labels.numpy(), logits.argmax(1).numpy()), stat)
    out = {}
    for name, iv in zip(names, ivs):
        key = {"accuracy": "1.10/accuracy", "all but cat": "1.10/all_but_cat"}.get(
            name, "1.10/" + name.replace(" ", "_"))
        out[key] = iv.rounded(3)
    return out


def first_of_each(labels: torch.Tensor, class_ids) -> torch.Tensor:
    """Index of the first item of each class in ``class_ids`` (for reproducible example figures)."""
    return torch.stack([(labels == c).nonzero()[0, 0] for c in class_ids])


def plan(params: dict, *, profile_dir: str | Path) -> list:
    """Every run notebook 01 trains under ``params`` (:class:`lib.train.schedule.PlannedRun`), in
    the notebook's order: the accuracy table's models, their runs with the other
    :func:`training_seeds`, the other recipe's ResNet-18, the pretrained fine-tunes, the 1.2
    figure's extra DRNs and the 1.7 sweep cells. Nothing is loaded until a run's folder or
    training is asked for."""
    from ..train.schedule import PlannedRun, lazy, roots
    from . import sweep

    chapter = params["chapter"]
    ckpt_root, tb_root = roots(profile_dir, chapter)
    splits = lazy(lambda: load_splits(params))
    cell_splits = lazy(lambda: sweep.sweep_splits(splits(), params))
    other = "presented" if params["recipe"] == "strong" else "strong"
    runs = []

    def add(name, work, kw, *, data=splits, train=None, tb=True):
        p, kw = kw.pop("params", params), {k: v for k, v in kw.items() if k != "name"}
        runs.append(PlannedRun(
            chapter, kw.get("run_name", name), work,
            train=train or (lambda: train_classifier(name, data(), p, ckpt_root=ckpt_root,
                                                     tb_root=tb_root if tb else None, **kw)),
            locate=lambda: classifier_folder(name, data(), p, ckpt_root=ckpt_root, **kw)))

    for name in params["models"]:
        add(name, f"train {name}", {})
    for name in params["models"]:
        for s in training_seeds(params)[1:]:
            add(name, f"train {name} seed {s}", {"seed": s, "run_name": seed_run_name(name, s, params)})
    if params["recipe_baseline"]:
        add("resnet18", f"train resnet18 ({other} recipe)",
            {"recipe_name": other, "run_name": f"resnet18-{other}-recipe"})
    for name in params["pretrained_models"]:
        def fine_tune(name=name):
            run, message = train_pretrained(name, splits(), params, ckpt_root=ckpt_root,
                                            tb_root=tb_root)
            if run is None:
                raise RuntimeError(message)
            return run

        size = PRESENTED["efficientnet_pretrained_resolution"]
        add(name, f"fine-tune pretrained {name} at {size} px", pretrained_arguments(params, name),
            train=fine_tune)
    for name in params["activation_map_models"]:
        if name not in params["models"]:
            add(name, f"train {name}", {})
    for bs, lr in sweep.sweep_cells(params):  # as sweep.train_cell: no TensorBoard
        kw = sweep.cell_arguments(params, bs, lr)
        add(kw["name"], f"sweep cell b{bs} lr{lr:g}", kw, data=cell_splits, tb=False)
    return runs
