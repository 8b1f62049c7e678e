"""Chapter 2 glue: the VAE, DCGAN and DDPM trained from params through the one loop, their samples,
FID scores, the VAE-as-augmentation experiment and the class histograms of samples.

All three take batches ``(images in [-1, 1], labels)`` from :class:`lib.batches.BatchLoader` with
horizontal flips only (no crop padding, which would teach the models black borders).
:func:`train_generator` keys each checkpoint folder by everything that shapes training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..evaluate.intervals import counted
from .. import storage
from ..batches import BatchLoader
from .. import data as D
from ..augment import normalize, to_signed
from ..methods.dcgan import DCGAN
from ..methods.ddpm import DDPM
from ..methods.vae import VAE
from ..models import count_parameters
from ..models.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_init
from ..models.unet import build_unet
from ..models.vae import ConvVAE
from ..spec import PRESENTED
from ..train import Method, Run, make_optimizer, pick_device, train_and_test
from ..train.device import compiled_cell
from ..train.distributed import marked_runs
from .generative_select import ddim_label, snapshot_epochs, snapshot_hook

GENERATORS = ("vae", "dcgan", "ddpm")
# the generators whose methods train data-parallel: DDPM draws its timesteps and noise per global
# batch and slices them; the VAE and DCGAN draw theirs at the slice's size, which would repeat the
# same noise on every rank
DATA_PARALLEL = ("ddpm",)
# settings that only change how a trained DDPM samples, or the memory layout it computes in: not
# part of its checkpoint folder's key
SAMPLING_SETTINGS = ("ddim_steps", "ddim_spacing", "ddim_compare", "ancestral_images",
                     "ancestral_steps", "channels_last")


@dataclass(kw_only=True)
class TrainedGenerator(Run):
    """A trained generative model, its settings and size, a seeded sampler -> (uint8 images,
    seconds), and a note on which weights sample (the chosen DCGAN snapshot)."""

    settings: dict
    parameters: int
    sample: Callable = field(repr=False)
    note: str = ""


def generator_settings(kind: str, params: dict) -> dict:
    """The ``<kind>_*`` keys of the params (lr, batch size, epochs, widths ...) without the
    prefix."""
    if kind not in GENERATORS:
        raise ValueError(f"unknown generative model {kind!r}; expected one of {GENERATORS}")
    return {k[len(kind) + 1:]: v for k, v in params.items() if k.startswith(kind + "_")}


def training_steps(s: dict, train_images: int) -> int:
    """Optimiser steps of a generator with settings ``s`` on ``train_images`` images: ``epochs``
    passes of full batches (the loader drops the partial one)."""
    return max(1, round(s["epochs"] * (train_images // s["batch_size"])))


def build_method(kind: str, s: dict, *, total_steps: int, seed: int) -> tuple[Method, int]:
    """The method for ``kind`` with settings ``s`` (see :func:`generator_settings`), and its
    parameter count."""
    torch.manual_seed(seed)
    if kind == "vae":
        model = ConvVAE(latent=s["latent"], width=s["width"], conditional=s["conditional"])
        opt = make_optimizer(model.parameters(), name="adam", lr=s["lr"])
        return VAE(model, opt, beta=s["beta"]), count_parameters(model)
    if kind == "dcgan":
        G, Dn = DCGANGenerator(nz=s["nz"], width=s["width"]), DCGANDiscriminator(width=s["width"])
        dcgan_init(G)
        dcgan_init(Dn)
        betas = (s["beta1"], 0.999)
        opt_g = make_optimizer(G.parameters(), name="adam", lr=s["lr"], betas=betas)
        opt_d = make_optimizer(Dn.parameters(), name="adam", lr=s["lr"], betas=betas)
        return DCGAN(G, Dn, opt_g, opt_d), count_parameters(G) + count_parameters(Dn)
    unet = build_unet(channels=s["channels"], multipliers=tuple(s["multipliers"]),
                      layers_per_block=s["layers_per_block"],
                      attention_resolutions=tuple(s["attention_resolutions"]), dropout=s["dropout"])
    opt = make_optimizer(unet.parameters(), name="adam", lr=s["lr"])
    # Ho et al.: linear warm-up (5,000 steps), then constant
    warmup = max(1, min(s["warmup_steps"], total_steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warmup))
    method = DDPM(unet, opt, sched, ema_decay=s["ema_decay"], grad_clip=s["grad_clip"],
                  channels_last=s["channels_last"])
    return method, count_parameters(unet)


def generator_folder(kind: str, splits, params: dict, *, ckpt_root: Path) -> Path:
    """The checkpoint folder :func:`train_generator` trains ``kind`` in: keyed by its settings
    (DDPM's sampling settings left out), seed, data source, split sizes and steps."""
    s = generator_settings(kind, params)
    shaping = {k: v for k, v in s.items() if kind != "ddpm" or k not in SAMPLING_SETTINGS}
    return storage.run_dir(ckpt_root, kind, {
        "kind": kind, "settings": shaping, "seed": params["seed"], "data": splits.source,
        "sizes": splits.sizes(), "total": training_steps(s, len(splits.train_y))})


def train_generator(kind: str, splits, params: dict, *, ckpt_root: Path,
                    tb_root: Path | None = None) -> TrainedGenerator:
    """Train ``kind`` (vae | dcgan | ddpm) on the training split with its ``<kind>_*`` params
    through :func:`lib.train.train_and_test`.

    The checkpoint folder is keyed by the settings, seed, data source and split sizes: re-running
    the notebook reuses a finished run or resumes an interrupted one, and a changed parameter never
    resumes a stale run. The VAE keeps its best epoch by validation loss; DCGAN and DDPM have no
    validation metric: DCGAN saves ``dcgan_snapshots`` generator snapshots for
    :func:`lib.chapters.generative_select.choose_snapshot`; DDPM uses the last step (sampling from
    the EMA weights). DDPM's sampling settings are left out of the folder's key.
    """
    s = generator_settings(kind, params)
    device = pick_device(params["device"])
    total = training_steps(s, len(splits.train_y))
    ckpt_dir = generator_folder(kind, splits, params, ckpt_root=ckpt_root)
    method, n_params = build_method(kind, s, total_steps=total, seed=params["seed"])
    layout_cl = method.memory_format(device) == torch.channels_last  # batches in the nets' layout
    loader = BatchLoader(splits.train_x, splits.train_y, batch_size=s["batch_size"],
                           device=device, seed=params["seed"], padding=0,  # flips only
                           normalize_fn=to_signed, channels_last=layout_cl)
    steps_per_epoch = len(loader)
    evaluate = None
    if kind == "vae":  # the epoch chosen on validation loss
        val = BatchLoader(splits.val_x, splits.val_y, batch_size=params["eval_batch_size"],
                            device=device, train=False, normalize_fn=to_signed,
                            channels_last=layout_cl)
        evaluate = lambda: method.evaluate(val)  # noqa: E731
    if kind == "dcgan":  # generator snapshots, scored by FID after training
        evaluate = snapshot_hook(method, ckpt_dir, steps_per_epoch=steps_per_epoch,
                                 epochs=snapshot_epochs(s["epochs"], s["snapshots"]))
    run = train_and_test(method, loader.forever, name=kind, total_steps=total, evaluate=evaluate,
                         steps_per_epoch=steps_per_epoch,
                         # VAE: validate every eval_every_epochs; DDPM: checkpoint every N
                         # epochs; DCGAN: every epoch (snapshots at some of them)
                         eval_every=max(1, round(s.get("eval_every_epochs",
                                                       s.get("checkpoint_every_epochs", 1))
                                                 * steps_per_epoch)),
                         select="val_loss", mode="min", ckpt_dir=ckpt_dir,
                         tb_dir=(Path(tb_root) / kind) if tb_root else None, device=device,
                         amp=params["amp"], seed=params["seed"],
                         log_every=max(1, steps_per_epoch // 4), compile=params["compile"],
                         compile_min_steps=params["compile_min_steps"],
                         config={"kind": kind, "settings": s, "data": splits.source},
                         data_parallel=kind in marked_runs(params, DATA_PARALLEL))
    bs = params["sample_batch_size"]
    if kind == "ddpm":
        sample = lambda n, *, sampler="ddim", steps=None, spacing=None, seed=0: (  # noqa: E731
            method.sample(n, sampler=sampler, batch_size=bs, seed=seed,
                          steps=steps or (s["ddim_steps"] if sampler == "ddim" else None),
                          spacing=spacing or s["ddim_spacing"]))
    else:
        sample = lambda n, *, seed=0, **_: method.sample(n, batch_size=bs, seed=seed)  # noqa: E731
    return TrainedGenerator(**vars(run), settings={**s, "steps": total}, parameters=n_params,
                            sample=sample)


def comparison_table(presented: dict = PRESENTED) -> pd.DataFrame:
    """SPEC 2.1: the slide's characteristics / pros / cons of the three models, nothing added."""
    rows = presented["generative_comparison"]
    return pd.DataFrame([{"": name, "VAE": v, "DCGAN": d, "DDPM": p}
                         for name, (v, d, p) in rows.items()])


def presented_setting(model: str, presented: dict = PRESENTED) -> dict:
    """The slide's (lr, batch size, epochs) of ``model`` as table columns; empty values for a model
    the slide gives none for (the VAE)."""
    s = presented["fid_setting"].get(model, {})
    return {"presented lr": s.get("lr"), "presented batch": s.get("batch_size"),
            "presented epochs": s.get("epochs")}


@torch.inference_mode()
def models_table(trained: dict[str, TrainedGenerator]) -> pd.DataFrame:
    """SPEC 2.1 / 2.4: each model as trained here (size, schedule, time) beside the presented
    setting."""
    return pd.DataFrame([{"model": t.name, "parameters": t.parameters,
                          "epochs": t.settings["epochs"], "steps": t.settings["steps"],
                          "batch": t.settings["batch_size"], "lr": t.settings["lr"],
                          **presented_setting(t.name),
                          "training time (s)": round(t.wall_time_s, 1), "device": t.device,
                          "compiled": compiled_cell(t.compilation)}
                         for t in trained.values()])


def compared_fids(fid: pd.DataFrame,
                  samples: dict[str, "Samples"]) -> dict[str, tuple[float, str, str]]:
    """``{model: (FID, sampler, row label)}`` for DCGAN and DDPM, the rows compared with the
    presented FIDs. Where both DDPM samplers were scored (``ddpm_ancestral_images >=
    fid_images``), the ancestral sampler's row (drawn last) is the one compared."""
    by_label = dict(zip(fid["model"], fid["FID"]))
    return {s.model: (by_label[label], s.sampler, label) for label, s in samples.items()
            if s.model in ("dcgan", "ddpm") and label in by_label}


def class_histogram(classifier: nn.Module, images: torch.Tensor, *,
                    batch_size: int = 500) -> np.ndarray:
    """Counts of each class predicted by ``classifier`` (chapter-1 normalisation) over uint8
    ``images``."""
    classifier.eval()
    device = next(classifier.parameters()).device
    counts = torch.zeros(len(D.CLASSES), dtype=torch.long)
    for i in range(0, len(images), batch_size):
        pred = classifier(normalize(images[i:i + batch_size].to(device))).argmax(1).cpu()
        counts += torch.bincount(pred, minlength=len(D.CLASSES))
    return counts.numpy()


def fid_row(name: str, stats, reference, *, presented: float | None = None, **extra) -> dict:
    """One row of the 2.4 table: FID of ``stats`` against the reference statistics, with its sample
    counts."""
    from ..evaluate.fid import frechet_distance

    return {"model": name, "FID": round(frechet_distance(stats, reference), 2),
            "images scored": stats.n, "reference images": reference.n,
            "presented FID (5k)": presented, **extra}


def reconstruction_splits(vae: VAE, splits, *, mode: str):
    """The chapter-1 :class:`~lib.chapters.supervised.Splits` with the training images replaced by
    VAE reconstructions (``mode="reconstructions"``) or extended with them
    (``mode="real+reconstructions"``); labels preserved, validation and test stay real."""
    from dataclasses import replace

    rec = vae.reconstruct(splits.train_x, splits.train_y)
    if mode == "reconstructions":
        return replace(splits, train_x=rec,
                       source=f"{splits.source}, VAE reconstructions of the training split")
    if mode == "real+reconstructions":
        return replace(splits, train_x=torch.cat([splits.train_x, rec]),
                       train_y=torch.cat([splits.train_y] * 2),
                       source=f"{splits.source}, real + VAE reconstructions of the training split")
    raise ValueError(f"unknown mode {mode!r}; expected 'reconstructions' or 'real+reconstructions'")


def classifier_params(params: dict) -> dict:
    """The keys :func:`lib.chapters.supervised.train_classifier` reads, from this chapter's
    ``classifier_*`` params."""
    out = dict(params)
    out["width"] = params["classifier_width"]
    out["epochs"] = params["classifier_epochs"]
    out["recipe"] = "classifier"
    return out


@dataclass
class Samples:
    """Images drawn from one model with one sampler, and the wall time it took."""

    label: str
    model: str
    sampler: str
    images: torch.Tensor = field(repr=False)
    seconds: float

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / max(1, len(self.images))


def draw_samples(trained: dict[str, TrainedGenerator], params: dict) -> dict[str, Samples]:
    """``fid_images`` samples per model (DDPM with DDIM at ``ddpm_ddim_steps`` and
    ``ddpm_ddim_spacing``), plus ``ddpm_ancestral_images`` with the ancestral sampler; each timed.
    Seeds are fixed, so re-running draws the same images."""
    n, seed = params["fid_images"], params["seed"]
    out = {}
    for kind, label in (("vae", "VAE"), ("dcgan", "DCGAN")):
        if kind in trained:
            x, sec = trained[kind].sample(n, seed=seed)
            note = f", {trained[kind].note}" if trained[kind].note else ""
            out[label] = Samples(label, kind, f"one decoder/generator pass{note}", x, sec)
    if "ddpm" in trained:
        steps, spacing = params["ddpm_ddim_steps"], params["ddpm_ddim_spacing"]
        x, sec = trained["ddpm"].sample(n, sampler="ddim", steps=steps, spacing=spacing, seed=seed)
        label = ddim_label(steps, spacing)
        out[label] = Samples(label, "ddpm", f"DDIM, {steps} steps, {spacing} spacing", x, sec)
        steps, m = params["ddpm_ancestral_steps"], params["ddpm_ancestral_images"]
        if m > 0:
            x, sec = trained["ddpm"].sample(m, sampler="ddpm", steps=steps, seed=seed)
            label = f"DDPM, ancestral {steps} steps"
            out[label] = Samples(label, "ddpm", f"ancestral, {steps} steps", x, sec)
    return out


def real_statistics(params: dict, *, device: str | torch.device = "cpu") -> dict:
    """Cached Inception statistics of real images: the reference (``fid_reference_images`` training
    images, 0 = all 50,000) and the two floors (``fid_images`` other training images, and test
    images)."""
    from ..evaluate.fid import cached_statistics

    ds = D.load_cifar10(params["data"])
    n_ref, n, seed, bs = (params["fid_reference_images"], params["fid_images"], params["seed"],
                          params["fid_batch_size"])
    ref_x, _ = D.subsample(ds.train_x, ds.train_y, n_ref, seed=seed)
    train_x, _ = D.subsample(ds.train_x, ds.train_y, n, seed=seed + 1)
    test_x, _ = D.subsample(ds.test_x, ds.test_y, n, seed=seed)
    kw = dict(source=ds.source, seed=seed, batch_size=bs, device=device)
    return {"reference": cached_statistics(ref_x, split="train-reference", **kw),
            "train": cached_statistics(train_x, split="train-floor", **kw),
            "test": cached_statistics(test_x, split="test-floor", **kw), "source": ds.source}


def score_samples(samples: dict[str, Samples], params: dict, *,
                  device: str | torch.device = "cpu") -> dict:
    """Inception statistics (features kept) of every sample large enough to score by FID
    (``fid_images``), by label."""
    from ..evaluate.fid import statistics

    return {label: statistics(s.images, batch_size=params["fid_batch_size"], device=device)
            for label, s in samples.items() if len(s.images) >= params["fid_images"]}


def fid_table(samples: dict[str, Samples], trained: dict[str, TrainedGenerator], real: dict,
              params: dict, *, presented: dict = PRESENTED, scored: dict | None = None,
              device: str | torch.device = "cpu") -> pd.DataFrame:
    """SPEC 2.4: FID of each model's samples against the training-set reference, beside the
    real-image floors, the presented FID, the setting as run beside the presented one (lr, batch,
    epochs), parameters, training time and sampling time (per image and extrapolated to 5,000
    images). ``scored``: the samples' statistics from :func:`score_samples`, computed here if not
    given."""
    scored = scored if scored is not None else score_samples(samples, params, device=device)
    ref, n_fid = real["reference"], params["fid_images"]
    floor = fid_row("floor: real training images", real["train"], ref)["FID"]
    rows = [fid_row("floor: real training images", real["train"], ref),
            fid_row("floor: real test images", real["test"], ref)]
    for label, smp in samples.items():
        if len(smp.images) < n_fid:  # too few to score at the same sample size (FID depends on it)
            continue
        t = trained[smp.model]
        s = t.settings
        rows.append(fid_row(
            label, scored[label], ref,
            presented=presented["fid"].get(smp.model), **{
                "FID floor (train)": floor, "lr": s["lr"], "batch": s["batch_size"],
                "epochs": s["epochs"], **presented_setting(smp.model, presented),
                "steps": s["steps"], "parameters": t.parameters,
                "training time (s)": round(t.wall_time_s, 1), "sampler": smp.sampler,
                "sampling s / image": round(smp.seconds_per_image, 4),
                **extrapolated(smp, presented)}))
    df = pd.DataFrame(rows)
    df["profile"], df["data"], df["device"] = (params["profile"], real["source"],
                                               trained[next(iter(trained))].device)
    return df


@counted("intervals")
def fid_replicates(scored: dict, fid: pd.DataFrame, samples: dict[str, Samples], real: dict,
                   params: dict, *, device: str | torch.device = "cpu") -> dict:
    """Bootstrap replicates of every scored model's FID (:func:`lib.evaluate.intervals.
    fid_replicates`, ``fid_bootstrap_resamples`` each, seeded per model), for
    :meth:`lib.report.Report.per_example`: ``labels``, ``replicates`` (labels x resamples),
    ``estimates`` (the FID table's values) and ``compared`` (the rows compared with the presented
    FIDs)."""
    from ..evaluate.intervals import fid_replicates as replicate

    by_label = dict(zip(fid["model"], fid["FID"]))
    labels = [lb for lb in scored if lb in by_label]
    reps = [replicate(scored[lb].features, real["reference"],
                      resamples=params["fid_bootstrap_resamples"], seed=params["seed"] + i,
                      device=str(device)) for i, lb in enumerate(labels)]
    compared = [label for _, _, label in compared_fids(fid, samples).values()]
    return {"labels": np.array(labels), "replicates": np.stack(reps),
            "estimates": np.array([by_label[lb] for lb in labels]), "compared": np.array(compared)}


@counted("intervals")
def fid_intervals(saved: dict) -> dict:
    """``{label: Interval}`` of each FID in :func:`fid_replicates`' output: the replicates' spread
    centred on the table's FID (:func:`lib.evaluate.intervals.replicate_interval`)."""
    from ..evaluate.intervals import replicate_interval

    return {str(lb): replicate_interval(float(est), r)
            for lb, est, r in zip(saved["labels"], saved["estimates"], saved["replicates"])}


@counted("timing repeats")
def time_samplers(trained: dict[str, TrainedGenerator], params: dict) -> dict:
    """Seconds per image of ``timing_repeats`` timed repeats of ``timing_images`` images from the
    DCGAN and from DDPM's main sampler (DDIM, ``ddpm_ddim_steps``): the spread behind the
    "DCGAN generates faster" finding."""
    n, reps = params["timing_images"], params["timing_repeats"]
    out = {"images": np.array(n)}
    for label, kind, kw in (("DCGAN", "dcgan", {}),
                            ("DDPM", "ddpm", {"sampler": "ddim",
                                              "steps": params["ddpm_ddim_steps"],
                                              "spacing": params["ddpm_ddim_spacing"]})):
        if kind in trained:
            out[label] = np.array([trained[kind].sample(n, seed=params["seed"] + 100 + r, **kw)[1]
                                   / n for r in range(reps)])
    return out


def extrapolated(samples: Samples, presented: dict = PRESENTED) -> dict[str, float]:
    """Seconds to sample as many images as the presented FIDs scored, at this sampler's rate."""
    n = presented["fid_images"]
    return {f"s to sample {n:,} (extrapolated)": round(n * samples.seconds_per_image, 1)}


def sampling_times(samples: dict[str, Samples], *, fid_images: int) -> pd.DataFrame:
    """Seconds per image of every sampler, and whether its sample was large enough for FID (a
    smaller one, such as the ancestral sampler's, is a timing sample only)."""
    return pd.DataFrame([{"model / sampler": s.label, "images drawn": len(s.images),
                          "seconds": round(s.seconds, 2),
                          "s / image": round(s.seconds_per_image, 4), **extrapolated(s),
                          "FID-scored": ("yes" if len(s.images) >= fid_images else
                                         f"no: timing sample ({len(s.images):,} < "
                                         f"fid_images {fid_images:,})")}
                         for s in samples.values()])


# the 2.2 classifiers: training images -> how they are made (None: the real ones)
AUGMENTATION_RUNS = {"real images": None, "VAE reconstructions": "reconstructions",
                     "real + VAE reconstructions": "real+reconstructions"}


def augmentation_splits(vae: VAE, splits, label: str):
    """The splits the 2.2 classifier ``label`` (of :data:`AUGMENTATION_RUNS`) trains on."""
    mode = AUGMENTATION_RUNS[label]
    return splits if mode is None else reconstruction_splits(vae, splits, mode=mode)


def augmentation_run_name(params: dict, label: str) -> str:
    return (f"{params['classifier_model']}-"
            + label.replace(" + ", "-and-").replace(" ", "-").lower())


def train_augmentation_classifier(label: str, splits, params: dict, *, ckpt_root: Path,
                                  tb_root: Path | None = None):
    """Train the 2.2 classifier ``label`` on ``splits`` (:func:`augmentation_splits`)."""
    from .supervised import train_classifier

    return train_classifier(params["classifier_model"], splits, classifier_params(params),
                            ckpt_root=ckpt_root, tb_root=tb_root,
                            run_name=augmentation_run_name(params, label))


def augmentation_experiment(vae: VAE, splits, params: dict, *, ckpt_root: Path,
                            tb_root: Path | None = None,
                            presented: tuple = PRESENTED["vae_augmentation_accuracy"]):
    """SPEC 2.2: the chapter-1 classifier trained on real images, on VAE reconstructions (labels
    kept), and on both; selected on real validation images, tested once on real test images. Returns
    (table, trained runs)."""
    cp = classifier_params(params)
    trained, rows = {}, []
    for label in AUGMENTATION_RUNS:
        sp = augmentation_splits(vae, splits, label)
        t = train_augmentation_classifier(label, sp, params, ckpt_root=ckpt_root, tb_root=tb_root)
        trained[label] = t
        rows.append({"training images": label, "n train": len(sp.train_y),
                     "test acc (%)": round(100 * t.test_acc, 2),
                     "best val acc (%)": round(100 * t.val_acc, 2),
                     "presented (%)": (f"{presented[0]:.0f}-{presented[1]:.0f}" if "VAE" in label
                                       else None),
                     "model": f"{params['classifier_model']} (width {cp['width']})",
                     "epochs": t.epochs,
                     "wall time (s)": round(t.wall_time_s, 1),
                     "compiled": compiled_cell(t.compilation), "test images": len(sp.test_y),
                     "profile": params["profile"], "data": splits.source})
    return pd.DataFrame(rows), trained


def histogram_classifier(profile_dir: Path, fallback) -> tuple[nn.Module, str]:
    """Chapter 1's ResNet-18 (best checkpoint of this profile) when it exists, else ``fallback``
    (the 2.2 classifier trained on real images in this chapter), with a line saying which one is
    used."""
    from .supervised import load_classifier

    try:
        model, info = load_classifier(profile_dir, "resnet18")
        return model, (f"chapter-1 ResNet-18 (width {info['width']}, test acc "
                       f"{100 * info['test_acc']:.2f}%, profile {info['profile']})")
    except FileNotFoundError as err:
        return fallback.model.cpu().eval(), (f"chapter-1 checkpoint not found ({err}); using the "
                                             "2.2 classifier trained on real images here "
                                             f"(test acc {100 * fallback.test_acc:.2f}%)")


def sample_class_counts(classifier: nn.Module, samples: dict[str, Samples],
                        trained: dict[str, TrainedGenerator], *,
                        real: torch.Tensor, n: int, seed: int) -> dict[str, np.ndarray]:
    """Predicted-class counts of ``n`` real test images and of ``n`` fresh samples of the VAE and
    DCGAN (cheap to draw); DDPM rows reuse their already drawn samples (slow to draw more)."""
    counts = {"real test images": class_histogram(classifier, real[:n])}
    for s in samples.values():
        images = s.images if s.model == "ddpm" else trained[s.model].sample(n, seed=seed)[0]
        counts[s.label] = class_histogram(classifier, images)
    return counts


class _SameImages:
    """Stands in for the VAE where only the reconstructions' source and sizes matter (a run's
    folder): "reconstructs" each image as itself."""

    @staticmethod
    def reconstruct(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return images


def plan(params: dict, *, profile_dir: str | Path) -> list:
    """Every run notebook 02 trains under ``params`` (:class:`lib.train.schedule.PlannedRun`): the
    VAE, DCGAN and DDPM, then the 2.2 classifiers (those on reconstructions after the VAE).
    Generators named in ``data_parallel`` train on all ranks together. Nothing is loaded until a
    run's folder or training is asked for."""
    from ..train.schedule import PlannedRun, lazy, roots, runs_named
    from .supervised import classifier_folder, load_splits

    chapter = params["chapter"]
    ckpt_root, tb_root = roots(profile_dir, chapter)
    splits = lazy(lambda: load_splits(params))
    runs = runs_named(GENERATORS, params, splits, profile_dir=profile_dir, train=train_generator,
                      locate=generator_folder)
    vae = f"{chapter}/vae"
    work = {"real images": "real", "VAE reconstructions": "reconstructions",
            "real + VAE reconstructions": "real + reconstructions"}
    for label, mode in AUGMENTATION_RUNS.items():
        def train(label=label):
            vae_method = (train_generator("vae", splits(), params, ckpt_root=ckpt_root).method
                          if AUGMENTATION_RUNS[label] else None)  # finished: loaded, not trained
            sp = augmentation_splits(vae_method, splits(), label)
            return train_augmentation_classifier(label, sp, params, ckpt_root=ckpt_root,
                                                 tb_root=tb_root)

        def locate(label=label):
            sp = augmentation_splits(_SameImages(), splits(), label)
            return classifier_folder(params["classifier_model"], sp, classifier_params(params),
                                     ckpt_root=ckpt_root,
                                     run_name=augmentation_run_name(params, label))

        runs.append(PlannedRun(chapter, augmentation_run_name(params, label),
                               f"2.2 classifier ({work[label]})", train=train, locate=locate,
                               after=(vae,) if mode else ()))
    return runs
