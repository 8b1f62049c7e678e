"""Chapter 1 glue: data splits from params, a classifier trained by the one loop, and its evaluation.

The notebook calls :func:`load_splits` once and :func:`train_classifier` per model; everything a table needs
(accuracy, parameters, FLOPs, wall time, device, epochs, history, logits) comes back in a :class:`Trained`.
Training is cached by its checkpoint: re-running the notebook with the same parameters resumes or reuses it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from . import data as D
from .models import build_model, count_parameters, flops_per_image
from .params import params_hash
from .train import (Classifier, classification_metrics, device_description, fit, load_checkpoint, make_optimizer,
                    make_scheduler, pick_device, predict)

RECIPE_KEYS = ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "batch_size", "scheduler",
               "step_size_epochs", "gamma", "warmup_epochs", "label_smoothing", "flip_tta")


@dataclass
class Splits:
    """Train / validation / test tensors (uint8 images, int64 labels) and a description of their source."""

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
    """CIFAR-10 from ``params['data']``, a seeded class-balanced validation split carved from train, and optional
    class-balanced subsets (``train_subset``, ``test_subset``) for the small profiles."""
    ds = D.load_cifar10(params["data"])
    train_x, train_y = D.subsample(ds.train_x, ds.train_y, params["train_subset"], seed=params["seed"])
    parts = D.stratified_split(train_y, {"val": params["val_size"], "train": -1}, seed=params["seed"])
    test_x, test_y = D.subsample(ds.test_x, ds.test_y, params["test_subset"], seed=params["seed"])
    return Splits(train_x[parts["train"]], train_y[parts["train"]], train_x[parts["val"]], train_y[parts["val"]],
                  test_x, test_y, source=ds.source)


def recipe(params: dict, name: str | None = None) -> dict:
    """The training recipe ``name`` (default ``params['recipe']``) as plain keys: ``presented_lr`` -> ``lr``."""
    name = name or params["recipe"]
    keys = {k: params.get(f"{name}_{k}") for k in RECIPE_KEYS}
    missing = [f"{name}_{k}" for k, v in keys.items() if v is None]
    if missing:
        raise KeyError(f"recipe {name!r} is missing keys {missing} in params/{params.get('chapter')}.yaml")
    return keys


@dataclass
class Trained:
    name: str
    model: torch.nn.Module
    history: pd.DataFrame
    recipe: dict
    epochs: int
    val_acc: float
    test_acc: float
    test_logits: torch.Tensor = field(repr=False)
    test_labels: torch.Tensor = field(repr=False)
    parameters: int = 0
    flops: int = 0
    wall_time_s: float = 0.0
    device: str = ""
    checkpoint: Path | None = None
    recipe_name: str = ""


def train_classifier(name: str, splits: Splits, params: dict, *, ckpt_root: Path, tb_root: Path | None = None,
                     recipe_name: str | None = None, epochs: int | None = None, overrides: dict | None = None,
                     run_name: str | None = None) -> Trained:
    """Train registered model ``name`` with a recipe, select the best epoch on validation, report test once.

    ``overrides`` replaces recipe keys (e.g. ``{"batch_size": 32, "lr": 1e-4}`` for the sweep). The checkpoint
    folder is keyed by everything that shapes training, so a changed parameter never resumes a stale run.
    """
    rec = {**recipe(params, recipe_name), **(overrides or {})}
    epochs = epochs or params["epochs"]
    device = pick_device(params["device"])
    channels_last = device.type == "cuda"
    key = params_hash({"model": name, "width": params["width"], "epochs": epochs, "recipe": rec,
                       "seed": params["seed"], "data": splits.source, "sizes": splits.sizes()})
    run_name = run_name or name
    ckpt_dir = Path(ckpt_root) / f"{run_name}-{key}"
    torch.manual_seed(params["seed"])
    model = build_model(name, width=params["width"])
    n_params = count_parameters(model)
    flops = flops_per_image(model)

    train = D.BatchLoader(splits.train_x, splits.train_y, batch_size=rec["batch_size"], device=device,
                          seed=params["seed"], channels_last=channels_last)
    val = D.BatchLoader(splits.val_x, splits.val_y, batch_size=params["eval_batch_size"], device=device,
                        train=False, channels_last=channels_last)
    steps_per_epoch = len(train)
    total = epochs * steps_per_epoch
    opt = make_optimizer(model.parameters(), name=rec["optimizer"], lr=rec["lr"], momentum=rec["momentum"],
                         weight_decay=rec["weight_decay"], nesterov=rec["nesterov"])
    sched = make_scheduler(opt, name=rec["scheduler"], total_steps=total, steps_per_epoch=steps_per_epoch,
                           step_size_epochs=rec["step_size_epochs"], gamma=rec["gamma"],
                           warmup_steps=int(rec["warmup_epochs"] * steps_per_epoch))
    method = Classifier(model, opt, sched, label_smoothing=rec["label_smoothing"], compile=params["compile"])

    def evaluate():
        logits, labels = predict(model, val, flip_tta=rec["flip_tta"], autocast_dtype=method.autocast_dtype)
        m = classification_metrics(logits, labels)
        return {"val_acc": m["acc"], "val_loss": m["loss"]}

    result = fit(method, train.forever, total_steps=total, evaluate=evaluate, steps_per_epoch=steps_per_epoch,
                 ckpt_dir=ckpt_dir, tb_dir=(Path(tb_root) / run_name) if tb_root else None,
                 device=device, amp=params["amp"], seed=params["seed"], desc=run_name,
                 log_every=max(1, steps_per_epoch // 4),
                 config={"model": name, "width": params["width"], "epochs": epochs, "recipe": rec})
    if result.best_checkpoint is not None:  # evaluate the epoch chosen on validation, not the last one
        model.load_state_dict(load_checkpoint(result.best_checkpoint)["method"]["model"])
    test = D.BatchLoader(splits.test_x, splits.test_y, batch_size=params["eval_batch_size"], device=device,
                         train=False, channels_last=channels_last)
    logits, labels = predict(model, test, flip_tta=rec["flip_tta"], autocast_dtype=method.autocast_dtype)
    hist = result.history
    test_acc = classification_metrics(logits, labels)["acc"]
    _record_checkpoint(Path(ckpt_root), run_name, {
        "model": name, "width": params["width"], "checkpoint": str(result.best_checkpoint.relative_to(ckpt_root))
        if result.best_checkpoint else None, "val_acc": result.best.get("value"), "test_acc": test_acc,
        "data": splits.source, "profile": params["profile"], "epochs": epochs})
    return Trained(name=run_name, model=model, history=hist, recipe=rec, epochs=epochs,
                   val_acc=float(result.best.get("value", float("nan"))),
                   test_acc=test_acc, test_logits=logits, test_labels=labels,
                   parameters=n_params, flops=flops, wall_time_s=float(hist["elapsed_s"].iloc[-1]),
                   device=device_description(device), checkpoint=result.best_checkpoint,
                   recipe_name=recipe_name or params["recipe"])


def _record_checkpoint(ckpt_root: Path, run_name: str, info: dict) -> None:
    """Keep ``<ckpt_root>/index.json``: run name -> best checkpoint and what built it (read by chapters 2 and 4)."""
    from .report import write_text_atomic

    index_path = ckpt_root / "index.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    index[run_name] = info
    write_text_atomic(index_path, json.dumps(index, indent=2, default=str))


def load_classifier(profile_dir: str | Path, run_name: str = "resnet18", *, device: str = "cpu") -> tuple:
    """The best chapter-1 checkpoint of ``run_name`` under ``outputs/<profile>``, as ``(model in eval mode, info)``.

    Fails with the command to run first when chapter 1 has not produced it.
    """
    profile_dir = Path(profile_dir)
    index_path = profile_dir / "checkpoints" / "01_supervised" / "index.json"
    hint = (f"run chapter 1 first: ./run_all.sh --profile {profile_dir.name} --only 01 "
            f"(or open notebooks/01_supervised with profile = {profile_dir.name!r})")
    if not index_path.is_file():
        raise FileNotFoundError(f"no chapter-1 checkpoints under {index_path.parent}; {hint}")
    index = json.loads(index_path.read_text())
    if run_name not in index or not index[run_name].get("checkpoint"):
        raise FileNotFoundError(f"chapter 1 has no checkpoint for {run_name!r} in {index_path} "
                                f"(it has {sorted(index)}); add it to `models` in params/01_supervised.yaml and {hint}")
    info = index[run_name]
    path = index_path.parent / info["checkpoint"]
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} listed in {index_path} is missing; {hint}")
    model = build_model(info["model"], width=info["width"])
    model.load_state_dict(load_checkpoint(path)["method"]["model"])
    return model.to(device).eval(), info


def accuracy_table(results: list[Trained], presented: dict[str, float], *, profile: str, source: str,
                   n_test: int) -> pd.DataFrame:
    """SPEC 1.4: test accuracy of each model (chosen on validation) beside the presented value."""
    rows = []
    for r in results:
        pres = presented.get(r.name)
        rows.append({
            "model": r.name, "recipe": r.recipe_name, "presented test acc (%)": pres, "reproduced test acc (%)": round(100 * r.test_acc, 2),
            "difference (pp)": None if pres is None else round(100 * r.test_acc - pres, 2),
            "best val acc (%)": round(100 * r.val_acc, 2), "epochs": r.epochs,
            "parameters": r.parameters, "GFLOPs / image": round(r.flops / 1e9, 3),
            "wall time (s)": round(r.wall_time_s, 1), "device": r.device,
            "profile": profile, "data": source, "test images": n_test,
        })
    return pd.DataFrame(rows)


def hyperparameter_table(rec: dict, presented: dict, *, recipe_name: str, epochs: int) -> pd.DataFrame:
    """SPEC 1.8: the presented hyperparameters beside the ones this run actually used."""
    sched = {"step": f"StepLR(step={rec['step_size_epochs']} epochs, gamma={rec['gamma']})",
             "onecycle": f"one-cycle (warm-up {rec['warmup_epochs']} epochs, linear decay)",
             "cosine": f"cosine (warm-up {rec['warmup_epochs']} epochs)", "constant": "constant"}[rec["scheduler"]]
    opt = f"{rec['optimizer'].upper()} + {'Nesterov ' if rec['nesterov'] else ''}momentum {rec['momentum']}"
    ran = {"learning rate": rec["lr"], "batch size": rec["batch_size"], "scheduler": sched, "optimizer": opt,
           "transforms": "batched RandomCrop(32, padding=4) + horizontal flip on the training device, "
                         "Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))"}
    extra = {"weight decay": rec["weight_decay"], "label smoothing": rec["label_smoothing"],
             "test-time flip": rec["flip_tta"], "epochs": epochs}
    rows = [{"hyperparameter": k, "presented": presented.get(k), f"this run ({recipe_name})": v}
            for k, v in {**ran, **extra}.items()]
    return pd.DataFrame(rows)


def macro_auc(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Macro-averaged one-vs-rest ROC AUC of softmax scores (scikit-learn), the presentation's "test AUC"."""
    from sklearn.metrics import roc_auc_score

    probs = torch.softmax(logits.float(), dim=1).numpy()
    return float(roc_auc_score(labels.numpy(), probs, multi_class="ovr", average="macro",
                               labels=list(range(probs.shape[1]))))


def batch_lr_sweep(splits: Splits, params: dict, *, ckpt_root: Path) -> pd.DataFrame:
    """SPEC 1.7: train ``sweep_model`` with the presented recipe for every (batch size, learning rate) cell.

    Returns one row per cell with validation and test macro AUC; the best cell is chosen on validation AUC.
    """
    if params["sweep_train_subset"]:
        tx, ty = D.subsample(splits.train_x, splits.train_y, params["sweep_train_subset"], seed=params["seed"])
        splits = Splits(tx, ty, splits.val_x, splits.val_y, splits.test_x, splits.test_y, source=splits.source)
    rows = []
    for bs in params["sweep_batch_sizes"]:
        for lr in params["sweep_lrs"]:
            t = train_classifier(params["sweep_model"], splits, params, ckpt_root=ckpt_root, recipe_name="presented",
                                 epochs=params["sweep_epochs"], overrides={"batch_size": bs, "lr": lr},
                                 run_name=f"sweep-{params['sweep_model']}-b{bs}-lr{lr:g}")
            val = D.BatchLoader(splits.val_x, splits.val_y, batch_size=params["eval_batch_size"],
                                device=next(t.model.parameters()).device, train=False)
            val_logits, val_labels = predict(t.model, val)
            rows.append({"batch size": bs, "learning rate": lr, "val AUC": round(macro_auc(val_logits, val_labels), 4),
                         "test AUC": round(macro_auc(t.test_logits, t.test_labels), 4),
                         "test acc (%)": round(100 * t.test_acc, 2), "epochs": t.epochs,
                         "wall time (s)": round(t.wall_time_s, 1)})
    df = pd.DataFrame(rows)
    df["best on validation"] = df["val AUC"] == df["val AUC"].max()
    return df


def sweep_with_presented(df: pd.DataFrame, presented: dict) -> pd.DataFrame:
    """The sweep table with the presented test AUC of each cell beside ours."""
    out = df.copy()
    out.insert(2, "presented test AUC", [presented.get((b, lr)) for b, lr in zip(df["batch size"], df["learning rate"])])
    return out


def classification_report_table(logits: torch.Tensor, labels: torch.Tensor, classes, presented: dict) -> pd.DataFrame:
    """SPEC 1.10: per-class precision / recall / f1 / support (scikit-learn) beside the presented values."""
    from sklearn.metrics import classification_report

    rep = classification_report(labels.numpy(), logits.argmax(1).numpy(), labels=list(range(len(classes))),
                                target_names=list(classes), output_dict=True, zero_division=0)
    rows = []
    for cls in classes:
        r, p = rep[cls], presented.get(cls, (None, None, None))
        rows.append({"class": cls, "precision": round(r["precision"], 3), "recall": round(r["recall"], 3),
                     "f1": round(r["f1-score"], 3), "support": int(r["support"]),
                     "presented precision": p[0], "presented recall": p[1], "presented f1": p[2]})
    df = pd.DataFrame(rows)
    summary = pd.DataFrame([
        {"class": "accuracy", "f1": round(rep["accuracy"], 3), "support": int(len(labels))},
        {"class": "macro avg", "precision": round(rep["macro avg"]["precision"], 3),
         "recall": round(rep["macro avg"]["recall"], 3), "f1": round(rep["macro avg"]["f1-score"], 3),
         "support": int(len(labels))},
        {"class": "all classes but cat (mean f1)", "f1": round(df.loc[df["class"] != "cat", "f1"].mean(), 3),
         "support": int(df.loc[df["class"] != "cat", "support"].sum())},
    ])
    return pd.concat([df, summary], ignore_index=True)


def first_of_each(labels: torch.Tensor, class_ids) -> torch.Tensor:
    """Index of the first item of each class in ``class_ids`` (for reproducible example figures)."""
    return torch.stack([(labels == c).nonzero()[0, 0] for c in class_ids])
