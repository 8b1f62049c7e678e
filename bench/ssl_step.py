"""Chapter 3 step cost on this machine: seconds to produce one MPL/UDA batch (sampling, crop/flip,
strong augmentation, normalisation) and to take one training step, and the host-synchronising ops
per iteration, at a profile's batch sizes and width (default: quick, one torch thread as it runs).

    python bench/ssl_step.py [--profile quick] [--kinds mpl,uda] [--steps 30]
    python bench/ssl_step.py --against /path/to/other/checkout   # both, rounds interleaved: a ratio
    python bench/ssl_step.py --threads 2      # torch threads other than the profile's cpu_threads

With ``--against`` each round runs this checkout and the other one in turn, each in its own process
(``lib`` imported from that checkout), so both see the same machine load; the summary gives the
median of each and their ratio. Data: the synthetic set (timing does not depend on pixel values).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(root: Path, kind: str, profile: str, steps: int, threads: int = 0) -> dict:
    """One measurement with ``lib`` from ``root``; the sync counter always from this checkout."""
    sys.path.insert(0, str(root))
    spec = importlib.util.spec_from_file_location("syncs", ROOT / "lib/train/syncs.py")
    syncs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(syncs)
    import torch

    from lib import params as P
    from lib.chapters import semi_supervised as S

    p = P.load("03_semi_supervised", profile, {"data": "synthetic"})
    p.update(labelled_size=400, val_size=100, unlabelled_size=1000)  # the synthetic set's 2,000
    torch.set_num_threads(threads or max(1, p.get("cpu_threads", 0)))
    splits = S.load_ssl_splits(p)
    cpu = torch.device("cpu")
    method = S.build_method(kind, p)
    batches, _, _ = S._loaders(splits, p, cpu, unlabelled=True)
    method.setup(cpu, None)
    stream = batches.forever()
    for _ in range(3):
        method.train_step(next(stream))
    data_s = step_s = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        batch = next(stream)
        t1 = time.perf_counter()
        method.train_step(batch)
        t2 = time.perf_counter()
        data_s, step_s = data_s + t1 - t0, step_s + t2 - t1
    batch = next(stream)
    with syncs.HostSyncCounter() as c:
        method.train_step(batch)
    with syncs.HostSyncCounter() as b:
        next(stream)
    return {"data_s": data_s / steps, "step_s": step_s / steps, "batch_ops": b.total,
            "batch_syncs": b.ops, "step_syncs": c.ops}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--kinds", default="mpl,uda")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: the profile's cpu_threads)")
    ap.add_argument("--against", type=Path, help="another checkout to measure in the same run")
    ap.add_argument("--child", nargs=2, metavar=("ROOT", "KIND"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(Path(a.child[0]), a.child[1], a.profile, a.steps, a.threads)))
        return
    sys.path.insert(0, str(ROOT / "bench"))
    from record import save

    roots = {"this checkout": ROOT} | ({"against": a.against.resolve()} if a.against else {})
    runs: dict[tuple, list[dict]] = {}
    for _ in range(a.rounds):
        for kind in a.kinds.split(","):
            for label, root in roots.items():
                out = subprocess.run([sys.executable, __file__, "--profile", a.profile, "--steps",
                                      str(a.steps), "--threads", str(a.threads), "--child", str(root), kind],
                                     capture_output=True, text=True, check=True)
                runs.setdefault((kind, label), []).append(json.loads(out.stdout.splitlines()[-1]))
    rows = []
    print(f"{'method':6} {'checkout':14} {'batch s':>8} {'step s':>8} {'total s':>8}  "
          "syncs per batch / per step")
    for (kind, label), rs in runs.items():
        row = {"method": kind, "checkout": label, "root": str(roots[label]),
               "batch_s": statistics.median(r["data_s"] for r in rs),
               "step_s": statistics.median(r["step_s"] for r in rs),
               "batch_syncs": rs[0]["batch_syncs"], "step_syncs": rs[0]["step_syncs"],
               "batch_ops": rs[0]["batch_ops"]}
        row["total_s"] = row["batch_s"] + row["step_s"]
        rows.append(row)
        print(f"{kind:6} {label:14} {row['batch_s']:8.4f} {row['step_s']:8.4f} "
              f"{row['total_s']:8.4f}  {sum(row['batch_syncs'].values())} "
              f"{row['batch_syncs']} / {sum(row['step_syncs'].values())}")
    threads = a.threads or "the profile's"
    summary = f"{a.profile} profile, {a.rounds} rounds x {a.steps} steps, {threads} torch threads"
    if a.against:
        ratios = {k: next(r["total_s"] for r in rows if r["method"] == k and
                          r["checkout"] == "against") /
                  next(r["total_s"] for r in rows if r["method"] == k and
                       r["checkout"] == "this checkout") for k in a.kinds.split(",")}
        other = subprocess.run(["git", "-C", str(a.against), "rev-parse", "--short=12", "HEAD"],
                               capture_output=True, text=True).stdout.strip() or str(a.against)
        total = {(r["method"], r["checkout"]): r["total_s"] for r in rows}
        summary += f"; s/iteration, {other} -> this checkout: " + ", ".join(
            f"{k} {total[k, 'against']:.3f} -> {total[k, 'this checkout']:.3f} ({v:.2f}x)"
            for k, v in ratios.items())
        print(summary)
    save(f"ssl_step_{a.profile}" + (f"_t{a.threads}" if a.threads else ""), rows, summary)


if __name__ == "__main__":
    main()
