"""Time chapter 4's similarity search: every CIFAR-10 test query against the 50,000-image gallery, cached features.

    python bench/retrieval_speed.py                     # chapter 1's quick checkpoint, outputs/quick cache
    python bench/retrieval_speed.py --profile full      # the full-width checkpoint (512-d features)
    python bench/retrieval_speed.py --random-dim 512    # random features of that size: no checkpoint needed

Features come from the chapter-4 cache (``outputs/<profile>/cache/04_extras``; embedded and cached first if
absent, which is not timed). Prints, per metric, the seconds to score all queries against the whole gallery and
keep each query's top 10, and the seconds to rank the whole gallery for every query (precision@k and mAP), with
the machine's load average, because on a shared CPU the numbers move with it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import record  # noqa: E402
import torch  # noqa: E402

from lib import data as D  # noqa: E402
from lib import params as P  # noqa: E402
from lib import storage  # noqa: E402
from lib.chapters import extras  # noqa: E402
from lib.evaluate import retrieval  # noqa: E402
from lib.train import device_description, pick_device  # noqa: E402


def features(args) -> tuple:
    if args.random_dim:
        g = torch.Generator().manual_seed(0)
        gy, qy = torch.arange(50_000) % 10, torch.arange(10_000) % 10
        return (torch.randn(10_000, args.random_dim, generator=g), qy, torch.randn(50_000, args.random_dim, generator=g),
                gy, f"random {args.random_dim}-d features")
    params = P.load("04_extras", args.profile, {"data": args.data} if args.data != "auto" else None)
    ds = D.load_cifar10(params["data"])
    device = pick_device(params["device"])
    profile_dir = Path(args.out or storage.default_out_root()) / params["profile"]
    emb = extras.load_embedder(profile_dir, params["model"], device=device)
    cache = profile_dir / "cache" / "04_extras"
    gf, hit_g = emb.cached(ds.train_x, name="gallery", source=ds.source, cache_dir=cache,
                           batch_size=params["eval_batch_size"])
    qf, hit_q = emb.cached(ds.test_x, name="queries", source=ds.source, cache_dir=cache,
                           batch_size=params["eval_batch_size"])
    what = (f"{params['profile']} {params['model']} (width {emb.info['width']}) features, "
            f"{'cached' if hit_g and hit_q else 'embedded now (not timed)'}")
    return qf, ds.test_y, gf, ds.train_y, what


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick", help="whose chapter-1 checkpoint embeds the images")
    ap.add_argument("--data", default="auto", help="CIFAR-10 source, as in params/04_extras.yaml")
    ap.add_argument("--out", default="", help="outputs root (default $CIFAR_REPORT_OUTPUTS or outputs/)")
    ap.add_argument("--random-dim", type=int, default=0, help="use random features of this size instead")
    ap.add_argument("--chunk-size", type=int, default=500, help="queries per matrix product when ranking")
    ap.add_argument("--skip-ranking", action="store_true", help="time only the top-10 search")
    args = ap.parse_args()

    qf, qy, gf, gy, what = features(args)
    print(f"{what}: {len(qf):,} queries x {len(gf):,} gallery, {qf.shape[1]}-d; "
          f"{device_description(torch.device('cpu'))}; load average before {os.getloadavg()[0]:.2f}")
    rows = []
    for metric in retrieval.METRICS:
        t0 = time.perf_counter()
        retrieval.top_k(qf, gf, metric=metric, k=10, chunk_size=1000)
        t_top = time.perf_counter() - t0
        row = {"metric": metric, "top-10 s": t_top}
        if not args.skip_ranking:
            m = retrieval.rank_metrics(qf, qy, gf, gy, metric=metric, chunk_size=args.chunk_size)
            row.update({"full ranking s": m["rank_s"], "P@1": m["P@1"], "mAP": m["mAP"]})
        rows.append(row)
        print(f"  {metric:9s} top-10 of all queries: {t_top:6.2f} s ({1000 * t_top / len(qf):.3f} ms/query)"
              + ("" if args.skip_ranking else
                 f"; full ranking + P@k + mAP: {row['full ranking s']:6.2f} s "
                 f"(P@1 {100 * row['P@1']:.2f}%, mAP {100 * row['mAP']:.2f}%)"))
    print(f"load average after {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    n = len(qf)
    summary = "; ".join(
        f"{r['metric']}: top-10 {1000 * r['top-10 s'] / n:.2f} ms/query"
        + ("" if "full ranking s" not in r else f", whole-gallery ranking {1000 * r['full ranking s'] / n:.2f} ms/query")
        for r in rows)
    record.save("retrieval_speed", rows, f"{what}: {n:,} queries x {len(gf):,} gallery, {qf.shape[1]}-d; {summary}")


if __name__ == "__main__":
    main()
