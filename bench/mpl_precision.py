"""MPL's feedback ``h`` under bf16 and fp16 autocast against fp32, on the same weights and batches.

    python bench/mpl_precision.py --data /path/to/cifar10-jpeg.tar.gz [--profile quick] [--steps 200]
    python bench/mpl_precision.py --data ... --batch-size 128 --mu 7 --fp16-step-every 0  # full's batch

``h`` (lib.methods.ssl) is the change of the student's mean labelled cross-entropy across its one
SGD step on the teacher's pseudo labels, a small difference of two losses; a run under autocast
computes both losses from reduced-precision logits and the step from reduced-precision gradients.
The trajectory is the real MPL training of the profile (``MetaPseudoLabels.train_step`` in fp32, as
the CPU profiles train). At every step, from copies of that step's state, with the fp32 step's
pseudo labels and dropout masks, each precision recomputes ``h`` three ways:

* ``student step``: both student forwards and its update (with a GradScaler under fp16) under
  autocast: what a run at that precision computes;
* ``logits only``: the forwards under autocast, the update the fp32 one (the logits' share);
* ``update only``: the update under autocast, both losses from fp32 forwards (the update's share).

fp32 is measured too, as the control: all three must equal the trajectory's ``h`` exactly (the
replayed forwards and the bench's copy of the student step are the training code's). The table
gives, per precision and way, how often the sign of ``h`` agrees with fp32, the mean absolute
error beside the mean ``|h|``, and how often the error reaches ``|h|`` (steps whose sign is the
rounding's, flipped or not). CPU autocast computes convolutions and matmuls as CUDA's does
(fp32 accumulation, one rounding of each output); its fp16 convolution backward is slow (a
quarter-width WRN step takes ~70x the fp32 one), so fp16's ``student step`` and ``update only``
run every ``--fp16-step-every`` steps (the table says how many). Without ``--data`` the synthetic set stands in (the output says
so).
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib import params as P  # noqa: E402
from lib.chapters import semi_supervised as S  # noqa: E402
from lib.methods.ssl import MetaPseudoLabels, feedback_sign  # noqa: E402
from lib.train import seed_everything  # noqa: E402

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
WAYS = ("student step", "logits only", "update only")


@dataclass
class Call:
    """One forward of the student: the RNG state before it (its dropout mask), input, weights."""

    rng: torch.Tensor
    x: torch.Tensor
    weights: dict


class Tap:
    """Records, during one ``train_step``, the student's forwards (:class:`Call`) and the teacher's
    output (its weak-view argmax are the pseudo labels the student learns)."""

    def __init__(self, method: MetaPseudoLabels):
        self.method, self.calls, self.teacher_out, self.handles = method, [], None, []

    def __enter__(self):
        self.handles = [self.method.student.register_forward_pre_hook(self._student),
                        self.method.teacher.register_forward_hook(self._teacher)]
        return self

    def _student(self, module, args):
        self.calls.append(Call(torch.get_rng_state(), args[0].detach(), snapshot(module)))

    def _teacher(self, module, args, out):
        self.teacher_out = out.detach()

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def snapshot(module: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def autocast(dtype: torch.dtype | None):
    return torch.autocast("cpu", dtype=dtype, enabled=dtype is not None)


def replay(scratch: nn.Module, call: Call, dtype, *, weights: dict | None = None,
           grad: bool = False) -> torch.Tensor:
    """The student's forward ``call`` again (same input and dropout mask), under ``dtype``
    autocast, with ``weights`` (default: the call's own)."""
    scratch.load_state_dict(weights or call.weights)
    torch.set_rng_state(call.rng)
    with torch.set_grad_enabled(grad), autocast(dtype):
        return scratch(call.x).detach()


def loss_before(logits: torch.Tensor, y_l: torch.Tensor) -> torch.Tensor:
    """The student's labelled loss before its step: the labelled rows of its forward on
    ``cat([x_l, x_us])``, as ``train_step`` computes it."""
    return F.cross_entropy(logits[:len(y_l)].float(), y_l)


def loss_after(logits: torch.Tensor, y_l: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y_l)


def student_step(twin: MetaPseudoLabels, state: dict, before: Call, after: Call,
                 pseudo: torch.Tensor, y_l: torch.Tensor) -> tuple[float, float, dict, int]:
    """``train_step``'s step 0 on ``twin`` (set up at its autocast dtype) from ``state``: forward,
    the student's update on ``pseudo``, forward again, with the trajectory's dropout masks. A step
    the GradScaler skips (fp16 overflow) is taken again at the lowered scale, as a settled scaler
    would; returns ``(loss before, loss after, weights after, retries)``."""
    n_l = len(y_l)
    for retries in range(20):
        # a copy: torch optimisers keep the loaded momentum buffers, and the step updates them in
        # place; the state has no scalers, so an fp16 twin keeps its own
        twin.load_state_dict(copy.deepcopy(state))
        scale = loss_scale(twin)
        torch.set_rng_state(before.rng)
        with twin.autocast():
            s_logits = twin.net("student")(before.x)
            old = loss_before(s_logits.detach(), y_l)
            s_loss = F.cross_entropy(s_logits[n_l:].float(), pseudo, label_smoothing=twin.ls)
        twin.optimise(s_loss, twin.s_opt, model=twin.student, scheduler=twin.s_sched,
                      clip=twin.grad_clip, ema=True)
        if scale is None or loss_scale(twin) >= scale:
            break
    torch.set_rng_state(after.rng)
    with twin.autocast(), torch.no_grad():
        new = loss_after(twin.net("student")(after.x), y_l)
    return float(old), float(new), snapshot(twin.student), retries


def loss_scale(method: MetaPseudoLabels) -> float | None:
    """The student's GradScaler scale (fp16), else None; it falls when the scaler skips a step."""
    return method.state_dict().get("grad_scalers", {}).get("student_optimizer", {}).get("scale")


def measure(method: MetaPseudoLabels, twins: dict[str, MetaPseudoLabels], stream, *, steps: int,
            step_every: dict[str, int] | None = None, progress: int = 0) -> list[dict]:
    """Advance ``method`` (fp32) ``steps`` MPL steps on ``stream``; at each, ``h`` of the fp32 step
    and, per precision of ``twins`` (MPL methods set up at that autocast dtype), the three ways of
    the module docstring. ``step_every[name]``: take ``student step`` and ``update only`` every
    that many steps (default every step; 0 = never); ``progress``: print every that many steps.
    One row per step."""
    step_every = step_every or {}
    h_of = feedback_sign(method.feedback)
    scratch = copy.deepcopy(method.student).train()
    rows = []
    for step in range(steps):
        batch = next(stream)
        state = copy.deepcopy(method.state_dict())
        with Tap(method) as tap:
            logs = method.train_step(batch)
        if len(tap.calls) != 2:
            raise RuntimeError(f"MetaPseudoLabels.train_step called the student {len(tap.calls)} "
                               "times, not 2 (before and after its step): update this bench")
        before, after = tap.calls
        rng = torch.get_rng_state()  # the trajectory's, restored after the measurements
        y_l = batch.y_l
        pseudo = method.uda_loss(tap.teacher_out, y_l)["pseudo"]
        old32 = loss_before(replay(scratch, before, None, grad=True), y_l)
        row = {"step": step, "lr_student": logs["lr_student"], "h_fp32": float(logs["mpl_h"])}
        for name, twin in twins.items():
            dtype = twin.autocast_dtype
            old = loss_before(replay(scratch, before, dtype, grad=True), y_l)
            new = loss_after(replay(scratch, after, dtype), y_l)
            row[f"h_{name}_logits only"] = float(h_of(old, new))
            every = step_every.get(name, 1)
            if not every or step % every:
                continue
            old, new, weights, retries = student_step(twin, state, before, after, pseudo, y_l)
            row[f"h_{name}_student step"] = h_of(old, new)
            new = loss_after(replay(scratch, after, None, weights=weights), y_l)
            row[f"h_{name}_update only"] = float(h_of(old32, new))
            row[f"{name}_scaler_retries"] = retries
        torch.set_rng_state(rng)
        rows.append(row)
        if progress and (step + 1) % progress == 0:
            print(f"step {step + 1}/{steps}", flush=True)
    return rows


def sign(v: float) -> int:
    return (v > 0) - (v < 0)


def summarize(rows: list[dict], names) -> list[dict]:
    """Per precision and way: steps, sign agreement with fp32, mean absolute error of ``h``, mean
    ``|h|`` (fp32, over the same steps), the share of steps whose error reaches ``|h|`` (there the
    sign is the rounding's, whether or not it flipped), and the sign agreement over the steps where
    the student learns (learning rate > 0)."""
    out = []
    for name in names:
        for way in WAYS:
            key = f"h_{name}_{way}"
            got = [(r["h_fp32"], r[key], r["lr_student"] > 0) for r in rows if key in r]
            if not got:
                continue
            agree = [sign(a) == sign(b) for a, b, _ in got]
            learning = [ok for ok, (*_, lr) in zip(agree, got) if lr]
            n = len(got)
            out.append({"precision": name, "way": way, "steps": n,
                        "sign_agreement": sum(agree) / n,
                        "mae_h": sum(abs(b - a) for a, b, _ in got) / n,
                        "mean_abs_h": sum(abs(a) for a, _, _ in got) / n,
                        "error_reaches_h": sum(abs(b - a) >= abs(a) for a, b, _ in got) / n,
                        "steps_student_learning": len(learning),
                        "sign_agreement_student_learning":
                            sum(learning) / len(learning) if learning else None})
    return out


def headline(table: list[dict]) -> str:
    """One line per reduced precision: its ``student step`` row (else ``logits only``); no pipe
    characters, as the README's table shows it."""
    parts = []
    for name in dict.fromkeys(r["precision"] for r in table if r["precision"] != "fp32"):
        r = next(r for way in WAYS for r in table if r["precision"] == name and r["way"] == way)
        part = (f"{name} {r['sign_agreement']:.1%} (MAE {r['mae_h']:.1e}, error >= abs(h) in "
                f"{r['error_reaches_h']:.1%} of {r['steps']} steps")
        parts.append(part + ("" if r["way"] == "student step" else f", {r['way']}") + ")")
    return ", ".join(parts)


def setup(params: dict, names) -> tuple[MetaPseudoLabels, dict, object, str]:
    """The fp32 MPL method of ``params``, one twin per precision in ``names``, the training
    stream, and the data's source."""
    cpu = torch.device("cpu")
    splits = S.load_ssl_splits(params)
    batches = S.ssl_batches(splits.labelled_x, splits.labelled_y, splits.unlabelled_x, params, cpu)
    method = S.build_method("mpl", params)
    method.setup(cpu, None)
    twins = {}
    for name in names:
        twins[name] = S.build_method("mpl", params)
        twins[name].setup(cpu, PRECISIONS[name])
    seed_everything(params["seed"])
    return method, twins, batches.forever(), splits.source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick", help="params/03_semi_supervised.yaml profile")
    ap.add_argument("--data", help="CIFAR-10 archive or folder (default: the synthetic set)")
    ap.add_argument("--steps", type=int, default=200, help="MPL steps of the fp32 trajectory")
    ap.add_argument("--fp16-step-every", type=int, default=10,
                    help="fp16 student step every this many steps, 0 = never (slow on a CPU)")
    ap.add_argument("--batch-size", type=int, help="labelled images per step (default: profile's)")
    ap.add_argument("--mu", type=int, help="unlabelled images per labelled one (default: profile's)")
    a = ap.parse_args()
    over = {"data": a.data or "synthetic"}
    if not a.data:  # the synthetic set has 2,000 images
        over.update(labelled_size=400, val_size=100, unlabelled_size=1000, test_subset=200)
    batch = {k: v for k, v in (("batch_size", a.batch_size), ("mu", a.mu)) if v is not None}
    p = P.load("03_semi_supervised", a.profile, {**over, **batch})
    torch.set_num_threads(max(1, p["cpu_threads"]))
    names = tuple(PRECISIONS)
    method, twins, stream, source = setup(p, names)
    t0 = time.perf_counter()
    rows = measure(method, twins, stream, steps=a.steps, progress=20,
                   step_every={"fp16": max(0, a.fp16_step_every)})
    seconds = time.perf_counter() - t0
    table = summarize(rows, names)
    print(f"{'precision':9} {'way':13} {'steps':>5} {'sign agrees':>11} {'MAE of h':>9} "
          f"{'mean |h|':>9} {'error>=|h|':>10} {'agrees, lr>0':>12}")
    for r in table:
        learning = r["sign_agreement_student_learning"]
        print(f"{r['precision']:9} {r['way']:13} {r['steps']:5d} {r['sign_agreement']:11.1%} "
              f"{r['mae_h']:9.2e} {r['mean_abs_h']:9.2e} {r['error_reaches_h']:10.1%} "
              f"{'-' if learning is None else f'{learning:.1%}':>12}")
    images = (f"{p['batch_size']} labelled + {p['batch_size'] * p['mu']} unlabelled images per "
              "step")
    retries = sum(r.get("fp16_scaler_retries", 0) for r in rows)
    print(f"data: {source}; {a.profile} profile (width {p['width']}, {images}); fp32 trajectory, "
          f"{a.steps} steps in {seconds:.0f} s; fp16 steps the GradScaler skipped and retried: "
          f"{retries}")
    mean_h = next(r["mean_abs_h"] for r in table if r["way"] == "logits only")
    summary = (f"MPL feedback h over {a.steps} steps of the {a.profile} WRN ({images}; {source}), "
               f"sign agreeing with fp32: {headline(table)}; mean abs(h) {mean_h:.1e}")
    sys.path.insert(0, str(ROOT / "bench"))
    from record import save

    name = "mpl_precision" + "".join(f"_{k.split('_')[0][0]}{v}" for k, v in batch.items())
    save(name, table, summary,
         extra={"data": source, "profile": a.profile, "batch": images, "steps": a.steps,
                "seconds": round(seconds, 1), "per_step": rows})


if __name__ == "__main__":
    main()
