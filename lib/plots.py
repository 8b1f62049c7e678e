"""Figures of the report, drawn with matplotlib/seaborn from tables (never from live training state)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

sns.set_theme(style="whitegrid", context="notebook")


def training_curves(histories: dict[str, pd.DataFrame], *, train_col: str = "train_acc", val_col: str = "val_acc",
                    title: str = "") -> plt.Figure:
    """Two panels: training accuracy and validation accuracy per epoch, one line per model (SPEC 1.6)."""
    rows = []
    for name, h in histories.items():
        for _, r in h.iterrows():
            rows.append({"model": name, "epoch": r["epoch"], "train": 100 * r.get(train_col, float("nan")),
                         "validation": 100 * r.get(val_col, float("nan"))})
    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False, layout="constrained")
    for ax, col, label in zip(axes, ("train", "validation"), ("(a) training accuracy", "(b) validation accuracy")):
        sns.lineplot(df, x="epoch", y=col, hue="model", marker="o", ax=ax)
        ax.set(title=label, xlabel="epoch", ylabel="accuracy (%)")
    if title:
        fig.suptitle(title)
    return fig


def confusion_matrix_figure(logits, labels, classes, *, title: str = "") -> plt.Figure:
    """SPEC 1.9: confusion matrix heatmap (rows true class, columns predicted), counts annotated."""
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(labels.numpy(), logits.argmax(1).numpy(), labels=list(range(len(classes))))
    fig, ax = plt.subplots(figsize=(7.5, 6.5), layout="constrained")
    sns.heatmap(cm, annot=True, fmt="d", cmap="Blues", xticklabels=classes, yticklabels=classes, cbar=False, ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return fig


def sweep_heatmap(df: pd.DataFrame, *, value: str = "test AUC", title: str = "") -> plt.Figure:
    """SPEC 1.7: batch size x learning rate heatmap of ``value``."""
    grid = df.pivot(index="batch size", columns="learning rate", values=value)
    fig, ax = plt.subplots(figsize=(5, 4.5), layout="constrained")
    sns.heatmap(grid, annot=True, fmt=".4f", cmap="viridis", ax=ax)
    ax.set(title=title or value)
    return fig
