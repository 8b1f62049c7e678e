"""What each chapter costs beyond its training and sampling: papermill's kernel start, imports, evaluation of
runs already trained, figures and tables, and the HTML export.

    python bench/notebook_overhead.py --outputs /tmp/nbo [--profile smoke] [--data ARCHIVE]

Runs ``./run_all.sh --profile PROFILE`` into ``OUTPUTS`` (``CIFAR_REPORT_OUTPUTS``) twice: first to train every run
(skipped when ``OUTPUTS`` already holds a finished report of that profile), then again, timed. The second run
reuses every finished run, so its per-chapter seconds (``run.json``: papermill + export) are what a chapter costs
besides its workloads; the rest of its total is the report's index page and ``report.html``. What chapter 2
computes again on a re-run and bench/budget.py prices as workloads of their own is taken out: its samples (the
seconds the notebook measured) and, when FID ran, its Fréchet distances (timed here on statistics of the same
size). A checkpoint written during the timed run means a run trained again: it is reported and nothing is
recorded. The machine's load and the run's CPU seconds are recorded beside the wall times. Saves the bench
record ``notebook_overhead``, which bench/budget.py reads once filed with
``python scripts/readme.py record outputs/bench/notebook_overhead.json``.
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
sys.path.insert(0, str(ROOT / "bench"))

import budget  # noqa: E402
import record  # noqa: E402

from lib import params as P  # noqa: E402


def run_report(outputs: Path, profile: str, data: str) -> dict:
    """``./run_all.sh --profile PROFILE`` into ``outputs``; its ``run.json``."""
    cmd = [str(ROOT / "run_all.sh"), "--profile", profile, *(["--data", data] if data else [])]
    print(f"[notebook_overhead] {' '.join(cmd)}  (CIFAR_REPORT_OUTPUTS={outputs})", flush=True)
    proc = subprocess.run(cmd, env={**os.environ, "CIFAR_REPORT_OUTPUTS": str(outputs)}, cwd=ROOT)
    run = outputs / profile / "run.json"
    if proc.returncode != 0 or not run.is_file():
        sys.exit(f"[notebook_overhead] ./run_all.sh --profile {profile} failed (exit {proc.returncode}); "
                 f"see {outputs / profile / 'logs'}")
    return json.loads(run.read_text())


def finished(outputs: Path, profile: str) -> bool:
    """Whether ``outputs`` holds a whole report of ``profile`` whose every chapter ran to the end."""
    run = outputs / profile / "run.json"
    if not run.is_file():
        return False
    status = json.loads(run.read_text()).get("status", {})
    return set(status) == set(budget.CHAPTERS) and all(v == "ok" for v in status.values())


def kernel_seconds(notebook: Path) -> float | None:
    """Seconds papermill spent executing ``notebook`` (its metadata), None when it is missing or did not record
    them."""
    if not notebook.is_file():
        return None
    meta = json.loads(notebook.read_text()).get("metadata", {}).get("papermill", {})
    return meta.get("duration") if isinstance(meta.get("duration"), (int, float)) else None


def checkpoints(folder: Path) -> dict[str, int]:
    """Every checkpoint under ``folder`` with its modification time (ns)."""
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*.pt")}


def frechet_seconds(n_images: int, repeats: int = 2) -> float:
    """Seconds for one Fréchet distance between statistics of ``n_images`` random 2048-d features each, as
    chapter 2 computes them (lib.evaluate.fid: np.cov, then pytorch-fid's distance); the faster of
    ``repeats``."""
    import numpy as np

    from lib.evaluate.fid import Stats, frechet_distance

    rng = np.random.default_rng(0)
    a, b = (Stats.of(rng.standard_normal((n_images, 2048))) for _ in range(2))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        frechet_distance(a, b)
        best = min(best, time.perf_counter() - t0)
    return best


def recomputed_sampling_s(chapter_dir: Path) -> float:
    """Seconds chapter 2 spent drawing samples again in a re-run (its samples are not cached): every sampler of
    ``sampling_times.csv`` and, when FID ran, the DDIM settings of ``ddim_spacing.csv`` besides the main one.
    bench/budget.py prices these as workloads (DDPM sampling, the DDIM spacing comparison)."""
    import pandas as pd

    seconds = 0.0
    if (chapter_dir / "sampling_times.csv").is_file():
        seconds += float(pd.read_csv(chapter_dir / "sampling_times.csv")["seconds"].sum())
    if (chapter_dir / "ddim_spacing.csv").is_file():
        ddim = pd.read_csv(chapter_dir / "ddim_spacing.csv")
        other = ddim[ddim["main FID row"] != "yes"]
        seconds += float((other["s / image"] * other["images"]).sum())
    return seconds


def overheads(run: dict, profile_dir: Path, *, distances: int, frechet_s: float) -> tuple[list[dict], dict]:
    """Rows of the record and each chapter's seconds beyond its workloads, from a re-run's ``run.json`` and
    outputs: the chapter's papermill + export seconds, less chapter 2's recomputed sampling and its
    ``distances`` Fréchet distances of ``frechet_s`` each; ``report``: the rest of the total (index page,
    report.html)."""
    rows, overhead = [], {}
    for ch in budget.CHAPTERS:
        sec = float(run["chapters"][ch])
        sampling = recomputed_sampling_s(profile_dir / ch) if ch == "02_generative" else 0.0
        fid = distances * frechet_s if ch == "02_generative" else 0.0
        overhead[ch] = round(max(0.0, sec - sampling - fid), 1)
        cells = kernel_seconds(profile_dir / "notebooks" / f"{ch}.ipynb")
        rows.append({"chapter": ch, "papermill + export s": sec,
                     # the cells (imports, reused runs' evaluation, figures) vs kernel start, saving and export
                     "cells s": round(cells, 1) if cells is not None else None,
                     "sampling again s (taken out)": round(sampling, 1),
                     "Fréchet s (taken out)": round(fid, 1), "overhead s": overhead[ch]})
    overhead["report"] = round(max(0.0, run["seconds"] - sum(run["chapters"].values())), 1)
    rows.append({"chapter": "report (index page, report.html)", "papermill + export s": overhead["report"],
                 "cells s": None, "sampling again s (taken out)": 0.0, "Fréchet s (taken out)": 0.0,
                 "overhead s": overhead["report"]})
    return rows, overhead


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outputs", required=True, help="a scratch outputs folder (CIFAR_REPORT_OUTPUTS), reused")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--data", default="", help="CIFAR-10 folder or archive (default: $CIFAR10_ROOT)")
    args = ap.parse_args()
    outputs = Path(args.outputs).resolve()
    profile_dir = outputs / args.profile
    if not finished(outputs, args.profile):
        print("[notebook_overhead] training every run first (not timed)", flush=True)
        run_report(outputs, args.profile, args.data)
    before = checkpoints(profile_dir)
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = run_report(outputs, args.profile, args.data)  # timed: every run is reused
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    load = os.getloadavg()[1]  # over the last 5 minutes: other work on the machine slows the run down
    after = checkpoints(profile_dir)
    rewritten = sorted(p for p, t in after.items() if before.get(p) != t)
    if rewritten:
        sys.exit("[notebook_overhead] the timed run wrote checkpoints, so it trained again and its times are not "
                 f"overheads: {', '.join(rewritten[:5])}{' ...' if len(rewritten) > 5 else ''}")
    # chapter 2's Fréchet distances, when it computed FID (the FID table exists)
    p2 = P.load("02_generative", args.profile)
    scored = (profile_dir / "02_generative" / "fid.csv").is_file()
    distances = budget.frechet_count(p2) if scored else 0
    frechet_s = frechet_seconds(p2["fid_images"]) if distances else 0.0
    rows, overhead = overheads(run, profile_dir, distances=distances, frechet_s=frechet_s)
    fid = (f"{distances} Fréchet distances of {frechet_s:.2f} s taken out, Inception features left in" if scored
           else "no FID computed (no Inception weights here), so no Inception features or Fréchet distances")
    summary = (f"{args.profile} report re-run with every run trained, seconds beyond the workloads: "
               + ", ".join(f"{ch[:2]} {overhead[ch]:g}" for ch in budget.CHAPTERS)
               + f", index + report.html {overhead['report']:g} (chapter 2's sampling taken out; {fid}; "
               f"{run['seconds']} s wall, {cpu_s:.0f} s CPU, load average {load:.1f} on {os.cpu_count()} cores)")
    print(f"\n[notebook_overhead] {summary}")
    for r in rows:
        print("  " + ", ".join(f"{k}: {v}" for k, v in r.items()))
    record.save("notebook_overhead", rows, summary,
                extra={"profile": args.profile, "overhead_s": overhead, "fid_scored": scored,
                       "frechet_s": round(frechet_s, 3), "rerun_s": run["seconds"], "rerun_cpu_s": round(cpu_s),
                       "load_average_5min": round(load, 2)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
