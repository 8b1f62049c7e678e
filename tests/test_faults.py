"""Faults a student meets: a run killed mid-training, a truncated checkpoint or cache, a full disk, a
checkpoint with pickled code in it, and two runs writing one profile. Each is recovered or refused with a
one-line message that names the file, and no good output is lost."""
import errno
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT

from lib import batches, storage
from lib import data as D
from lib import report as R
from lib.methods.classifier import Classifier
from lib.models import build_model
from lib.train import fit, make_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")

# A child process trains one chapter run on the synthetic set; with KILL_AT it SIGKILLs itself right
# after that training step (checkpoints before it exist, the step's own state is lost), like a closed
# laptop lid or a Colab disconnect.
CHILD = r"""
import json, os, signal, sys
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
from lib import params as P, train
kind, ckpt_root, kill_at = sys.argv[2], sys.argv[3], int(sys.argv[4])
if kill_at:
    real = train.Method.optimise
    count = {"n": 0}
    def optimise(self, *a, **k):
        out = real(self, *a, **k)
        count["n"] += 1
        if count["n"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    train.Method.optimise = optimise
if kind == "classifier":
    from lib.chapters import supervised
    p = P.load("01_supervised", "smoke", {"data": "synthetic", "epochs": 3})
    t = supervised.train_classifier("resnet18", supervised.load_splits(p), p, ckpt_root=ckpt_root)
    table = supervised.accuracy_table([t], {}, profile="smoke", source="synthetic", n_test=0)
else:
    from lib.chapters import semi_supervised as ssl
    p = P.load("03_semi_supervised", "smoke", {"data": "synthetic", "total_steps": 12})
    run = ssl.train_ssl("mpl", ssl.load_ssl_splits(p), p, ckpt_root=ckpt_root)
    table = ssl.results_table({"mpl": run}, {}, profile="smoke", source="synthetic", n_test=0)
print(table.to_json(orient="records"))
"""
WALL_TIME = ("wall time (s)", "s / step")


def run_child(kind, ckpt_root, kill_at=0):
    return subprocess.run([sys.executable, "-c", CHILD, str(ROOT), kind, str(ckpt_root), str(kill_at)],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("kind, kill_at", [("classifier", 10), ("mpl", 14)])  # mpl: 2 updates a step
def test_sigkill_mid_training_then_rerun_gives_the_uninterrupted_tables(tmp_path, kind, kill_at):
    killed = run_child(kind, tmp_path / "interrupted", kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert list((tmp_path / "interrupted").rglob("last.pt")), "a checkpoint before the kill"
    resumed = run_child(kind, tmp_path / "interrupted")
    straight = run_child(kind, tmp_path / "uninterrupted")
    for proc in (resumed, straight):
        assert proc.returncode == 0, proc.stderr[-2000:]
    tables = [pd.DataFrame(json.loads(p.stdout.strip().splitlines()[-1])) for p in (resumed, straight)]
    tables = [t.drop(columns=[c for c in WALL_TIME if c in t]) for t in tables]
    pd.testing.assert_frame_equal(*tables)


def tiny_fit(ckpt_dir, *, total_steps=12, **kw):
    torch.manual_seed(0)
    model = build_model("resnet18", width=0.125)
    method = Classifier(model, make_optimizer(model.parameters(), name="sgd", lr=0.05, momentum=0.9))
    ds = D.make_synthetic(256, 64)
    train = batches.BatchLoader(ds.train_x, ds.train_y, batch_size=32, seed=0)
    val = batches.BatchLoader(ds.test_x, ds.test_y, batch_size=64, train=False)

    def evaluate():
        model.eval()
        with torch.no_grad():
            return {"val_acc": float(np.mean([(model(x).argmax(1) == y).float().mean().item()
                                              for x, y in val.epoch(0)]))}

    result = fit(method, train.forever, total_steps=total_steps, evaluate=evaluate, eval_every=4,
                 ckpt_dir=ckpt_dir, device="cpu", **kw)
    return method, result


def test_truncated_last_checkpoint_is_moved_aside_and_the_run_resumes_from_best(tmp_path, capsys):
    reference, _ = tiny_fit(tmp_path / "straight")
    tiny_fit(tmp_path / "run", stop_after=10)
    last = tmp_path / "run" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # a Colab session died while Drive synced it
    method, result = tiny_fit(tmp_path / "run")
    err = capsys.readouterr().err
    assert f"[recovered] {last} could not be read" in err and "resuming from best.pt" in err
    assert (tmp_path / "run" / "last.pt.corrupt").is_file() and result.finished
    assert storage.RECOVERIES[-1]["path"] == str(last)
    for a, b in zip(reference.model.state_dict().values(), method.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_checkpoint_holding_pickled_objects_is_refused_by_name(tmp_path):
    (tmp_path / "run").mkdir()
    bad = tmp_path / "run" / "last.pt"
    torch.save({"method": {}, "payload": pd.DataFrame({"a": [1]})}, bad)  # objects, not tensors
    with pytest.raises(storage.CheckpointError, match=f"{bad} is not a project checkpoint: it holds pickled"):
        tiny_fit(tmp_path / "run")
    assert bad.is_file()  # refused, not moved or loaded


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch):
    tiny_fit(tmp_path / "run", stop_after=4)
    before = storage.load_checkpoint(tmp_path / "run" / "last.pt")["step"]
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        real_save(obj, f, *a, **k)  # a partly written temporary file, then the error
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.torch, "save", full_disk)
    with pytest.raises(storage.WriteError, match=r"could not write .*\.pt \(No space left on device\); "
                                                 r"the previous version, if any, is intact"):
        tiny_fit(tmp_path / "run")
    monkeypatch.setattr(storage.torch, "save", real_save)
    assert storage.load_checkpoint(tmp_path / "run" / "last.pt")["step"] == before == 4
    assert not list((tmp_path / "run").glob(".*.tmp"))  # no temporary file left behind


def test_a_full_disk_during_a_report_leaves_the_previous_report(tmp_path, monkeypatch):
    rep = R.Report("01_supervised", {"profile": "smoke"}, out_root=tmp_path, device="cpu")
    rep.table(pd.DataFrame({"acc": [1]}), "accuracy", item="1.4", title="Accuracy")
    rep.finish()
    rep = R.Report("01_supervised", {"profile": "smoke"}, out_root=tmp_path, device="cpu")
    rep.table(pd.DataFrame({"acc": [2]}), "accuracy", item="1.4", title="Accuracy")
    monkeypatch.setattr(storage.Path, "write_text", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(storage.WriteError, match="No space left on device"):
        rep.finish()
    monkeypatch.undo()
    assert pd.read_csv(tmp_path / "smoke" / "01_supervised" / "accuracy.csv")["acc"].tolist() == [1]


def test_a_truncated_dataset_cache_is_rebuilt(tmp_path, capsys):
    from PIL import Image

    for split, n in (("train", 3), ("test", 2)):
        for c, name in enumerate(D.CLASSES):
            folder = tmp_path / "cifar" / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 32), (c * 20, i * 40, 99)).save(folder / f"{i}.png")
    first = D.load_cifar10(tmp_path / "cifar", cache_dir=tmp_path / "cache")
    (cached,) = (tmp_path / "cache").glob("cifar10-*.pt")
    cached.write_bytes(cached.read_bytes()[:500])
    again = D.load_cifar10(tmp_path / "cifar", cache_dir=tmp_path / "cache")
    assert torch.equal(first.train_x, again.train_x) and torch.equal(first.test_y, again.test_y)
    assert f"[recovered] {cached} could not be read" in capsys.readouterr().err
    assert cached.with_name(cached.name + ".corrupt").is_file() and cached.is_file()


def test_one_writer_per_profile(tmp_path, capsys):
    prof = tmp_path / "quick"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = storage.lock_profile(prof, command="./run_all.sh --profile quick", pid=sleeper.pid)
        assert (lock / "holder.json").is_file()
        with pytest.raises(storage.ProfileBusy, match=rf"being written by another run \(pid {sleeper.pid} "
                                                      r".*\./run_all\.sh --profile quick\)"):
            R.Report("01_supervised", {"profile": "quick"}, out_root=tmp_path, device="cpu")
        proc = subprocess.run([sys.executable, "-m", "lib.storage", "lock", str(prof), str(os.getpid()), "x"],
                              cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 1 and f"pid {sleeper.pid}" in proc.stderr
    finally:
        sleeper.kill()
        sleeper.wait()
    rep = R.Report("01_supervised", {"profile": "quick"}, out_root=tmp_path, device="cpu")  # holder gone
    err = capsys.readouterr().err
    assert f"its holder (pid {sleeper.pid}" in err and "is no longer running" in err
    again = R.Report("02_generative", {"profile": "quick"}, out_root=tmp_path, device="cpu")  # same process
    rep.finish()
    again.finish()
    assert not (prof / ".lock").exists()


def test_a_notebook_under_run_all_uses_the_lock_run_all_holds(tmp_path, monkeypatch):
    prof = tmp_path / "smoke"
    storage.lock_profile(prof, command="./run_all.sh", pid=os.getppid())  # a live process, not this one
    monkeypatch.setenv(storage.LOCK_ENV, str(prof / ".lock"))
    rep = R.Report("01_supervised", {"profile": "smoke"}, out_root=tmp_path, device="cpu")
    assert rep.lock is None
    rep.finish()
    assert (prof / ".lock").exists()  # still run_all's
