"""Device check for the full profile: measures the rates that decide its wall time, then projects it.

    bench/gpu_check.sh [--data ARCHIVE] [--fid-weights PTH]     (logs under $BENCH_DIR, default outputs/bench/)

Sections run in order of information per second, and ``gpu_check.json`` (with the projection so far) is
written after every one, so a run cut off by its time limit keeps everything it measured:

1. start-up: torch and CUDA versions, device, driver, native bf16, free memory, a tiny ``torch.compile``;
2. eager rates (seconds each): every chapter-1 model's training images/s (and the pretrained EfficientNet
   at 224 px), DDPM steps/s and DDIM sampling time, DCGAN and VAE steps/s, MPL/UDA/supervised seconds per
   step at the presented batch sizes, Inception images/s for FID, FLOPs per workload, checkpoint write speed;
3. the end-to-end accuracy run: the full profile's ResNet-18 (its recipe, all its epochs) when the measured
   rate projects it under 3 minutes, else as many epochs as fit: test accuracy and time to 94% validation;
4. the DDPM U-Net's memory layout (contiguous vs channels_last: GroupNorm) for training and sampling;
5. CUDA only, time-boxed in a child process: what ``torch.compile`` buys and costs per graph.

On a CPU the same sections run shrunk (small batches, few steps) to prove every path. From the rates and the
full profile's parameters (bench/budget.py) it projects each chapter's wall time, overheads included, against
the 3-hour budget. The short table is last.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import budget  # noqa: E402
import record  # noqa: E402

from lib import data as D  # noqa: E402
from lib import params as P  # noqa: E402
from lib.train import amp_dtype, device_description, pick_device  # noqa: E402

LIMIT_S = 560          # the whole check must end within the device's 10-minute limit per command
OPTIONAL_NEEDS_S = 90  # the compile comparison runs (in a child process, cut off before the limit) with this much left
E2E_BUDGET_S = 180     # the end-to-end ResNet-18 run trains the full profile's epochs when they fit in this


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rate(step, n_steps: int, device, warmup: int = 2) -> float:
    """Seconds per call of ``step()`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        step()
    _sync(device)
    return (time.perf_counter() - t0) / n_steps


def startup(device, *, gpu: bool) -> dict:
    """What the machine is: versions, GPU, driver, native bf16, free memory, and whether
    torch.compile builds a tiny graph (seconds, so a broken toolchain shows before any rate)."""
    from lib.train.device import bf16_native

    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": device_description(device)}
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
        _sync(device)
        out["compile"] = f"works ({time.perf_counter() - t0:.1f} s for a tiny graph)"
    except Exception as err:  # any compiler failure is what this check is for
        out["compile"] = f"FAILED: {type(err).__name__}: {str(err)[:120]}"
    return out


def accuracy_run(device, *, gpu: bool, out: Path, results: dict) -> dict:
    """The full profile's ResNet-18 with its recipe, all its epochs when the measured batch-512 rate projects
    them under :data:`E2E_BUDGET_S`, else as many epochs as fit (the schedule then spans those epochs); on a
    CPU one epoch of a shrunk run. Test accuracy, validation accuracy per epoch, time to 94% validation."""
    from train_speed import time_to_94

    from lib.chapters import supervised

    full = P.load("01_supervised", "full")
    full_epochs = supervised.model_epochs(full, "resnet18")
    if not gpu:
        over = {"train_subset": 1200, "val_size": 200, "test_subset": 500, "width": 0.25,
                "strong_batch_size": 128}
        return time_to_94(1, over, ckpt_root=out / "accuracy_run")
    ips = (results.get("classifiers") or {}).get("resnet18")
    if not isinstance(ips, (int, float)):
        raise RuntimeError("no ResNet-18 rate was measured, so the run cannot be sized")
    epoch_s = 1.15 * (budget.TRAIN_IMAGES - full["val_size"]) / ips  # + evaluation
    epochs = full_epochs if epoch_s * full_epochs <= E2E_BUDGET_S else max(1, int(E2E_BUDGET_S // epoch_s))
    return {"projected_s": round(epoch_s * epochs), **time_to_94(epochs, {}, ckpt_root=out / "accuracy_run")}


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


def generator_rate(kind: str, device, *, batch: int | None, steps: int, warmup: int = 2, compile: bool = False,
                   over: dict | None = None):
    """Full-profile ``kind`` ("vae", "dcgan" or "ddpm") method, its settings, parameter count, batch and seconds
    per training step at ``batch`` (None = the full profile's batch size; images in [-1, 1], labels ignored);
    ``over`` overrides chapter-2 params."""
    from lib.chapters import generative

    s = generative.generator_settings(kind, P.load("02_generative", "full", over))
    method, n_params = generative.build_method(kind, s, total_steps=1000, seed=0)
    method.setup(device, amp_dtype(device), compile=compile)
    batch = batch or s["batch_size"]
    x = torch.rand(batch, 3, 32, 32, device=device) * 2 - 1
    y = torch.zeros(batch, dtype=torch.long, device=device)
    return method, s, n_params, batch, _rate(lambda: method.train_step((x, y)), steps, device, warmup=warmup)


def ddpm_rates(device, *, gpu: bool) -> dict:
    method, s, n_params, batch, sec = generator_rate("ddpm", device, batch=None if gpu else 4,
                                                     steps=20 if gpu else 1, warmup=3 if gpu else 1)
    n_sample = 500 if gpu else 2
    steps = s["ddim_steps"] if gpu else 2
    _, t_ddim = method.sample(n_sample, sampler="ddim", steps=steps, batch_size=n_sample, seed=0)
    per_image_step = t_ddim / (n_sample * steps)  # seconds per image per denoising step
    return {"params": n_params, "batch": batch, "steps_per_s": round(1 / sec, 2),
            "images_per_s": round(batch / sec, 1), "ddim_steps": s["ddim_steps"],
            "s_per_image_step": per_image_step,
            "ddim_5000_s": round(per_image_step * 5000 * s["ddim_steps"], 1),
            "ancestral_5000_s": round(per_image_step * 5000 * s["ancestral_steps"], 1)}


def ddpm_layout(device, *, gpu: bool) -> dict:
    """DDPM training steps/s and DDIM sampling seconds per image-step with the U-Net contiguous and
    channels_last (``ddpm_channels_last``): GroupNorm, all through the U-Net, may prefer either on CUDA."""
    out = {}
    for layout, channels_last in (("contiguous", False), ("channels_last", True)):
        method, s, _, batch, sec = generator_rate("ddpm", device, batch=None if gpu else 2, steps=10 if gpu else 1,
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


def disk_rate(out: Path, *, gpu: bool) -> dict:
    """Checkpoint write speed: a tensor of 1 GiB (CPU: 64 MiB) saved the way checkpoints are (atomically)."""
    from lib.storage import save_atomic

    n = (2**30 if gpu else 2**26) // 4
    path = out / "disk_check.pt"
    t0 = time.perf_counter()
    save_atomic({"x": torch.zeros(n)}, path)
    sec = time.perf_counter() - t0
    path.unlink(missing_ok=True)
    return {"gb": round(n * 4 / 1e9, 3), "gb_per_s": round(n * 4 / 1e9 / sec, 2)}


def small_generator_rates(kind: str, device, *, gpu: bool) -> dict:
    _, _, _, batch, sec = generator_rate(kind, device, batch=None if gpu else 32, steps=30 if gpu else 2)
    return {"batch": batch, "steps_per_s": round(1 / sec, 2), "images_per_s": round(batch / sec, 1)}


def compile_gain_in_child(seconds: float) -> dict:
    """:func:`compile_gain` in a child process stopped after ``seconds``, so a slow compilation can never push the
    check past its limit and lose the table."""
    import subprocess

    try:
        proc = subprocess.run([sys.executable, __file__, "--compile-only"], capture_output=True, text=True,
                              timeout=seconds)
    except subprocess.TimeoutExpired:
        return {"skipped": f"compilation did not finish within the {seconds:.0f} s left"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compile_gain(device) -> dict:
    """CUDA only: ResNet-18 (batch 512) and DDPM (batch 128) training rates eager and compiled."""
    from train_speed import one

    out, wall = {}, {}
    for compiled in (False, True):
        name = "compiled" if compiled else "eager"
        t0 = time.perf_counter()
        r = one("resnet18", width=1.0, batch_size=512, steps=30, device_name=str(device), compile=compiled)
        out[f"resnet18_{name}_images_per_s"] = r["images_per_s"]
        *_, batch, sec = generator_rate("ddpm", device, batch=None, steps=20, warmup=3, compile=compiled)
        out[f"ddpm_{name}_steps_per_s"] = round(1 / sec, 2)
        wall[name] = time.perf_counter() - t0
    # the same work eager and compiled: the difference is the two graphs' compilation (cold cache)
    out["s_per_graph"] = round(max(1.0, (wall["compiled"] - wall["eager"]) / 2), 1)
    out["resnet18_speedup"] = round(out["resnet18_compiled_images_per_s"] / out["resnet18_eager_images_per_s"], 2)
    out["ddpm_speedup"] = round(out["ddpm_compiled_steps_per_s"] / out["ddpm_eager_steps_per_s"], 2)
    return out


def mpl_rates(device, *, gpu: bool) -> dict:
    from lib.chapters import semi_supervised

    over = {} if gpu else {"batch_size": 2}  # CPU: labelled 2 + unlabelled 2 x 7, scaled up by bench/budget.py
    params = P.load("03_semi_supervised", "full", over)
    ds = D.make_synthetic(2000, 10)
    unlabelled = params["batch_size"] * params["mu"]
    out = {"labelled_batch": params["batch_size"], "unlabelled_batch": unlabelled}
    for kind in ("mpl", "uda", "supervised"):
        method = semi_supervised.build_method(kind, params, total_steps=1000)
        method.setup(device, amp_dtype(device))
        stream = semi_supervised.ssl_batches(ds.train_x[:400], ds.train_y[:400], ds.train_x[400:], params, device,
                                             unlabelled=kind != "supervised").forever()
        sec = _rate(lambda: method.train_step(next(stream)), 10 if gpu else 1, device, warmup=2 if gpu else 1)
        out[f"{kind}_s_per_step"] = round(sec, 4)
    return out


def inception_rate(device, *, gpu: bool) -> dict:
    from lib.evaluate import fid

    ok, msg = fid.inception_status(download="never")
    if not ok:
        return {"error": msg}
    n = 2000 if gpu else 8
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    fid.inception_features(images[: min(n, 200)], batch_size=200, device=device)  # load + warm-up
    _sync(device)
    t0 = time.perf_counter()
    fid.inception_features(images, batch_size=500 if gpu else 8, device=device)
    _sync(device)
    return {"images": n, "images_per_s": round(n / (time.perf_counter() - t0), 1)}


def project_into(results: dict, work: list, *, gpu: bool) -> dict[str, float]:
    """The full profile's projection from what is measured so far (overheads included), and on a GPU the
    achieved TFLOP/s per workload; returns the unit rates it used."""
    rates = budget.unit_rates(results)
    proj, missing = budget.project(work, rates)
    results["projection_s"] = {k: round(v) for k, v in proj.items()}
    results["projection_missing"] = missing
    flops = results.get("flops", {})
    if "error" in flops or not flops:
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
        if key != "device":
            rows.append((f"start-up: {key}", value))
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
    for key, label in (("ddpm", "DDPM"), ("dcgan", "DCGAN"), ("vae", "VAE")):
        v = results.get(key, {})
        if "steps_per_s" in v:
            rows.append((f"{label} steps/s at batch {v['batch']}", v["steps_per_s"]))
    if "ddim_5000_s" in results.get("ddpm", {}):
        rows.append((f"DDPM 5,000 images: DDIM {results['ddpm']['ddim_steps']} steps / ancestral 1000 (s)",
                     f"{results['ddpm']['ddim_5000_s']} / {results['ddpm']['ancestral_5000_s']}"))
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
        rows.append((f"MPL s/step (labelled {m['labelled_batch']} + unlabelled {m['unlabelled_batch']})",
                     m["mpl_s_per_step"]))
    if "images_per_s" in results.get("inception", {}):
        rows.append(("Inception (FID) images/s", results["inception"]["images_per_s"]))
    c = results.get("compile", {})
    if "resnet18_speedup" in c:
        rows.append(("torch.compile speed-up: ResNet-18 / DDPM", f"{c['resnet18_speedup']}x / {c['ddpm_speedup']}x"))
        rows.append(("torch.compile cost per graph (s, cold)", c["s_per_graph"]))
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
    if not gpu:
        rows.append(("note", "CPU run: reduced batches and steps; the projection is from CPU rates, not a GPU budget"))
    return rows


SUMMARY_ROWS = ("device", "ResNet-18 full recipe", "ResNet-18 time to 94%", "resnet18 train", "DDPM steps/s",
                "MPL s/step", "Inception (FID)", "full profile within", "FLOP-based estimate")


def summary(rows: list[tuple[str, object]]) -> str:
    """The README's one line: the device, headline rates and the budget verdict, each with its label."""
    return "; ".join(f"{k}: {v}" for k, v in rows if k.startswith(SUMMARY_ROWS))


def main() -> int:
    t_start = time.perf_counter()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="", help="CIFAR-10 folder or archive (default: $CIFAR10_ROOT, else synthetic)")
    ap.add_argument("--out", default=os.environ.get("BENCH_DIR", str(ROOT / "outputs" / "bench")))
    ap.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.compile_only:
        print(json.dumps(compile_gain(pick_device("auto"))))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = args.data or os.environ.get("CIFAR10_ROOT", "")
    if not data:
        print("NOTE: no CIFAR-10 given (--data or CIFAR10_ROOT): using the synthetic stand-in; "
              "accuracies below are NOT CIFAR-10 accuracies.", flush=True)
        data = "synthetic"
    os.environ["CIFAR10_ROOT"] = data
    device = pick_device("auto")
    gpu = device.type == "cuda"
    results: dict = {"device": device_description(device), "data": data, "torch": torch.__version__}
    sections = [("startup", lambda: startup(device, gpu=gpu)),
                ("classifiers", lambda: classifier_rates(device, gpu=gpu)),
                ("ddpm", lambda: ddpm_rates(device, gpu=gpu)),
                ("dcgan", lambda: small_generator_rates("dcgan", device, gpu=gpu)),
                ("vae", lambda: small_generator_rates("vae", device, gpu=gpu)),
                ("mpl", lambda: mpl_rates(device, gpu=gpu)),
                ("inception", lambda: inception_rate(device, gpu=gpu)),
                ("flops", budget.count_flops),
                ("disk", lambda: disk_rate(out, gpu=gpu)),
                ("accuracy_run", lambda: accuracy_run(device, gpu=gpu, out=out, results=results)),
                ("ddpm_layout", lambda: ddpm_layout(device, gpu=gpu))]
    if gpu:
        sections.append(("compile", lambda: compile_gain_in_child(LIMIT_S - 30 - (time.perf_counter() - t_start))))
    work = budget.profile_work("full")
    for name, fn in sections:
        t0 = time.perf_counter()
        if name == "compile" and LIMIT_S - (t0 - t_start) < OPTIONAL_NEEDS_S:
            results[name] = {"skipped": f"under {OPTIONAL_NEEDS_S} s of the {LIMIT_S} s limit left"}
            continue
        try:
            results[name] = fn()
        except Exception as err:  # one broken section must not hide the others' numbers
            results[name] = {"error": f"{type(err).__name__}: {err}"}
            traceback.print_exc()
        shown = "counted" if name == "flops" and "error" not in results[name] else json.dumps(results[name])
        print(f"[gpu_check] {name} ({time.perf_counter() - t0:.0f} s): {shown}", flush=True)
        rates = project_into(results, work, gpu=gpu)
        # saved after every section: a run cut off by its time limit keeps what it measured so far
        record.save("gpu_check", [], f"incomplete: sections up to {name}", out_dir=out, extra=results,
                    quiet=True)
    flops = results.get("flops", {})
    rows = table_rows(results, gpu=gpu)
    record.save("gpu_check", [{"what": k, "value": v} for k, v in rows], summary(rows), out_dir=out,
                extra=results)
    print(f"\n[gpu_check] per-workload projection (python bench/budget.py --rates {out / 'gpu_check.json'}):")
    print(budget.work_table(work, rates, flops if "error" not in flops else None).to_string(index=False))

    width = max(len(k) for k, _ in rows)
    print("\n" + "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))
    print(f"\nfull log: {out / 'gpu_check.json'}")
    return 1 if any(isinstance(v, dict) and "error" in v for v in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
