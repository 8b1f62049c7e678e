"""No host waits inside a training iteration: producing a batch and taking a step dispatch no op whose
result the host must read back (on CUDA each would stall the GPU queue). Counted with a TorchDispatchMode
on the CPU, with optimisers switched to the fused kernels they use on CUDA, for every method."""
import pytest
import torch

from lib import data as D
from lib import params as P
from lib.augment import Cutout, to_signed
from lib.batches import BatchLoader
from lib.chapters import generative, semi_supervised
from lib.methods.classifier import Classifier
from lib.models import build_model
from lib.train import make_optimizer, move_optimizer
from lib.train.syncs import HostSyncCounter as CountSyncs

pytestmark = pytest.mark.usefixtures("one_thread")


def method_and_batches(kind):
    ds = D.make_synthetic(200, 20)
    cpu = torch.device("cpu")
    if kind == "classifier":
        torch.manual_seed(0)
        model = build_model("resnet18", width=0.125)
        method = Classifier(model, make_optimizer(model.parameters(), name="sgd", lr=0.1, momentum=0.9,
                                                  nesterov=True))
        batches = BatchLoader(ds.train_x, ds.train_y, batch_size=16, seed=0, strong=Cutout(16)).forever()
    elif kind in generative.GENERATORS:
        p = P.load("02_generative", "smoke", {"data": "synthetic"})
        method, _ = generative.build_method(kind, generative.generator_settings(kind, p), total_steps=10,
                                            seed=0)
        batches = BatchLoader(ds.train_x, ds.train_y, batch_size=16, seed=0, padding=0,
                                normalize_fn=to_signed).forever()
    else:
        p = P.load("03_semi_supervised", "smoke", {"data": "synthetic"})
        method = semi_supervised.build_method(kind, p, total_steps=10)
        batches = semi_supervised.ssl_batches(ds.train_x[:40], ds.train_y[:40], ds.train_x[40:],
                                              {**p, "batch_size": 8, "mu": 2}, cpu,
                                              unlabelled=kind != "supervised").forever()
    method.setup(cpu, None)
    for opt in method.state.values():
        if isinstance(opt, torch.optim.Optimizer):
            move_optimizer(opt, fused=True)  # what Method.setup does on CUDA
    return method, batches


@pytest.mark.parametrize("kind", ["classifier", "vae", "dcgan", "ddpm", "supervised", "mpl", "uda"])
def test_a_training_iteration_has_no_host_synchronising_op(kind):
    method, batches = method_and_batches(kind)
    method.train_step(next(batches))  # first step: lazy state (optimiser moments) is created
    with CountSyncs() as counter:
        for _ in range(2):
            method.train_step(next(batches))
    assert counter.ops == {}, f"{kind}: {counter.ops}"
    # no tensor built from Python data per step either (on a GPU, each is a host-to-device copy)
    assert counter.host_tensors == {}, f"{kind}: {counter.host_tensors}"


@pytest.mark.parametrize("kind", ["mpl", "uda"])
def test_the_ssl_steps_themselves_have_no_host_synchronising_op(kind):
    method, batches = method_and_batches(kind)
    method.train_step(next(batches))
    batch = next(batches)
    with CountSyncs() as counter:
        method.train_step(batch)
    assert counter.ops == {}, f"{kind}: {counter.ops}"
