"""Data-parallel training (lib.train.distributed) on the CPU: two gloo ranks, each with half of every
global batch, against one process with the whole batch.

Each scenario below builds a run, trains it with ``fit(..., data_parallel=True)`` and returns its
weights; the test runs it in this process (one rank: nothing is distributed) and in two spawned
ranks. Weights agree within TOL: float32 sums taken in another order. Measured on torch 2.14 (CPU):
6e-8 without BatchNorm (classifier, DDPM), 1.2e-6 with synchronised BatchNorm, 9.4e-6 on MPL's
teacher (its first convolution, whose gradient through BatchNorm's backward is a difference of
near-equal sums); with BatchNorm left per rank the weights differ by 1.4e-2."""
from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from lib import batches
from lib import data as D
from lib.methods import ssl
from lib.methods.classifier import Classifier
from lib.methods.ddpm import DDPM
from lib.models import unet as unet_nets
from lib.train import device, distributed, fit, loop, make_optimizer, make_scheduler
from lib.train.distributed import Shard

TOL = 2e-5  # absolute, on weights of order 0.1-1 after a few steps
STEPS = 6


def conv_net(bn: bool) -> nn.Module:
    torch.manual_seed(0)
    norm = [nn.BatchNorm2d(8)] if bn else []
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), *norm, nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 10))


def trained_classifier(out: Path, *, bn: bool, sync: bool = True, ckpt=False, compile=False,
                       killed_at: int | None = None) -> Classifier:
    """A classifier (BatchNorm or not) on 32-image global batches, SGD with Nesterov and a
    one-cycle schedule, trained data-parallel; with ``killed_at``, rank 1's process dies at the
    start of that step."""
    model = conv_net(bn)
    opt = make_optimizer(model.parameters(), name="sgd", lr=0.1, nesterov=True)
    method = Classifier(model, opt, make_scheduler(opt, name="onecycle", total_steps=STEPS))
    if killed_at is not None and distributed.rank() == 1:
        step, steps = method.train_step, itertools.count(1)
        method.train_step = lambda batch: os._exit(1) if next(steps) == killed_at else step(batch)
    ds = D.make_synthetic(96, 8)
    train = batches.BatchLoader(ds.train_x, ds.train_y, batch_size=32, seed=0)
    fit(method, train.forever, total_steps=STEPS, steps_per_epoch=3, device="cpu", seed=0,
        data_parallel=True, sync_batchnorm=sync,
        ckpt_dir=out / "ckpt" if ckpt else None, ckpt_every=2, tb_dir=out / "tb" if ckpt else None,
        log_every=1, compile=compile)
    return method


def classifier(out: Path, **kw):
    return {k: v.clone() for k, v in trained_classifier(out, **kw).model.state_dict().items()}


def compiled_classifier(out: Path):
    """The synchronised-BatchNorm classifier compiled (torch.compile with fullgraph, as on CUDA;
    aot_eager: no C++ compiler needed): its weights and whether it compiled as one graph."""
    backend, device.COMPILE_BACKEND = device.COMPILE_BACKEND, "aot_eager"
    try:
        method = trained_classifier(out, bn=True, compile=True)
    finally:
        device.COMPILE_BACKEND = backend
    return {"weights": {k: v.clone() for k, v in method.model.state_dict().items()},
            "compiled": method.compilation()["model"]}


def mpl(out: Path, *, distributed_feedback: str = "global"):
    """MPL with UDA on tiny BatchNorm networks (dropout off: its masks are drawn per rank), with
    every h it formed recorded."""
    teacher, student = conv_net(True), conv_net(True)
    seen = []
    feedback = ssl.mpl_feedback

    def recording(before, after, *args, **kw):
        seen.append(torch.stack([before, after]).detach().clone())
        return feedback(before, after, *args, **kw)

    ssl.mpl_feedback = recording
    try:
        t_opt = make_optimizer(teacher.parameters(), name="sgd", lr=0.05, nesterov=True)
        s_opt = make_optimizer(student.parameters(), name="sgd", lr=0.05, nesterov=True)
        method = ssl.MetaPseudoLabels(teacher, student, teacher_optimizer=t_opt,
                                      student_optimizer=s_opt, ema_decay=0.9,
                                      distributed_feedback=distributed_feedback,
                                      label_smoothing=0.1, temperature=0.7, threshold=0.15,
                                      lambda_u=1.0, uda_steps=2)
        ds = D.make_synthetic(64, 8)
        data = batches.SSLBatches(ds.train_x[:32], ds.train_y[:32], ds.train_x[32:],
                                  labelled_batch=8, unlabelled_batch=16, device="cpu", seed=0,
                                  strong=None)
        result = fit(method, data.forever, total_steps=3, device="cpu", seed=0, log_every=1,
                     data_parallel=True, sync_batchnorm=True)
    finally:
        ssl.mpl_feedback = feedback
    return {"teacher": {k: v.clone() for k, v in teacher.state_dict().items()},
            "student": {k: v.clone() for k, v in student.state_dict().items()},
            "losses": torch.stack(seen), "mask_ratio": float(result.history["train_mask_ratio"].iloc[-1])}


def ddpm(out: Path):
    """DDPM on a narrow U-Net (dropout off): timesteps and noise are drawn per global batch."""
    torch.manual_seed(0)
    unet = unet_nets.build_unet(channels=8, multipliers=(1, 2), layers_per_block=1,
                                attention_resolutions=(), dropout=0.0, image_size=8)
    # SGD: Adam's first steps divide by the gradients' magnitude, which turns float noise in
    # near-zero gradients into differences of order lr
    method = DDPM(unet, make_optimizer(unet.parameters(), name="sgd", lr=0.1), ema_decay=0.9,
                  num_timesteps=50)
    x = torch.rand(32, 3, 8, 8) * 2 - 1
    stream = lambda step: iter(lambda: (x, torch.zeros(32, dtype=torch.long)), None)  # noqa: E731
    fit(method, stream, total_steps=3, device="cpu", seed=0, data_parallel=True)
    return {k: v.clone() for k, v in unet.state_dict().items()}


def recorded_classifier(out: Path, **kw):
    """:func:`classifier` with checkpoints, noting which rank wrote each file."""
    writes = []
    save = loop.save_atomic

    def recording(obj, path):
        writes.append(Path(path).name)
        save(obj, path)

    loop.save_atomic = recording
    try:
        weights = classifier(out, bn=True, ckpt=True, **kw)
    finally:
        loop.save_atomic = save
    return {"weights": weights, "writes": writes}


def chapter_3(out: Path):
    """Chapter 3's MPL through its glue (smoke profile, synthetic data, dropout off), marked
    data-parallel: the student, the test accuracy and the files the run left."""
    from lib import params as P
    from lib.chapters import semi_supervised
    from lib.train import method as train_method

    p = P.load("03_semi_supervised", "smoke", {"data": "synthetic", "device": "cpu",
                                               "teacher_dropout": 0.0, "student_dropout": 0.0,
                                               "data_parallel": ["mpl"]})
    out = out / "chapter-3"
    # in NCHW: oneDNN's channels_last kernels round differently at half the batch, and MPL's
    # feedback amplifies rounding (the layout alone moves this student by 2.2e-3 in its 8 steps)
    with mock.patch.object(semi_supervised, "channels_last", lambda device: False), \
            mock.patch.object(train_method, "channels_last", lambda device: False):
        run = semi_supervised.train_ssl("mpl", semi_supervised.load_ssl_splits(p), p,
                                        ckpt_root=out / "ckpt", tb_root=out / "tb")
    return {"student": {k: v.clone() for k, v in run.method.student.state_dict().items()},
            "test_acc": run.test["acc"],
            "files": sorted(str(f.relative_to(out).parent) for f in out.rglob("*") if f.is_file())}


SCENARIOS = {"classifier": classifier, "mpl": mpl, "ddpm": ddpm, "recorded": recorded_classifier,
             "compiled": compiled_classifier, "chapter-3": chapter_3}


def _rank(rank: int, world: int, init: str, out: str, jobs: list) -> None:
    torch.set_num_threads(1)
    shard = distributed.init_from_env(init_method=f"file://{init}?rank={rank}&world_size={world}")
    assert shard == Shard(rank, world)
    try:
        results = [SCENARIOS[name](Path(out), **kwargs) for name, kwargs in jobs]
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def on_ranks(out: Path, jobs: list[tuple[str, dict]], world: int = 2) -> list[list]:
    """Each ``(scenario, kwargs)`` of ``jobs``, in turn, on ``world`` spawned gloo ranks (one
    spawn: starting the processes costs more than the scenarios); per job, each rank's result."""
    init = out / f"init-{os.urandom(4).hex()}"
    mp.spawn(_rank, args=(world, str(init), str(out), jobs), nprocs=world)
    per_rank = [torch.load(out / f"rank{r}.pt") for r in range(world)]
    return [list(results) for results in zip(*per_rank)]


JOBS = {"no-batchnorm": ("classifier", {"bn": False}), "sync-batchnorm": ("classifier", {"bn": True}),
        "unsynchronised": ("classifier", {"bn": True, "sync": False}), "mpl": ("mpl", {}),
        "mpl-per-rank": ("mpl", {"distributed_feedback": "rank"}), "ddpm": ("ddpm", {}),
        "compiled": ("compiled", {}), "chapter-3": ("chapter-3", {})}


# the jobs each spawn of two ranks runs (two spawns: each test, its set-up included, stays short)
GROUPS = (("no-batchnorm", "sync-batchnorm", "unsynchronised", "compiled"),
          ("mpl", "mpl-per-rank", "ddpm", "chapter-3"))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Each job of :data:`JOBS` trained on two ranks, once for the module's tests: per job, each
    rank's result (a group of jobs is trained when a test first asks for one of them)."""
    done: dict[str, list] = {}

    def results(job: str) -> list:
        if job not in done:
            group = next(g for g in GROUPS if job in g)
            out = tmp_path_factory.mktemp("two-ranks")
            done.update(zip(group, on_ranks(out, [JOBS[j] for j in group])))
        return done[job]

    return results


def single(tmp_path, job: str):
    name, kwargs = JOBS[job]
    return SCENARIOS[name](tmp_path, **kwargs)


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.mark.parametrize("job", ["no-batchnorm", "sync-batchnorm"])
def test_two_ranks_with_half_batches_train_as_one_process(tmp_path, two_ranks, job):
    ranks = two_ranks(job)
    assert max_difference(ranks[0], ranks[1]) == 0.0  # the replicas stay identical
    assert max_difference(ranks[0], single(tmp_path, job)) < TOL  # BatchNorm's statistics too
    assert max_difference(ranks[0], conv_net(job != "no-batchnorm").state_dict()) > 100 * TOL


def test_compiled_modules_train_data_parallel_as_one_graph(tmp_path, two_ranks):
    ranks = two_ranks("compiled")
    assert ranks[0]["compiled"] == {"compiled": True, "graphs": 1, "eager_calls": 0, "error": None}
    assert max_difference(ranks[0]["weights"], single(tmp_path, "sync-batchnorm")) < TOL


def test_batchnorm_left_unsynchronised_sees_only_its_slice(tmp_path, two_ranks):
    assert max_difference(two_ranks("unsynchronised")[0], single(tmp_path, "sync-batchnorm")) > 100 * TOL


def test_a_run_killed_on_two_ranks_resumes_on_one_or_two(tmp_path):
    uninterrupted = classifier(tmp_path, bn=True)
    killed = tmp_path / "killed"
    killed.mkdir()
    with pytest.raises(mp.ProcessExitedException, match="process 1 terminated with exit code 1"):
        on_ranks(killed, [("classifier", {"bn": True, "ckpt": True, "killed_at": 5})])
    assert torch.load(killed / "ckpt" / "last.pt")["step"] == 4  # written every 2 steps, by rank 0
    assert len(list((killed / "tb").iterdir())) == 1  # one TensorBoard file: rank 0's
    shutil.copytree(killed, tmp_path / "on-one")
    on_one = recorded_classifier(tmp_path / "on-one")
    [on_two] = on_ranks(killed, [("recorded", {})])
    assert on_one["writes"] == ["last.pt"]  # step 6: the end
    assert [r["writes"] for r in on_two] == [["last.pt"], []]  # only rank 0 writes
    assert max_difference(on_one["weights"], uninterrupted) < TOL
    assert max_difference(on_two[0]["weights"], uninterrupted) < TOL


def test_mpl_on_two_ranks_takes_the_single_process_step(tmp_path, two_ranks):
    one, ranks = single(tmp_path, "mpl"), two_ranks("mpl")
    for part in ("teacher", "student"):
        assert max_difference(ranks[0][part], one[part]) < TOL, part
    # every rank formed the global batch's h, the single process's
    assert torch.allclose(ranks[0]["losses"], one["losses"], atol=TOL)
    assert torch.equal(ranks[0]["losses"], ranks[1]["losses"])
    assert 0 < one["mask_ratio"] < 1  # some unlabelled images were masked out
    assert ranks[0]["mask_ratio"] == pytest.approx(one["mask_ratio"], abs=1e-6)


def test_mpl_feedback_per_rank_is_the_reference_codes_distributed_mode(tmp_path, two_ranks):
    """``distributed_feedback: rank``: each rank's h compares the labelled losses of its own slice;
    their mean is the single process's h, so the first student step is the same and the teacher's
    differs."""
    one, ranks = single(tmp_path, "mpl"), two_ranks("mpl-per-rank")
    first = torch.stack([r["losses"][0] for r in ranks])  # (rank, before/after) at step 1
    assert not torch.allclose(first[0], first[1])
    assert torch.allclose(first.mean(0), one["losses"][0], atol=TOL)
    assert max_difference(ranks[0]["teacher"], one["teacher"]) > 10 * TOL


def test_ddpm_on_two_ranks_draws_the_single_process_timesteps_and_noise(tmp_path, two_ranks):
    assert max_difference(two_ranks("ddpm")[0], single(tmp_path, "ddpm")) < TOL


def test_chapter_3_trains_mpl_data_parallel_where_its_params_say(tmp_path, two_ranks):
    one, ranks = single(tmp_path, "chapter-3"), two_ranks("chapter-3")
    assert max_difference(ranks[0]["student"], one["student"]) < TOL
    assert ranks[0]["test_acc"] == ranks[1]["test_acc"] == pytest.approx(one["test_acc"])
    # one checkpoint folder, the single process's (same name: data_parallel is not in its key),
    # holding best.pt and last.pt; one TensorBoard file
    assert ranks[0]["files"] == one["files"] == sorted([one["files"][0]] * 2 + ["tb/mpl"])


def test_shard_splits_every_tensor_of_a_batch_and_refuses_uneven_slices():
    b = batches.SSLBatch(torch.arange(8), torch.arange(8) * 10, torch.arange(16), None)
    part = Shard(1, 2).batch(b)
    assert part.x_l.tolist() == [4, 5, 6, 7] and part.y_l.tolist() == [40, 50, 60, 70]
    assert part.x_uw.tolist() == list(range(8, 16)) and part.x_us is None
    assert Shard().batch(b) is b
    with pytest.raises(ValueError, match="global batch of 10 rows does not divide evenly over 4"):
        Shard(0, 4).split(torch.zeros(10))
    assert distributed.data_parallel_shard(True) == Shard()  # no process group: one process


def test_data_parallel_lists_only_runs_that_can_train_so():
    from lib import params as P

    assert distributed.marked_runs(P.load("03_semi_supervised", "full-long"), ("mpl", "uda")) == ("mpl",)
    assert distributed.marked_runs(P.load("02_generative", "full"), ("ddpm",)) == ()
    with pytest.raises(ValueError, match=r"data_parallel lists \['dcgan'\]; .* here: \['ddpm'\]"):
        distributed.marked_runs({"data_parallel": ["dcgan"]}, ("ddpm",))


def test_the_reference_recipe_table_compares_the_distributed_modes():
    from lib import params as P
    from lib.chapters import mpl_reference

    long_ = {**P.load("03_semi_supervised", "full-long"), "profile": "full-long"}
    rows = mpl_reference.reference_recipe_table(long_).set_index("param")
    assert rows.loc["MPL on several GPUs", "this run"].startswith("data-parallel")
    assert not rows.loc["several GPUs: feedback h", "same"]  # global h: the single-process step
    assert not rows.loc["several GPUs: BatchNorm", "same"]
    assert rows.loc["several GPUs: UDA mask", "same"] and rows.loc["several GPUs: seeds", "same"]
    as_reference = {**long_, "mpl_distributed_feedback": "rank", "sync_batchnorm": False}
    rows = mpl_reference.reference_recipe_table(as_reference).set_index("param")
    assert rows.loc["several GPUs: feedback h", "same"] and rows.loc["several GPUs: BatchNorm", "same"]
