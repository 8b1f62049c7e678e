"""Inception-v3 (FID feature extractor) throughput on this machine: images/s per thread count and memory format.

    python bench/fid_throughput.py [--images 40] [--threads 1 2] [--batch 20]

Prints one line per configuration. On CPU the network runs at 299x299 (~5.7 GFLOPs per image), so FID on
5,000 images is a GPU job; the smoke and quick profiles score tens to hundreds of images.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import record  # noqa: E402

from lib.evaluate import fid  # noqa: E402
from lib.train import pick_device  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=40, help="images per measurement")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU thread counts to try")
    ap.add_argument("--batch", type=int, default=20, help="images per Inception batch")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    ok, msg = fid.inception_status()
    if not ok:
        sys.exit(msg)
    device = pick_device(args.device)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    fid.inception_features(images[:2], device=device)  # warm-up (weights, allocator)
    rows = []
    for threads in args.threads if device.type == "cpu" else [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        fid.inception_features(images, batch_size=args.batch, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        print(f"{device.type}, {threads} threads, batch {args.batch}: {args.images / dt:.2f} images/s "
              f"({args.images} images in {dt:.1f} s; 5,000 images would take {5000 * dt / args.images / 60:.1f} min)")
        rows.append({"device": device.type, "threads": threads, "batch": args.batch,
                     "images_per_s": args.images / dt})
    best = max(rows, key=lambda r: r["images_per_s"])
    record.save("fid_throughput", rows, f"Inception-v3 {best['images_per_s']:.1f} images/s ({best['device']}, "
                f"{best['threads']} threads, batch {best['batch']})")


if __name__ == "__main__":
    main()
