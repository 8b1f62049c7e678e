"""The plan of runs, the launcher's schedule and queue, and its projection (bench/budget.py --gpus)."""
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib import params as P
from lib.train import launch, schedule
from lib.train.schedule import PlannedRun

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def fake(name, *, after=(), data_parallel=False, train=lambda: None):
    return PlannedRun("00_test", name, name, train=train, locate=lambda: None,
                      after=tuple(f"00_test/{a}" for a in after), data_parallel=data_parallel)


# ------------------------------------------------------------------------------ order and simulate
def test_order_is_longest_chain_first_and_never_before_a_run_it_waits_for():
    runs = [fake("a"), fake("b"), fake("vae"), fake("on_vae", after=["vae"]), fake("dp", data_parallel=True)]
    secs = {"00_test/a": 50, "00_test/b": 30, "00_test/vae": 10, "00_test/on_vae": 45, "00_test/dp": 1}
    keys = [r.name for r in schedule.order(runs, secs)]
    # data-parallel first; then by the longest chain: vae (10 + 45) before a (50), on_vae after vae
    assert keys == ["dp", "vae", "a", "on_vae", "b"]
    with pytest.raises(ValueError, match="not in the plan"):
        schedule.order([fake("x", after=["missing"])], {"00_test/x": 1})


def test_simulate_assigns_every_run_once_and_waits_for_dependencies():
    runs = [fake("a"), fake("b"), fake("vae"), fake("on_vae", after=["vae"]), fake("c")]
    secs = {"00_test/a": 50, "00_test/b": 30, "00_test/vae": 10, "00_test/on_vae": 45, "00_test/c": 5}
    ordered = schedule.order(runs, secs)
    for n in (1, 2, 3, 8):
        s = schedule.simulate(ordered, secs, n)
        taken = [k for keys in s.ranks for k in keys]
        assert sorted(taken) == sorted(secs)  # each run exactly once
        assert s.times["00_test/on_vae"][1] >= s.times["00_test/vae"][2]
    assert schedule.simulate(ordered, secs, 1).makespan == sum(secs.values())
    # two ranks: vae then on_vae on rank 0 (55 s), a then b... on rank 1: 50 + 30 = 80; c on rank 0 at 55
    two = schedule.simulate(ordered, secs, 2)
    assert two.makespan == 80 and two.ranks[0] == ["00_test/vae", "00_test/on_vae", "00_test/c"]


def test_simulate_runs_data_parallel_runs_on_all_ranks_at_the_stated_efficiency():
    runs = [fake("dp", data_parallel=True), fake("a")]
    secs = {"00_test/dp": 100.0, "00_test/a": 10.0}
    s = schedule.simulate(schedule.order(runs, secs), secs, 4, efficiency=0.5)
    assert s.times["00_test/dp"] == (-1, 0.0, 50.0)  # 100 s / (4 ranks x 0.5)
    assert s.makespan == 60.0 and all("00_test/dp" in keys for keys in s.ranks)
    with pytest.raises(ValueError, match="at least 1"):
        schedule.simulate([], {}, 0)


# ------------------------------------------------------------------------------ the plans and the budget
@pytest.mark.parametrize("profile", ["smoke", "quick", "full", "full-long"])
def test_every_planned_run_is_priced_by_the_budget(profile):
    import budget

    runs = launch.build_plan(profile)
    names = {w.name.split(": ", 1)[0] for w in budget.profile_work(profile)}
    assert {r.work for r in runs} <= names
    assert len({r.key for r in runs}) == len(runs)
    p2, p3 = P.load("02_generative", profile), P.load("03_semi_supervised", profile)
    # a marked method's runs with the other training seeds (mpl-s1, ...) train data-parallel as it does
    assert {re.sub(r"-s\d+$", "", r.name) for r in runs if r.data_parallel} == \
        {*p2["data_parallel"], *p3["data_parallel"]}
    from lib.chapters.semi_supervised import training_seeds

    seeds = [f"{k}-s{s}" for k in ("mpl", "uda", "supervised") for s in training_seeds(p3)[1:]]
    assert [r.name for r in runs if r.chapter == "03_semi_supervised" and re.search(r"-s\d+$", r.name)] == seeds
    assert all(r.data_parallel == (r.name.split("-s")[0] in p3["data_parallel"])
               for r in runs if r.chapter == "03_semi_supervised")
    assert next(r for r in runs if r.name == "finetune").after == ("03_semi_supervised/mpl",)


def test_quick_plan_projection_assigns_every_run_once_and_more_ranks_never_take_longer():
    import budget

    table, plans, seconds = budget.gpus_table("quick", [1, 2, 4, 8])
    for s in plans.values():
        assert sorted(k for keys in s.ranks for k in keys) == sorted(seconds)
    spans = list(table["training makespan (h)"])
    assert spans == sorted(spans, reverse=True) and spans[0] > spans[-1]
    assert table["speed-up"].iloc[0] == 1.0


def test_chapters_rejects_an_unknown_one():
    assert launch.chapters("03,01") == ["01_supervised", "03_semi_supervised"]
    with pytest.raises(ValueError, match="no chapter"):
        launch.chapters("07")


# ------------------------------------------------------------------------------ the queue on several ranks
QUEUE_RANK = r"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from lib.train import launch
from lib.train.schedule import PlannedRun

out = Path(sys.argv[2])
store, rank, world = launch.connect()

def train(name):
    def go():
        (out / "trained").mkdir(exist_ok=True)
        with open(out / "trained" / f"{name}.{rank}", "w"):
            pass
        time.sleep(0.2)
        if name == "broken":
            raise RuntimeError("this run cannot train")
    return go

def together():  # a data-parallel run: every rank inside one process group
    import torch.distributed as dist
    assert dist.is_initialized() and dist.get_world_size() == world
    (out / "together").mkdir(exist_ok=True)
    (out / "together" / str(dist.get_rank())).write_text("")

def alone(name):  # any other run: no process group, so the training loop trains it by itself
    def go():
        import torch.distributed as dist
        assert not dist.is_initialized()
        train(name)()
    return go

names = ["broken", "on_broken", "a", "b", "c", "d", "e", "vae", "on_vae"]
after = {"on_broken": ("00_test/broken",), "on_vae": ("00_test/vae",)}
runs = [PlannedRun("00_test", n, n, train=alone(n), locate=lambda: None, after=after.get(n, ()))
        for n in names]
runs.append(PlannedRun("00_test", "dp", "dp", train=together, locate=lambda: None, data_parallel=True))
keys = ["00_test/dp"] + [r.key for r in runs[:-1]]
launch.train_all(store, rank, world, runs, keys, out, data_parallel=True, prefix="t/")
if rank == 0:
    while int(store.add("t/ranks_done", 0)) < world:
        time.sleep(0.1)
    (out / "results.json").write_text(json.dumps({k: json.loads(store.get(f"t/done/{k}")) for k in keys}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_queue_on_three_ranks_trains_each_run_once_logs_failures_and_goes_on(tmp_path):
    """Three processes meeting as torchrun's workers do (RANK, WORLD_SIZE, MASTER_ADDR/PORT)."""
    script = tmp_path / "rank.py"
    script.write_text(QUEUE_RANK)
    port, world = free_port(), 3
    procs = [subprocess.Popen([sys.executable, str(script), str(ROOT), str(tmp_path)],
                              env={**os.environ, "RANK": str(r), "WORLD_SIZE": str(world),
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(world)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    trained = sorted(f.name for f in (tmp_path / "trained").iterdir())
    names = sorted(f.split(".")[0] for f in trained)
    # every run trained once, on some rank; on_broken never started
    assert names == sorted(["broken", "a", "b", "c", "d", "e", "vae", "on_vae"])
    assert len({f.split(".")[1] for f in trained}) > 1  # the work was shared
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["00_test/broken"]["status"] == "failed"
    assert "RuntimeError: this run cannot train" in results["00_test/broken"]["error"]
    log = Path(results["00_test/broken"]["log"])
    assert "this run cannot train" in log.read_text() and "Traceback" in log.read_text()
    assert results["00_test/on_broken"] == {**results["00_test/on_broken"], "status": "failed",
                                            "error": "not started: 00_test/broken failed"}
    assert {results[k]["status"] for k in results if "broken" not in k} == {"trained"}
    # the data-parallel run trained on all three ranks together, in a process group of three
    assert sorted(f.name for f in (tmp_path / "together").iterdir()) == ["0", "1", "2"]
    assert results["00_test/dp"]["rank"] == 0
    summary, ok = launch.summary(results, {}, 1.0)
    assert not ok and f"FAILED  00_test/broken: RuntimeError: this run cannot train; log: {log}" in summary


# ------------------------------------------------------------------------------ a chapter after the launcher
def tiny_params(tmp_path: Path) -> Path:
    """A params folder whose smoke profile of chapter 1 trains three small runs on synthetic data."""
    from conftest import smoke_params

    return smoke_params(tmp_path, "01_supervised", models=["resnet18"], test_subset=60)


def test_launcher_trains_the_plan_and_the_notebook_after_it_trains_nothing(tmp_path):
    from conftest import run_all

    env = {"CIFAR_REPORT_PARAMS_DIR": str(tiny_params(tmp_path))}
    proc = run_all(tmp_path / "out", "--profile", "smoke", "--only", "01", "--data", "synthetic",
                   "--gpus", "2", env_extra=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out" / "smoke"
    launched = json.loads((out / "logs" / "launch.json").read_text())
    assert launched["ranks"] == 2 and {r["status"] for r in launched["results"].values()} == {"trained"}
    os.environ["CIFAR_REPORT_PARAMS_DIR"] = env["CIFAR_REPORT_PARAMS_DIR"]
    try:
        runs = launch.build_plan("smoke", only="01", data="synthetic", profile_dir=out)
        folders = {r.folder.name for r in runs}
    finally:
        del os.environ["CIFAR_REPORT_PARAMS_DIR"]
    created = {p.name for p in (out / "checkpoints" / "01_supervised").iterdir() if p.is_dir()}
    assert folders == created and len(folders) == 3  # resnet18, the other recipe's, one sweep cell
    assert sorted(launched["order"]) == sorted(r.key for r in runs)
    # fit logs "<run>: step i/n" for every run it trains: in the launch's logs, never in the notebook's
    trained = re.compile(r": step \d+/\d+ ")
    assert trained.search((out / "logs" / "runs" / "01_supervised" / "resnet18.log").read_text())
    assert not trained.search((out / "logs" / "01_supervised.log").read_text())
    assert "no run trained in a notebook" in proc.stdout
