"""Train every run a profile's notebooks will ask for, on every rank torchrun starts, before the
notebooks render (they then find each run finished and train nothing)::

    python -m lib.train.launch --profile quick [--only 01,03]                 # one process
    torchrun --nproc-per-node 4 -m lib.train.launch --profile full            # one node, 4 GPUs

The runs come from each chapter's ``plan`` (:mod:`lib.train.schedule`). Rank 0 orders them longest
first (estimated by ``bench/budget.py``) and publishes the order in torch.distributed's store;
every rank then takes the next run with the store's atomic counter when it finishes its last one,
so each run is trained by exactly one rank. A run that waits for another (a classifier on VAE
reconstructions, MPL's finetune) waits until it is done. A run that fails is logged and the rank
goes on; rank 0 prints a summary naming each failed run and its log, writes
``outputs/<profile>/logs/launch.json`` and exits non-zero. A rerun resumes from the checkpoints.

Runs a chapter marks ``data_parallel`` train on all ranks together inside a process group
(``torch.distributed.is_initialized()`` is true only then: the training loop's cue to split each
global batch over the ranks and average gradients, :mod:`lib.train.distributed`). Each run's output goes to ``outputs/<profile>/logs/runs/<chapter>/<run>.log``.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from .. import params as P
from .. import storage
from .schedule import PlannedRun, order

CHAPTER_PLANS = {"01_supervised": "lib.chapters.supervised", "02_generative": "lib.chapters.generative",
                 "03_semi_supervised": "lib.chapters.semi_supervised", "04_extras": "lib.chapters.extras"}
POLL_S = 2.0  # how often a rank waiting for a run (or rank 0 for the others) looks at the store
WAIT = timedelta(days=7)  # the store's timeout: a rank may wait as long as the longest run trains
# a data-parallel run's collectives: a rank silent this long has died, and the others stop its run
COLLECTIVE_WAIT = timedelta(minutes=30)


def chapters(only: str = "") -> list[str]:
    """The chapters ``--only`` names (``01,03``), all by default; an unknown one fails."""
    if not only:
        return list(CHAPTER_PLANS)
    wanted = [c.strip() for c in only.split(",") if c.strip()]
    unknown = [c for c in wanted if not any(ch.startswith(c[:2]) for ch in CHAPTER_PLANS)]
    if unknown:
        raise ValueError(f"--only {only}: no chapter {unknown}; chapters are "
                         f"{', '.join(c[:2] for c in CHAPTER_PLANS)}")
    return [ch for ch in CHAPTER_PLANS if any(ch.startswith(c[:2]) for c in wanted)]


def build_plan(profile: str, *, only: str = "", data: str = "",
               profile_dir: str | Path | None = None) -> list[PlannedRun]:
    """Every planned run of ``profile``'s chapters (``only``), with the data override the
    notebooks get (``--data``), under ``profile_dir`` (default ``outputs/<profile>``)."""
    profile_dir = Path(profile_dir or storage.default_out_root() / profile)
    runs = []
    for chapter in chapters(only):
        params = P.load(chapter, profile, {"data": data} if data else None)
        runs += importlib.import_module(CHAPTER_PLANS[chapter]).plan(params, profile_dir=profile_dir)
    return runs


def estimated_seconds(runs: list[PlannedRun], by_work: dict[str, float]) -> dict[str, float]:
    """Each run's seconds from ``by_work`` (``bench/budget.py``'s :func:`run_seconds`: a
    workload with its evaluations, test, checkpoint writes and compilation), by run key."""
    missing = sorted({r.work for r in runs} - set(by_work))
    if missing:
        raise KeyError(f"bench/budget.py prices no workload named {missing}; the plan's `work` "
                       "must name one of its training workloads")
    return {r.key: by_work[r.work] for r in runs}


def budget_seconds(profile: str) -> dict[str, float]:
    """``bench/budget.py``'s FLOP-based seconds of every workload of ``profile``."""
    sys.path.insert(0, str(storage.ROOT / "bench"))
    import budget

    return budget.run_seconds(budget.profile_work(profile), budget.saved_flops())


# ------------------------------------------------------------------------------- the store
def connect() -> tuple[dist.Store, int, int]:
    """The store every rank shares, this rank and the world size: torchrun's (its environment
    variables), or an in-process one when run as a plain process. No process group is made."""
    if "RANK" not in os.environ or "MASTER_ADDR" not in os.environ:
        return dist.HashStore(), 0, 1
    store, rank, world = next(dist.rendezvous("env://", timeout=WAIT))
    store.set_timeout(WAIT)
    return store, rank, world


def backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def pin_device() -> None:
    """One GPU per rank on a node: ``cuda`` means ``cuda:LOCAL_RANK`` from here on."""
    if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())


# ------------------------------------------------------------------------------- one run
def run_log(profile_dir: Path, run: PlannedRun, rank: int = 0) -> Path:
    """A run's log; rank ``r`` > 0 of a data-parallel run writes ``<run>.rank<r>.log``."""
    own = f".rank{rank}" if rank else ""
    return profile_dir / "logs" / "runs" / run.chapter / f"{run.name}{own}.log"


def execute(run: PlannedRun, profile_dir: Path, rank: int, *, together: bool = False) -> dict:
    """Train ``run`` with its output in its log (``together``: one log per rank); never raises for
    a failed run: returns ``{status: trained | reused | failed, seconds, log, error, folder,
    rank}``."""
    log = run_log(profile_dir, run, rank if together else 0)
    log.parent.mkdir(parents=True, exist_ok=True)
    t0, error, folder = time.perf_counter(), "", None
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        print(f"[launch] {run.key} on rank {rank}, {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
        try:
            folder = run.folder
            last = folder / "last.pt" if folder else None
            before = last.stat().st_mtime_ns if last and last.is_file() else None
            run.train()
            folder = folder or run.folder
            after = (folder / "last.pt").stat().st_mtime_ns if folder else None
            status = "reused" if before is not None and before == after else "trained"
        except Exception as err:  # noqa: BLE001 - any failure of one run leaves the others going
            traceback.print_exc()
            status, error = "failed", (str(err).strip().splitlines() or [type(err).__name__])[0]
            error = f"{type(err).__name__}: {error}"
        print(f"[launch] {run.key}: {status}", flush=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"status": status, "seconds": round(time.perf_counter() - t0, 1), "log": str(log),
            "error": error, "folder": str(folder) if folder else None, "rank": rank}


def say(rank: int, line: str) -> None:
    print(f"[launch rank {rank}] {line}", flush=True)


def done_line(run: PlannedRun, result: dict) -> str:
    how = {"trained": "trained", "reused": "already finished", "failed": "FAILED"}[result["status"]]
    extra = f": {result['error']}" if result["error"] else ""
    return f"{run.key}: {how} in {result['seconds']:.1f} s{extra} (log: {result['log']})"


# ------------------------------------------------------------------------------- the launch
def train_all(store: dist.Store, rank: int, world: int, runs: list[PlannedRun], keys: list[str],
              profile_dir: Path, *, data_parallel: bool, prefix: str) -> None:
    """This rank's share of the ordered ``keys``: data-parallel runs together on all ranks, then
    the next run from the store's counter until none is left; each result goes to the store."""
    by_key = {r.key: r for r in runs}
    together = [k for k in keys if data_parallel and by_key[k].data_parallel]
    queue = [k for k in keys if k not in together]
    for key in together:
        run = by_key[key]
        dist.init_process_group(backend(), store=dist.PrefixStore(f"{prefix}group/{key}/", store),
                                rank=rank, world_size=world, timeout=COLLECTIVE_WAIT)
        try:
            say(rank, f"{key}: training on all {world} ranks together")
            result = execute(run, profile_dir, rank, together=True)
        finally:
            dist.destroy_process_group()
        if rank == 0:
            store.set(f"{prefix}done/{key}", json.dumps(result))
            say(rank, done_line(run, result))
    while (i := store.add(f"{prefix}next", 1) - 1) < len(queue):
        run = by_key[queue[i]]
        failed = []
        for need in run.after:
            while not store.check([f"{prefix}done/{need}"]):
                time.sleep(POLL_S)
            if json.loads(store.get(f"{prefix}done/{need}"))["status"] == "failed":
                failed.append(need)
        if failed:
            result = {"status": "failed", "seconds": 0.0, "log": str(run_log(profile_dir, run)),
                      "error": f"not started: {', '.join(failed)} failed", "folder": None,
                      "rank": rank}
        else:
            say(rank, f"{run.key}: training")
            result = execute(run, profile_dir, rank)
        store.set(f"{prefix}done/{run.key}", json.dumps(result))
        say(rank, done_line(run, result))
    store.add(f"{prefix}ranks_done", 1)


def summary(results: dict[str, dict], seconds: dict[str, float], wall: float) -> tuple[str, bool]:
    """Rank 0's closing lines, and whether every run finished."""
    failed = {k: r for k, r in results.items() if r["status"] == "failed"}
    counts = {s: sum(r["status"] == s for r in results.values()) for s in ("trained", "reused")}
    lines = [f"[launch] {len(results)} runs in {wall:.0f} s: {counts['trained']} trained, "
             f"{counts['reused']} already finished, {len(failed)} failed"]
    for key, r in results.items():
        lines.append(f"  rank {r['rank']:>2}  {r['status']:<8} {r['seconds']:>8.1f} s  "
                     f"(estimated {seconds.get(key, 0):.1f} s)  {key}")
    for key, r in failed.items():
        lines.append(f"  FAILED  {key}: {r['error']}; log: {r['log']}")
    if failed:
        lines.append("  a rerun resumes every run from its checkpoints")
    return "\n".join(lines), not failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", required=True, help="smoke | quick | full | full-long")
    ap.add_argument("--only", default="", help="chapters, e.g. 01,03 (default: all)")
    ap.add_argument("--data", default="", help="the data the notebooks get (run_all.sh --data)")
    args = ap.parse_args(argv)
    os.environ.setdefault("CIFAR_REPORT_PROGRESS", "log")  # plain lines in the runs' logs
    store, rank, world = connect()
    pin_device()
    # one launch's keys; torchrun restarting its workers starts a fresh launch
    prefix = f"launch/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
    profile_dir = storage.default_out_root() / args.profile
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(profile_dir / "cache" / "inductor"))
    t0, lock = time.perf_counter(), None
    try:
        try:
            runs = build_plan(args.profile, only=args.only, data=args.data, profile_dir=profile_dir)
            seconds = {}
            if rank == 0:
                lock = storage.lock_profile(profile_dir,
                                            command=f"lib.train.launch {' '.join(sys.argv[1:])}")
                seconds = estimated_seconds(runs, budget_seconds(args.profile))
                keys = [r.key for r in order(runs, seconds)]
                say(rank, f"profile {args.profile}: {len(runs)} runs on {world} rank(s), "
                          "longest first")
                store.set(f"{prefix}order", json.dumps({"keys": keys}))
        except Exception as err:
            if rank == 0:  # the other ranks stop too, with the same message
                store.set(f"{prefix}order", json.dumps({"error": f"{type(err).__name__}: {err}"}))
            if isinstance(err, (storage.ProfileBusy, P.ParamError, KeyError, ValueError)):
                say(rank, f"stopped: {err}")
                return 1
            raise
        published = json.loads(store.get(f"{prefix}order"))
        if "error" in published:
            say(rank, f"stopped: rank 0 could not plan the runs ({published['error']})")
            return 1
        keys = published["keys"]
        mine = sorted(r.key for r in runs)
        if sorted(keys) != mine:
            say(rank, f"stopped: this rank plans {len(mine)} runs, rank 0 {len(keys)}: the ranks "
                      "must run the same commit with the same params files")
            return 1
        train_all(store, rank, world, runs, keys, profile_dir, data_parallel=True, prefix=prefix)
        if rank != 0:
            return 0
        while int(store.add(f"{prefix}ranks_done", 0)) < world:
            time.sleep(POLL_S)
        results = {k: json.loads(store.get(f"{prefix}done/{k}")) for k in keys}
        text, ok = summary(results, seconds, time.perf_counter() - t0)
        print(text, flush=True)
        storage.write_text_atomic(profile_dir / "logs" / "launch.json", json.dumps(
            {"profile": args.profile, "ranks": world, "order": keys, "estimated_s": seconds,
             "results": results}, indent=1))
        return 0 if ok else 1
    finally:
        storage.unlock_profile(lock)


if __name__ == "__main__":
    sys.exit(main())
