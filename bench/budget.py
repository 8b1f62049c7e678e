"""What a profile costs: its work (images, steps and FLOPs per chapter) and the wall time that work projects to.

    python bench/budget.py [--profile full] [--rates outputs/bench/gpu_check.json] [--hours 3]

The work list is computed from the params files, so changing an epoch count changes the projection. Two
projections are offered:

* **measured**: each workload's count divided by the rate ``bench/gpu_check.sh`` measured for it on the device
  (``--rates`` reads a saved ``gpu_check.json``); this is the number the README's GPU budget quotes;
* **FLOP-based**: each workload's FLOPs (counted once by torch's ``FlopCounterMode`` on the real networks) at an
  *assumed* sustained throughput, with an assumed floor per optimiser step (small batches are launch-bound).
  It needs no GPU and states its assumptions; use it to size a profile before a GPU measurement exists.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib import params as P  # noqa: E402

CHAPTERS = ("01_supervised", "02_generative", "03_semi_supervised", "04_extras")
TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000
BUDGET_HOURS = 3.0
ASSUMED_TFLOPS = 100.0  # sustained bf16 throughput for these small networks: ~10% of an H100/H200's dense peak
ASSUMED_STEP_MS = 5.0   # floor per optimiser step in eager PyTorch (hundreds of kernel launches)


@dataclass
class Work:
    """One workload: ``units`` of ``unit`` (images, steps, image-steps) at the rate named ``rate`` (units/s),
    ``flops`` per unit, and the optimiser ``steps`` it takes (0 for inference)."""

    chapter: str
    name: str
    units: float
    unit: str
    rate: str
    flops: str
    steps: float = 0.0


def profile_work(profile: str = "full") -> list[Work]:
    """Every costly workload of ``profile``, from its params files (evaluation and plotting are left out: they
    are small next to training and sampling)."""
    p1, p2, p3 = (P.load(c, profile) for c in CHAPTERS[:3])
    work: list[Work] = []

    def train_images(p):
        return (p["train_subset"] or TRAIN_IMAGES) - p["val_size"]

    n1 = train_images(p1)
    bs = p1[f"{p1['recipe']}_batch_size"]
    for m in [*p1["models"], *p1["activation_map_models"]]:
        work.append(Work("01_supervised", f"train {m}", p1["epochs"] * n1, "images", f"train:{m}", f"train:{m}",
                         p1["epochs"] * n1 / bs))
    for m in p1["pretrained_models"]:  # fine-tuned at 224 px
        units = p1["pretrained_epochs"] * n1
        work.append(Work("01_supervised", f"fine-tune pretrained {m} at 224 px", units, "images",
                         f"train:{m}@224", f"train:{m}@224", units / p1["finetune_batch_size"]))
    if p1["recipe_baseline"]:
        other = "presented" if p1["recipe"] == "strong" else "strong"
        work.append(Work("01_supervised", f"train resnet18 ({other} recipe)", p1["epochs"] * n1, "images",
                         "train:resnet18", "train:resnet18", p1["epochs"] * n1 / p1[f"{other}_batch_size"]))
    n_sweep = p1["sweep_train_subset"] or n1
    cells = [(b, lr) for b in p1["sweep_batch_sizes"] for lr in p1["sweep_lrs"]]
    work.append(Work("01_supervised", f"batch x lr sweep ({len(cells)} cells)", len(cells) * p1["sweep_epochs"] * n_sweep,
                     "images", f"train:{p1['sweep_model']}", f"train:{p1['sweep_model']}",
                     sum(p1["sweep_epochs"] * n_sweep / b for b, _ in cells)))

    n2 = train_images(p2)
    for kind in ("vae", "dcgan", "ddpm"):
        units = p2[f"{kind}_epochs"] * n2
        work.append(Work("02_generative", f"train {kind}", units, "images", f"train:{kind}", f"train:{kind}",
                         units / p2[f"{kind}_batch_size"]))
    n_fid = p2["fid_images"]
    work.append(Work("02_generative", f"DDPM DDIM sampling ({n_fid} images)", n_fid * p2["ddpm_ddim_steps"],
                     "image-steps", "unet_forward", "unet_forward"))
    work.append(Work("02_generative", f"DDPM ancestral sampling ({p2['ddpm_ancestral_images']} images)",
                     p2["ddpm_ancestral_images"] * p2["ddpm_ancestral_steps"], "image-steps", "unet_forward",
                     "unet_forward"))
    cls_images = p2["classifier_epochs"] * 4 * n2  # 2.2: real, reconstructions, real + reconstructions (2x)
    work.append(Work("02_generative", "2.2 classifiers (real / VAE / both)", cls_images, "images",
                     f"train:{p2['classifier_model']}", f"train:{p2['classifier_model']}",
                     cls_images / p2["classifier_batch_size"]))
    scored = 3 + (p2["ddpm_ancestral_images"] >= n_fid)  # VAE, DCGAN, DDPM-DDIM (+ ancestral)
    fid_images = (p2["fid_reference_images"] or TRAIN_IMAGES) + 2 * n_fid + scored * n_fid
    work.append(Work("02_generative", "FID Inception features", fid_images, "images", "inception", "inception"))

    for kind in ("mpl", "uda", "supervised"):
        work.append(Work("03_semi_supervised", f"train {kind}", p3["total_steps"], "steps", f"ssl:{kind}",
                         f"ssl:{kind}", p3["total_steps"]))
    ft = p3["finetune_epochs"] * p3["labelled_size"]
    work.append(Work("03_semi_supervised", "MPL finetune", ft, "images", "train:wrn28_2", "train:wrn28_2",
                     ft / p3["finetune_batch_size"]))

    work.append(Work("04_extras", "embed gallery + queries", TRAIN_IMAGES + TEST_IMAGES, "images",
                     "embed:resnet18", "embed:resnet18"))
    return work


def unit_rates(gpu_check: dict) -> dict[str, float]:
    """Units per second for each ``Work.rate`` name, from the results of ``bench/gpu_check.py``."""
    rates: dict[str, float] = {}
    for name, ips in (gpu_check.get("classifiers") or {}).items():
        if isinstance(ips, (int, float)):
            rates[f"train:{name}"] = float(ips)
    if "train:resnet18" in rates:
        rates["embed:resnet18"] = 3 * rates["train:resnet18"]  # a forward pass is about a third of a step
    for kind in ("vae", "dcgan", "ddpm"):
        if "images_per_s" in (gpu_check.get(kind) or {}):
            rates[f"train:{kind}"] = gpu_check[kind]["images_per_s"]
    if "s_per_image_step" in (gpu_check.get("ddpm") or {}):
        rates["unet_forward"] = 1 / gpu_check["ddpm"]["s_per_image_step"]
    mpl = gpu_check.get("mpl") or {}
    # a CPU check measures a reduced labelled batch (same unlabelled ratio): time grows linearly with the batch there
    scale = mpl.get("labelled_batch", 1) / P.load("03_semi_supervised", "full")["batch_size"]
    for kind in ("mpl", "uda", "supervised"):
        sec = mpl.get(f"{kind}_s_per_step")
        if sec:
            rates[f"ssl:{kind}"] = scale / sec
    if "ssl:supervised" in rates:  # finetune: the supervised step's labelled images per second
        rates["train:wrn28_2"] = mpl["labelled_batch"] / mpl["supervised_s_per_step"]
    if "images_per_s" in (gpu_check.get("inception") or {}):
        rates["inception"] = gpu_check["inception"]["images_per_s"]
    return rates


def count_flops(*, mpl_labelled_batch: int = 128, mpl_mu: int = 7) -> dict[str, float]:
    """FLOPs per unit of every ``Work.flops`` name, counted by ``torch.utils.flop_counter`` on the real
    (full-width) networks at batch 2 on the CPU and scaled linearly (a few seconds)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from lib import data as D
    from lib.chapters import generative, semi_supervised
    from lib.models import MODELS, build_model

    def count(fn) -> float:
        with FlopCounterMode(display=False) as fc:
            fn()
        return float(fc.get_total_flops())

    cpu = torch.device("cpu")
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    out: dict[str, float] = {}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for name in sorted(MODELS):
            model = build_model(name, width=1.0)
            out[f"train:{name}"] = count(lambda: F.cross_entropy(model(x), y).backward()) / 2
            if name == "resnet18":
                with torch.no_grad():
                    out["embed:resnet18"] = count(lambda: model.eval()(x)) / 2
        model = build_model("efficientnet_b0", resize_to=224)  # pretrained shape, random weights
        loss = lambda: F.cross_entropy(model(x), y).backward()  # noqa: E731
        out["train:efficientnet_b0@224"] = count(loss) / 2
        p2 = P.load("02_generative", "full")
        for kind in ("vae", "dcgan", "ddpm"):
            method, _ = generative.build_method(kind, generative.generator_settings(kind, p2), total_steps=10, seed=0)
            method.setup(cpu, None)
            out[f"train:{kind}"] = count(lambda: method.train_step((x.clamp(-1, 1), y))) / 2
            if kind == "ddpm":
                with torch.no_grad():
                    out["unet_forward"] = count(lambda: method.ema.module(x, torch.tensor([10, 500])).sample) / 2
        # MPL, UDA and supervised steps at labelled batch 2 (unlabelled 2 * mu), scaled to the presented batch
        p3 = P.load("03_semi_supervised", "full", {"batch_size": 2, "mu": mpl_mu})
        ds = D.make_synthetic(64, 10)
        for kind in ("mpl", "uda", "supervised"):
            method = semi_supervised.build_method(kind, p3, total_steps=10)
            method.setup(cpu, None)
            batch = next(semi_supervised.ssl_batches(ds.train_x[:16], ds.train_y[:16], ds.train_x[16:], p3, cpu,
                                                     unlabelled=kind != "supervised").forever())
            out[f"ssl:{kind}"] = count(lambda: method.train_step(batch)) * mpl_labelled_batch / 2
        from torchvision.models import (
            inception_v3,  # same layers as pytorch-fid's network, without its weights
        )

        net = inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
        with torch.no_grad():
            out["inception"] = count(lambda: net(F.interpolate(x, size=(299, 299), mode="bilinear"))) / 2
    return out


def project(work: list[Work], rates: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """Seconds per chapter (and ``total``) from measured units/s; the names of workloads with no rate."""
    out = {ch: 0.0 for ch in CHAPTERS}
    missing = []
    for w in work:
        if w.rate in rates and rates[w.rate] > 0:
            out[w.chapter] += w.units / rates[w.rate]
        else:
            missing.append(w.name)
    out["total"] = sum(out.values())
    return out, missing


def flop_estimate(work: list[Work], flops: dict[str, float], *, tflops: float = ASSUMED_TFLOPS,
                  step_ms: float = ASSUMED_STEP_MS) -> dict[str, float]:
    """Seconds per chapter (and ``total``) if every workload ran at ``tflops`` sustained, but no optimiser step
    faster than ``step_ms``; plus ``pflop`` per chapter under ``<chapter>_pflop``."""
    out = {ch: 0.0 for ch in CHAPTERS}
    pf = {f"{ch}_pflop": 0.0 for ch in CHAPTERS}
    for w in work:
        f = w.units * flops.get(w.flops, 0.0)
        out[w.chapter] += max(f / (tflops * 1e12), w.steps * step_ms / 1e3)
        pf[f"{w.chapter}_pflop"] += f / 1e15
    out["total"] = sum(out.values())
    return {**out, **pf}


def work_table(work: list[Work], rates: dict[str, float] | None = None, flops: dict[str, float] | None = None):
    """One row per workload: its count, FLOPs and (with rates) projected seconds."""
    import pandas as pd

    rows = []
    for w in work:
        row = {"chapter": w.chapter, "workload": w.name, "count": round(w.units), "unit": w.unit,
               "optimiser steps": round(w.steps)}
        if flops:
            row["PFLOP"] = round(w.units * flops.get(w.flops, 0.0) / 1e15, 2)
        if rates is not None:
            r = rates.get(w.rate)
            row["projected s"] = round(w.units / r) if r else None
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="full")
    ap.add_argument("--rates", default="", help="a gpu_check.json with measured rates (default: FLOP estimate only)")
    ap.add_argument("--hours", type=float, default=BUDGET_HOURS, help="the budget the total is checked against")
    ap.add_argument("--tflops", type=float, default=ASSUMED_TFLOPS, help="assumed sustained TFLOP/s")
    ap.add_argument("--step-ms", type=float, default=ASSUMED_STEP_MS, help="assumed floor per optimiser step (ms)")
    args = ap.parse_args()
    work = profile_work(args.profile)
    saved = json.loads(Path(args.rates).read_text()) if args.rates else {}
    flops = saved.get("flops") or count_flops()
    rates = unit_rates(saved) if saved else None
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(work_table(work, rates, flops).to_string(index=False))
    est = flop_estimate(work, flops, tflops=args.tflops, step_ms=args.step_ms)
    print(f"\nprofile {args.profile}, FLOP-based estimate at {args.tflops:g} TFLOP/s sustained, "
          f"at least {args.step_ms:g} ms per optimiser step (assumptions, not measurements):")
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
