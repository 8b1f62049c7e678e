"""Chapter-1 training speed on the current device: images/s, seconds per epoch and peak memory for each model.

    python bench/train_speed.py [--models resnet18,drn_c_26] [--width 1.0] [--batch-size 128] [--steps 20]
    python bench/train_speed.py --layouts --models resnet50 --width 0.25   # NCHW vs channels_last, same run
    python bench/train_speed.py --time-to-94     # CUDA: wall time until ResNet-18 (strong recipe) reaches 94% validation accuracy

Each model runs in its own process so its peak memory (CUDA: max allocated; CPU: peak RSS) is its own.
Batches come from the project's BatchLoader (data on the device, batched augmentation), as in training.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def one(model_name: str, *, width: float, batch_size: int, steps: int, device_name: str,
        compile: bool = False, model_kwargs: dict | None = None, layout: str = "auto") -> dict:
    import torch

    from lib import data as D
    from lib.batches import BatchLoader
    from lib.methods.classifier import Classifier
    from lib.models import build_model, count_parameters
    from lib.train import amp_dtype, channels_last, make_optimizer, pick_device

    device = pick_device(device_name)
    ds = D.load_cifar10("auto") if os.environ.get("CIFAR10_ROOT") else D.make_synthetic(2048, 10)
    cl = channels_last(device) if layout == "auto" else layout == "channels_last"
    loader = BatchLoader(ds.train_x[:8192], ds.train_y[:8192], batch_size=batch_size, device=device,
                         channels_last=cl)
    model = build_model(model_name, width=width, **(model_kwargs or {}))
    method = Classifier(model, make_optimizer(model.parameters(), name="sgd", lr=0.05, nesterov=True))
    method.memory_format = lambda device: torch.channels_last if cl else torch.contiguous_format
    method.setup(device, amp_dtype(device), compile=compile)
    stream = loader.forever()
    warmup = max(2, steps // 5)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        method.train_step(next(stream))
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        method.train_step(next(stream))
    sync()
    dt = time.perf_counter() - t0
    ips = steps * batch_size / dt
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"model": model_name, "width": width, "batch": batch_size, "device": device.type, "compile": compile,
            "layout": "channels_last" if cl else "contiguous",
            "params_M": round(count_parameters(model) / 1e6, 2), "images_per_s": round(ips, 1),
            "s_per_epoch_45k": round(45000 / ips, 1), "peak_mem_MiB": round(peak / 2**20)}


def time_to_94(epochs: int = 12, overrides: dict | None = None, ckpt_root: Path | None = None) -> dict:
    """ResNet-18 with the full profile's recipe (strong, with its Cutout), full width, on the full profile's
    data (``overrides`` shrink it): the wall time at which validation accuracy (evaluated every epoch) first
    reaches 94%, and the test accuracy of the best epoch at the end."""
    from lib import params as P
    from lib.chapters import supervised

    params = P.load("01_supervised", "full", {"epochs": epochs, **(overrides or {})})
    splits = supervised.load_splits(params)
    t0 = time.perf_counter()
    root = ckpt_root or Path(os.environ.get("BENCH_DIR", "/tmp")) / "time_to_94"
    trained = supervised.train_classifier("resnet18", splits, params, ckpt_root=root, epochs=epochs)
    hist = trained.history
    reached = hist[hist["val_acc"] >= 0.94]
    return {"epochs": epochs, "full_profile_epochs": supervised.model_epochs(params, "resnet18"),
            "width": params["width"], "train_images": len(splits.train_y),
            "images_per_s": round(float(hist["images_per_s"].iloc[-1]), 1),
            "test_acc_best_epoch": round(100 * trained.test_acc, 2),
            "val_acc_by_epoch": [round(100 * v, 2) for v in hist["val_acc"]],
            "seconds_to_94_val": None if reached.empty else round(float(reached["elapsed_s"].iloc[0]), 1),
            "wall_s": round(time.perf_counter() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="", help="comma-separated registered names (default: all)")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)
    ap.add_argument("--layout", default="auto", choices=["auto", "contiguous", "channels_last"],
                    help="memory layout of the model and its batches (auto: lib.train.channels_last)")
    ap.add_argument("--layouts", action="store_true",
                    help="time each model in both layouts, one process each, and print the ratio")
    ap.add_argument("--time-to-94", action="store_true")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, width=args.width, batch_size=args.batch_size, steps=args.steps,
                             device_name=args.device, layout=args.layout)))
        return 0
    if args.time_to_94:
        print(json.dumps(time_to_94(), indent=1))
        return 0
    from lib.models import MODELS

    names = args.models.split(",") if args.models else sorted(MODELS)
    layouts = ["contiguous", "channels_last"] if args.layouts else [args.layout]
    rows = []
    for name in names:
        for layout in layouts:
            proc = subprocess.run([sys.executable, __file__, "--one", name, "--width", str(args.width),
                                   "--batch-size", str(args.batch_size), "--steps", str(args.steps),
                                   "--device", args.device, "--layout", layout],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                rows.append({"model": name, "layout": layout, "error": proc.stderr.strip().splitlines()[-1]})
            else:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    import pandas as pd
    import record

    df = pd.DataFrame(rows)
    ok = [r for r in rows if "images_per_s" in r]
    if args.layouts:
        speed = df.pivot(index="model", columns="layout", values="images_per_s")
        speed["channels_last / contiguous"] = (speed["channels_last"] / speed["contiguous"]).round(2)
        print(speed.to_markdown())
        summary = ", ".join(f"{m} {r:.2f}x" for m, r in speed["channels_last / contiguous"].items())
        record.save(f"train_layouts_w{args.width:g}_b{args.batch_size}", rows,
                    f"channels_last / contiguous training speed at width {args.width:g}, batch "
                    f"{args.batch_size}: {summary}")
        return 0
    print(df.to_markdown(index=False))
    summary = ", ".join(f"{r['model']} {r['images_per_s']:.0f}" for r in ok)
    record.save(f"train_speed_w{args.width:g}_b{args.batch_size}", rows,
                f"training images/s at width {args.width:g}, batch {args.batch_size}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
