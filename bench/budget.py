"""What a profile costs: its work (images, steps and FLOPs per chapter) and the wall time that work projects
to.

    python bench/budget.py [--profile full] [--rates outputs/bench/gpu_check.json] [--hours 3]

The work list is computed from the params files, so changing an epoch count changes the projection. Two
projections are offered:

* **measured**: each workload priced from what ``bench/gpu_check.sh`` measured on the device (``--rates``
  reads a saved ``gpu_check.json``): the compiled rate where the chapter compiles the run, the per-step floor
  of the run's batch size, the finetune's own rate, the Fréchet distances' CPU time; this is the number the
  README's GPU budget quotes;
* **FLOP-based**: each workload's FLOPs (counted once by torch's ``FlopCounterMode`` on the real networks) at
  an *assumed* sustained throughput (:data:`SUSTAINED_FRACTION` of a dense half-precision peak, the same rule
  ``run_all.sh``'s start line applies to a probed peak), with an assumed floor per optimiser step (small
  batches are launch-bound). It needs no GPU and states its assumptions; use it to size a profile before a GPU
  measurement exists.

Both add what has no FLOPs: compilation, checkpoint writes, the Fréchet distances (CPU) and each chapter's
notebook run and HTML export beyond its workloads (measured by ``bench/notebook_overhead.py``). The table
(:func:`work_table`) names the rate each workload was priced at.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from lib import params as P  # noqa: E402
from lib.profiles import (  # noqa: E402,F401  (re-exported: budget.X for the scripts and tests)
    AUTO_HOURS, DEVICES, PROFILE_ORDER, SITTING_HOURS, SUSTAINED_FRACTION, Device, auto_choice,
    choose_profile, device_key, over_limit, probe_tflops, projected_hours, sustained_tflops, workload_seconds)

CHAPTERS = ("01_supervised", "02_generative", "03_semi_supervised", "04_extras")
TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000
BUDGET_HOURS = 3.0
# One throughput assumption for every FLOP-based projection: a sustained fraction
# (lib.profiles.SUSTAINED_FRACTION) of the device's dense half-precision peak. budget.py's device is an H100
# SXM: 989 TFLOP/s dense BF16 (NVIDIA H100 Tensor Core GPU datasheet, "BF16 Tensor Core 1,979 teraFLOPS" is
# with 2:4 sparsity; dense is half); the H200 has the same tensor cores. run_all.sh's start line applies the
# same fraction to the rate a matmul probe measures on the GPU at hand (start_line), which on an H100 is below
# the datasheet's peak. The devices, the profiles' order and the choice of `auto` live in lib/profiles.py,
# which the notebooks' `auto` shares.
PEAK_TFLOPS = DEVICES["h100"].peak_tflops
ASSUMED_TFLOPS = sustained_tflops(PEAK_TFLOPS)
ASSUMED_STEP_MS = 5.0   # floor per optimiser step in eager PyTorch (hundreds of kernel launches)
# overheads without FLOPs, unless bench/gpu_check.sh measured them on the device:
ASSUMED_COMPILE_S = 60.0  # seconds to compile one module's training graph (forward + backward), cold
ASSUMED_DISK_GB_S = 1.0   # checkpoint write speed (torch.save + fsync + rename), GB/s
# one Fréchet distance: scipy's sqrtm of a 2048 x 2048 product, mostly single-threaded, so from several
# seconds on a server core to tens on a small or busy CPU; bench/gpu_check.sh measures it on the GPU
# machine's CPU
ASSUMED_FRECHET_S = 10.0
ASSUMED_NOTEBOOK_S = 60.0  # a chapter's kernel start, imports, figures and HTML export, without a record
ASSUMED_INDEX_S = 30.0     # the report's index page and report.html after the last chapter, without a record
# bench/notebook_overhead.py's record of those, per chapter (filed by scripts/readme.py record)
NOTEBOOK_RECORD = ROOT / "bench" / "records" / "benches" / "notebook_overhead.json"
# what one checkpoint holds per parameter, in 4-byte slots: weights + optimiser state (+ EMA copy)
SLOTS = {"sgd": 2, "sgd+ema": 3, "adam": 3, "adam+ema": 4}
SSL_KINDS = ("mpl", "uda", "supervised")
# where no compiled rate was measured for a workload, the compile speed-up of the first measured one here
# (the same network first, then the same kind of network); any other measured one after these
SPEEDUP_PROXIES = {"mpl": ("uda", "supervised"), "uda": ("mpl", "supervised"), "supervised": ("uda", "mpl"),
                   "wrn28_2": ("supervised", "uda", "mpl"),
                   "ddpm": ("vae", "dcgan"), "vae": ("dcgan", "ddpm"), "dcgan": ("vae", "ddpm")}


@dataclass
class Work:
    """One workload: ``units`` of ``unit`` (images, steps, image-steps) at the rate named ``rate`` (units/s),
    ``flops`` per unit, the optimiser ``steps`` it takes (0 for inference) at ``batch`` images per step, and
    whether its chapter compiles it on CUDA (``compiled``)."""

    chapter: str
    name: str
    units: float
    unit: str
    rate: str
    flops: str
    steps: float = 0.0
    batch: int = 0
    compiled: bool = False


def compiles(p: dict, steps: float) -> bool:
    """Whether a run of ``steps`` optimiser steps compiles on CUDA under its chapter's rule (compile
    ``auto``: at least ``compile_min_steps`` steps; see lib.train.resolve_compile)."""
    if isinstance(p["compile"], bool):
        return p["compile"]
    return steps >= p["compile_min_steps"]


@functools.lru_cache(maxsize=None)
def parameters(name: str) -> int:
    """Parameters of a registered model, a chapter-2 generator (``gen:<kind>``, full profile) or the
    chapter-3 WRN at full width."""
    from lib.models import build_model, count_parameters

    if name.startswith("gen:"):
        from lib.chapters import generative

        kind = name[4:]
        s = generative.generator_settings(kind, P.load("02_generative", "full"))
        return generative.build_method(kind, s, total_steps=10, seed=0)[1]
    return count_parameters(build_model(name, width=1.0))


def overheads(chapter: str, run: str, p: dict, *, model: str, steps: float, evals: float,
              eval_images: float, ckpt_params: str, slots: int, modules: int = 1,
              workload: str = "") -> list[Work]:
    """The costs of one training run besides its steps: ``evals`` evaluations of ``eval_images``
    forward passes each (validation, and the test once, counted in by the caller), a checkpoint
    (``last.pt``, and ``best.pt`` when it improved: at most two) per evaluation, and, when the run
    compiles under its chapter's rule, one graph per compiled module of ``workload`` (default ``model``)."""
    out = [Work(chapter, f"{run}: evaluation", evals * eval_images, "images", f"eval:{model}",
                f"fwd:{model}")] if eval_images else []
    gb = (2 * evals + 1) * parameters(ckpt_params) * 4 * slots / 1e9
    out.append(Work(chapter, f"{run}: checkpoint writes", gb, "GB", "disk", ""))
    if compiles(p, steps):
        out.append(Work(chapter, f"{run}: compilation", modules, "graphs", f"compile:{workload or model}",
                        ""))
    return out


def frechet_count(p2: dict) -> int:
    """Fréchet distances chapter 2 computes (each a 2048 x 2048 matrix square root on the CPU): the FID
    table's training floor (twice: its row and the floor column) and test floor, one per FID-scored sample
    (VAE, DCGAN, DDPM with DDIM, the ancestral sample when it has ``fid_images``), each DCGAN snapshot
    and each DDIM setting compared besides the main one (lib.chapters.generative.fid_table,
    generative_select.choose_snapshot and ddim_comparison)."""
    return 3 + scored_samples(p2)


def compared_ddim(p2: dict) -> set[tuple]:
    """The DDIM (spacing, steps) settings sampled besides the main one (which reuses its samples)."""
    main = (p2["ddpm_ddim_spacing"], p2["ddpm_ddim_steps"])
    return {tuple(pair) for pair in p2["ddpm_ddim_compare"]} - {main}


def scored_samples(p2: dict) -> int:
    """Generated samples of ``fid_images`` each that chapter 2 FID-scores: VAE, DCGAN, DDPM-DDIM (+
    ancestral when it draws ``fid_images``), the DCGAN snapshots and the other DDIM settings."""
    return (3 + (p2["ddpm_ancestral_images"] >= p2["fid_images"]) + p2["dcgan_snapshots"]
            + len(compared_ddim(p2)))


# the settings that shape each generator's network: a profile that changes one is priced at its own FLOPs
GENERATOR_SHAPE = {"vae": ("vae_latent", "vae_width", "vae_conditional"),
                   "dcgan": ("dcgan_nz", "dcgan_width"),
                   "ddpm": ("ddpm_channels", "ddpm_multipliers", "ddpm_layers_per_block",
                            "ddpm_attention_resolutions")}


def generator_variant(kind: str, profile: str) -> str:
    """The FLOP-key suffix of ``kind``'s network under ``profile``: "" where it is the full profile's network,
    else ``@<profile>`` (:func:`count_flops` counts each such network)."""
    p, full = P.load("02_generative", profile), P.load("02_generative", "full")
    return "" if all(p[k] == full[k] for k in GENERATOR_SHAPE[kind]) else f"@{profile}"


def profile_work(profile: str = "full") -> list[Work]:
    """Every costly workload of ``profile``, from its params files: training and sampling, each
    run's evaluation, checkpoint writes and compilation (:func:`overheads`), chapter 2's Fréchet
    distances and every chapter's notebook run and export."""
    from lib.chapters import generative, semi_supervised, supervised

    p1, p2, p3 = (P.load(c, profile) for c in CHAPTERS[:3])
    work: list[Work] = []

    def train_images(p):
        return (p["train_subset"] or TRAIN_IMAGES) - p["val_size"]

    def val_images(p):
        return p["val_size"] if p["train_subset"] == 0 else min(p["val_size"], p["train_subset"])

    def test_images(p):
        return p["test_subset"] or TEST_IMAGES

    def classifier(ch, run, p, model, epochs, images, batch, tta, *, rate=None, eval_model=None):
        steps = epochs * (images // batch)  # the training loader's full batches, as the chapters run
        work.append(Work(ch, run, epochs * images, "images", rate or f"train:{model}",
                         rate or f"train:{model}", steps, batch, compiles(p, steps)))
        views = 2 if tta else 1  # flip TTA: the image and its mirror
        evals = epochs  # one validation pass per epoch
        work.extend(overheads(ch, run, p, model=eval_model or model, steps=steps, evals=evals,
                              eval_images=views * val_images(p), ckpt_params=model, slots=SLOTS["sgd"],
                              workload=model))
        work.append(Work(ch, f"{run}: test", views * test_images(p), "images",
                         f"eval:{eval_model or model}", f"fwd:{eval_model or model}"))

    ch = "01_supervised"
    n1 = train_images(p1)
    rec = p1["recipe"]
    for m in [*p1["models"], *p1["activation_map_models"]]:
        classifier(ch, f"train {m}", p1, m, supervised.model_epochs(p1, m), n1, p1[f"{rec}_batch_size"],
                   p1[f"{rec}_flip_tta"])
    for m in p1["models"]:  # the accuracy table's models again with each other training seed
        for s in supervised.training_seeds(p1)[1:]:
            classifier(ch, f"train {m} seed {s}", p1, m, supervised.model_epochs(p1, m), n1,
                       p1[f"{rec}_batch_size"], p1[f"{rec}_flip_tta"])
    for m in p1["pretrained_models"]:  # fine-tuned at 224 px
        classifier(ch, f"fine-tune pretrained {m} at 224 px", p1, m, p1["pretrained_epochs"], n1,
                   p1["finetune_batch_size"], p1["finetune_flip_tta"], rate=f"train:{m}@224",
                   eval_model=f"{m}@224")
    if p1["recipe_baseline"]:
        other = "presented" if rec == "strong" else "strong"
        classifier(ch, f"train resnet18 ({other} recipe)", p1, "resnet18",
                   supervised.model_epochs(p1, "resnet18"), n1, p1[f"{other}_batch_size"],
                   p1[f"{other}_flip_tta"])
    n_sweep = p1["sweep_train_subset"] or n1
    sweep_p = {**p1, "compile": p1["sweep_compile"]}
    for b in p1["sweep_batch_sizes"]:
        for lr in p1["sweep_lrs"]:
            classifier(ch, f"sweep cell b{b} lr{lr:g}", sweep_p, p1["sweep_model"], p1["sweep_epochs"],
                       n_sweep, b, False)

    ch = "02_generative"
    n2 = train_images(p2)
    for kind in ("vae", "dcgan", "ddpm"):
        s = generative.generator_settings(kind, p2)
        units = s["epochs"] * n2
        steps = generative.training_steps(s, n2)  # the chapter's own count: full batches
        work.append(Work(ch, f"train {kind}", units, "images", f"train:{kind}",
                         f"train:{kind}{generator_variant(kind, profile)}", steps,
                         s["batch_size"], compiles(p2, steps)))
        every = s.get("eval_every_epochs", s.get("checkpoint_every_epochs", 1))
        evals = s["epochs"] / every
        work.extend(overheads(ch, f"train {kind}", p2, model=kind, steps=steps, evals=evals,
                              eval_images=val_images(p2) if kind == "vae" else 0, ckpt_params=f"gen:{kind}",
                              slots=SLOTS["adam+ema" if kind == "ddpm" else "adam"],
                              # DCGAN: the generator, and the discriminator's three graphs (real images,
                              # detached fakes, fakes with gradients: tests/test_compile_modules.py)
                              modules=4 if kind == "dcgan" else 1))
    n_fid, unet = p2["fid_images"], f"unet_forward{generator_variant('ddpm', profile)}"
    work.append(Work(ch, f"DDPM DDIM sampling ({n_fid} images)", n_fid * p2["ddpm_ddim_steps"],
                     "image-steps", "unet_forward", unet))
    work.append(Work(ch, f"DDPM ancestral sampling ({p2['ddpm_ancestral_images']} images)",
                     p2["ddpm_ancestral_images"] * p2["ddpm_ancestral_steps"], "image-steps", "unet_forward",
                     unet))
    compared = compared_ddim(p2)
    work.append(Work(ch, f"DDIM spacing comparison ({len(compared)} more settings x {n_fid} images)",
                     n_fid * sum(steps for _, steps in compared), "image-steps", "unet_forward", unet))
    for source, images in (("real", n2), ("reconstructions", n2), ("real + reconstructions", 2 * n2)):
        classifier(ch, f"2.2 classifier ({source})", p2, p2["classifier_model"], p2["classifier_epochs"],
                   images, p2["classifier_batch_size"], p2["classifier_flip_tta"])
    # the reference statistics, the two floors and every scored sample
    fid_images = (p2["fid_reference_images"] or TRAIN_IMAGES) + 2 * n_fid + scored_samples(p2) * n_fid
    work.append(Work(ch, "FID Inception features", fid_images, "images", "inception", "inception"))
    work.append(Work(ch, "FID Fréchet distances (CPU)", frechet_count(p2), "distances", "fid_cpu", ""))

    ch = "03_semi_supervised"
    slots3 = {"mpl": 2 * SLOTS["sgd"] + 1, "uda": SLOTS["sgd+ema"], "supervised": SLOTS["sgd+ema"]}
    seeds3 = semi_supervised.training_seeds(p3)
    for kind, run in [(k, f"train {k}{f' seed {s}' if s != seeds3[0] else ''}")  # each training seed
                      for k in SSL_KINDS for s in seeds3]:
        steps = semi_supervised.steps_of(kind, p3)
        work.append(Work(ch, run, steps, "steps", f"ssl:{kind}", f"ssl:{kind}", steps,
                         p3["batch_size"], compiles(p3, steps)))
        work.extend(overheads(ch, run, p3, model="wrn28_2", steps=steps,
                              evals=steps / p3["eval_every"], eval_images=p3["val_size"],
                              ckpt_params="wrn28_2", slots=slots3[kind], modules=2 if kind == "mpl" else 1,
                              workload=kind))
        work.append(Work(ch, f"{run}: test", test_images(p3), "images", "eval:wrn28_2", "fwd:wrn28_2"))
    ft = p3["finetune_epochs"] * p3["labelled_size"]
    ft_steps = p3["finetune_epochs"] * -(-p3["labelled_size"] // p3["finetune_batch_size"])
    work.append(Work(ch, "MPL finetune", ft, "images", "train:wrn28_2", "train:wrn28_2", ft_steps,
                     p3["finetune_batch_size"], compiles(p3, ft_steps)))
    work.extend(overheads(ch, "MPL finetune", p3, model="wrn28_2", steps=ft_steps,
                          evals=p3["finetune_epochs"] / p3["finetune_eval_every_epochs"],
                          eval_images=p3["val_size"], ckpt_params="wrn28_2", slots=SLOTS["sgd"],
                          workload="finetune"))

    work.append(Work("04_extras", "embed gallery + queries", TRAIN_IMAGES + TEST_IMAGES, "images",
                     "embed:resnet18", "embed:resnet18"))
    for ch in CHAPTERS:
        work.append(Work(ch, f"{ch} notebook + HTML export (beyond its workloads)", 1, "chapters",
                         f"notebook:{ch}", ""))
    work.append(Work("04_extras", "report: index page + report.html", 1, "reports", "notebook:report", ""))
    return work


class Rates(dict):
    """Units per second by ``Work.rate`` name (a plain dict of floats), with where each came from
    (``source``), each compiled workload's graph count (``graphs``) and each model's measured eager seconds
    per optimiser step by batch size (``floors``)."""

    def __init__(self):
        super().__init__()
        self.source: dict[str, str] = {}
        self.graphs: dict[str, float] = {}
        self.floors: dict[str, dict[int, float]] = {}
        self.speedup: dict[str, float] = {}  # by eager rate name: its compiled rate over it

    def put(self, key: str, per_s: float, source: str) -> None:
        self[key], self.source[key] = float(per_s), source


def _number(d: dict, key: str) -> float | None:
    v = (d or {}).get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None


def _unit_key(workload: str) -> str:
    """The ``Work.rate`` name of a workload the device check compiles."""
    return f"ssl:{workload}" if workload in SSL_KINDS else f"train:{workload}"


def _compiled_rates(gpu_check: dict, rates: Rates, full_ssl_batch: int) -> None:
    """``<rate>@compiled`` for every workload: measured (``compiled`` section), else its eager rate times the
    compile speed-up of the closest measured workload (:data:`SPEEDUP_PROXIES`); each workload's compile
    seconds per graph (``compile:<workload>``) and graph count where measured."""
    measured: dict[str, float] = {}  # compile speed-up by workload
    for w, m in (gpu_check.get("compiled") or {}).items():
        if not isinstance(m, dict) or m.get("error"):
            continue
        eager, comp = _number(m, "eager_s_per_step"), _number(m, "compiled_s_per_step")
        batch = _number(m, "batch")
        if comp and batch:
            # SSL rates count steps at the full profile's labelled batch; the others images
            per_s = (batch / full_ssl_batch if w in SSL_KINDS else batch) / comp
            rates.put(f"{_unit_key(w)}@compiled", per_s, "measured compiled")
            if eager:
                measured[w] = rates.speedup[_unit_key(w)] = eager / comp
        if _number(m, "compile_s"):
            rates.put(f"compile:{w}", 1 / m["compile_s"], "measured")
        if _number(m, "graphs"):
            rates.graphs[w] = m["graphs"]
    for key in [k for k in rates if k.startswith(("train:", "ssl:")) and "@" not in k]:
        w = key.split(":", 1)[1]
        order = [*SPEEDUP_PROXIES.get(w, ("resnet18",)), *sorted(measured)]
        proxy = next((p for p in order if p in measured), None)
        if f"{key}@compiled" not in rates and proxy:
            rates.put(f"{key}@compiled", rates[key] * measured[proxy],
                      f"measured eager x compile speed-up ({proxy} {measured[proxy]:.2f}x)")
            rates.speedup[key] = measured[proxy]


def unit_rates(gpu_check: dict, *, notebook_record: Path | None = None) -> Rates:
    """Units per second for each ``Work.rate`` name, from the results of ``bench/gpu_check.py``: eager rates,
    compiled ones (``<name>@compiled``), per-step floors, the finetune's step, the Fréchet distance's CPU
    time, and :func:`overhead_rates` for what it did not measure."""
    rates = Rates()
    for name, ips in (gpu_check.get("classifiers") or {}).items():
        if isinstance(ips, (int, float)):
            rates.put(f"train:{name}", ips, "measured eager")
    for kind in ("vae", "dcgan", "ddpm"):
        if _number(gpu_check.get(kind), "images_per_s"):
            rates.put(f"train:{kind}", gpu_check[kind]["images_per_s"], "measured eager")
    if _number(gpu_check.get("ddpm"), "s_per_image_step"):
        rates.put("unet_forward", 1 / gpu_check["ddpm"]["s_per_image_step"], "measured eager")
    mpl = gpu_check.get("mpl") or {}
    full_ssl_batch = P.load("03_semi_supervised", "full")["batch_size"]
    # a CPU check measures a reduced labelled batch (same unlabelled ratio): time grows linearly with the
    # batch there
    scale = mpl.get("labelled_batch", 1) / full_ssl_batch
    for kind in SSL_KINDS:
        sec = _number(mpl, f"{kind}_s_per_step")
        if sec:
            rates.put(f"ssl:{kind}", scale / sec, "measured eager")
    ft = gpu_check.get("finetune") or {}
    if _number(ft, "s_per_step") and _number(ft, "batch"):  # the finetune's own classifier step
        rates.put("train:wrn28_2", ft["batch"] / ft["s_per_step"], "measured eager")
    elif "ssl:supervised" in rates:  # older checks: the supervised SSL step's labelled images per second
        rates.put("train:wrn28_2", mpl["labelled_batch"] / mpl["supervised_s_per_step"],
                  "measured eager (supervised SSL step)")
    if _number(gpu_check.get("inception"), "images_per_s"):
        rates.put("inception", gpu_check["inception"]["images_per_s"], "measured eager")
    # evaluation: a forward pass is about a third of a training step
    for k in [k for k in rates if k.startswith("train:")]:
        rates.put("eval:" + k[6:], 3 * rates[k], "measured eager, forward = 1/3 step")
    if "eval:resnet18" in rates:
        rates.put("embed:resnet18", rates["eval:resnet18"], rates.source["eval:resnet18"])
    _compiled_rates(gpu_check, rates, full_ssl_batch)
    for model, by_batch in (gpu_check.get("step_floor") or {}).items():
        if not isinstance(by_batch, dict):  # the section's "skipped" or "error" line
            continue
        points = {int(b): float(s) for b, s in by_batch.items() if _number(by_batch, b)}
        if points:
            rates.floors[model] = dict(sorted(points.items()))
    fixed = overhead_rates(gpu_check, notebook_record=notebook_record)
    for k, v in fixed.items():
        rates.put(k, v, fixed.source[k])
    return rates


def notebook_seconds(record_path: Path | None = None) -> tuple[dict[str, float], str]:
    """Seconds each chapter's notebook run and export take beyond its workloads (key ``report``: the index
    page and report.html), from ``bench/notebook_overhead.py``'s record, and where they came from; without a
    record, :data:`ASSUMED_NOTEBOOK_S` per chapter and :data:`ASSUMED_INDEX_S`."""
    path = Path(record_path or NOTEBOOK_RECORD)
    if path.is_file():
        rec = json.loads(path.read_text())
        seconds = rec.get("overhead_s") or {}
        if all(isinstance(seconds.get(ch), (int, float)) for ch in (*CHAPTERS, "report")):
            return ({k: max(0.0, float(v)) for k, v in seconds.items()},
                    f"measured ({rec.get('profile', '?')} re-run, {record_machine(rec)})")
    return ({**{ch: ASSUMED_NOTEBOOK_S for ch in CHAPTERS}, "report": ASSUMED_INDEX_S},
            f"assumed {ASSUMED_NOTEBOOK_S:g} s per chapter, {ASSUMED_INDEX_S:g} s the index")


def record_machine(rec: dict) -> str:
    """A bench record's machine in a few words."""
    m = rec.get("machine") or {}
    return m.get("gpu") or f"CPU, {m.get('cores', '?')} cores"


def overhead_rates(gpu_check: dict | None = None, *, notebook_record: Path | None = None) -> Rates:
    """Compilations per second, checkpoint GB per second, Fréchet distances per second (CPU) and notebook
    runs per second, each measured when the device check (or bench/notebook_overhead.py's record) got that
    far, else :data:`ASSUMED_COMPILE_S`, :data:`ASSUMED_DISK_GB_S`, :data:`ASSUMED_FRECHET_S` and
    :data:`ASSUMED_NOTEBOOK_S`."""
    gpu_check = gpu_check or {}
    out = Rates()
    out.put("compile", 1 / ASSUMED_COMPILE_S, f"assumed {ASSUMED_COMPILE_S:g} s per graph")
    gb_s = _number(gpu_check.get("disk"), "gb_per_s")
    out.put("disk", gb_s or ASSUMED_DISK_GB_S, "measured" if gb_s else f"assumed {ASSUMED_DISK_GB_S:g} GB/s")
    frechet = _number(gpu_check.get("fid_cpu"), "frechet_s")
    out.put("fid_cpu", 1 / (frechet or ASSUMED_FRECHET_S),
            "measured" if frechet else f"assumed {ASSUMED_FRECHET_S:g} s per distance")
    seconds, source = notebook_seconds(notebook_record)
    for key, sec in seconds.items():
        out.put(f"notebook:{key}", 1 / sec if sec > 0 else float("inf"), source)
    return out


def step_floor(points: dict[int, float], batch: int) -> float:
    """Eager seconds per optimiser step at ``batch`` from the measured ``{batch: seconds}``: linear in the
    batch size between measured sizes (a step's time is a fixed launch cost plus a per-image cost); below the
    smallest measured size that size's time (a launch-bound step gets no faster with fewer images); above the
    largest, the last segment's per-image slope extended (one measured size: proportional to the batch)."""
    sizes = sorted(points)
    if batch <= sizes[0]:
        return points[sizes[0]]
    for lo, hi in zip(sizes, sizes[1:]):
        if batch <= hi:
            return points[lo] + (points[hi] - points[lo]) * (batch - lo) / (hi - lo)
    if len(sizes) == 1:
        return points[sizes[0]] * batch / sizes[0]
    lo, hi = sizes[-2], sizes[-1]
    return points[hi] + (points[hi] - points[lo]) * (batch - hi) / (hi - lo)


def price(w: Work, rates: dict) -> tuple[float, str] | None:
    """Seconds of workload ``w`` at ``rates`` (:func:`unit_rates`; a plain dict is read as eager rates) and
    the rate it used, or None without one. A run its chapter compiles takes the compiled rate when there is
    one; a training run at a batch size with a measured floor takes at least ``steps x floor(batch)``
    (compiled: the floor times the workload's compile speed-up); compilation costs the workload's graphs x
    its seconds per graph."""
    source = getattr(rates, "source", {})
    # compilation: measured graphs and seconds per graph of this workload, else assumed
    if w.unit == "graphs":
        workload = w.rate.split(":", 1)[1] if ":" in w.rate else ""
        graphs = getattr(rates, "graphs", {}).get(workload, w.units)
        key = w.rate if w.rate in rates else "compile"
        if key not in rates:
            return None
        return graphs / rates[key], source.get(key, "measured")
    key = w.rate
    compiled = w.compiled and f"{key}@compiled" in rates
    if compiled:
        key = f"{key}@compiled"
    if not rates.get(key, 0) > 0:
        return None
    seconds, used = w.units / rates[key], source.get(key, "measured eager")
    if w.compiled and not compiled:
        used += " (the run compiles; no compile speed-up measured)"
    points = getattr(rates, "floors", {}).get(w.rate.partition(":")[2])
    if points and w.steps and w.batch:
        floor = step_floor(points, w.batch)
        if compiled:  # the floor shrinks by the compile speed-up of this workload (at its measured batch)
            floor /= getattr(rates, "speedup", {}).get(w.rate, 1.0)
        if w.steps * floor > seconds:
            seconds, used = w.steps * floor, "step floor" + (" x compile speed-up" if compiled else "")
    return seconds, used


def conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                       _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """FLOPs of ``aten.convolution_backward``: each gradient asked for (input, weight) costs what the forward
    did, 2 x images x output positions x weights (a transposed convolution: input positions). torch's own
    formula counts a grouped convolution's weight gradient ``groups`` times over (a depthwise 3x3 conv with 32
    channels: backward 33x its forward, not 2x), which made EfficientNet's training step ~41x its forward."""
    from math import prod

    positions = prod((x_shape if transposed else grad_out_shape)[2:])
    return sum(map(bool, output_mask[:2])) * 2 * x_shape[0] * positions * prod(w_shape)


def flop_counter():
    """``FlopCounterMode`` with :func:`conv_backward_flop` for the convolutions' backward pass."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(display=False,
                           custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flop})


def count_flops(*, mpl_labelled_batch: int = 128, mpl_mu: int = 7) -> dict[str, float]:
    """FLOPs per unit of every ``Work.flops`` name, counted by ``torch.utils.flop_counter`` on the real
    (full-width) networks at batch 2 on the CPU and scaled linearly (a few seconds); chapter 2's generators
    also as each profile shapes them (:func:`generator_variant`)."""
    import torch
    import torch.nn.functional as F

    from lib import data as D
    from lib.chapters import generative, semi_supervised
    from lib.models import MODELS, build_model

    def count(fn) -> float:
        with flop_counter() as fc:
            fn()
        return float(fc.get_total_flops())

    cpu = torch.device("cpu")
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    out: dict[str, float] = {}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        def classifier(key, model):
            out[f"train:{key}"] = count(lambda: F.cross_entropy(model(x), y).backward()) / 2
            with torch.no_grad():
                out[f"fwd:{key}"] = count(lambda: model.eval()(x)) / 2
            model.train()

        for name in sorted(MODELS):
            classifier(name, build_model(name, width=1.0))
        out["embed:resnet18"] = out["fwd:resnet18"]
        # pretrained shape, random weights
        classifier("efficientnet_b0@224", build_model("efficientnet_b0", resize_to=224))
        for kind, profile in itertools.product(("vae", "dcgan", "ddpm"), ("full", *PROFILE_ORDER)):
            v = generator_variant(kind, profile)  # each profile's own network where it differs from full's
            if f"train:{kind}{v}" in out:
                continue
            p2 = P.load("02_generative", profile)
            method, _ = generative.build_method(kind, generative.generator_settings(kind, p2), total_steps=10,
                                                seed=0)
            method.setup(cpu, None)
            out[f"train:{kind}{v}"] = count(lambda: method.train_step((x.clamp(-1, 1), y))) / 2
            out[f"fwd:{kind}{v}"] = out[f"train:{kind}{v}"] / 3  # a forward pass: about a third of a step
            if kind == "ddpm":
                with torch.no_grad():
                    t = torch.tensor([10, 500])
                    out[f"unet_forward{v}"] = count(lambda: method.ema.module(x, t).sample) / 2
        # MPL, UDA and supervised steps at labelled batch 2 (unlabelled 2 * mu), scaled to the presented batch
        p3 = P.load("03_semi_supervised", "full", {"batch_size": 2, "mu": mpl_mu})
        ds = D.make_synthetic(64, 10)
        for kind in ("mpl", "uda", "supervised"):
            method = semi_supervised.build_method(kind, p3, total_steps=10)
            method.setup(cpu, None)
            batch = next(semi_supervised.ssl_batches(ds.train_x[:16], ds.train_y[:16], ds.train_x[16:], p3,
                                                     cpu, unlabelled=kind != "supervised").forever())
            out[f"ssl:{kind}"] = count(lambda: method.train_step(batch)) * mpl_labelled_batch / 2
        from torchvision.models import (
            inception_v3,  # same layers as pytorch-fid's network, without its weights
        )

        net = inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
        with torch.no_grad():
            out["inception"] = count(lambda: net(F.interpolate(x, size=(299, 299), mode="bilinear"))) / 2
    return out


def project(work: list[Work], rates: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """Seconds per chapter (and ``total``) from measured rates (:func:`price`); the names of workloads with
    no rate."""
    out = {ch: 0.0 for ch in CHAPTERS}
    missing = []
    for w in work:
        priced = price(w, rates)
        if priced:
            out[w.chapter] += priced[0]
        else:
            missing.append(w.name)
    out["total"] = sum(out.values())
    return out, missing


def flop_price(w: Work, flops: dict[str, float], *, tflops: float = ASSUMED_TFLOPS,
               step_ms: float = ASSUMED_STEP_MS, fixed: dict | None = None) -> tuple[float, str]:
    """Seconds of workload ``w`` if it ran at ``tflops`` sustained but no optimiser step faster than
    ``step_ms`` (what has no FLOPs: at ``fixed``, default :func:`overhead_rates`), and the rate it used."""
    if not w.flops:  # compilation, checkpoints, Fréchet distances, notebooks: their own (assumed) rates
        return price(w, fixed if fixed is not None else overhead_rates())
    f, floor = w.units * flops.get(w.flops, 0.0), w.steps * step_ms / 1e3
    seconds = workload_seconds(f, floor, tflops)
    if floor > f / (tflops * 1e12):
        return seconds, f"assumed step floor {step_ms:g} ms"
    return seconds, f"FLOP-based at {tflops:.3g} TFLOP/s"


def flop_estimate(work: list[Work], flops: dict[str, float], *, tflops: float = ASSUMED_TFLOPS,
                  step_ms: float = ASSUMED_STEP_MS, notebook_record: Path | None = None) -> dict[str, float]:
    """Seconds per chapter (and ``total``) if every workload ran at ``tflops`` sustained, but no optimiser
    step faster than ``step_ms`` (:func:`flop_price`); plus ``pflop`` per chapter under
    ``<chapter>_pflop``."""
    out = {ch: 0.0 for ch in CHAPTERS}
    pf = {f"{ch}_pflop": 0.0 for ch in CHAPTERS}
    fixed = overhead_rates(notebook_record=notebook_record)
    for w in work:
        out[w.chapter] += flop_price(w, flops, tflops=tflops, step_ms=step_ms, fixed=fixed)[0]
        pf[f"{w.chapter}_pflop"] += w.units * flops.get(w.flops, 0.0) / 1e15 if w.flops else 0.0
    out["total"] = sum(out.values())
    return {**out, **pf}


def run_seconds(work: list[Work], flops: dict[str, float], *, tflops: float = ASSUMED_TFLOPS,
                step_ms: float = ASSUMED_STEP_MS) -> dict[str, float]:
    """FLOP-based seconds (:func:`flop_price`) of each workload with what belongs to it: ``train
    resnet18`` sums its training, ``train resnet18: evaluation``, ``: test``, ``: checkpoint writes``
    and ``: compilation``. The chapters' plans price their runs by these names."""
    fixed, out = overhead_rates(), {}
    for w in work:
        name = w.name.split(": ", 1)[0]
        out[name] = out.get(name, 0.0) + flop_price(w, flops, tflops=tflops, step_ms=step_ms, fixed=fixed)[0]
    return out


def saved_flops() -> dict[str, float]:
    """FLOPs per unit as a device check saved them (``outputs/bench/gpu_check.json``, else the committed
    record), so a launch need not count them again; counted (:func:`count_flops`) when neither has them."""
    saved = ROOT / "outputs" / "bench" / "gpu_check.json"
    for path in (saved, ROOT / "bench" / "records" / "benches" / "gpu_check.json"):
        flops = json.loads(path.read_text()).get("flops") if path.is_file() else None
        if isinstance(flops, dict) and flops and "error" not in flops:
            return flops
    return count_flops()


def gpus_table(profile: str, ranks: list[int], *, only: str = "", efficiency: float | None = None):
    """The plan of ``profile`` (lib.train.launch.build_plan) scheduled as the launcher schedules it
    (lib.train.schedule: longest chain first, each free rank takes the next run) on each of ``ranks``: the
    training makespan, the speed-up over one rank, and the rest of the profile (sampling, FID, notebooks),
    which the notebooks run on one process afterwards. FLOP-based (:func:`run_seconds`). Returns (table, the
    schedules by rank count, each run's seconds)."""
    import pandas as pd

    from lib.train import launch, schedule

    efficiency = schedule.DATA_PARALLEL_EFFICIENCY if efficiency is None else efficiency
    runs = launch.build_plan(profile, only=only)
    work = [w for w in profile_work(profile) if not only or w.chapter in launch.chapters(only)]
    by_work = run_seconds(work, saved_flops())
    seconds = launch.estimated_seconds(runs, by_work)
    rest = sum(by_work.values()) - sum(by_work[w] for w in {r.work for r in runs})

    def schedules(plan):
        ordered = schedule.order(plan, seconds)
        return {n: schedule.simulate(ordered, seconds, n, efficiency=efficiency) for n in sorted({1, *ranks})}

    alone = schedules([dataclasses.replace(r, data_parallel=False) for r in runs])
    together = schedules(runs) if any(r.data_parallel for r in runs) else None
    plans = together or alone
    rows = []
    for n in ranks:
        row = {"ranks": n, "training makespan (h)": round(plans[n].makespan / 3600, 3),
               "speed-up": round(plans[1].makespan / plans[n].makespan, 2) if plans[n].makespan else 1.0}
        if together:
            row["data-parallel runs on one rank (h)"] = round(alone[n].makespan / 3600, 3)
            row["on all ranks (h)"] = round(together[n].makespan / 3600, 3)
        row["then notebooks etc. (h)"] = round(rest / 3600, 3)
        row["total (h)"] = round((plans[n].makespan + rest) / 3600, 3)
        rows.append(row)
    return pd.DataFrame(rows), {n: plans[n] for n in ranks}, seconds


def work_table(work: list[Work], rates: dict[str, float] | None = None, flops: dict[str, float] | None = None,
               *, tflops: float = ASSUMED_TFLOPS, step_ms: float = ASSUMED_STEP_MS):
    """One row per workload: its count, optimiser steps at its batch, whether it compiles, FLOPs and projected
    seconds with the rate they used: measured (with ``rates``; then also the FLOP-based seconds when ``flops``
    are given) or FLOP-based (``flops`` only)."""
    import pandas as pd

    fixed = overhead_rates()
    rows = []
    for w in work:
        row = {"chapter": w.chapter, "workload": w.name, "count": round(w.units), "unit": w.unit,
               "optimiser steps": round(w.steps), "batch": w.batch or "",
               "compiles": "yes" if w.compiled else ""}
        if flops:
            row["PFLOP"] = round(w.units * flops.get(w.flops, 0.0) / 1e15, 2) if w.flops else 0.0
            sec, how = flop_price(w, flops, tflops=tflops, step_ms=step_ms, fixed=fixed)
            if rates is None:
                row["projected s"], row["rate source"] = round(sec, 1), how
            else:
                row["FLOP-based s"] = round(sec, 1)
        if rates is not None:
            priced = price(w, rates)
            sec, how = priced or (None, "none")
            row["projected s"], row["rate source"] = round(sec, 1) if priced else None, how
        rows.append(row)
    return pd.DataFrame(rows)


def chapter_units(work: list[Work]) -> dict[str, float]:
    """Every chapter's summed work units: a fingerprint of the params a projection was made for."""
    return {ch: round(sum(w.units for w in work if w.chapter == ch), 3) for ch in CHAPTERS}


def describe(profile: str = "full") -> dict[str, str]:
    """What each chapter of ``profile`` trains and samples, in words, from its params files."""
    from lib.chapters import semi_supervised, supervised
    from lib.report.targets import ddpm_steps

    p1, p2, p3 = (P.load(c, profile) for c in CHAPTERS[:3])
    models = len(p1["models"]) + len(p1["activation_map_models"])
    cut = f" with Cutout-{p1['strong_cutout']}" if p1["strong_cutout"] else ""
    seeds = len(supervised.training_seeds(p1))
    seeds3 = semi_supervised.training_seeds(p3)
    d1 = (f"{models} models x {supervised.epochs_text(p1)} epochs ({p1['recipe']} recipe{cut})"
          + (f", the {len(p1['models'])} table models with {seeds - 1} more seeds" if seeds > 1 else "")
          + (", ResNet-18 with the other recipe" if p1["recipe_baseline"] else "")
          + f", {len(p1['sweep_batch_sizes']) * len(p1['sweep_lrs'])} sweep cells x {p1['sweep_epochs']} "
          "epochs"
          + "".join(f", pretrained {m} {p1['pretrained_epochs']} epochs at 224 px"
                    for m in p1["pretrained_models"]))
    d2 = (f"VAE {p2['vae_epochs']} / DCGAN {p2['dcgan_epochs']} / DDPM {p2['ddpm_epochs']:g} epochs "
          f"({ddpm_steps(p2):,} steps); {p2['fid_images']:,} DDIM-{p2['ddpm_ddim_steps']} samples and "
          f"{len(p2['ddpm_ddim_compare']) - 1} other DDIM settings, {p2['ddpm_ancestral_images']:,} "
          f"ancestral (timing); {p2['dcgan_snapshots']} DCGAN snapshots FID-scored; three 2.2 classifiers x "
          f"{p2['classifier_epochs']} epochs; Inception features for FID")
    d3 = (f"MPL {semi_supervised.steps_of('mpl', p3):,} steps, UDA and supervised {p3['total_steps']:,} "
          f"each, at labelled {p3['batch_size']} + unlabelled {p3['batch_size'] * p3['mu']}; finetune "
          f"{p3['finetune_epochs']} epochs"
          + (f"; MPL, UDA and supervised with {len(seeds3) - 1} more seeds" if len(seeds3) > 1 else ""))
    return {"01_supervised": d1, "02_generative": d2, "03_semi_supervised": d3,
            "04_extras": "embeddings of 60,000 images"}


def record_budget(profile: str, flops: dict, tflops: tuple[float, ...] = (ASSUMED_TFLOPS, 60.0)) -> Path:
    """Save the profile's FLOP-based projection at each assumed throughput as the bench record ``budget``
    (what the README's GPU-budget section is generated from)."""
    import record

    work = profile_work(profile)
    hours = []
    for tf in tflops:
        est = flop_estimate(work, flops, tflops=tf)  # PFLOP are the same at every throughput
        hours.append({"tflops": tf, **{ch: round(est[ch] / 3600, 2) for ch in (*CHAPTERS, "total")}})
    pflop = {ch: round(est[f"{ch}_pflop"], 1) for ch in CHAPTERS}
    units = chapter_units(work)
    summary = (f"profile {profile}: "
               + ", ".join(f"{h['total']:.2f} h at {h['tflops']:g} TFLOP/s" for h in hours)
               + f" (FLOP-based, {sum(pflop.values()):.0f} PFLOP, overheads included)")
    rows = [{"chapter": ch, "trains": describe(profile)[ch], "PFLOP": pflop[ch],
             **{f"h at {h['tflops']:g} TFLOP/s": h[ch] for h in hours}} for ch in CHAPTERS]
    notebooks = notebook_seconds()[1]  # measured (bench/notebook_overhead.py's record) or assumed
    return record.save("budget", rows, summary,
                       extra={profile: {"hours": hours, "pflop": pflop, "units": units,
                                        "notebooks": notebooks}})


def start_line(profile: str, device_name: str, *, flops: dict, peak_tflops: float | None = None,
               measured: dict | None = None) -> str:
    """What ``run_all.sh`` prints before a GPU run: the profile's projected wall time on this GPU, from a
    device check measured on the same GPU when one is saved, else from the FLOP count at
    :data:`SUSTAINED_FRACTION` of the probed peak."""
    work = profile_work(profile)
    if measured and measured.get("device") == device_name:
        proj, missing = project(work, unit_rates(measured))
        how = "from bench/gpu_check.sh's rates measured on this GPU"
        if missing:
            how += f" (no rate for {len(missing)} workloads, left out)"
        hours = proj["total"] / 3600
    else:
        tflops = sustained_tflops(peak_tflops)
        hours = flop_estimate(work, flops, tflops=tflops)["total"] / 3600
        how = (f"FLOP-based: {tflops:.0f} TFLOP/s sustained = {SUSTAINED_FRACTION:.0%} of the "
               f"{peak_tflops:.0f} TFLOP/s a matmul probe measured; bench/gpu_check.sh measures it")
    return (f"[run_all] profile {profile} on {device_name}: projected wall time {hours:.1f} h ({how}); "
            f"budget {BUDGET_HOURS:g} h on an H100/H200-class GPU")


def pricing(profile: str, flops: dict, *, step_ms: float = ASSUMED_STEP_MS) -> list[list]:
    """``[chapter, FLOP, floor s, fixed s]`` rows that price ``profile`` on any device
    (:func:`lib.profiles.projected_hours`, as :func:`flop_price` does): per chapter one row for what has no
    step floor (its FLOPs, and the overheads' seconds at their rates) and one per workload with optimiser
    steps."""
    fixed, rows = overhead_rates(), {ch: [ch, 0.0, 0.0, 0.0] for ch in CHAPTERS}
    out = list(rows.values())
    for w in profile_work(profile):
        if not w.flops:
            rows[w.chapter][3] += flop_price(w, flops, fixed=fixed)[0]
        elif w.steps:
            out.append([w.chapter, w.units * flops.get(w.flops, 0.0), w.steps * step_ms / 1e3, 0.0])
        else:
            rows[w.chapter][1] += w.units * flops.get(w.flops, 0.0)
    return out


def profile_hours(profile: str, flops: dict, *, peak_tflops: float, step_ms: float = ASSUMED_STEP_MS,
                  chapter: str = "total") -> float:
    """FLOP-based hours of ``profile`` (or of one ``chapter`` of it) on a device of ``peak_tflops``
    (:data:`SUSTAINED_FRACTION` of it sustained, overheads included)."""
    return projected_hours(pricing(profile, flops, step_ms=step_ms), peak_tflops)[chapter]


def device_table(flops: dict, *, profiles=PROFILE_ORDER, devices: dict = DEVICES, chapters_on: str = "t4"):
    """Hours of every profile (rows) on every device (columns), FLOP-based at each device's datasheet peak,
    and each chapter's hours on the device ``chapters_on`` (columns ``<device> <chapter>``)."""
    import pandas as pd

    hours = {p: {k: projected_hours(pricing(p, flops), d.peak_tflops) for k, d in devices.items()}
             for p in profiles}
    cols = {key: [round(hours[p][key]["total"], 2) for p in profiles] for key in devices}
    cols.update({f"{chapters_on} {ch}": [round(hours[p][chapters_on][ch], 2) for p in profiles]
                 for ch in CHAPTERS})
    return pd.DataFrame(cols, index=pd.Index(profiles, name="profile"))


def current_pricing(record: Path | None = None) -> dict[str, list]:
    """Every profile's :func:`pricing`: the budget_devices record's where it was recorded from the params
    files as they are now (its work units match), else counted now (FLOPs on the CPU, a minute)."""
    from lib.profiles import DEVICES_RECORD

    path = Path(record or DEVICES_RECORD)
    rec = json.loads(path.read_text()) if path.is_file() else {}
    units = {p: chapter_units(profile_work(p)) for p in PROFILE_ORDER}
    if rec.get("pricing") and rec.get("units") == units:
        return rec["pricing"]
    flops = count_flops()
    return {p: pricing(p, flops) for p in PROFILE_ORDER}


def print_gpus(profile: str, n: int, *, only: str = "") -> int:
    """``--gpus N``: :func:`gpus_table` for 1, 2, 4, 8 and ``n`` ranks and the assignment on ``n``."""
    import pandas as pd

    from lib.train.schedule import DATA_PARALLEL_EFFICIENCY

    if n < 1:
        print(f"--gpus must be at least 1, got {n}", file=sys.stderr)
        return 2
    table, plans, seconds = gpus_table(profile, sorted({1, 2, 4, 8, n}), only=only)
    print(f"profile {profile}: {len(seconds)} training runs, FLOP-based at {ASSUMED_TFLOPS:g} TFLOP/s "
          f"sustained per GPU, at least {ASSUMED_STEP_MS:g} ms per optimiser step")
    if "on all ranks (h)" in table:
        print(f"data-parallel runs on all ranks at {DATA_PARALLEL_EFFICIENCY:.0%} efficiency per added GPU "
              "(assumed until a GPU measures it); the column beside it: each on one rank instead")
    with pd.option_context("display.width", 200):
        print(table.to_string(index=False))
    s = plans[n]
    print(f"\nassignment on {n} rank(s): each rank takes the next run when it finishes "
          "(* = on all ranks together)")
    for rank, keys in enumerate(s.ranks):
        own = ", ".join(f"{k.split('/', 1)[1]}{'*' if s.times[k][0] < 0 else ''} ({seconds[k] / 60:.1f} min)"
                        for k in keys)
        print(f"  rank {rank}, done at {max(s.times[k][2] for k in keys) / 3600 if keys else 0:.2f} h: {own}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="full")
    ap.add_argument("--rates", default="",
                    help="a gpu_check.json with measured rates (default: FLOP estimate only)")
    ap.add_argument("--hours", type=float, default=BUDGET_HOURS,
                    help="the budget the total is checked against")
    ap.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS,
                    help="the device's dense half-precision peak (default: an H100's, 989)")
    ap.add_argument("--tflops", type=float, default=None,
                    help=f"assumed sustained TFLOP/s (default: {SUSTAINED_FRACTION * 100:.0f}%% of --peak-tflops)")
    ap.add_argument("--step-ms", type=float, default=ASSUMED_STEP_MS,
                    help="assumed floor per optimiser step (ms)")
    ap.add_argument("--record", action="store_true",
                    help=f"save the projection at {ASSUMED_TFLOPS:g} and 60 TFLOP/s as "
                         "$BENCH_DIR/budget.json (the README's source)")
    ap.add_argument("--start-line", action="store_true",
                    help="print only the projected wall time on this CUDA GPU (run_all.sh, before a GPU "
                         "run); exit 3 when it is over --limit-hours without --yes")
    ap.add_argument("--device", choices=sorted(DEVICES), default=None,
                    help="project on this GPU's datasheet peak instead of --peak-tflops")
    ap.add_argument("--devices", action="store_true",
                    help="the table of every profile's hours on every device (FLOP-based)")
    ap.add_argument("--choose", action="store_true",
                    help="print the largest profile that fits --limit-hours on this CUDA GPU "
                         "(run_all.sh's auto)")
    ap.add_argument("--limit-hours", type=float, default=AUTO_HOURS,
                    help=f"what --choose may pick and --start-line lets run without --yes "
                         f"(default {AUTO_HOURS:g})")
    ap.add_argument("--yes", action="store_true", help="with --start-line: run a profile over --limit-hours")
    ap.add_argument("--gpus", type=int, default=0,
                    help="project the plan's wall time on 1, 2, 4, 8 and this many ranks (run_all.sh "
                         "--gpus N) with the launcher's own assignment, and show the assignment for N")
    ap.add_argument("--only", default="", help="with --gpus: these chapters only (e.g. 01,03)")
    args = ap.parse_args()
    if args.gpus:
        return print_gpus(args.profile, args.gpus, only=args.only)
    import pandas as pd

    if args.device:
        args.peak_tflops = DEVICES[args.device].peak_tflops
    tflops = args.tflops or sustained_tflops(args.peak_tflops)
    if args.devices:
        flops = count_flops()
        table = device_table(flops)
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(table.to_string())
        for key, d in DEVICES.items():
            print(f"  {key}: {d.source}")
        if args.record:
            import record

            summary = "hours per profile: " + "; ".join(
                f"{p} " + ", ".join(f"{k} {table.loc[p, k]:g}" for k in table.columns) for p in table.index)
            record.save("budget_devices", table.reset_index().to_dict("records"), summary,
                        extra={"devices": {k: vars(d) for k, d in DEVICES.items()},
                               "sustained_fraction": SUSTAINED_FRACTION, "step_ms": ASSUMED_STEP_MS,
                               "units": {p: chapter_units(profile_work(p)) for p in table.index},
                               "pricing": {p: pricing(p, flops) for p in table.index}})
        return 0
    if args.choose:
        import torch

        name = torch.cuda.get_device_name()
        choice = auto_choice(name, limit=args.limit_hours, pricing=current_pricing())
        print(f"[run_all] {choice.line(name)}", file=sys.stderr)
        print(choice.profile)
        return 0
    if args.start_line:
        import torch

        from lib.train import device_description

        device = torch.device("cuda")
        saved = ROOT / "outputs" / "bench" / "gpu_check.json"
        measured = json.loads(saved.read_text()) if saved.is_file() else None
        saved_flops = (measured or {}).get("flops") or {}  # a saved device check counted them already
        flops = saved_flops if saved_flops and "error" not in saved_flops else count_flops()
        line = start_line(args.profile, device_description(device), flops=flops,
                          peak_tflops=probe_tflops(device), measured=measured)
        print(line, flush=True)
        refusal = over_limit(args.profile, float(line.split("projected wall time ")[1].split(" h")[0]),
                             args.limit_hours, yes=args.yes)
        if refusal:
            print(refusal, file=sys.stderr)
            return 3
        return 0
    work = profile_work(args.profile)
    saved = json.loads(Path(args.rates).read_text()) if args.rates else {}
    flops = saved.get("flops") or count_flops()
    if args.record:
        record_budget(args.profile, flops)
    rates = unit_rates(saved) if saved else None
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(work_table(work, rates, flops, tflops=tflops, step_ms=args.step_ms).to_string(index=False))
    est, fixed = flop_estimate(work, flops, tflops=tflops, step_ms=args.step_ms), overhead_rates()
    print(f"\nprofile {args.profile}, FLOP-based estimate at {tflops:g} TFLOP/s sustained, "
          f"at least {args.step_ms:g} ms per optimiser step; compilation {fixed.source['compile']}, "
          f"checkpoints {fixed.source['disk']}, Fréchet distances {fixed.source['fid_cpu']}, notebooks "
          f"{fixed.source['notebook:report']}:")
    for ch in (*CHAPTERS, "total"):
        pflop = f"{est[ch + '_pflop']:.0f} PFLOP, " if ch != "total" else ""
        print(f"  {ch:20s} {pflop}{est[ch] / 3600:.2f} h")
    if rates is not None:
        proj, missing = project(work, rates)
        print(f"\nmeasured projection ({saved.get('device', '?')}):")
        for ch in (*CHAPTERS, "total"):
            print(f"  {ch:20s} {proj[ch] / 3600:.2f} h")
        if missing:
            print(f"  (no measured rate for: {', '.join(missing)})")
        verdict = proj["total"] <= args.hours * 3600
        print(f"  {'within' if verdict else 'OVER'} the {args.hours:g} h budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
