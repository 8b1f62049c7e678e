"""Every module the full profile compiles compiles whole on the CPU, forward and backward, under
bf16 autocast as on a GPU, as one graph (three for DCGAN's discriminator); tests/test_compile.py
shows what happens when one cannot.

The full profile compiles (``compile: auto`` on CUDA for runs of at least ``compile_min_steps``):
ResNet-18 (chapter 1's presented-recipe baseline, chapter 2's real + reconstructions classifier),
WRN-28-2 (MPL's teacher and student, UDA's teacher, the supervised baseline), DCGAN's generator and
discriminator, the VAE and the DDPM U-Net; :func:`test_the_list_is_what_the_full_profile_compiles`
keeps this list honest. Each case takes two real training steps of its method at tiny shapes
(narrow networks, batch 2, a two-level U-Net with every block type) with ``fullgraph=True``, so a
graph break fails here instead of on the GPU.

Backend: Inductor on this 2-core CPU takes minutes per network (gcc compiles every kernel of the
forward and the backward), far over the suite's budget, so the cases run under ``aot_eager``:
dynamo's whole-graph capture and AOTAutograd's forward + backward trace, without Inductor's lowering
and code generation. That catches graph breaks and autograd tracing failures; an Inductor lowering
failure is left to the GPU, where :class:`lib.train.device.OneGraph` records it and the run goes on
eagerly. One small real module (DCGAN's generator) goes through Inductor here, forward and backward,
against eager results. ``CIFAR_REPORT_COMPILE_BACKEND=inductor`` runs every case under Inductor
(about ten minutes here; ``-s`` prints each case's graphs and first-step seconds).
"""
import copy
import math
import os
import resource
import time

import pytest
import torch

from lib import params as P
from lib.batches import SSLBatch
from lib.chapters import generative, semi_supervised, supervised
from lib.methods.classifier import Classifier
from lib.models import build_model
from lib.train import device as dev
from lib.train import make_optimizer, resolve_compile

pytestmark = pytest.mark.usefixtures("one_thread")

BACKEND = os.environ.get("CIFAR_REPORT_COMPILE_BACKEND")


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (gcc, compile workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _images(n=2):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 32, 32, generator=g).clamp(-1, 1), torch.arange(n) % 10


def _resnet18():
    torch.manual_seed(0)
    model = build_model("resnet18", width=1 / 16)
    return Classifier(model, make_optimizer(model.parameters(), name="sgd", lr=0.01, momentum=0.9),
                      label_smoothing=0.1), _images()


def _ssl(kind):
    # width 1/8: the narrowest WRN whose strided blocks still change width (so keep their 1x1 shortcut)
    p = P.load("03_semi_supervised", "full", {"width": 0.125, "batch_size": 2, "mu": 1})
    x, y = _images()
    return semi_supervised.build_method(kind, p, total_steps=10), SSLBatch(x, y, x.flip(3), x.flip(2))


def _generator(kind):
    p = P.load("02_generative", "full", {
        "vae_width": 4, "vae_latent": 4, "dcgan_width": 4, "dcgan_nz": 8, "ddpm_channels": 8,
        "ddpm_multipliers": [1, 2], "ddpm_layers_per_block": 1})
    method, _ = generative.build_method(kind, generative.generator_settings(kind, p),
                                        total_steps=10, seed=0)
    return method, _images()


# case -> (builder, {module: graphs}); one graph each, but DCGAN's discriminator sees three kinds of
# input of one shape, and dynamo compiles once for each: real images (float32), detached fakes
# (bfloat16 under autocast) and fakes that need gradients (the generator's step)
CASES = {
    "resnet18": (_resnet18, {"model": 1}),
    "mpl": (lambda: _ssl("mpl"), {"teacher": 1, "student": 1}),
    "uda": (lambda: _ssl("uda"), {"teacher": 1}),
    "supervised": (lambda: _ssl("supervised"), {"model": 1}),
    "vae": (lambda: _generator("vae"), {"model": 1}),
    "dcgan": (lambda: _generator("dcgan"), {"generator": 1, "discriminator": 3}),
    "ddpm": (lambda: _generator("ddpm"), {"unet": 1}),
}


@pytest.fixture
def fresh_dynamo():
    """No graphs left from other tests; Inductor compiles in this process (a pool of compile
    workers would first import torch twice, more than this test's own work)."""
    import torch._dynamo
    import torch._inductor.config

    torch._dynamo.reset()
    with torch._inductor.config.patch(compile_threads=1):
        yield
    torch._dynamo.reset()


@pytest.mark.parametrize("case", list(CASES))
def test_every_compiled_module_compiles_whole_forward_and_backward(case, monkeypatch, fresh_dynamo):
    build, graphs = CASES[case]
    backend = BACKEND or "aot_eager"
    monkeypatch.setattr(dev, "COMPILE_BACKEND", backend)
    method, batch = build()
    method.setup(torch.device("cpu"), torch.bfloat16, compile=True)  # autocast, as on a GPU
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    logs = [method.train_step(batch)]
    first, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    logs.append(method.train_step(batch))  # the same graphs again: no recompilation
    record = method.compilation()
    print(f"\n{case} [{backend}]: first step {first:.1f} s ({cpu:.1f} CPU-s with gcc), {record}")
    for name, n in graphs.items():
        assert record[name]["error"] is None, f"{case}/{name}: {record[name]['error']}"
        assert record[name]["compiled"] and record[name]["graphs"] == n, (case, name, record[name])
    assert set(record) == set(graphs)
    if case == "mpl":  # the student's labelled-only, no-grad feedback pass runs eagerly, by design
        assert record["student"]["eager_calls"] == 2 and record["teacher"]["eager_calls"] == 0
    else:
        assert all(r["eager_calls"] == 0 for r in record.values()), record
    assert all(torch.isfinite(torch.as_tensor(v)).all() for step in logs for v in step.values())


def _classifier_steps(p, name, recipe_name, images):
    rec = supervised.recipe(p, recipe_name)
    return supervised.model_epochs(p, name) * (images // rec["batch_size"])


def test_the_list_is_what_the_full_profile_compiles():
    """The runs ``compile: auto`` compiles on CUDA in the full profile, by their step counts, are
    exactly those :data:`CASES` cover (so a changed epoch count or threshold shows up here)."""
    cuda = torch.device("cuda")
    compiled = set()

    def note(model, p, steps):
        if resolve_compile(p["compile"], cuda, steps=steps, min_steps=p["compile_min_steps"]):
            compiled.add(model)

    p1 = P.load("01_supervised", "full")
    n1 = 50_000 - p1["val_size"]
    for name in [*p1["models"], *p1["activation_map_models"]]:
        note(name, p1, _classifier_steps(p1, name, p1["recipe"], n1))
    other = "presented" if p1["recipe"] == "strong" else "strong"
    note("resnet18", p1, _classifier_steps(p1, "resnet18", other, n1))
    for name in p1["pretrained_models"]:
        note(name, p1, p1["pretrained_epochs"] * (n1 // p1["finetune_batch_size"]))
    sweep = {**p1, "compile": p1["sweep_compile"]}
    for b in p1["sweep_batch_sizes"]:
        note(p1["sweep_model"], sweep, p1["sweep_epochs"] * (n1 // b))
    p2 = P.load("02_generative", "full")
    n2 = 50_000 - p2["val_size"]
    for kind in generative.GENERATORS:
        note(kind, p2, generative.training_steps(generative.generator_settings(kind, p2), n2))
    for images in (n2, 2 * n2):  # real or reconstructions; real + reconstructions
        steps = p2["classifier_epochs"] * (images // p2["classifier_batch_size"])
        note(p2["classifier_model"], p2, steps)
    p3 = P.load("03_semi_supervised", "full")
    for kind in semi_supervised.KINDS:
        note(kind, p3, semi_supervised.steps_of(kind, p3))
    labelled = p3["labelled_size"]
    note("finetune", p3, p3["finetune_epochs"] * math.ceil(labelled / p3["finetune_batch_size"]))
    assert compiled == set(CASES)


def test_inductor_compiles_the_dcgan_generator_forward_and_backward_like_eager(fresh_dynamo):
    """The production path end to end: Inductor, the counting backend, the backward compiled with
    the forward; outputs and gradients match the eager module's."""
    from lib.models.dcgan import DCGANGenerator, dcgan_init

    torch.manual_seed(0)
    g = DCGANGenerator(nz=8, width=4)
    dcgan_init(g)
    twin = copy.deepcopy(g)
    net = dev.OneGraph(g, name="generator", backend="inductor")
    z = torch.randn(2, 8)
    out, ref = net(z), twin(z)
    out.square().mean().backward()
    ref.square().mean().backward()
    assert net.record() == {"compiled": True, "graphs": 1, "eager_calls": 0, "error": None}
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    for a, b in zip(g.parameters(), twin.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)
