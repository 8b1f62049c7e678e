"""A plan of training runs and the order ranks take them in.

Each chapter's glue lists, without training, the runs its notebook asks for under a profile
(``plan(params, profile_dir=...)`` in :mod:`lib.chapters.supervised`, ``.generative``,
``.semi_supervised``): a :class:`PlannedRun` each, whose ``train()`` is the chapter's own training
call, so the launcher (:mod:`lib.train.launch`) and the notebook build the same checkpoint folder.

The order is list scheduling, longest first: a run's priority is its estimated seconds plus the
longest chain of runs that wait for it, so a run always comes before the runs that need it. Every
rank takes the next run of that order when it finishes its last one; :func:`simulate` replays that
rule on estimated seconds (what ``bench/budget.py --gpus N`` projects).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# Assumed until a GPU measures it: the share of N ranks' throughput a data-parallel run keeps
# (gradient all-reduce over NVLink for these networks of 1.5-36 M parameters)
DATA_PARALLEL_EFFICIENCY = 0.9


@dataclass(eq=False)
class PlannedRun:
    """One training run of a chapter: ``name`` (its checkpoint folder's prefix), ``work`` (the
    workload of ``bench/budget.py`` that prices it), the runs it needs finished first (``after``,
    keys ``<chapter>/<name>``), whether it trains on all ranks together (``data_parallel``), and
    ``train()``, the chapter's training call. ``folder`` is its checkpoint folder, computed on first
    use (it may need the data); None while it depends on a run not trained yet."""

    chapter: str
    name: str
    work: str
    train: Callable[[], object] = field(repr=False)
    locate: Callable[[], Path | None] = field(repr=False)
    after: tuple[str, ...] = ()
    data_parallel: bool = False

    @property
    def key(self) -> str:
        return f"{self.chapter}/{self.name}"

    @property
    def folder(self) -> Path | None:
        return self.locate()


def lazy(fn: Callable):
    """``fn()`` computed on the first call and kept (the data a plan's folders and runs share)."""
    return functools.lru_cache(maxsize=None)(fn)


def roots(profile_dir: str | Path, chapter: str) -> tuple[Path, Path]:
    """A chapter's checkpoint and TensorBoard folders under ``outputs/<profile>`` (what its
    notebook's ``report.work_dir`` gives), not created."""
    return Path(profile_dir, "checkpoints", chapter), Path(profile_dir, "tensorboard", chapter)


def runs_named(names, params: dict, splits: Callable, *, profile_dir: str | Path, train: Callable,
               locate: Callable) -> list[PlannedRun]:
    """One run per name (``vae``, ``mpl`` ...) of ``params``' chapter, trained by ``train(name,
    splits(), params, ckpt_root=..., tb_root=...)`` in the folder ``locate(name, splits(), params,
    ckpt_root=...)``, priced as ``bench/budget.py``'s ``train <name>``; on all ranks together when
    ``params["data_parallel"]`` names it."""
    chapter = params["chapter"]
    ckpt_root, tb_root = roots(profile_dir, chapter)
    return [PlannedRun(chapter, name, f"train {name}",
                       train=lambda n=name: train(n, splits(), params, ckpt_root=ckpt_root,
                                                  tb_root=tb_root),
                       locate=lambda n=name: locate(n, splits(), params, ckpt_root=ckpt_root),
                       data_parallel=name in params["data_parallel"])
            for name in names]


def priorities(runs: list[PlannedRun], seconds: dict[str, float]) -> dict[str, float]:
    """Each run's estimated seconds plus the longest chain of runs after it (its "level")."""
    after = {r.key: [d.key for d in runs if r.key in d.after] for r in runs}
    memo: dict[str, float] = {}

    def level(key: str) -> float:
        if key not in memo:
            memo[key] = seconds[key] + max((level(d) for d in after[key]), default=0.0)
        return memo[key]

    return {r.key: level(r.key) for r in runs}


def order(runs: list[PlannedRun], seconds: dict[str, float]) -> list[PlannedRun]:
    """Data-parallel runs first (all ranks train them together), then the others longest chain
    first; ties keep the plan's order. A run never comes before one it waits for."""
    keys = {r.key for r in runs}
    missing = {d for r in runs for d in r.after} - keys
    if missing:
        raise ValueError(f"runs wait for {sorted(missing)}, which are not in the plan")
    level = priorities(runs, seconds)
    return sorted(runs, key=lambda r: (not r.data_parallel, -level[r.key]))


@dataclass
class Schedule:
    """What :func:`simulate` projects: each rank's runs in the order it took them, each run's
    (rank, start, end) in seconds, and the makespan."""

    ranks: list[list[str]]
    times: dict[str, tuple[int, float, float]]
    makespan: float


def simulate(ordered: list[PlannedRun], seconds: dict[str, float], ranks: int, *,
             efficiency: float = DATA_PARALLEL_EFFICIENCY) -> Schedule:
    """Replay the launcher's rule on estimated ``seconds``: data-parallel runs on all ``ranks``
    together (at ``efficiency`` of ``ranks`` times one rank's speed), then each free rank (lowest
    first) takes the next run and, if a run it needs is still training, waits for it."""
    if ranks < 1:
        raise ValueError(f"ranks must be at least 1, got {ranks}")
    free = [0.0] * ranks
    taken: list[list[str]] = [[] for _ in range(ranks)]
    times: dict[str, tuple[int, float, float]] = {}
    for run in ordered:
        if run.data_parallel:
            start = max(free)
            speed = 1.0 if ranks == 1 else ranks * efficiency
            end = start + seconds[run.key] / speed
            free = [end] * ranks
            for r in range(ranks):
                taken[r].append(run.key)
            times[run.key] = (-1, start, end)
            continue
        rank = min(range(ranks), key=lambda r: (free[r], r))
        start = max([free[rank], *(times[d][2] for d in run.after)])
        end = start + seconds[run.key]
        free[rank] = end
        taken[rank].append(run.key)
        times[run.key] = (rank, start, end)
    return Schedule(taken, times, max(free))
