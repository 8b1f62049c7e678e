"""One Fréchet distance on this machine: pytorch-fid's ``calculate_frechet_distance`` (scipy ``sqrtm`` of
the covariance product) against :func:`lib.evaluate.fid.frechet_distance` (symmetric eigendecompositions),
on the same statistics, in one run.

    python bench/fid_distance.py [--images 250 5000] [--dims 2048] [--repeats 2]

For each generated-sample count: the seconds of pytorch-fid's distance, of ours with the reference's
square root already kept (what every distance after the first costs in chapter 2), of that square root
(once per reference), and the two values' relative difference. The features are synthetic (non-negative,
like pool3's) and seeded; a reference of 5,000 images, as chapter 2's full profile uses, or the count given.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import record  # noqa: E402

from lib.evaluate.fid import Stats, frechet_distance  # noqa: E402


def features(n: int, dims: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.abs(rng.normal(size=(n, dims))) * rng.uniform(0.3, 0.7, size=dims)


def measure(n: int, dims: int, reference: int, repeats: int) -> dict:
    from pytorch_fid.fid_score import calculate_frechet_distance

    gen = Stats.of(features(n, dims, seed=1))
    ref = Stats.of(features(reference, dims, seed=2))
    t0 = time.perf_counter()
    ref.root()
    root_s = time.perf_counter() - t0
    ours, theirs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = frechet_distance(gen, ref)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        expected = calculate_frechet_distance(gen.mu, gen.sigma, ref.mu, ref.sigma)
        theirs.append(time.perf_counter() - t0)
    return {"generated images": n, "reference images": reference, "dims": dims,
            "pytorch-fid s": round(min(theirs), 3), "ours s (root kept)": round(min(ours), 4),
            "reference root s (once)": round(root_s, 3), "speed-up": round(min(theirs) / min(ours), 1),
            "relative difference": float(abs(value - expected) / abs(expected))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, nargs="+", default=[250, 5000], help="generated-sample counts")
    ap.add_argument("--dims", type=int, default=2048)
    ap.add_argument("--reference", type=int, default=5000, help="reference images")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    rows = [measure(n, args.dims, args.reference, args.repeats) for n in args.images]
    import pandas as pd

    print(pd.DataFrame(rows).to_string(index=False))
    summary = "; ".join(f"{r['generated images']:,} images: pytorch-fid {r['pytorch-fid s']:g} s, ours "
                        f"{r['ours s (root kept)']:g} s + {r['reference root s (once)']:g} s once per reference "
                        f"(relative difference {r['relative difference']:.1e})" for r in rows)
    print(summary)
    record.save("fid_distance", rows, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
