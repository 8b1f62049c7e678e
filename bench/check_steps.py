"""The device check's training steps: every method the full profile trains, at its full-profile batch,
timed eager and compiled, with host synchronisations counted per step.

    python bench/check_steps.py [--workloads resnet18,mpl] [--compile]   (one JSON line per workload)

``bench/gpu_check.py`` runs this file in a child process and reads its lines as they come, so a
compilation that hangs or overruns costs only this section's time, and every workload finished
before the cut is kept. Speed does not depend on the pixels, so the steps run on synthetic images.

Host synchronisations per step are counted by ``torch.cuda.set_sync_debug_mode("warn")`` on CUDA
(every call that makes the host wait for the GPU warns) and by
:class:`lib.train.syncs.HostSyncCounter` on a CPU (data-dependent ops, and tensors made from Python
data). 0 is expected everywhere; any other count names the method in the check's table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if os.environ.get("CIFAR_CHECK_SITE"):  # gpu_check.sh --wheels: after the machine's own packages
    sys.path.append(os.environ["CIFAR_CHECK_SITE"])

from lib import data as D  # noqa: E402
from lib import params as P  # noqa: E402
from lib.train import amp_dtype, pick_device  # noqa: E402

# the full profile's compiled workloads, largest share of its FLOPs first (bench/budget.py)
WORKLOADS = ("resnet18", "mpl", "uda", "ddpm", "supervised", "vae", "dcgan")
LINE_PREFIX = "@check "  # marks this script's result lines among anything else it prints


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(step, n: int, device: torch.device, *, warmup: int = 2) -> float:
    """Seconds per call of ``step()`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    sync(device)
    return (time.perf_counter() - t0) / n


def syncs_per_step(step, n: int, device: torch.device) -> dict:
    """Host synchronisations per call of ``step()`` over ``n`` calls (and, on a CPU, tensors built
    from Python data per call)."""
    if device.type == "cuda":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                for _ in range(n):
                    step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        sync(device)
        hits = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
        out = {"syncs": len(hits) / n, "how": "cuda sync debug mode"}
        return {**out, "first": hits[0][:160]} if hits else out
    from lib.train.syncs import HostSyncCounter

    with HostSyncCounter() as counter:
        for _ in range(n):
            step()
    return {"syncs": counter.syncs / n, "host_tensors": sum(counter.host_tensors.values()) / n,
            "how": "HostSyncCounter", **({"ops": counter.ops} if counter.ops else {})}


def amp_of(name: str, device: torch.device):
    """The autocast dtype workload ``name`` trains in on ``device``: its chapter's ``amp`` on CUDA
    (chapter 3: fp16, as the reference), off on a CPU (as the CPU profiles run)."""
    if device.type != "cuda":
        return None
    chapter = "03_semi_supervised" if name in ("mpl", "uda", "supervised", "wrn28_2") else (
        "02_generative" if name in ("vae", "dcgan", "ddpm") else "01_supervised")
    return amp_dtype(device, P.load(chapter, "full")["amp"])


def build(name: str, device: torch.device, *, gpu: bool):
    """``(method, step, batch)``: the full profile's method ``name`` (a CPU gets small batches),
    a zero-argument training step on fixed-seed synthetic batches, and the batch it takes."""
    from lib.augment import Cutout, to_signed
    from lib.batches import BatchLoader
    from lib.chapters import generative, semi_supervised, supervised

    torch.manual_seed(0)
    ds = D.make_synthetic(2048 if gpu else 600, 10)
    if name in ("resnet18", "wrn28_2"):
        from lib.methods.classifier import Classifier
        from lib.models import build_model
        from lib.train import make_optimizer

        if name == "resnet18":  # chapter 1's recipe run (its batch, Cutout)
            p = P.load("01_supervised", "full")
            rec = supervised.recipe(p)
            model, batch, cut = build_model("resnet18", width=1.0), rec["batch_size"], rec["cutout"]
        else:  # chapter 3's finetune: the student on the labelled images
            p = P.load("03_semi_supervised", "full")
            model, batch, cut = semi_supervised.wrn(p, 0.0), p["finetune_batch_size"], 0
        batch = batch if gpu else 8
        opt = make_optimizer(model.parameters(), name="sgd", lr=0.05, momentum=0.9, nesterov=True)
        method = Classifier(model, opt)
        stream = BatchLoader(ds.train_x, ds.train_y, batch_size=batch, device=device, seed=0,
                             channels_last=gpu, strong=Cutout(cut) if cut else None).forever()
        return method, lambda: method.train_step(next(stream)), batch
    if name in generative.GENERATORS:
        s = generative.generator_settings(name, P.load("02_generative", "full"))
        method, _ = generative.build_method(name, s, total_steps=1000, seed=0)
        batch = s["batch_size"] if gpu else 4
        stream = BatchLoader(ds.train_x, ds.train_y, batch_size=batch, device=device, seed=0,
                             padding=0, normalize_fn=to_signed, channels_last=gpu).forever()
        return method, lambda: method.train_step(next(stream)), batch
    p = P.load("03_semi_supervised", "full", None if gpu else {"batch_size": 2})
    method = semi_supervised.build_method(name, p, total_steps=1000)
    stream = semi_supervised.ssl_batches(ds.train_x[:200], ds.train_y[:200], ds.train_x[200:], p,
                                         device, unlabelled=name != "supervised").forever()
    label = p["batch_size"] if name == "supervised" else f"{p['batch_size']}+{p['batch_size'] * p['mu']}"
    return method, lambda: method.train_step(next(stream)), label


def setup(method, device: torch.device, dtype, *, compile: bool) -> None:
    """``method.setup``; on a CPU the optimisers then switch to the fused kernels they use on CUDA,
    so the count sees the CUDA path's optimiser steps (the unfused ones read CPU step counters,
    which on CUDA stay on the host)."""
    from lib.train import move_optimizer

    method.setup(device, dtype, compile=compile)
    if device.type == "cpu":
        for opt in method.state.values():
            if isinstance(opt, torch.optim.Optimizer):
                move_optimizer(opt, fused=True)


def measure(name: str, device: torch.device, *, gpu: bool, compile: bool) -> dict:
    """One workload: eager seconds per step and syncs per step; with ``compile`` also the first
    compiled step's cost (the compilation), the compiled steady rate, graphs built, calls that
    ran eagerly, and syncs per compiled step."""
    method, step, batch = build(name, device, gpu=gpu)
    dtype = amp_of(name, device)
    setup(method, device, dtype, compile=False)
    n = 10 if gpu else 2
    out: dict = {"batch": batch, "eager_s_per_step": round(seconds_per_call(step, n, device), 5)}
    out["syncs_eager"] = syncs_per_step(step, 3, device)
    if not compile:
        return out
    setup(method, device, dtype, compile=True)
    t0 = time.perf_counter()
    step()  # compiles (OneGraph catches a compile error, records it and runs eagerly)
    sync(device)
    first = time.perf_counter() - t0
    steady = seconds_per_call(step, 2 * n, device)
    records = method.compilation()
    errors = [f"{name}: {r['error']}" for name, r in records.items() if r["error"]]
    out.update(compiled_s_per_step=round(steady, 5), compile_s=round(max(first - steady, 0.0), 1),
               graphs=sum(r["graphs"] for r in records.values()),
               eager_calls=sum(r["eager_calls"] for r in records.values()),
               speedup=round(out["eager_s_per_step"] / steady, 2))
    if gpu:  # on a CPU the counter is a dispatch mode, under which dynamo does not run graphs
        out["syncs_compiled"] = syncs_per_step(step, 3, device)
    if errors:  # the steps above ran eagerly: their rate is not a compiled one
        out["error"] = "; ".join(errors)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--compile", action="store_true", help="also compile each workload")
    ap.add_argument("--backend", default="", help="torch.compile backend (default: the project's, inductor)")
    args = ap.parse_args()
    device = pick_device("auto")
    gpu = device.type == "cuda"
    if args.backend:
        from lib.train import device as train_device

        train_device.COMPILE_BACKEND = args.backend
    for name in args.workloads.split(","):
        t0 = time.perf_counter()
        try:
            result = measure(name, device, gpu=gpu, compile=args.compile)
        except Exception as err:  # one broken workload must not hide the others
            result = {"error": f"{type(err).__name__}: {str(err).strip()[:200]}"}
        result["wall_s"] = round(time.perf_counter() - t0, 1)
        if args.backend:
            result["backend"] = args.backend
        print(LINE_PREFIX + json.dumps({"workload": name, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
