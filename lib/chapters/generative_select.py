"""Chapter 2's sampling choices, made by measurement: which DCGAN generator snapshot draws the
chapter's samples, and how DDIM's timestep spacing and step count change DDPM's FID.

* DCGAN: :func:`snapshot_hook` is the ``evaluate`` callback of :func:`lib.train.fit` that saves
  the generator's weights (atomically, under the run's checkpoint folder, so a resumed run keeps
  them) at ``dcgan_snapshots`` epochs evenly spaced over training, the last included.
  :func:`choose_snapshot` scores each by FID against the training-set reference statistics (never
  the test set) and keeps the lowest: a GAN's last epoch alone may be a bad one.
* DDPM: :func:`ddim_comparison` scores DDIM with "leading" and "trailing" timestep spacing (and
  other step counts) on the same EMA checkpoint, with the same number of images and reference.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from .. import storage
from ..methods.ddpm import make_scheduler

SNAPSHOT_FOLDER = "snapshots"
# selection samples are drawn with seed + 2: not the reported samples (seed), not the class
# histogram's (seed + 1), so the chosen snapshot's FID row is measured on fresh samples
SELECTION_SEED_OFFSET = 2


# ------------------------------------------------------------------------------- DCGAN snapshots
def snapshot_epochs(epochs: int, k: int) -> list[int]:
    """``k`` epochs evenly spaced over ``epochs``, the last included (fewer if ``epochs < k``)."""
    if k < 1:
        raise ValueError(f"dcgan_snapshots must be at least 1 (the last epoch), got {k}")
    return sorted({max(1, round(epochs * i / k)) for i in range(1, k + 1)})


def snapshot_path(folder: str | Path, epoch: int) -> Path:
    return Path(folder) / SNAPSHOT_FOLDER / f"generator-epoch{epoch:04d}.pt"


def snapshot_hook(method, folder: str | Path, *, epochs: list[int], steps_per_epoch: int):
    """An ``evaluate`` callback for :func:`lib.train.fit` (called at every epoch's end) that saves
    the generator's weights when the method's step count ends one of ``epochs``; returns ``{}``
    (no metric, so nothing is selected in the loop)."""
    due = {e * steps_per_epoch: e for e in epochs}

    def evaluate() -> dict:
        epoch = due.get(method.steps.value)
        if epoch is not None:
            weights = {k: v.detach().cpu().clone() for k, v in method.G.state_dict().items()}
            storage.save_atomic({"generator": weights, "epoch": epoch, "step": method.steps.value},
                                snapshot_path(folder, epoch))
        return {}

    return evaluate


def load_snapshot(method, path: Path) -> dict:
    """Put the generator weights of snapshot ``path`` into ``method.G``; returns the snapshot."""
    snap = storage.torch_load(path)
    method.G.load_state_dict(snap["generator"])
    return snap


def choose_snapshot(trained, reference, params: dict, *,
                    device: str | torch.device = "cpu") -> pd.DataFrame:
    """Score every saved snapshot of the trained DCGAN (``fid_images`` samples each, seed + 2)
    against the training-set ``reference`` statistics, leave the generator holding the lowest-FID
    one and note its epoch on ``trained``. Returns one row per snapshot: epoch, step, FID, images,
    chosen."""
    from ..evaluate.fid import frechet_distance, statistics

    s, folder = trained.settings, Path(trained.checkpoint).parent
    n, seed = params["fid_images"], params["seed"] + SELECTION_SEED_OFFSET
    rows = []
    for epoch in snapshot_epochs(s["epochs"], s["snapshots"]):
        path = snapshot_path(folder, epoch)
        if not path.is_file():
            raise FileNotFoundError(f"DCGAN snapshot {path} is missing; delete {folder} and "
                                    "re-run the chapter to train the DCGAN again")
        snap = load_snapshot(trained.method, path)
        images, _ = trained.sample(n, seed=seed)
        stats = statistics(images, batch_size=params["fid_batch_size"], device=device)
        rows.append({"epoch": snap["epoch"], "step": snap["step"],
                     "FID (train stats)": round(frechet_distance(stats, reference), 2),
                     "images scored": stats.n, "reference images": reference.n, "path": path})
    df = pd.DataFrame(rows)
    best = int(df["FID (train stats)"].idxmin())
    load_snapshot(trained.method, df.loc[best, "path"])
    df["chosen"] = ["yes" if i == best else "no" for i in range(len(df))]
    trained.note = (f"epoch {df.loc[best, 'epoch']} of {s['epochs']} "
                    f"(lowest FID of {len(df)} snapshots)")
    return df.drop(columns="path")


# ------------------------------------------------------------------------------ DDIM comparison
def ddim_label(steps: int, spacing: str) -> str:
    """The sample label (and FID table row) of DDPM with DDIM at ``steps`` and ``spacing``."""
    return f"DDPM, DDIM {steps} steps, {spacing} spacing"


def ddim_pairs(params: dict) -> list[tuple[str, int]]:
    """The main (spacing, steps) first, then every other pair of ``ddpm_ddim_compare``."""
    main = (params["ddpm_ddim_spacing"], params["ddpm_ddim_steps"])
    rest = [(str(sp), int(st)) for sp, st in params["ddpm_ddim_compare"]]
    return [main] + [p for i, p in enumerate(rest) if p != main and p not in rest[:i]]


def timesteps_text(method, spacing: str, steps: int) -> str:
    """The first two and the last timestep DDIM visits, e.g. ``990, 980, ..., 0``."""
    t = make_scheduler("ddim", steps, spacing=spacing, **method.schedulers_config()).timesteps
    t = [int(v) for v in t]
    return ", ".join(map(str, t)) if len(t) <= 3 else f"{t[0]}, {t[1]}, ..., {t[-1]}"


def ddim_comparison(trained, samples: dict, fid: pd.DataFrame, reference, params: dict, *,
                    device: str | torch.device = "cpu") -> pd.DataFrame:
    """FID of DDIM on the same EMA checkpoint for each (spacing, steps) of :func:`ddim_pairs`: the
    main pair's FID and time come from the FID table's row, every other pair draws ``fid_images``
    with the same seed and is scored against the same ``reference``."""
    from ..evaluate.fid import frechet_distance, statistics

    n, seed = params["fid_images"], params["seed"]
    by_label = dict(zip(fid["model"], fid["FID"]))
    rows = []
    for i, (spacing, steps) in enumerate(ddim_pairs(params)):
        label = ddim_label(steps, spacing)
        if i == 0:
            images, seconds, value = (samples[label].images, samples[label].seconds,
                                      by_label[label])
        else:
            images, seconds = trained.sample(n, sampler="ddim", steps=steps, spacing=spacing,
                                             seed=seed)
            stats = statistics(images, batch_size=params["fid_batch_size"], device=device)
            value = round(frechet_distance(stats, reference), 2)
        rows.append({"sampler": "DDIM (eta 0)", "spacing": spacing, "steps": steps,
                     "timesteps": timesteps_text(trained.method, spacing, steps), "FID": value,
                     "images": len(images), "reference images": reference.n,
                     "s / image": round(seconds / max(1, len(images)), 4),
                     "main FID row": "yes" if i == 0 else "no"})
    return pd.DataFrame(rows)
