"""Every method plugs into the loop the same way: a step trains the compiled modules in its state, its updates go through
Method.optimise (checked against a hand-written step), and fp16 autocast gives each optimiser a gradient scaler."""
import types

import pytest
import torch
import torch.nn as nn

from lib import data as D
from lib import params as P
from lib.batches import BatchLoader, SSLBatch
from lib.chapters import generative, semi_supervised
from lib.methods.classifier import Classifier
from lib.models import build_model
from lib.train import Method, make_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def tiny_methods() -> dict[str, Method]:
    torch.manual_seed(0)
    model = build_model("resnet18", width=0.125)
    out = {"classifier": Classifier(model, make_optimizer(model.parameters(), name="sgd", lr=0.1))}
    p2 = P.load("02_generative", "smoke", {"data": "synthetic"})
    for kind in generative.GENERATORS:
        out[kind], _ = generative.build_method(kind, generative.generator_settings(kind, p2), total_steps=10,
                                               seed=0)
    p3 = P.load("03_semi_supervised", "smoke", {"data": "synthetic"})
    for kind in semi_supervised.KINDS:
        out[kind] = semi_supervised.build_method(kind, p3, total_steps=10)
    return out


def one_batch(name: str):
    x, y = torch.rand(4, 3, 32, 32) * 2 - 1, torch.arange(4)
    return SSLBatch(x, y, x.flip(3), x.flip(2)) if name in semi_supervised.KINDS else (x, y)


def test_a_step_trains_the_modules_each_method_compiles_as_they_sit_in_its_state():
    """What a checkpoint saves is what trained: uncompiled, training changes the weights of every
    module a method names in ``compiled``, in its ``state`` (the modules ``fit`` compiles and saves). Two steps:
    the SSL schedules warm up from a learning rate of 0."""
    for name, method in tiny_methods().items():
        assert method.compiled, f"{name} compiles nothing"
        method.setup(CPU, None, compile=False)
        before = {m: [p.detach().clone() for p in method.state[m].parameters()] for m in method.compiled}
        for _ in range(2):
            method.train_step(one_batch(name))
        for m in method.compiled:
            after = method.state[m].parameters()
            assert any(not torch.equal(a, b) for a, b in zip(before[m], after)), f"{name}: {m} did not train"


def test_optimise_is_the_hand_written_step():
    torch.manual_seed(0)
    nets = [nn.Linear(4, 3) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [torch.optim.SGD(n.parameters(), lr=0.5, momentum=0.9) for n in nets]
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1 / (1 + s)) for o in opts]
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    method = Method()
    method.state = {"net": nets[0], "opt": opts[0]}
    method.setup(CPU, None)
    method.track_ema(nets[0], 0.5)
    ema = [p.clone() for p in nets[0].parameters()]
    for _ in range(3):
        loss = nn.functional.cross_entropy(nets[0](x), y) * 100  # large: the clip bites
        norm = method.optimise(loss, opts[0], model=nets[0], scheduler=scheds[0], clip=1.0, ema=True)
        opts[1].zero_grad()
        (nn.functional.cross_entropy(nets[1](x), y) * 100).backward()
        expected = nn.utils.clip_grad_norm_(nets[1].parameters(), 1.0)
        opts[1].step()
        scheds[1].step()
        ema = [e + 0.5 * (p.detach() - e) for e, p in zip(ema, nets[1].parameters())]
        torch.testing.assert_close(norm, expected)
        assert norm > 1.0
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for e, p in zip(ema, method.ema.module.parameters()):
        torch.testing.assert_close(e, p)
    assert method.optimise(nets[0](x).sum(), opts[0], model=nets[0]) is None  # no clip -> no norm


def test_ema_warmup_counts_the_scheduler_steps():
    net = nn.Linear(2, 1, bias=False)
    method = Method()
    method.track_ema(net, 0.9999, warmup=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    with torch.no_grad():
        net.weight.fill_(1.0)
    method.ema.module.weight.data.zero_()
    method.optimise(net.weight.sum(), opt, model=net, scheduler=sched, ema=True)
    # first update: decay min(0.9999, 2 / 11), so the average moves 9/11 of the way to the model
    torch.testing.assert_close(method.ema.module.weight, torch.full((1, 2), 9 / 11))


def test_fp16_autocast_gives_every_optimiser_a_scaler_and_still_learns():
    methods = tiny_methods()
    dcgan = methods["dcgan"]
    dcgan.setup(CPU, torch.float16)
    assert len(dcgan._scalers) == 2  # one per optimiser (generator, discriminator)
    clf = methods["classifier"]
    clf.setup(CPU, torch.float16)
    assert len(clf._scalers) == 1
    ds = D.make_synthetic(64, 10)
    batches = BatchLoader(ds.train_x, ds.train_y, batch_size=32).forever()
    before = [p.detach().clone() for p in clf.model.parameters()]
    logs = [clf.train_step(next(batches)) for _ in range(3)]
    assert all(torch.isfinite(entry["loss"]) for entry in logs)
    assert any(not torch.equal(a, b) for a, b in zip(before, clf.model.parameters()))
    sd = clf.state_dict()
    sd["grad_scalers"]["optimizer"]["scale"] = 1024.0
    clf.load_state_dict(sd)
    clf.setup(CPU, torch.float16)  # as fit does after loading a checkpoint: the restored scaler is kept
    assert clf._scalers["optimizer"].get_scale() == 1024.0
    clf.setup(CPU, None)
    assert clf._scalers == {}


def test_auto_precision_is_fp16_on_a_gpu_without_native_bf16(monkeypatch):
    from lib.train import amp_dtype

    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert amp_dtype(cuda, "auto") is torch.float16 and amp_dtype(cuda, True) is torch.float16  # a T4
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert amp_dtype(cuda, "auto") is torch.bfloat16  # A100, H100, H200
    assert amp_dtype(CPU, "auto") is None


def test_a_compute_capability_7_5_gpu_gets_fp16_and_loss_scaling(monkeypatch):
    """Colab's T4 (sm_75) has no bf16 tensor cores: torch's own capability test must lead to fp16 autocast,
    and fp16 to a GradScaler per optimiser (checked on the CPU: only the capability is faked)."""
    from lib.train import amp_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda *a: types.SimpleNamespace(major=7, minor=5, name="Tesla T4"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    assert amp_dtype(torch.device("cuda"), "auto") is torch.float16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda *a: types.SimpleNamespace(major=8, minor=0, name="A100"))
    assert amp_dtype(torch.device("cuda"), "auto") is torch.bfloat16
    clf = Classifier(nn.Linear(4, 2), torch.optim.SGD(nn.Linear(4, 2).parameters(), lr=0.1))
    clf.setup(CPU, torch.float16)
    assert set(clf._scalers) == {"optimizer"}


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_ddpm_unets_take_the_layout_the_params_choose(channels_last):
    p = P.load("02_generative", "smoke", {"ddpm_channels_last": channels_last})
    method, _ = generative.build_method("ddpm", generative.generator_settings("ddpm", p), total_steps=4, seed=0)
    method.setup(torch.device("cpu"), None)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for net in (method.unet, method.ema.module):
        convs = [m.weight for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
        assert convs and all(w.is_contiguous(memory_format=fmt) for w in convs)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.isfinite(method.train_step((x, torch.zeros(2, dtype=torch.long)))["loss"])


def test_classifiers_and_their_batches_are_channels_last_on_cpu_and_cuda_only():
    from lib.train import channels_last

    assert channels_last("cpu") and channels_last(torch.device("cuda")) and not channels_last("mps")
    model = build_model("resnet18", width=0.125)
    clf = Classifier(model, make_optimizer(model.parameters(), name="sgd", lr=0.1))
    clf.setup(CPU, None)
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    x, y = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), torch.arange(4)
    xb, _ = next(BatchLoader(x, y, batch_size=4, device=CPU, train=False, channels_last=True).epoch())
    assert xb.is_contiguous(memory_format=torch.channels_last)
    logits = clf.state["model"](xb)
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
