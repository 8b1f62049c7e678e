"""SPEC 1.7, the batch-size x learning-rate study: :func:`batch_lr_sweep` trains the sweep model
with the presented recipe in every cell and scores it by macro AUC; :func:`sweep_with_presented`
puts the presented AUCs and best cells beside it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..evaluate.intervals import counted
from .. import data as D
from ..batches import BatchLoader
from ..evaluate.classification import predict
from ..spec import PRESENTED
from ..train.device import compiled_cell
from .supervised import Splits, train_classifier


def macro_auc(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Macro-averaged one-vs-rest ROC AUC of softmax scores (scikit-learn), the presentation's "test
    AUC"."""
    from sklearn.metrics import roc_auc_score

    probs = torch.softmax(logits.float(), dim=1).numpy()
    return float(roc_auc_score(labels.numpy(), probs, multi_class="ovr", average="macro",
                               labels=list(range(probs.shape[1]))))


def cell_name(model: str, batch_size: int, lr: float) -> str:
    """A sweep cell's run name (and the name of its saved test scores)."""
    return f"sweep-{model}-b{batch_size}-lr{lr:g}"


def sweep_cells(params: dict) -> list[tuple[int, float]]:
    """The (batch size, learning rate) cells of the sweep, in the table's order."""
    return [(bs, lr) for bs in params["sweep_batch_sizes"] for lr in params["sweep_lrs"]]


def sweep_splits(splits: Splits, params: dict) -> Splits:
    """The splits every sweep cell trains on: a class-balanced ``sweep_train_subset`` of the
    training split when set."""
    if not params["sweep_train_subset"]:
        return splits
    tx, ty = D.subsample(splits.train_x, splits.train_y, params["sweep_train_subset"],
                         seed=params["seed"])
    return Splits(tx, ty, splits.val_x, splits.val_y, splits.test_x, splits.test_y,
                  source=splits.source)


def cell_arguments(params: dict, batch_size: int, lr: float) -> dict:
    """The :func:`lib.chapters.supervised.train_classifier` arguments of one cell (after the
    splits), with the sweep's own ``compile``."""
    return {"name": params["sweep_model"], "params": {**params, "compile": params["sweep_compile"]},
            "recipe_name": "presented", "epochs": params["sweep_epochs"],
            "overrides": {"batch_size": batch_size, "lr": lr},
            "run_name": cell_name(params["sweep_model"], batch_size, lr)}


def train_cell(splits: Splits, params: dict, batch_size: int, lr: float, *, ckpt_root: Path):
    """Train one sweep cell on :func:`sweep_splits`' splits (``splits``)."""
    kw = cell_arguments(params, batch_size, lr)
    return train_classifier(kw.pop("name"), splits, kw.pop("params"), ckpt_root=ckpt_root, **kw)


def batch_lr_sweep(splits: Splits, params: dict, *, ckpt_root: Path,
                   report=None) -> pd.DataFrame:
    """SPEC 1.7: train ``sweep_model`` with the presented recipe for every (batch size, learning
    rate) cell.

    Returns one row per cell with validation and test macro AUC; the best cell is chosen on
    validation AUC. With a :class:`lib.report.Report`, each cell's per-image test scores are saved
    (:meth:`~lib.report.Report.predictions`), for :func:`test_auc_intervals` and the findings.
    """
    from .supervised import run_id

    splits = sweep_splits(splits, params)
    rows = []
    for bs, lr in sweep_cells(params):
        t = train_cell(splits, params, bs, lr, ckpt_root=ckpt_root)
        if report is not None:
            report.predictions(cell_name(params["sweep_model"], bs, lr), t.test_logits,
                               t.test_labels, item="1.7", run=run_id(t), scores=True)
        val = BatchLoader(splits.val_x, splits.val_y, batch_size=params["eval_batch_size"],
                          device=next(t.model.parameters()).device, train=False)
        val_logits, val_labels = predict(t.model, val)
        rows.append({"batch size": bs, "learning rate": lr,
                     "val AUC": round(macro_auc(val_logits, val_labels), 4),
                     "test AUC": round(macro_auc(t.test_logits, t.test_labels), 4),
                     "test acc (%)": round(100 * t.test_acc, 2), "epochs": t.epochs,
                     "wall time (s)": round(t.wall_time_s, 1),
                     "compiled": compiled_cell(t.compilation)})
    df = pd.DataFrame(rows)
    df["best on validation"] = df["val AUC"] == df["val AUC"].max()
    return df


@counted("intervals")
def test_auc_intervals(report, df: pd.DataFrame, model: str) -> list:
    """Each cell's test AUC with its 95% interval over the test images (resampled together for
    all cells), from the scores :func:`batch_lr_sweep` saved in ``report``."""
    from ..evaluate.intervals import MacroAUC

    saved = [report.load_per_example(cell_name(model, b, lr))
             for b, lr in zip(df["batch size"], df["learning rate"])]
    return MacroAUC(saved[0]["label"], np.stack([s["scores"] for s in saved])).intervals()


def sweep_with_presented(df: pd.DataFrame, presented: dict = PRESENTED) -> pd.DataFrame:
    """The sweep table with the presented test AUC of each cell beside ours, and the best cell of
    each learning-rate column: the one the slide prints in bold, ours on validation AUC (the
    choice) and ours on test AUC (reported only)."""
    out = df.copy()
    cells = list(zip(df["batch size"], df["learning rate"]))
    out.insert(2, "presented test AUC", [presented["batch_lr_auc"].get(c) for c in cells])
    bold = presented["batch_lr_bold"]
    out["bold on the slide (best of its lr)"] = [bold.get(lr) == b for b, lr in cells]
    by_lr = df.groupby("learning rate")
    out["best of its lr on validation"] = df["val AUC"] == by_lr["val AUC"].transform("max")
    out["best of its lr on test"] = df["test AUC"] == by_lr["test AUC"].transform("max")
    return out
