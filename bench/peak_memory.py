"""Peak memory of one training step of every workload of a profile, at its batch size, measured on the CPU.

    python bench/peak_memory.py [--profile colab] [--limit-gb 14] [--record]

Each workload's method is built as its chapter builds it and takes two training steps (the second holds the
optimiser state) under ``FakeTensorMode``, so no FLOP is computed and no byte allocated, while torch's
``MemTracker`` follows every tensor the step creates: parameters, buffers, gradients, optimiser state,
activations saved for the backward pass and temporaries. Autocast runs at 2 bytes an element (bf16 on the CPU:
the element size of the T4's fp16; the fp16 loss scaler adds one scalar, and its host read of the overflow flag
cannot run on fake tensors). What it leaves out: the CUDA context and cuDNN/cuBLAS workspaces (a few hundred MB),
the caching allocator's fragmentation, and the dataset, which stays on the GPU as uint8 (50,000 x 3,072 bytes =
0.15 GB). The table says whether each step fits ``--limit-gb``.
"""
from __future__ import annotations

import argparse
import sys
from unittest import mock
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from lib import params as P  # noqa: E402

CPU = torch.device("cpu")
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

    b, u = p3["batch_size"], p3["batch_size"] * p3["mu"]
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
        out.append(("01_supervised", f"{m} at 224 px", b, lambda m=m, b=b: classifier_step(m, b, resize_to=224)))
    for kind in ("vae", "dcgan", "ddpm"):
        out.append(("02_generative", kind, p2[f"{kind}_batch_size"], lambda kind=kind: generator_step(kind, p2)))
    out.append(("02_generative", f"2.2 classifier {p2['classifier_model']}", p2["classifier_batch_size"],
                lambda: classifier_step(p2["classifier_model"], p2["classifier_batch_size"],
                                        width=p2["classifier_width"])))
    for kind in ("mpl", "uda", "supervised"):
        batch = p3["batch_size"] * (1 if kind == "supervised" else 1 + 2 * p3["mu"])
        out.append(("03_semi_supervised", kind, batch,
                    lambda kind=kind: (semi_supervised.build_method(kind, {**p3, "ema": 0.0}, total_steps=10),
                                       ssl_batch(kind, p3))))
    return out


def peak_memory(build, *, steps: int = 2) -> dict[str, float]:
    """Bytes at the peak of ``steps`` training steps of ``build()``'s method on its batch, by kind (parameters,
    buffers, gradients, optimiser state, activations, temporaries) and in total (``total``)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        method, batch = build()
        # built on the CPU already; fake parameters cannot be swapped by Module.to
        with mock.patch.object(nn.Module, "to", lambda self, *a, **k: self):
            method.setup(CPU, torch.bfloat16)
        out = _steps(method, batch, steps)
    out["ema copy"] = ema_bytes(method)
    out["total"] += out["ema copy"]
    return out


def ema_bytes(method) -> float:
    """Bytes of the EMA copy a chapter keeps of DDPM's U-Net or an SSL method's evaluated network, left out of
    the build here because fake tensors cannot be deep-copied: that network's parameters and buffers once
    more; 0 for the other methods."""
    key = getattr(method, "eval_name", "unet")
    net = method.state.get(key)
    if not isinstance(net, nn.Module) or type(method).__name__ == "Classifier":
        return 0.0
    return float(sum(t.numel() * t.element_size() for t in (*net.parameters(), *net.buffers())))


def _steps(method, batch, steps: int) -> dict[str, float]:
    from torch.distributed._tools.mem_tracker import MemTracker

    tracked = [o for o in method.state.values() if isinstance(o, (nn.Module, torch.optim.Optimizer))]
    tracker = MemTracker()
    tracker.track_external(*tracked)
    for _ in range(steps):
        with tracker:
            method.train_step(batch)
        tracker.reset_mod_stats()  # the tracker's per-module statistics are per step; its peak is kept
    snap = tracker.get_tracker_snapshot("peak")[CPU]
    out = {str(k.value).lower(): float(v) for k, v in snap.items() if k != "Total"}
    out["total"] = float(snap["Total"])
    return out


def table(profile: str, *, limit_gb: float = LIMIT_GB, only: tuple[str, ...] = ()):
    """One row per workload of ``profile``: its batch, peak GB by kind and in total, and whether it fits."""
    import pandas as pd
    from torch._subclasses.fake_tensor import DataDependentOutputException

    rows = []
    for chapter, name, batch, build in workloads(profile):
        if only and name not in only:
            continue
        try:
            peak = peak_memory(build)
        except (DataDependentOutputException, NotImplementedError) as err:  # a host read (.item()); a module
            # called twice in one step, which MemTracker cannot follow
            rows.append({"chapter": chapter, "workload": name, "batch": batch,
                         f"under {limit_gb:g} GB": f"not measured: {type(err).__name__}"})
            continue
        gb = {k: round(v / 1e9, 2) for k, v in peak.items()}
        rows.append({"chapter": chapter, "workload": name, "batch": batch, "parameters GB": gb["parameter"],
                     "gradients GB": gb["gradient"], "optimiser GB": gb["optstate"],
                     "activations GB": gb["activation"], "temporaries GB": gb["temp"], "EMA copy GB": gb["ema copy"],
                     "peak GB": gb["total"],
                     f"under {limit_gb:g} GB": "yes" if gb["total"] < limit_gb else "NO"})
    return pd.DataFrame(rows)


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
    worst = df.loc[df["peak GB"].idxmax()]
    measured = df["peak GB"].notna()
    summary = (f"profile {args.profile}: largest step {worst['workload']} at batch {worst['batch']}, "
               f"{worst['peak GB']:.2f} GB; {int(measured.sum())} of {len(df)} steps measured, all under "
               f"{args.limit_gb:g} GB: {'yes' if (df.loc[measured, 'peak GB'] < args.limit_gb).all() else 'NO'}")
    print(summary)
    if args.record:
        import record

        record.save("peak_memory", df.to_dict("records"), summary,
                    extra={"profile": args.profile, "limit_gb": args.limit_gb})
    return 0


if __name__ == "__main__":
    sys.exit(main())
