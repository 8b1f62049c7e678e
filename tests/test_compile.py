"""torch.compile pays for itself: ``auto`` compiles only long CUDA runs, and a compiled module
builds one graph; calls with other shapes or grad mode (MPL's no-grad student pass, a partial last
batch) run eagerly. Graphs are counted with a backend that records what dynamo hands it and runs it
eagerly, so this needs neither a GPU nor inductor. A compilation that fails is shown, recorded and
survived: the run goes on eagerly."""
import json

import pytest
import torch

from lib import data as D
from lib import params as P
from lib.batches import BatchLoader, SSLBatch
from lib.chapters import generative, semi_supervised, supervised, sweep
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


class Handed(Exception):
    """What a chapter handed the training loop, raised in place of training."""


def test_every_chapter_hands_the_loop_its_compile_rule(monkeypatch, tmp_path):
    """Each chapter's runs reach the loop with their params' ``compile`` and ``compile_min_steps``
    (the sweep's cells with ``sweep_compile``): a chapter that dropped the threshold would compile
    every CUDA run, however short."""
    def stop(*_, **kw):
        raise Handed({k: kw[k] for k in ("compile", "compile_min_steps")})

    for module in (supervised, generative, semi_supervised):
        monkeypatch.setattr(module, "train_and_test", stop)

    def handed(train, *args):
        with pytest.raises(Handed) as got:
            train(*args, ckpt_root=tmp_path)
        return got.value.args[0]

    ds = D.make_synthetic(96, 20)
    x, y = ds.train_x, ds.train_y
    splits = supervised.Splits(x[:64], y[:64], x[64:], y[64:], ds.test_x, ds.test_y, source="synthetic")
    rule = {"data": "synthetic", "compile": "auto", "compile_min_steps": 1234}
    expected = {"compile": "auto", "compile_min_steps": 1234}
    p1 = P.load("01_supervised", "smoke", {**rule, "sweep_compile": True, "sweep_batch_sizes": [16]})
    assert handed(supervised.train_classifier, "resnet18", splits, p1) == expected
    assert handed(sweep.batch_lr_sweep, splits, p1) == {**expected, "compile": True}
    p2 = P.load("02_generative", "smoke", rule)
    for kind in generative.GENERATORS:
        assert handed(generative.train_generator, kind, splits, p2) == expected, kind
    p3 = P.load("03_semi_supervised", "smoke", rule)
    ssl = semi_supervised.SSLSplits(x[:40], y[:40], x[40:80], y[40:80], x[80:], y[80:], ds.test_x, ds.test_y,
                                    source="synthetic")
    for kind in semi_supervised.KINDS:
        assert handed(semi_supervised.train_ssl, kind, ssl, p3) == expected, kind


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


# -- a compilation that fails is caught, recorded and shown; the run goes on eagerly

INJECTED = "no kernel for this graph (injected)"


def failing_backend(gm, example_inputs):
    raise RuntimeError(INJECTED)


def test_a_failing_compile_is_shown_recorded_and_the_run_goes_on_eagerly_with_identical_results(
        monkeypatch, capsys, tmp_path):
    import torch._dynamo

    from lib import report as R
    from lib.chapters import supervised

    torch._dynamo.reset()
    monkeypatch.setattr(dev, "COMPILE_BACKEND", failing_backend)
    p = P.load("01_supervised", "smoke", {"data": "synthetic", "compile": True})
    splits = supervised.load_splits(p)
    report = R.Report("01_supervised", p, out_root=tmp_path, data_source=splits.source)
    failed = supervised.train_classifier("resnet18", splits, p, ckpt_root=tmp_path / "a")
    shown = capsys.readouterr().out
    eager = supervised.train_classifier("resnet18", splits, {**p, "compile": False},
                                        ckpt_root=tmp_path / "b", run_name="resnet18-eager")
    torch._dynamo.reset()

    error = f"RuntimeError: {INJECTED}"
    assert (f"torch.compile failed for model (CifarResNet): {error}; running eagerly: expect 2-3x "
            "slower steps") in shown
    assert failed.compilation == {"model": {"compiled": False, "graphs": 0,
                                            "eager_calls": failed.steps, "error": error}}
    # the failure happened before anything ran: the eager rest of the run is the eager run
    assert failed.test_acc == eager.test_acc and failed.val_acc == eager.val_acc
    for a, b in zip(failed.model.state_dict().values(), eager.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    table = supervised.accuracy_table([failed, eager], {}, profile="smoke", source=splits.source,
                                      n_test=len(splits.test_y))
    assert list(table["compiled"]) == [f"no: model: {error}", "no"]
    assert report.provenance()["compile"] == {"resnet18": failed.compilation,
                                              "resnet18-eager": eager.compilation}
    report.finish()
    saved = json.loads((tmp_path / "smoke" / "01_supervised" / "provenance.json").read_text())
    assert saved["compile"]["resnet18"]["model"]["error"] == error


class Breaks(torch.nn.Module):
    """A module dynamo cannot capture whole: a graph break between two layers."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)

    def forward(self, x):
        x = self.a(x).relu()
        torch._dynamo.graph_break()
        return self.b(x)


def test_a_graph_break_is_an_error_on_record_not_a_silent_split(capsys):
    import torch._dynamo

    torch._dynamo.reset()
    torch.manual_seed(0)
    module, x = Breaks(), torch.randn(3, 4)
    net = dev.OneGraph(module, name="breaks", backend="eager")
    torch.testing.assert_close(net(x), module(x), rtol=0, atol=0)
    record = net.record()
    assert not record["compiled"] and record["graphs"] == 0 and record["eager_calls"] == 1
    assert record["error"].startswith("Unsupported"), record["error"]
    assert "torch.compile failed for breaks (Breaks): Unsupported" in capsys.readouterr().out
    torch._dynamo.reset()


def test_a_backward_that_cannot_compile_fails_inside_the_first_call_not_in_backward():
    """AOTAutograd compiles the backward lazily, at the first ``backward()``; OneGraph has it
    compiled with the forward, inside the call it guards."""
    import copy

    import torch._dynamo
    from torch._dynamo.backends.common import aot_autograd

    def backward_fails(gm, example_inputs):
        raise RuntimeError(INJECTED)

    torch._dynamo.reset()
    torch.manual_seed(0)
    module, x = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh()), torch.randn(3, 4)
    twin = copy.deepcopy(module)
    net = dev.OneGraph(module, name="mlp",
                       backend=aot_autograd(fw_compiler=lambda gm, _: gm, bw_compiler=backward_fails))
    net(x).sum().backward()
    twin(x).sum().backward()
    assert net.record()["error"] == f"RuntimeError: {INJECTED}"
    for a, b in zip(module.parameters(), twin.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)
    torch._dynamo.reset()


def test_compiled_cell_reads_yes_no_or_the_error():
    ok = {"compiled": True, "graphs": 1, "eager_calls": 0, "error": None}
    assert dev.compiled_cell({"teacher": ok, "student": {**ok, "eager_calls": 3}}) == "yes"
    assert dev.compiled_cell({"model": dict(dev.NOT_COMPILED)}) == "no"  # off by rule
    assert dev.compiled_cell({}) == "no"  # a method that compiles nothing
    failed = {"compiled": False, "graphs": 0, "eager_calls": 9, "error": "RuntimeError: boom"}
    assert dev.compiled_cell({"teacher": ok, "student": failed}) == "no: student: RuntimeError: boom"
    # compile on, but the run was finished already: nothing compiled in this process
    assert dev.compiled_cell({"model": {**ok, "graphs": 0}}) == "not run here: finished run reused"
