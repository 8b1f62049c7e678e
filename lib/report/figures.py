"""Figures of the report, drawn with matplotlib/seaborn from tables and images (never from training
state)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F

from ..data import CLASSES, subsample
from ..evaluate.retrieval import nearest_neighbours

sns.set_theme(style="whitegrid", context="notebook")


def training_curves(histories: dict[str, pd.DataFrame], *, train_col: str = "train_acc",
                    val_col: str = "val_acc", title: str = "") -> plt.Figure:
    """Two panels: training accuracy and validation accuracy per epoch, one line per model (SPEC
    1.6)."""
    rows = []
    for name, h in histories.items():
        for _, r in h.iterrows():
            rows.append({"model": name, "epoch": r["epoch"],
                         "train": 100 * r.get(train_col, float("nan")),
                         "validation": 100 * r.get(val_col, float("nan"))})
    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False, layout="constrained")
    for ax, col, label in zip(axes, ("train", "validation"),
                              ("(a) training accuracy", "(b) validation accuracy")):
        sns.lineplot(df, x="epoch", y=col, hue="model", marker="o", ax=ax)
        ax.set(title=label, xlabel="epoch", ylabel="accuracy (%)")
    if title:
        fig.suptitle(title)
    return fig


def seed_spread(accuracies: dict[str, list[float]], presented: dict[str, float], *,
                title: str = "") -> plt.Figure:
    """SPEC 1.4 with several training seeds: each model's test accuracy (%) per seed as points, their
    mean as a bar with the sample standard deviation as its error bar, and the presented value as a
    red tick."""
    names = list(accuracies)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 2), 4), layout="constrained")
    x = np.arange(len(names))
    means = [np.mean(accuracies[m]) for m in names]
    stds = [np.std(accuracies[m], ddof=1) if len(accuracies[m]) > 1 else 0.0 for m in names]
    ax.bar(x, means, yerr=stds, color="lightsteelblue", capsize=5, label="mean ± std over seeds")
    ticked = [i for i, m in enumerate(names) if m in presented]
    for i, m in enumerate(names):
        ax.scatter(np.full(len(accuracies[m]), i), accuracies[m], color="black", s=18, zorder=3,
                   label="one seed" if i == 0 else None)
    ax.scatter(ticked, [presented[names[i]] for i in ticked], marker="_", s=400, color="red",
               zorder=3, label="presented")
    values = [v for m in names for v in accuracies[m]] + [presented[m] for m in names if m in presented]
    pad = max(1.0, 0.1 * (max(values) - min(values)))
    ax.set(xticks=x, ylim=(min(values) - pad, max(values) + pad), ylabel="test accuracy (%)",
           title=title)
    ax.set_xticklabels(names, rotation=20, ha="right")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return fig


def confusion_matrix_figure(logits, labels, classes, *, title: str = "") -> plt.Figure:
    """SPEC 1.9: confusion matrix heatmap (rows true class, columns predicted), counts annotated."""
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(labels.numpy(), logits.argmax(1).numpy(),
                          labels=list(range(len(classes))))
    fig, ax = plt.subplots(figsize=(7.5, 6.5), layout="constrained")
    sns.heatmap(cm, annot=True, fmt="d", cmap="Blues", xticklabels=classes, yticklabels=classes,
                cbar=False, ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return fig


def sweep_heatmap(df: pd.DataFrame, *, value: str = "test AUC", title: str = "") -> plt.Figure:
    """SPEC 1.7: batch size x learning rate heatmap of ``value``."""
    grid = df.pivot(index="batch size", columns="learning rate", values=value)
    fig, ax = plt.subplots(figsize=(5, 4.5), layout="constrained")
    sns.heatmap(grid, annot=True, fmt=".4f", cmap="viridis", ax=ax)
    marks = {"best of its lr on validation": ("white", "-"),  # ours, chosen on validation
             "bold on the slide (best of its lr)": ("red", "--")}
    for column, (color, style) in marks.items():
        if column not in df:
            continue
        for b, lr in zip(df.loc[df[column], "batch size"], df.loc[df[column], "learning rate"]):
            r, c = list(grid.index).index(b), list(grid.columns).index(lr)
            inset = 0.04  # of a cell's side, so outlines of neighbouring cells do not touch
            side = 1 - 2 * inset
            ax.add_patch(plt.Rectangle((c + inset, r + inset), side, side, fill=False, lw=2.5,
                                       ec=color, ls=style, label=column))
    handles = {h.get_label(): h for h in ax.patches}
    if handles:
        ax.legend(handles.values(), handles.keys(), fontsize=7, loc="upper center",
                  bbox_to_anchor=(0.5, -0.2), ncol=1)
    ax.set(title=title or value)
    return fig


def sample_grid(images: dict[str, torch.Tensor], *, nrow: int = 8, title: str = ""):
    """One panel of uint8 samples per model, side by side."""
    from torchvision.utils import make_grid

    fig, axes = plt.subplots(1, len(images), figsize=(4.2 * len(images), 4.6), layout="constrained",
                             squeeze=False)
    for ax, (name, x) in zip(axes[0], images.items()):
        grid = make_grid(x[: nrow * nrow], nrow=nrow, padding=1, pad_value=255)
        ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")  # pixels as drawn; PNG ~3x smaller
        ax.set(title=name, xticks=[], yticks=[])
    if title:
        fig.suptitle(title)
    return fig


def neighbours_figure(samples: dict[str, torch.Tensor], train: torch.Tensor, *,
                      per_model: int = 4, k: int = 3):
    """Rows: a sample, then its ``k`` nearest training images by pixel L2 distance (memorisation
    check)."""

    rows = [(name, x[j]) for name, x in samples.items() for j in range(min(per_model, len(x)))]
    fig, axes = plt.subplots(len(rows), k + 1, figsize=(1.5 * (k + 1), 1.5 * len(rows)),
                             layout="constrained", squeeze=False)
    for r, (name, img) in enumerate(rows):
        idx, dist = nearest_neighbours(img[None], train, k=k)
        axes[r, 0].imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
        axes[r, 0].set_ylabel(name, fontsize=8)
        for c in range(k):
            axes[r, c + 1].imshow(train[idx[0, c]].permute(1, 2, 0).numpy(), interpolation="nearest")
            axes[r, c + 1].set_title(f"L2 {dist[0, c]:.2f}", fontsize=7)
        for ax in axes[r]:
            ax.set(xticks=[], yticks=[])
    axes[0, 0].set_title("sample", fontsize=8)
    return fig


def histogram_figure(counts: dict[str, np.ndarray], *, title: str = ""):
    """Share of samples per predicted class, one bar group per model (a flat profile = diverse
    samples)."""

    rows = [{"model": m, "class": CLASSES[i], "share (%)": 100 * c / max(1, cnt.sum())}
            for m, cnt in counts.items() for i, c in enumerate(cnt)]
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(11, 3.6), layout="constrained")
    sns.barplot(df, x="class", y="share (%)", hue="model", ax=ax)
    ax.axhline(10, color="k", lw=0.8, ls="--", label="uniform (10%)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def show_similar_images(query_image: torch.Tensor,
                        neighbours: dict[str, tuple[torch.Tensor, torch.Tensor]],
                        gallery_images: torch.Tensor, gallery_labels: torch.Tensor, *,
                        query_label: int | None = None, query_title: str = "query",
                        classes=CLASSES) -> plt.Figure:
    """The query and its nearest gallery images, one row per metric, each titled with its class and
    score.

    ``neighbours`` maps a metric to ``(scores, indices)`` of one query (from :func:`top_k`). When
    the query's label is known, neighbours of the same class are titled in green and the others in
    red.
    """
    k = max(len(ix) for _, ix in neighbours.values())
    fig, axes = plt.subplots(len(neighbours), k + 1,
                             figsize=(1.45 * (k + 1), 1.75 * len(neighbours)),
                             squeeze=False, layout="constrained")
    for row, (metric, (scores, idx)) in enumerate(neighbours.items()):
        ax = axes[row, 0]
        ax.imshow(query_image.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(query_title + (f"\n({classes[query_label]})" if query_label is not None
                                    else ""), fontsize=8)
        ax.set_ylabel(metric, fontsize=10)
        ax.set_xticks([]), ax.set_yticks([])
        for s in ax.spines.values():
            s.set(color="black", linewidth=2)
        for col in range(k):
            ax = axes[row, col + 1]
            ax.axis("off")
            if col >= len(idx):
                continue
            g = int(idx[col])
            lab = int(gallery_labels[g])
            color = ("black" if query_label is None
                     else ("tab:green" if lab == query_label else "tab:red"))
            what = "cos" if metric == "cosine" else "dist"
            ax.imshow(gallery_images[g].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(f"{classes[lab]}\n{what} {float(scores[col]):.3f}", fontsize=8,
                         color=color)
    return fig


def tsne_figure(features: torch.Tensor, labels: torch.Tensor, *, n: int, seed: int = 0,
                classes=CLASSES) -> plt.Figure:
    """t-SNE (scikit-learn) of a class-balanced subsample of ``n`` embeddings, coloured by class."""
    import seaborn as sns
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x, y = subsample(features, labels, n, seed=seed)
    # its OpenMP threads spin-wait; on a shared 2-core CPU that costs 15x
    with threadpool_limits(limits=1):
        xy = TSNE(n_components=2, init="pca", perplexity=min(30.0, (len(x) - 1) / 3),
                  random_state=seed).fit_transform(F.normalize(x.float(), dim=1).numpy())
    fig, ax = plt.subplots(figsize=(7, 6), layout="constrained")
    sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=[classes[int(i)] for i in y],
                    hue_order=list(classes), palette="tab10", s=8, linewidth=0, ax=ax)
    ax.set(xticks=[], yticks=[],
           title=f"t-SNE of {len(x):,} test-image embeddings (cosine geometry)")
    ax.legend(markerscale=2, fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
    return fig
