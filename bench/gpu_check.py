"""Device check for the full profile: measures the rates that decide its wall time, then projects it.

    bench/gpu_check.sh --data ARCHIVE [--fid-weights PTH] [--out DIR] [--work DIR] [--limit-s S]

Built for one short call on a bare, offline GPU node: it needs only the measuring packages
(:data:`NEEDS`), reads CIFAR-10 and the FID weights by path, writes nothing but ``gpu_check.json``
and ``gpu_check.log`` to ``--out`` (data cache, checkpoints and compiled kernels live in a
temporary working folder that ``gpu_check.sh`` removes), and ends within ``--limit-s`` (420 s on a
GPU: aimed at 6 minutes, cut at 7). Sections run in the order the budget needs them
(:data:`SECTIONS`, each with its time on an H100) and ``gpu_check.json`` is rewritten after every
section and after every compiled workload, so a run cut off anywhere keeps all it measured.

On a CPU the same sections run shrunk (small batches, few steps) to prove every path; the training
steps there compile one workload with the ``aot_eager`` backend (Inductor's CPU code generation
takes minutes). From the rates and the full profile's parameters (bench/budget.py) it projects each
chapter's wall time, overheads included, against the 3-hour budget. The short table is last.
"""
from __future__ import annotations

import argparse
import json
import os
import selectors
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if os.environ.get("CIFAR_CHECK_SITE"):  # gpu_check.sh --wheels: after the machine's own packages
    sys.path.append(os.environ["CIFAR_CHECK_SITE"])
sys.path.insert(0, str(ROOT / "bench"))

import budget  # noqa: E402
import check_steps  # noqa: E402
import record  # noqa: E402

from lib import params as P  # noqa: E402
from lib.train import amp_dtype, device_description, pick_device  # noqa: E402

# what measuring needs (import names), and what it never needs: the notebook tool chain
NEEDS = ("torch", "torchvision", "timm", "numpy", "pandas", "yaml", "diffusers", "pytorch_fid", "scipy")
GPU_LIMIT_S = 420       # cut: a 7-minute call leaves room for a second try inside a 10-minute slot
CPU_LIMIT_S = 3600      # the shrunk CPU run proves the paths; its times mean nothing
MARGIN_S = 15           # the table and the projection are written before the cut
E2E_TRAIN_S = 75        # the end-to-end ResNet-18 run trains at most this long on a GPU (90 s in all)
STEP_FLOOR_BATCHES = (16, 32, 64, 128, 256, 512)  # every batch size the full profile trains at
# (section, seconds on one H100, minimum it needs to start, what it measures); docs/gpu.md's table
SECTIONS = (
    ("startup", 15, 0, "torch, CUDA, driver, native bf16, free memory; a tiny torch.compile"),
    ("steps", 160, 40, "each method's training step at its full-profile batch: eager s/step and host "
                       "syncs per step for all seven, then compiled (compile s, graphs, s/step, syncs) "
                       "in order of FLOP share: ResNet-18, MPL, UDA, DDPM, supervised, VAE, DCGAN"),
    ("classifiers", 20, 15, "train images/s of every chapter-1 model at batch 512, EfficientNet at 224 px"),
    ("step_floor", 10, 5, "ResNet-18 s/step at batches 16-512: the floor of the sweep's small batches"),
    ("finetune", 5, 3, "the MPL finetune's step (WRN-28-2, batch 512)"),
    ("ddpm_sampling", 10, 5, "DDIM seconds per image-step (500 images)"),
    ("inception", 10, 5, "FID Inception images/s (random weights without --fid-weights)"),
    ("fid_cpu", 10, 5, "one Frechet distance (2048-d covariance square root) on the host CPU"),
    ("flops", 15, 10, "FLOPs per workload (FlopCounterMode, on the host CPU)"),
    ("disk", 5, 3, "checkpoint write GB/s (1 GiB, atomically)"),
    ("accuracy_run", 90, 45, "the full recipe's ResNet-18 on real CIFAR-10 for at most 75 s of training: "
                             "test accuracy, validation per epoch, time to 94%"),
    ("ddpm_layout", 15, 10, "DDPM U-Net contiguous vs channels_last, training and sampling"),
)


def startup(device, *, gpu: bool) -> dict:
    """What the machine is: versions, GPU, driver, native bf16, free memory, and whether
    torch.compile builds a tiny graph (seconds, so a broken toolchain shows before any rate)."""
    import importlib

    from lib.train.device import bf16_native

    versions = {}
    for name in NEEDS[1:]:
        mod = importlib.import_module(name)
        versions[name] = getattr(mod, "__version__", "?")
    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": device_description(device),
           "python": sys.version.split()[0], "packages": versions}
    if not gpu:
        return {**out, "compile": "not checked on a CPU (slow there; chapters compile only on CUDA)"}
    free, total = torch.cuda.mem_get_info()
    out.update(bf16_native=bf16_native(), free_gib=round(free / 2**30, 1), total_gib=round(total / 2**30, 1))
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        out["driver"] = smi.stdout.strip() or smi.stderr.strip()[:80]
    except (OSError, subprocess.SubprocessError) as err:
        out["driver"] = f"nvidia-smi failed: {err}"
    t0 = time.perf_counter()
    try:
        f = torch.compile(lambda x: torch.sin(x) * 2 + 1)
        f(torch.ones(64, device=device))
        check_steps.sync(device)
        out["compile"] = f"works ({time.perf_counter() - t0:.1f} s for a tiny graph)"
    except Exception as err:  # any compiler failure is what this check is for
        out["compile"] = f"FAILED: {type(err).__name__}: {str(err)[:120]}"
    return out


def steps_in_child(results: dict, seconds: float, save, *, gpu: bool) -> dict:
    """bench/check_steps.py in a child process stopped after ``seconds``: every workload eager first
    (rates and syncs), then each compiled; each line it prints is kept (and saved) as it arrives."""
    compiled = "all seven" if gpu else "ResNet-18 with aot_eager"
    out: dict = {"eager": {}, "compiled": {}, "plan": f"eager: all seven; compiled: {compiled}"}
    phases = [["--workloads", ",".join(check_steps.WORKLOADS)]]
    phases.append(["--compile", "--workloads", ",".join(check_steps.WORKLOADS)] if gpu
                  else ["--compile", "--workloads", "resnet18", "--backend", "aot_eager"])
    deadline = time.perf_counter() + seconds
    for args in phases:
        phase = "compiled" if "--compile" in args else "eager"
        proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "check_steps.py"), *args],
                                stdout=subprocess.PIPE, text=True)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.perf_counter()
            if left <= 0 or not sel.select(timeout=left):
                proc.kill()
                out[f"{phase}_cut"] = f"stopped at the section's {seconds:.0f} s"
                break
            line = proc.stdout.readline()
            if not line:
                break
            print(line.rstrip(), flush=True)
            if line.startswith(check_steps.LINE_PREFIX):
                row = json.loads(line[len(check_steps.LINE_PREFIX):])
                out[phase][row.pop("workload")] = row
                results["steps"] = out
                derive_from_steps(results, out)
                save()
        proc.wait()
        sel.close()
        if f"{phase}_cut" in out:
            break
    return out


def derive_from_steps(results: dict, steps: dict) -> None:
    """What the steps measured so far, under the keys bench/budget.py and the table read."""
    results.update(step_rates(steps))
    results["compiled"] = compiled_rates(steps)
    results["syncs"] = sync_rows(steps)


def step_rates(steps: dict) -> dict:
    """The per-method rates bench/budget.py reads, from the steps section's eager rows:
    ``vae``/``dcgan``/``ddpm`` (batch, steps/s, images/s) and ``mpl`` (s/step of MPL, UDA and
    supervised at the labelled + unlabelled batch)."""
    eager = steps.get("eager", {})
    out: dict = {}
    for kind in ("vae", "dcgan", "ddpm"):
        r = eager.get(kind, {})
        if "eager_s_per_step" in r:
            sec = r["eager_s_per_step"]
            out[kind] = {"batch": r["batch"], "steps_per_s": round(1 / sec, 2),
                         "images_per_s": round(r["batch"] / sec, 1)}
    ssl = {k: eager[k] for k in ("mpl", "uda", "supervised") if "eager_s_per_step" in eager.get(k, {})}
    if ssl:
        labelled = int(str(next(iter(ssl.values()))["batch"]).split("+")[0])
        mu = P.load("03_semi_supervised", "full")["mu"]
        out["mpl"] = {"labelled_batch": labelled, "unlabelled_batch": labelled * mu,
                      **{f"{k}_s_per_step": r["eager_s_per_step"] for k, r in ssl.items()}}
    return out


def compiled_rates(steps: dict) -> dict:
    """``compiled`` as bench/budget.py reads it: per workload its batch, eager and compiled s/step,
    compile seconds, graphs, or the error."""
    out = {}
    for name, r in steps.get("compiled", {}).items():
        keys = ("batch", "eager_s_per_step", "compiled_s_per_step", "compile_s", "graphs", "eager_calls",
                "speedup", "error", "backend")
        out[name] = {k: r[k] for k in keys if k in r}
        if isinstance(r.get("batch"), str):  # SSL steps: "labelled+unlabelled"; budget.py reads the labelled
            labelled, unlabelled = r["batch"].split("+")
            out[name].update(batch=int(labelled), unlabelled_batch=int(unlabelled))
    return out


def sync_rows(steps: dict) -> dict:
    """Host synchronisations per step by method, eager and compiled (0 expected)."""
    out = {}
    for phase in ("eager", "compiled"):
        for name, r in steps.get(phase, {}).items():
            s = r.get(f"syncs_{phase}")
            if s is not None:
                out.setdefault(name, {})[phase] = s["syncs"]
                if s.get("host_tensors"):
                    out[name][f"{phase}_host_tensors"] = s["host_tensors"]
                if s.get("first") or s.get("ops"):
                    out[name][f"{phase}_what"] = s.get("first") or s.get("ops")
    return out


def classifier_rates(device, *, gpu: bool) -> dict:
    from train_speed import one

    from lib.models import MODELS

    out = {}
    for name in sorted(MODELS):
        if name == "wrn28_2":
            continue
        r = one(name, width=1.0, batch_size=512 if gpu else 16, steps=20 if gpu else 1, device_name=str(device))
        out[name] = r["images_per_s"]
    r = one("efficientnet_b0", width=1.0, batch_size=128 if gpu else 2, steps=10 if gpu else 1,
            device_name=str(device), model_kwargs={"resize_to": 224})  # the pretrained model's fine-tuning
    out["efficientnet_b0@224"] = r["images_per_s"]
    return out


def step_floor(device, *, gpu: bool) -> dict:
    """Eager ResNet-18 seconds per optimiser step at each batch size the full profile uses: small
    batches are bound by kernel launches, not FLOPs (a CPU measures 2 small sizes)."""
    from train_speed import one

    sizes = STEP_FLOOR_BATCHES if gpu else (2, 4)
    out = {}
    for b in sizes:
        r = one("resnet18", width=1.0, batch_size=b, steps=20 if gpu else 1, device_name=str(device))
        out[str(b)] = round(b / r["images_per_s"], 5)
    return {"resnet18": out}


def finetune_rate(device, *, gpu: bool) -> dict:
    """Chapter 3's finetune: WRN-28-2 classifier steps at ``finetune_batch_size``, eager (it stays
    under compile_min_steps)."""
    method, step, batch = check_steps.build("wrn28_2", device, gpu=gpu)
    check_steps.setup(method, device, check_steps.amp_of("wrn28_2", device), compile=False)
    sec = check_steps.seconds_per_call(step, 10 if gpu else 1, device, warmup=2 if gpu else 1)
    return {"model": "wrn28_2", "batch": batch, "s_per_step": round(sec, 5)}


def generator_rate(kind: str, device, *, batch: int | None, steps: int, warmup: int = 2,
                   over: dict | None = None):
    """Full-profile ``kind`` ("vae", "dcgan" or "ddpm") method, its settings, batch and seconds per
    training step at ``batch`` (None = the full profile's); ``over`` overrides chapter-2 params."""
    from lib.chapters import generative

    s = generative.generator_settings(kind, P.load("02_generative", "full", over))
    method, _ = generative.build_method(kind, s, total_steps=1000, seed=0)
    method.setup(device, amp_dtype(device))
    batch = batch or s["batch_size"]
    x = torch.rand(batch, 3, 32, 32, device=device) * 2 - 1
    y = torch.zeros(batch, dtype=torch.long, device=device)
    return method, s, batch, check_steps.seconds_per_call(lambda: method.train_step((x, y)), steps, device,
                                                          warmup=warmup)


def ddpm_sampling(device, *, gpu: bool) -> dict:
    """DDIM sampling seconds per image per denoising step of the full profile's U-Net, and what
    5,000 images cost with DDIM and with the ancestral sampler."""
    from lib.chapters import generative

    s = generative.generator_settings("ddpm", P.load("02_generative", "full"))
    method, n_params = generative.build_method("ddpm", s, total_steps=1000, seed=0)
    method.setup(device, amp_dtype(device))
    n, steps = (500, s["ddim_steps"]) if gpu else (2, 2)
    method.sample(min(n, 50), sampler="ddim", steps=2, batch_size=n, seed=0)  # warm-up
    _, t = method.sample(n, sampler="ddim", steps=steps, batch_size=n, seed=0)
    per = t / (n * steps)
    return {"params": n_params, "s_per_image_step": per, "ddim_steps": s["ddim_steps"],
            "ddim_5000_s": round(per * 5000 * s["ddim_steps"], 1),
            "ancestral_5000_s": round(per * 5000 * s["ancestral_steps"], 1)}


def ddpm_layout(device, *, gpu: bool) -> dict:
    """DDPM training steps/s and DDIM sampling seconds per image-step with the U-Net contiguous and
    channels_last (``ddpm_channels_last``): GroupNorm, all through the U-Net, may prefer either on CUDA."""
    out = {}
    for layout, channels_last in (("contiguous", False), ("channels_last", True)):
        method, s, batch, sec = generator_rate("ddpm", device, batch=None if gpu else 2, steps=10 if gpu else 1,
                                               warmup=2 if gpu else 1, over={"ddpm_channels_last": channels_last})
        n, steps = (500, 10) if gpu else (2, 1)
        _, t = method.sample(n, sampler="ddim", steps=steps, batch_size=n, seed=0)
        out[f"{layout}_train_steps_per_s"] = round(1 / sec, 2)
        out[f"{layout}_sample_s_per_image_step"] = t / (n * steps)
    out["faster_for_sampling"] = min(("contiguous", "channels_last"),
                                     key=lambda k: out[f"{k}_sample_s_per_image_step"])
    out["faster_for_training"] = max(("contiguous", "channels_last"),
                                     key=lambda k: out[f"{k}_train_steps_per_s"])
    return out


def disk_rate(work: Path, *, gpu: bool) -> dict:
    """Checkpoint write speed: a tensor of 1 GiB (CPU: 64 MiB) saved the way checkpoints are (atomically)."""
    from lib.storage import save_atomic

    n = (2**30 if gpu else 2**26) // 4
    path = work / "disk_check.pt"
    t0 = time.perf_counter()
    save_atomic({"x": torch.zeros(n)}, path)
    sec = time.perf_counter() - t0
    path.unlink(missing_ok=True)
    return {"gb": round(n * 4 / 1e9, 3), "gb_per_s": round(n * 4 / 1e9 / sec, 2)}


def inception_rate(device, *, gpu: bool) -> dict:
    """FID Inception images/s at 32 px input (resized to 299 inside); with random weights when
    pytorch-fid's file is absent (the speed does not depend on the weights)."""
    from lib.evaluate import fid

    ok, _ = fid.inception_status(download="never")
    model = fid.load_inception(device) if ok else fid.random_inception(device)
    n = 2000 if gpu else 8
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    fid.inception_features(images[: min(n, 200)], batch_size=200, device=device, model=model)  # warm-up
    check_steps.sync(device)
    t0 = time.perf_counter()
    fid.inception_features(images, batch_size=500 if gpu else 8, device=device, model=model)
    check_steps.sync(device)
    return {"images": n, "images_per_s": round(n / (time.perf_counter() - t0), 1),
            "weights": "pytorch-fid's" if ok else "random (no --fid-weights): speed only"}


def fid_cpu(*, gpu: bool) -> dict:
    """Seconds of one Fréchet distance between 2,048-d feature statistics (pytorch-fid's, a
    covariance square root on the host CPU). A CPU check times 512-d and scales by the cube."""
    import numpy as np

    from lib.evaluate import fid

    dims = 2048 if gpu else 512
    rng = np.random.default_rng(0)
    a, b = (fid.Stats.of(rng.standard_normal((dims + 500, dims))) for _ in range(2))
    t0 = time.perf_counter()
    fid.frechet_distance(a, b)
    sec = (time.perf_counter() - t0) * (2048 / dims) ** 3
    return {"frechet_s": round(sec, 2), **({} if gpu else {"measured_dims": dims, "scaled_to": 2048})}


def accuracy_run(device, *, gpu: bool, data: str, work: Path, results: dict) -> dict:
    """The full profile's ResNet-18 with its recipe on real CIFAR-10: all its epochs when the
    measured batch-512 rate projects them under :data:`E2E_TRAIN_S`, else as many epochs as fit (the
    schedule then spans those epochs); on a CPU one epoch of a shrunk run. Test accuracy, validation
    accuracy per epoch, time to 94% validation."""
    from train_speed import time_to_94

    from lib.chapters import supervised

    full = P.load("01_supervised", "full")
    if not gpu:
        over = {"train_subset": 1200, "val_size": 200, "test_subset": 500, "width": 0.25,
                "strong_batch_size": 128, "data": data}
        return time_to_94(1, over, ckpt_root=work / "accuracy_run")
    ips = (results.get("classifiers") or {}).get("resnet18")
    if not isinstance(ips, (int, float)):
        raise RuntimeError("no ResNet-18 rate was measured, so the run cannot be sized")
    full_epochs = supervised.model_epochs(full, "resnet18")
    epoch_s = 1.15 * (budget.TRAIN_IMAGES - full["val_size"]) / ips  # + evaluation
    epochs = full_epochs if epoch_s * full_epochs <= E2E_TRAIN_S else max(1, int(E2E_TRAIN_S // epoch_s))
    return {"projected_s": round(epoch_s * epochs),
            **time_to_94(epochs, {"data": data}, ckpt_root=work / "accuracy_run")}


def project_into(results: dict, work: list, *, gpu: bool) -> dict[str, float]:
    """The full profile's projection from what is measured so far (overheads included), and on a GPU the
    achieved TFLOP/s per workload; returns the unit rates it used."""
    rates = budget.unit_rates(results)
    proj, missing = budget.project(work, rates)
    results["projection_s"] = {k: round(v) for k, v in proj.items()}
    results["projection_missing"] = missing
    flops = results.get("flops", {})
    if not flops or "error" in flops or "skipped" in flops:
        return rates
    est = budget.flop_estimate(work, flops)
    results["flop_estimate_s"] = {k: round(v) for k, v in est.items() if not k.endswith("_pflop")}
    results["full_profile_pflop"] = {k[:-6]: round(v, 1) for k, v in est.items() if k.endswith("_pflop")}
    if gpu:  # how much of the device each workload uses: FLOPs per unit x units per second
        names = {"train:resnet18": "ResNet-18", "train:resnet101": "ResNet-101", "train:ddpm": "DDPM",
                 "ssl:mpl": "MPL", "inception": "Inception"}
        results["achieved_tflops"] = {label: round(flops[k] * rates[k] / 1e12, 1)
                                      for k, label in names.items() if k in rates and k in flops}
    return rates


def table_rows(results: dict, *, gpu: bool) -> list[tuple[str, object]]:
    """The short table printed last: measured rates, then the projections."""
    rows: list[tuple[str, object]] = [("device", results["device"]), ("data", results["data"])]
    for key, value in results.get("startup", {}).items():
        if key not in ("device", "packages"):
            rows.append((f"start-up: {key}", value))
    for name, r in results.get("compiled", {}).items():
        if "error" in r:
            rows.append((f"compiled {name}: FAILED", r["error"][:120]))
        elif "compiled_s_per_step" in r:
            rows.append((f"compiled {name} (batch {r['batch']}): s/step eager -> compiled, compile s, graphs",
                         f"{r['eager_s_per_step']:.4g} -> {r['compiled_s_per_step']:.4g} ({r['speedup']}x), "
                         f"{r['compile_s']} s, {r['graphs']} graph(s)"
                         + (f", {r['eager_calls']} eager calls" if r.get("eager_calls") else "")
                         + (f" [{r['backend']}]" if r.get("backend") else "")))
    steps = results.get("steps", {})
    for key in ("eager_cut", "compiled_cut"):
        if key in steps:
            rows.append((f"steps: {key.split('_')[0]} phase", steps[key]))
    for name, s in results.get("syncs", {}).items():
        counts = {k: v for k, v in s.items() if k in ("eager", "compiled")}
        bad = any(v for v in counts.values()) or any(k.endswith("host_tensors") for k in s)
        rows.append((f"host syncs per step: {name}" + (" (NOT 0)" if bad else ""),
                     ", ".join(f"{k} {v:g}" for k, v in counts.items())
                     + "".join(f"; {k}: {v}" for k, v in s.items() if k not in counts)))
    acc = results.get("accuracy_run", {})
    if "test_acc_best_epoch" in acc:
        rows.append((f"ResNet-18 full recipe, {acc['epochs']} of {acc['full_profile_epochs']} epochs: test acc",
                     f"{acc['test_acc_best_epoch']}% (width {acc['width']}, {acc['train_images']} images, "
                     f"{acc['images_per_s']} images/s, {acc['wall_s']} s)"))
        to94 = acc["seconds_to_94_val"]
        rows.append(("ResNet-18 time to 94% validation accuracy",
                     f"{to94} s" if to94 is not None else "not reached"))
    for name, ips in results.get("classifiers", {}).items():
        if name != "error":
            rows.append((f"{name} train images/s (width 1)", ips))
    floor = (results.get("step_floor") or {}).get("resnet18", {})
    if floor:
        rows.append(("ResNet-18 eager ms/step by batch", ", ".join(f"{b}: {1e3 * s:.3g}" for b, s in floor.items())))
    for key, label in (("ddpm", "DDPM"), ("dcgan", "DCGAN"), ("vae", "VAE")):
        v = results.get(key, {})
        if "steps_per_s" in v:
            rows.append((f"{label} eager steps/s at batch {v['batch']}", v["steps_per_s"]))
    samp = results.get("ddpm_sampling", {})
    if "ddim_5000_s" in samp:
        rows.append((f"DDPM 5,000 images: DDIM {samp['ddim_steps']} steps / ancestral 1000 (s)",
                     f"{samp['ddim_5000_s']} / {samp['ancestral_5000_s']}"))
    lay = results.get("ddpm_layout", {})
    if "faster_for_sampling" in lay:
        rows.append(("DDPM U-Net layout: train steps/s, DDIM s per image-step (contiguous | channels_last)",
                     f"{lay['contiguous_train_steps_per_s']}, {lay['contiguous_sample_s_per_image_step']:.2e} | "
                     f"{lay['channels_last_train_steps_per_s']}, {lay['channels_last_sample_s_per_image_step']:.2e}"
                     f" -> ddpm_channels_last: {str(lay['faster_for_sampling'] == 'channels_last').lower()}"
                     + ("" if gpu else " on this CPU (the setting is for CUDA)")))
    if "gb_per_s" in results.get("disk", {}):
        rows.append(("checkpoint writes GB/s", results["disk"]["gb_per_s"]))
    if "mpl_s_per_step" in results.get("mpl", {}):
        m = results["mpl"]
        rows.append((f"MPL eager s/step (labelled {m['labelled_batch']} + unlabelled {m['unlabelled_batch']})",
                     m["mpl_s_per_step"]))
    if "s_per_step" in results.get("finetune", {}):
        f = results["finetune"]
        rows.append((f"MPL finetune s/step (WRN-28-2, batch {f['batch']})", f["s_per_step"]))
    inc = results.get("inception", {})
    if "images_per_s" in inc:
        rows.append((f"Inception (FID) images/s ({inc['weights']})", inc["images_per_s"]))
    if "frechet_s" in results.get("fid_cpu", {}):
        rows.append(("one Frechet distance, host CPU (s)", results["fid_cpu"]["frechet_s"]))
    for name, tf in results.get("achieved_tflops", {}).items():
        rows.append((f"achieved TFLOP/s: {name}", tf))
    for ch, sec in results.get("projection_s", {}).items():
        rows.append((f"projected full profile: {ch}", f"{sec} s = {sec / 3600:.2f} h"))
    if results.get("projection_missing"):
        rows.append(("projection lacks rates for", ", ".join(results["projection_missing"])))
    if gpu and "total" in results.get("projection_s", {}):
        ok = results["projection_s"]["total"] <= budget.BUDGET_HOURS * 3600
        rows.append((f"full profile within {budget.BUDGET_HOURS:g} h", "yes" if ok else "NO: lower epochs/steps in params/"))
    est = results.get("flop_estimate_s", {})
    if "total" in est:
        rows.append((f"FLOP-based estimate, full profile (assumes {budget.ASSUMED_TFLOPS:g} TFLOP/s, "
                     f">= {budget.ASSUMED_STEP_MS:g} ms/step)",
                     ", ".join(f"{ch[:2]} {est[ch] / 3600:.2f} h" for ch in budget.CHAPTERS)
                     + f", total {est['total'] / 3600:.2f} h"))
    for name, v in results.items():
        if isinstance(v, dict) and "error" in v:
            rows.append((f"{name}: FAILED", v["error"][:120]))
        elif isinstance(v, dict) and "skipped" in v:
            rows.append((f"{name}: skipped", v["skipped"]))
    rows.append(("check wall time (s)", results.get("wall_s")))
    if not gpu:
        rows.append(("note", "CPU run: reduced batches and steps; the projection is from CPU rates, not a GPU budget"))
    return rows


SUMMARY_ROWS = ("device", "ResNet-18 full recipe", "ResNet-18 time to 94%", "resnet18 train", "compiled resnet18",
                "compiled ddpm", "compiled mpl", "host syncs per step", "Inception (FID)", "full profile within",
                "FLOP-based estimate")


def summary(rows: list[tuple[str, object]]) -> str:
    """The measurements' one line: the device, headline rates and the budget verdict, each with its label."""
    return "; ".join(f"{k}: {v}" for k, v in rows if k.startswith(SUMMARY_ROWS))


def plan_table() -> str:
    """:data:`SECTIONS` as a Markdown table: docs/gpu.md's section order and time budget."""
    lines = ["| # | section | s on one H100 | needs to start | measures |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {i} | `{name}` | {s} | {need} | {what} |" for i, (name, s, need, what) in enumerate(SECTIONS, 1)]
    total = sum(s for _, s, _, _ in SECTIONS)
    return "\n".join(lines + [f"| | total | {total} | | cut at {GPU_LIMIT_S} s (`--limit-s`) |"])


def predecode(data: str) -> subprocess.Popen | None:
    """Decode the CIFAR-10 archive into the data cache in a child process while the GPU is measured
    (the accuracy run, near the end, then reads the cache)."""
    if data == "synthetic":
        return None
    code = ("import os, sys; sys.path.insert(0, sys.argv[1]); site = os.environ.get('CIFAR_CHECK_SITE'); "
            "site and sys.path.append(site); from lib import data; data.load_cifar10(sys.argv[2])")
    return subprocess.Popen([sys.executable, "-c", code, str(ROOT), data])


def main() -> int:
    t_start = time.perf_counter()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="", help="CIFAR-10 archive or folder (required on a GPU)")
    ap.add_argument("--out", default="", help="folder for gpu_check.json (default: $BENCH_DIR, else outputs/bench)")
    ap.add_argument("--work", default="", help="folder for the data cache and checkpoints (gpu_check.sh: a temporary one)")
    ap.add_argument("--limit-s", type=float, default=0, help=f"end within this many seconds (GPU {GPU_LIMIT_S})")
    ap.add_argument("--plan", action="store_true", help="print the sections and their time budget, and exit")
    args = ap.parse_args()
    if args.plan:
        print(plan_table())
        return 0
    device = pick_device("auto")
    gpu = device.type == "cuda"
    data = args.data or os.environ.pop("CIFAR10_ROOT", "")  # rates run on synthetic images (same speed)
    if gpu and not data:
        print("gpu_check: on a GPU --data is required: the path of a CIFAR-10 archive or folder (e.g. "
              "cifar10-jpeg.tar.gz, or the folder torchvision downloaded), so the accuracy run trains on real "
              "images; this check never downloads.", file=sys.stderr)
        return 2
    if data and data != "synthetic" and not Path(data).exists():
        print(f"gpu_check: --data {data}: no such file or folder", file=sys.stderr)
        return 2
    if not data:
        print("NOTE: no CIFAR-10 given (--data or CIFAR10_ROOT): using the synthetic stand-in; "
              "accuracies below are NOT CIFAR-10 accuracies.", flush=True)
        data = "synthetic"
    out = Path(args.out or os.environ.get("BENCH_DIR", str(ROOT / "outputs" / "bench")))
    work = Path(args.work or os.environ.get("CIFAR_REPORT_CACHE", "") or out)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    limit = args.limit_s or (GPU_LIMIT_S if gpu else CPU_LIMIT_S)
    decoding = predecode(data)
    results: dict = {"device": device_description(device), "data": data, "torch": torch.__version__,
                     "limit_s": limit}

    def save(status: str = "") -> None:
        results["wall_s"] = round(time.perf_counter() - t_start, 1)
        record.save("gpu_check", [], status or "incomplete", out_dir=out, extra=results, quiet=True)

    def left() -> float:
        return limit - MARGIN_S - (time.perf_counter() - t_start)

    def needs_after(name: str) -> float:
        names = [s[0] for s in SECTIONS]
        return sum(s[2] for s in SECTIONS[names.index(name) + 1:])

    def run_steps() -> dict:
        seconds = min(left() - needs_after("steps"), SECTIONS[1][1] if gpu else 1e9)
        steps = steps_in_child(results, max(seconds, SECTIONS[1][2]), save, gpu=gpu)
        derive_from_steps(results, steps)
        return steps

    def run_accuracy() -> dict:
        if decoding is not None:
            decoding.wait(timeout=max(left() - 30, 1))
        return accuracy_run(device, gpu=gpu, data=data, work=work, results=results)

    fns = {"startup": lambda: startup(device, gpu=gpu), "steps": run_steps,
           "classifiers": lambda: classifier_rates(device, gpu=gpu),
           "step_floor": lambda: step_floor(device, gpu=gpu), "finetune": lambda: finetune_rate(device, gpu=gpu),
           "ddpm_sampling": lambda: ddpm_sampling(device, gpu=gpu),
           "inception": lambda: inception_rate(device, gpu=gpu), "fid_cpu": lambda: fid_cpu(gpu=gpu),
           "flops": budget.count_flops, "disk": lambda: disk_rate(work, gpu=gpu),
           "accuracy_run": run_accuracy, "ddpm_layout": lambda: ddpm_layout(device, gpu=gpu)}
    full_work = budget.profile_work("full")
    rates: dict = {}
    for name, _, need, _ in SECTIONS:
        t0 = time.perf_counter()
        if need and left() < need:  # start-up always runs: it says what the machine is
            results[name] = {"skipped": f"{left():.0f} s left of the {limit:.0f} s limit; it needs {need} s"}
            print(f"[gpu_check] {name}: skipped ({results[name]['skipped']})", flush=True)
            save(f"incomplete: sections up to {name}")
            continue
        try:
            results[name] = fns[name]()
        except Exception as err:  # one broken section must not hide the others' numbers
            results[name] = {"error": f"{type(err).__name__}: {err}"}
            traceback.print_exc()
        if name == "ddpm_sampling" and "s_per_image_step" in results[name]:
            results.setdefault("ddpm", {}).update(results[name])  # bench/budget.py reads sampling under ddpm
        shown = "counted" if name == "flops" and "error" not in results[name] else json.dumps(results[name])
        print(f"[gpu_check] {name} ({time.perf_counter() - t0:.0f} s): {shown[:2000]}", flush=True)
        rates = project_into(results, full_work, gpu=gpu)
        save(f"incomplete: sections up to {name}")  # a run cut off later keeps what it measured so far
    if decoding is not None and decoding.poll() is None:
        decoding.kill()
    results["wall_s"] = round(time.perf_counter() - t_start, 1)
    flops = results.get("flops", {})
    rows = table_rows(results, gpu=gpu)
    record.save("gpu_check", [{"what": k, "value": v} for k, v in rows], summary(rows), out_dir=out,
                extra=results)
    print(f"\n[gpu_check] per-workload projection (python bench/budget.py --rates {out / 'gpu_check.json'}):")
    counted = flops if flops and "error" not in flops and "skipped" not in flops else None
    print(budget.work_table(full_work, rates, counted).to_string(index=False))
    width = max(len(k) for k, _ in rows)
    print("\n" + "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))
    print(f"\nfull log: {out / 'gpu_check.json'}")
    return 1 if any(isinstance(v, dict) and "error" in v for v in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
