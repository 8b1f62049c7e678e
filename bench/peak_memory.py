"""Peak memory of one training step of every workload of a profile, at its batch size, measured on the CPU.

    python bench/peak_memory.py [--profile colab] [--limit-gb 14] [--record]

Each workload's method is built as its chapter builds it and takes two training steps (the second holds the
optimiser state) under ``FakeTensorMode``, so no FLOP is computed and no byte allocated, while torch's
``MemTracker`` follows every tensor the step creates: parameters, buffers, gradients, optimiser state,
activations saved for the backward pass and temporaries (a module called twice in a step, as DCGAN's
discriminator and MPL's student are, is followed too: :class:`StepTracker`). Every row is measured at its
batch, three ways:

- fp16 step: the two steps under the CPU's fp16 autocast, with a gradient scaler and fused optimisers as on
  the T4. The CPU's autocast rules put convolutions, linear layers and matmuls in fp16 as CUDA's do, but run
  some ops in fp16 that CUDA keeps in float32 (group norm, softmax, upsampling).
- CUDA/CPU forward: the first forward pass (up to its first backward) on a fake CUDA device under CUDA's own
  autocast rules, over the same on the CPU; the backward cannot run on a fake CUDA device.
- float32 step: the two steps without autocast, for scale. An fp16 step holds at most what it holds plus
  autocast's fp16 copies of the weights and of float32 tensors that also feed an op run in float32; in
  practice less.

The T4 estimate is the fp16 step times the forward ratio (at least 1): the step's peak is where its forward's
saved tensors are all held, and CUDA's rules change those alone. A step fits ``--limit-gb`` when its estimate
does. What it leaves out: the CUDA context and
cuDNN/cuBLAS workspaces (a few hundred MB), the caching allocator's fragmentation, and the dataset, which
stays on the GPU as uint8 (50,000 x 3,072 bytes = 0.15 GB).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from unittest import mock
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from torch.distributed._tools.mem_tracker import MemTracker  # noqa: E402

from lib import params as P  # noqa: E402
from lib.train.method import move_optimizer  # noqa: E402

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # a fake one (:func:`fake_device`): no GPU is needed
LIMIT_GB = 14.0  # the T4's 16 GB, less the CUDA context, workspaces and the uint8 dataset


def classifier_step(name: str, batch: int, *, width: float = 1.0, lr: float = 0.1, **model_kw):
    """A chapter-1 classifier (Nesterov SGD, as both recipes) and a batch of ``batch`` 32-px images."""
    from lib.methods.classifier import Classifier
    from lib.models import build_model

    model = build_model(name, width=width, **model_kw)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return Classifier(model, opt, label_smoothing=0.1), (torch.randn(batch, 3, 32, 32),
                                                         torch.randint(0, 10, (batch,)))


def generator_step(kind: str, p2: dict):
    """A chapter-2 generator as the chapter builds it (DDPM without its EMA copy: :func:`ema_bytes`), and a
    batch at its batch size."""
    from lib.chapters import generative

    s = generative.generator_settings(kind, {**p2, "ddpm_ema_decay": 0.0})
    method, _ = generative.build_method(kind, s, total_steps=10, seed=0)
    b = s["batch_size"]
    return method, (torch.rand(b, 3, 32, 32) * 2 - 1, torch.randint(0, 10, (b,)))


def ssl_batch(kind: str, p3: dict):
    """A real chapter-3 batch (labelled, and the weak and strong views of ``batch_size * mu`` unlabelled
    images), augmented on the CPU before fake tensors take over."""
    from lib import data as D
    from lib.chapters import semi_supervised

    from torch._subclasses.fake_tensor import unset_fake_temporarily

    b, u = p3["batch_size"], p3["batch_size"] * p3["mu"]
    with unset_fake_temporarily(), torch.device(CPU):
        ds = D.make_synthetic(b + u, 10)
        stream = semi_supervised.ssl_batches(ds.train_x[:b], ds.train_y[:b], ds.train_x[b:], p3, CPU,
                                             unlabelled=kind != "supervised")
        return next(stream.forever())


def workloads(profile: str) -> list[tuple[str, str, int, object]]:
    """``(chapter, workload, batch, build)`` for every training step of ``profile`` at its largest batch:
    ``build()`` returns the method and a batch."""
    from lib.chapters import semi_supervised, supervised

    p1, p2, p3 = (P.load(c, profile) for c in ("01_supervised", "02_generative", "03_semi_supervised"))
    out = []
    rec = supervised.recipe(p1)
    for m in dict.fromkeys([*p1["models"], *p1["activation_map_models"]]):
        out.append(("01_supervised", m, rec["batch_size"],
                    lambda m=m: classifier_step(m, rec["batch_size"], width=p1["width"])))
    sweep_b = max(p1["sweep_batch_sizes"])
    if sweep_b > rec["batch_size"]:
        out.append(("01_supervised", f"sweep {p1['sweep_model']}", sweep_b,
                    lambda: classifier_step(p1["sweep_model"], sweep_b, width=p1["width"])))
    for m in p1["pretrained_models"]:
        b = p1["finetune_batch_size"]
        out.append(("01_supervised", f"{m} at 224 px", b,
                    lambda m=m, b=b: classifier_step(m, b, resize_to=224)))
    for kind in ("vae", "dcgan", "ddpm"):
        out.append(("02_generative", kind, p2[f"{kind}_batch_size"],
                    lambda kind=kind: generator_step(kind, p2)))
    out.append(("02_generative", f"2.2 classifier {p2['classifier_model']}", p2["classifier_batch_size"],
                lambda: classifier_step(p2["classifier_model"], p2["classifier_batch_size"],
                                        width=p2["classifier_width"])))
    for kind in ("mpl", "uda", "supervised"):
        batch = p3["batch_size"] * (1 if kind == "supervised" else 1 + 2 * p3["mu"])
        out.append(("03_semi_supervised", kind, batch,
                    lambda kind=kind: (semi_supervised.build_method(kind, {**p3, "ema": 0.0}, total_steps=10),
                                       ssl_batch(kind, p3))))
    return out


def to_device(batch, device: torch.device):
    """``batch`` (a tuple of tensors or a dataclass of them, such as an SSL batch) on ``device``."""
    move = lambda t: t.to(device) if torch.is_tensor(t) else t  # noqa: E731
    if dataclasses.is_dataclass(batch):
        return dataclasses.replace(batch, **{f.name: move(getattr(batch, f.name))
                                             for f in dataclasses.fields(batch)})
    return type(batch)(move(t) for t in batch)


@contextlib.contextmanager
def fake_device(device: torch.device):
    """Fake tensors, made on ``device`` unless told otherwise; on "cuda", which need not exist here, with
    CUDA's autocast and gradient scaler switched on (torch switches both off when it finds no GPU)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True), torch.device(device), \
            mock.patch("torch.cuda.amp.common.amp_definitely_not_available", lambda: False):
        yield


def _setup(build, device: torch.device, dtype: torch.dtype | None):
    """``build()``'s method and batch on ``device`` (inside :func:`fake_device`), set up as training does,
    with fused optimisers as on CUDA (under fp16 the gradient scaler then reads nothing back to the host)."""
    method, batch = build()
    # made on ``device`` already; fake parameters cannot be swapped by Module.to (nor laid out channels_last:
    # the same bytes in another order)
    with mock.patch.object(nn.Module, "to", lambda self, *a, **k: self):
        method.setup(device, dtype, compile=False)
    for opt in method.state.values():
        if isinstance(opt, torch.optim.Optimizer):
            move_optimizer(opt, fused=True)
    return method, to_device(batch, device)


def peak_memory(build, *, dtype: torch.dtype | None = torch.float16, steps: int = 2) -> dict[str, float]:
    """Bytes at the peak of ``steps`` training steps of ``build()``'s method on its batch on the CPU under
    ``dtype`` autocast (None: float32 throughout), by kind (parameters, buffers, gradients, optimiser state,
    activations, temporaries) and in total (``total``), with the EMA copy (:func:`ema_bytes`)."""
    with fake_device(CPU):
        method, batch = _setup(build, CPU, dtype)
        out = _steps(method, batch, steps)
    out["ema copy"] = ema_bytes(method)
    out["total"] += out["ema copy"]
    return out


class _Backward(Exception):
    """A step reached its first backward (:func:`forward_peak`)."""


def forward_peak(build, device: torch.device) -> float:
    """Bytes at the peak of a training step's first forward pass (parameters, optimiser state and what the
    forward holds for the backward, up to the first ``backward``) under fp16 autocast on ``device``. On a
    fake "cuda" device the forward follows CUDA's autocast rules, which keep some ops in float32 that the
    CPU's run in fp16 (group norm, softmax, upsampling); the backward cannot run there (torch's autograd
    engine asks the driver for the device)."""
    def stop(*args, **kwargs):
        raise _Backward

    with fake_device(device):
        method, batch = _setup(build, device, torch.float16)
        tracker = StepTracker()
        tracker.track_external(*_tracked(method))
        with mock.patch.object(torch.Tensor, "backward", stop), contextlib.suppress(_Backward), tracker:
            method.train_step(batch)
    return _peak(tracker, device)["total"]


def ema_bytes(method) -> float:
    """Bytes of the EMA copy a chapter keeps of DDPM's U-Net or an SSL method's evaluated network, left out of
    the build here because fake tensors cannot be deep-copied: that network's parameters and buffers once
    more; 0 for the other methods."""
    key = getattr(method, "eval_name", "unet")
    net = method.state.get(key)
    if not isinstance(net, nn.Module) or type(method).__name__ == "Classifier":
        return 0.0
    return float(sum(t.numel() * t.element_size() for t in (*net.parameters(), *net.buffers())))


class StepTracker(MemTracker):
    """torch's MemTracker, following a module called more than once in a step (DCGAN's discriminator on real,
    fake and generated images; MPL's student before and after its update): MemTracker raises
    NotImplementedError at a top-level module's second forward, which it takes for the next iteration. Here
    that module's per-module statistics start again instead; the step's peak, the one number read, counts
    every tensor all the same."""

    def _pre_fw_hook(self, module: nn.Module, inputs) -> None:
        if module in self.memory_tracking and not self._mod_tracker.is_bw:
            del self.memory_tracking[module]
        super()._pre_fw_hook(module, inputs)


def _tracked(method) -> list:
    return [o for o in method.state.values() if isinstance(o, (nn.Module, torch.optim.Optimizer))]


def _peak(tracker: MemTracker, device: torch.device) -> dict[str, float]:
    snap = next(v for d, v in tracker.get_tracker_snapshot("peak").items() if d.type == device.type)
    out = {str(k.value).lower(): float(v) for k, v in snap.items() if k != "Total"}
    out["total"] = float(snap["Total"])
    return out


def _steps(method, batch, steps: int) -> dict[str, float]:
    tracker = StepTracker()
    tracker.track_external(*_tracked(method))
    for _ in range(steps):
        with tracker:
            method.train_step(batch)
        tracker.reset_mod_stats()  # the tracker's per-module statistics are per step; its peak is kept
    return _peak(tracker, CPU)


def measure(build, *, limit_gb: float = LIMIT_GB) -> dict:
    """One workload's row: its fp16 step on the CPU by kind (GB), its float32 step, CUDA's forward against
    the CPU's, the T4 estimate and whether it fits ``limit_gb``."""
    peak = peak_memory(build)
    full = peak_memory(build, dtype=None)
    ratio = forward_peak(build, CUDA) / forward_peak(build, CPU)
    estimate = peak["total"] * max(ratio, 1.0)
    gb = {k: round(v / 1e9, 2) for k, v in peak.items()}
    fits = "yes" if estimate / 1e9 < limit_gb else "NO"
    return {"parameters GB": gb["parameter"], "gradients GB": gb["gradient"], "optimiser GB": gb["optstate"],
            "activations GB": gb["activation"], "temporaries GB": gb["temp"], "EMA copy GB": gb["ema copy"],
            "fp16 step GB": gb["total"], "CUDA/CPU forward": round(ratio, 2),
            "float32 step GB": round(full["total"] / 1e9, 2), "T4 estimate GB": round(estimate / 1e9, 2),
            f"under {limit_gb:g} GB": fits}


def table(profile: str, *, limit_gb: float = LIMIT_GB, only: tuple[str, ...] = ()):
    """One row per workload of ``profile`` (:func:`measure`), with its chapter and batch."""
    import pandas as pd

    return pd.DataFrame([{"chapter": chapter, "workload": name, "batch": batch,
                          **measure(build, limit_gb=limit_gb)}
                         for chapter, name, batch, build in workloads(profile) if not only or name in only])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="colab")
    ap.add_argument("--limit-gb", type=float, default=LIMIT_GB)
    ap.add_argument("--only", default="", help="comma-separated workload names (default: all)")
    ap.add_argument("--record", action="store_true", help="save the table as $BENCH_DIR/peak_memory.json")
    args = ap.parse_args()
    df = table(args.profile, limit_gb=args.limit_gb, only=tuple(filter(None, args.only.split(","))))
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.to_string(index=False))
    worst = df.loc[df["T4 estimate GB"].idxmax()]
    fits = df[f"under {args.limit_gb:g} GB"] == "yes"
    full = df["float32 step GB"] < args.limit_gb
    summary = (f"profile {args.profile}: largest step {worst['workload']} at batch {worst['batch']}, "
               f"{worst['T4 estimate GB']:.2f} GB on a T4 by estimate ({worst['fp16 step GB']:.2f} GB in "
               f"fp16 on the CPU, {worst['float32 step GB']:.2f} GB in float32); all {len(df)} steps "
               f"measured at their batch, all under {args.limit_gb:g} GB: {'yes' if fits.all() else 'NO'} "
               f"({int(full.sum())} of them even in float32)")
    print(summary)
    if args.record:
        import record

        record.save("peak_memory", df.to_dict("records"), summary,
                    extra={"profile": args.profile, "limit_gb": args.limit_gb})
    return 0


if __name__ == "__main__":
    sys.exit(main())
