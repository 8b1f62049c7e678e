"""torch.compile pays for itself: ``auto`` compiles only long CUDA runs, and a compiled module
builds one graph; calls with other shapes or grad mode (MPL's no-grad student pass, a partial last
batch) run eagerly. Graphs are counted with a backend that records what dynamo hands it and runs it
eagerly, so this needs neither a GPU nor inductor."""
import pytest
import torch

from lib import data as D
from lib import params as P
from lib.batches import BatchLoader, SSLBatch
from lib.chapters import semi_supervised
from lib.train import device as dev
from lib.train import resolve_compile

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def graphs(monkeypatch):
    """Every graph torch.compile builds during the test, in order."""
    import torch._dynamo

    built = []

    def backend(gm, example_inputs):
        built.append(gm)
        return gm.forward

    torch._dynamo.reset()
    monkeypatch.setattr(dev, "COMPILE_BACKEND", backend)
    yield built
    torch._dynamo.reset()


def test_auto_compiles_only_long_runs_on_cuda():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_compile("auto", cuda, steps=10_000, min_steps=10_000)
    assert not resolve_compile("auto", cuda, steps=9_999, min_steps=10_000)
    assert not resolve_compile("auto", cpu, steps=10**6, min_steps=0)
    assert resolve_compile(True, cpu, steps=1, min_steps=10_000)  # forced
    assert not resolve_compile(False, cuda, steps=10**6)
    with pytest.raises(ValueError, match="compile must be auto, true or false"):
        resolve_compile("yes", cpu)


def test_every_params_file_states_its_compile_threshold():
    for chapter in ("01_supervised", "02_generative", "03_semi_supervised"):
        p = P.load(chapter, "full")
        assert p["compile"] == "auto" and p["compile_min_steps"] > 0, chapter
    assert P.load("01_supervised", "full")["sweep_compile"] is False


def _ssl(kind, params):
    ds = D.make_synthetic(120, 10)
    method = semi_supervised.build_method(kind, params, total_steps=10)
    method.setup(torch.device("cpu"), None, compile=True)
    batches = semi_supervised.ssl_batches(ds.train_x[:40], ds.train_y[:40], ds.train_x[40:], params,
                                          torch.device("cpu"), unlabelled=kind != "supervised")
    return method, batches


def test_mpl_compiles_one_graph_per_network_and_runs_the_no_grad_student_pass_eagerly(graphs):
    p = P.load("03_semi_supervised", "smoke", {"data": "synthetic", "batch_size": 4, "mu": 2})
    method, batches = _ssl("mpl", p)
    stream = batches.forever()
    for _ in range(3):
        logs = method.train_step(next(stream))
    assert torch.isfinite(logs["teacher_loss"]) and torch.isfinite(logs["student_loss"])
    assert len(graphs) == 2, [g.code for g in graphs]  # teacher and student, no recompilation
    assert method.net("teacher").eager_calls == 0
    assert method.net("student").eager_calls == 3  # the labelled-only, no-grad pass of each step


def test_a_partial_last_batch_runs_eagerly_instead_of_compiling_a_second_graph(graphs):
    p = P.load("03_semi_supervised", "smoke", {"data": "synthetic"})
    ds = D.make_synthetic(120, 10)
    method = semi_supervised.finetune_method(semi_supervised.wrn(p, 0.0), p)
    method.setup(torch.device("cpu"), None, compile=True)
    loader = BatchLoader(ds.train_x[:35], ds.train_y[:35], batch_size=16, seed=0, drop_last=False)
    sizes = []
    for batch in loader.epoch(0):  # 16 + 16 + 3
        sizes.append(len(batch[1]))
        method.train_step(SSLBatch(*batch, None, None))
    assert sizes == [16, 16, 3]
    assert len(graphs) == 1
    assert method.net("model").eager_calls == 1
