"""Which profile a machine gets: the GPUs' datasheets, the profiles ordered by cost, what ``auto`` chooses
and what a profile projected over the limit needs (``--yes``).

``run_all.sh`` (through ``bench/budget.py --choose``), :func:`lib.params.resolve_profile` and the
notebooks' Colab cell all call :func:`auto_choice`: a GPU named like one of :data:`DEVICES` is projected at
its datasheet peak, any other at the dense half-precision rate a one-second matmul probe measures. The
projection is FLOP-based, :data:`SUSTAINED_FRACTION` of that peak with a floor per optimiser step, priced from
the ``pricing`` that ``bench/budget.py --devices --record`` saves for every profile (each workload's FLOPs,
step-floor seconds and fixed seconds), so choosing needs neither a FLOP count nor a second of the GPU
beyond the probe. ``scripts/readme.py check`` fails while that record is older than the params files.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVICES_RECORD = ROOT / "bench" / "records" / "benches" / "budget_devices.json"
# One throughput assumption for every FLOP-based projection: a sustained fraction of the device's dense
# half-precision peak (these small networks: kernel launches, memory-bound norms/activations, tiny matmuls)
SUSTAINED_FRACTION = 0.1
# every profile, largest first: `auto` on a GPU picks the first whose projection fits its hours
PROFILE_ORDER = ("full-long", "full", "colab", "quick", "smoke")
# run_all.sh --hours default: what `auto` may choose, and what a profile may take without --yes
AUTO_HOURS = 4.0
SITTING_HOURS = 1.25  # one Colab sitting: what the colab profile allows each chapter on a T4 (75 minutes)


def scale_note(profile: str) -> str:
    """What ``profile``'s runs are beside the presentation's, for a report's start page and the docs ("" for
    the full profiles, which run its experiments)."""
    if profile in ("full", "full-long"):
        return ""
    if profile == "colab":
        return ("trains the real, full-width networks on all of CIFAR-10, for fewer epochs and steps than "
                "the presentation (DDPM's U-Net at half width): a number is comparable with the presented "
                "one as far as its interval says")
    return ("trains reduced models on reduced data for a few epochs to prove every step quickly: its numbers "
            "are not comparable with the presentation's")


def sustained_tflops(peak_tflops: float) -> float:
    """The throughput every FLOP-based projection assumes on a device of ``peak_tflops`` (dense half
    precision): :data:`SUSTAINED_FRACTION` of it."""
    return SUSTAINED_FRACTION * peak_tflops


@dataclass(frozen=True)
class Device:
    """A GPU as its datasheet gives it: dense half-precision tensor peak, memory bandwidth and size;
    ``names`` are what ``torch.cuda.get_device_name`` says on it (matched as lower-case substrings)."""

    name: str
    peak_tflops: float     # dense FP16/BF16 tensor-core peak (datasheets quote 2:4 sparsity at twice this)
    bandwidth_gb_s: float
    memory_gb: float
    bf16: bool
    source: str
    names: tuple[str, ...] = field(default=(), compare=False)


DEVICES = {
    "t4": Device("NVIDIA T4", 65.0, 320.0, 16.0, False,
                 "NVIDIA T4 datasheet: 65 TFLOPS mixed precision (FP16/FP32), 320 GB/s, 16 GB GDDR6; no BF16",
                 ("t4",)),
    "l4": Device("NVIDIA L4", 121.0, 300.0, 24.0, True,
                 "NVIDIA L4 datasheet: FP16/BF16 tensor 242 TFLOPS with sparsity (121 dense), 300 GB/s, "
                 "24 GB",
                 ("l4",)),
    "a100": Device("NVIDIA A100 80GB SXM", 312.0, 2039.0, 80.0, True,
                   "NVIDIA A100 datasheet: BF16 tensor 312 TFLOPS (624 with sparsity), 2,039 GB/s, 80 GB",
                   ("a100",)),
    "h100": Device("NVIDIA H100 SXM", 989.0, 3350.0, 80.0, True,
                   "NVIDIA H100 datasheet: BF16 tensor 1,979 TFLOPS with sparsity (989 dense), 3.35 TB/s, "
                   "80 GB",
                   ("h100",)),
    "h200": Device("NVIDIA H200 SXM", 989.0, 4800.0, 141.0, True,
                   "NVIDIA H200 datasheet: the H100's tensor cores (989 dense BF16), 4.8 TB/s, 141 GB",
                   ("h200",)),
}


def device_key(device_name: str) -> str | None:
    """The :data:`DEVICES` key of a GPU by its CUDA name ("Tesla T4", "NVIDIA H100 80GB HBM3"), or
    None."""
    words = device_name.lower().replace("-", " ").split()
    return next((k for k, d in DEVICES.items() if any(n in words for n in d.names)), None)


def workload_seconds(flop: float, floor_s: float, tflops: float) -> float:
    """A workload's FLOP-based seconds: ``flop`` at ``tflops`` sustained, but no faster than its step
    floor."""
    return max(flop / (tflops * 1e12), floor_s)


def projected_hours(pricing: list, peak_tflops: float) -> dict[str, float]:
    """Hours per chapter (and ``total``) of a profile's ``pricing`` rows ``[chapter, FLOP, floor s,
    fixed s]`` on a device of ``peak_tflops`` (:func:`sustained_tflops` of it)."""
    out: dict[str, float] = {}
    for chapter, flop, floor_s, fixed_s in pricing:
        sec = workload_seconds(flop, floor_s, sustained_tflops(peak_tflops)) + fixed_s
        out[chapter] = out.get(chapter, 0.0) + sec / 3600
    out["total"] = sum(out.values())
    return out


def choose_profile(hours: dict[str, float], limit: float) -> tuple[str, str]:
    """The largest profile (:data:`PROFILE_ORDER`) whose projected ``hours`` fit ``limit``, and why; when none
    fits, the smallest projected one."""
    known = [p for p in PROFILE_ORDER if p in hours]
    if not known:
        raise ValueError(f"no projection of any profile ({', '.join(PROFILE_ORDER)}) to choose from, only of "
                         f"{sorted(hours) or 'none'}: re-record bench/budget.py --devices --record")
    for profile in known:
        if hours[profile] <= limit:
            bigger = [f"{p} {hours[p]:.1f} h" for p in known[:known.index(profile)]]
            why = (f"projected {hours[profile]:.1f} h, within --hours {limit:g}"
                   + (f"; larger profiles do not fit ({', '.join(bigger)})" if bigger else ""))
            return profile, why
    smallest = known[-1]
    return smallest, (f"no profile fits --hours {limit:g}; the smallest projected, {smallest}, projects "
                      f"{hours[smallest]:.1f} h")


def over_limit(profile: str, hours: float, limit: float, *, yes: bool) -> str:
    """The refusal run_all.sh prints for a profile projected over ``limit`` hours without ``--yes``
    (or "")."""
    if yes or hours <= limit:
        return ""
    return (f"[run_all] profile {profile} is projected at {hours:.1f} h on this GPU, over --hours {limit:g}: "
            f"pass --yes to run it anyway, raise --hours, or let --profile auto choose one that fits")


def probe_tflops(device=None, seconds: float = 1.0) -> float:
    """Dense half-precision matmul TFLOP/s on a CUDA ``device``: a one-second probe of the GPU's peak."""
    import time

    import torch

    from .train.device import bf16_native

    device = device or torch.device("cuda")
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16 if bf16_native() else torch.float16)
    a @ a  # warm-up
    torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(5):
            a @ a
        torch.cuda.synchronize()
        n += 5
    return n * 2 * 8192**3 / (time.perf_counter() - t0) / 1e12


def recorded_pricing(record: Path | str = DEVICES_RECORD) -> dict[str, list]:
    """Every profile's pricing rows from ``bench/budget.py --devices --record``'s record."""
    path = Path(record)
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: run python bench/budget.py --devices --record, then "
                                f"python scripts/readme.py record outputs/bench/budget_devices.json")
    pricing = json.loads(path.read_text()).get("pricing")
    if not pricing:
        raise ValueError(f"{path} has no pricing: re-record it with python bench/budget.py --devices "
                         "--record")
    return pricing


@dataclass
class Choice:
    """What ``auto`` chose on a GPU: the profile, every profile's projected hours (per chapter and
    ``total``), the peak it projected at and where that came from, and why."""

    profile: str
    hours: dict[str, dict[str, float]]
    peak_tflops: float
    peak_source: str
    why: str

    def line(self, device_name: str) -> str:
        """One line for a person: the profile this GPU gets, how long, and why."""
        h = self.hours[self.profile]
        chapters = ", ".join(f"{ch[:2]} {60 * v:.0f} min" for ch, v in h.items() if ch != "total")
        return (f"profile auto -> {self.profile} on {device_name}: projected {h['total']:.1f} h "
                f"({chapters}); {self.why}; FLOP-based at {SUSTAINED_FRACTION:.0%} of {self.peak_source}")


def auto_choice(device_name: str, *, limit: float = AUTO_HOURS, pricing: dict[str, list] | None = None,
                probe=probe_tflops) -> Choice:
    """The largest profile projected within ``limit`` hours on the GPU called ``device_name``: at its
    datasheet peak when :func:`device_key` knows it, else at what ``probe()`` measures (TFLOP/s); each
    profile priced by ``pricing`` (default: :func:`recorded_pricing`)."""
    pricing = pricing if pricing is not None else recorded_pricing()
    key = device_key(device_name)
    if key:
        peak, source = DEVICES[key].peak_tflops, f"the {DEVICES[key].name}'s {DEVICES[key].peak_tflops:g} " \
                                                 "TFLOP/s datasheet peak"
    else:
        peak = probe()
        source = f"the {peak:.0f} TFLOP/s a matmul probe measured (no datasheet entry for {device_name!r})"
    hours = {p: projected_hours(pricing[p], peak) for p in PROFILE_ORDER if p in pricing}
    profile, why = choose_profile({p: h["total"] for p, h in hours.items()}, limit)
    return Choice(profile, hours, peak, source, why)
