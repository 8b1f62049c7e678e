"""Chapter 3's curves (SPEC 3.8): the TensorBoard scalars a run wrote, read back, and the figure
of top-1, top-5, validation loss and training loss over steps."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .semi_supervised import LABELS, TRAIN_LOSS


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
    best = scalars[(scalars.run == "mpl") & (scalars.tag == "eval/val_acc")]
    if "mpl" in runs and len(best):  # the slide's "Best top-1 acc" under its curves
        top = best.loc[best.value.idxmax()]
        axes[0].annotate(f"best top-1 (validation): {100 * top.value:.2f}",
                         (top.step, 100 * top.value), xytext=(0, -28),
                         textcoords="offset points", ha="center", fontsize=8,
                         arrowprops={"arrowstyle": "->", "lw": 0.8})
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
