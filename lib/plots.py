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
