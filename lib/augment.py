"""Batched augmentation on the training device: crop/flip, normalisation, per-image RandAugment,
Cutout.

Every function takes a whole ``(B, C, H, W)`` batch; random draws come from the caller (offsets,
flips) or a seeded generator, so a batch is a pure function of ``(seed, step)`` and resumed runs see
the same images.

:func:`rand_augment` is *per-image* RandAugment: ``torchvision.transforms.v2.RandAugment`` called on
a batch draws ONE op sequence for the whole batch, which removes most of the diversity UDA's
consistency loss lives on, while calling it once per image is slow. So each of the ``num_ops``
rounds draws an op and a sign per image and applies torchvision's own op table once per (op, sign)
group. On the CPU it runs single-threaded (:func:`cpu_threads`): the many small ops spend more time
synchronising threads than computing.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

# the presentation's normalisation constants (SPEC 1.8): per-channel mean and std of the training
# set
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
_ON_DEVICE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _constants(mean, std, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std as ``(1, 3, 1, 1)`` tensors, made once per device (no host copy per batch)."""
    key = (tuple(mean), tuple(std), str(device))
    if key not in _ON_DEVICE:
        _ON_DEVICE[key] = (torch.tensor(mean, device=device).view(1, 3, 1, 1),
                           torch.tensor(std, device=device).view(1, 3, 1, 1))
    return _ON_DEVICE[key]


def normalize(x: torch.Tensor, *, mean=MEAN, std=STD) -> torch.Tensor:
    """uint8 ``(B, 3, H, W)`` -> float32 normalised with the presentation's constants."""
    m, s = _constants(mean, std, x.device)
    return (x.float() / 255.0 - m) / s


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1] (the generative models' input range; a BatchLoader
    normalize_fn)."""
    return x.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 in [0, 255]."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def random_crop_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, *,
                     padding: int = 4) -> torch.Tensor:
    """Batched ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip`` on a ``(B, C, H, W)``
    tensor.

    ``offsets`` is ``(B, 2)`` integers in ``[0, 2 * padding]`` (row, column of the crop in the
    zero-padded image) and ``flips`` is ``(B,)`` booleans; drawing them is the caller's job so the
    result is reproducible.
    """
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = offsets[:, 0:1].to(x.device) + torch.arange(h, device=x.device)          # (B, H)
    cols = offsets[:, 1:2].to(x.device) + torch.arange(w, device=x.device)          # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]      # (B, H, W, C)
    out = out.permute(0, 3, 1, 2)
    flips = flips.to(x.device).view(b, 1, 1, 1)
    return torch.where(flips, out.flip(3), out).contiguous()


def _torchvision_randaugment(num_ops: int, magnitude: int, bins: int):
    from torchvision.transforms import v2

    ra = v2.RandAugment(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=bins)
    if not hasattr(ra, "_AUGMENTATION_SPACE") or not hasattr(ra, "_apply_image_or_video_transform"):
        raise RuntimeError("this torchvision's RandAugment lacks "
                           "_AUGMENTATION_SPACE/_apply_image_or_video_transform; install the "
                           "torchvision pinned in requirements.txt")
    return ra


def rand_augment(x: torch.Tensor, *, num_ops: int, magnitude: int, generator: torch.Generator,
                 num_magnitude_bins: int = 31) -> torch.Tensor:
    """Per-sample RandAugment of a uint8 ``(B, 3, H, W)`` batch (see the module docstring for why
    and how).

    Op choice and sign come from ``generator`` (CPU), so the result is a pure function of the batch
    and seed.
    """
    if x.dtype != torch.uint8:
        raise TypeError(f"rand_augment expects uint8 images, got {x.dtype}")
    ra = _torchvision_randaugment(num_ops, magnitude, num_magnitude_bins)
    space = list(ra._AUGMENTATION_SPACE.items())
    b, _, h, w = x.shape
    for _ in range(num_ops):
        ops = torch.randint(len(space), (b,), generator=generator)
        negative = torch.rand(b, generator=generator) < 0.5
        out = x.clone()
        for k in ops.unique().tolist():
            name, (magnitudes_fn, signed) = space[k]
            mags = magnitudes_fn(num_magnitude_bins, h, w)
            mag = float(mags[magnitude]) if mags is not None else 0.0
            if name == "Identity":
                continue
            for neg in ((False, True) if signed and mag != 0.0 else (None,)):
                sel = ops == k if neg is None else (ops == k) & (negative == neg)
                idx = sel.nonzero().flatten().to(x.device)
                if len(idx):
                    out[idx] = ra._apply_image_or_video_transform(
                        x[idx], name, -mag if neg else mag, interpolation=ra.interpolation,
                        fill=ra._fill)
        x = out
    return x


def cutout(x: torch.Tensor, *, size: int, generator: torch.Generator,
           fill: int = 127) -> torch.Tensor:
    """A ``size`` x ``size`` grey square (clipped at the border) at a random centre of every
    image."""
    if size <= 0:
        return x
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b, 1), generator=generator).to(x.device)
    cx = torch.randint(0, w, (b, 1), generator=generator).to(x.device)
    r = torch.arange(h, device=x.device)[None]
    c = torch.arange(w, device=x.device)[None]
    rows = (r >= cy - size // 2) & (r < cy - size // 2 + size)  # (B, H)
    cols = (c >= cx - size // 2) & (c < cx - size // 2 + size)  # (B, W)
    mask = (rows[:, :, None] & cols[:, None, :])[:, None]
    return torch.where(mask, torch.full_like(x, fill), x)


@contextlib.contextmanager
def cpu_threads(n: int):
    """Run the block with ``n`` torch CPU threads (0 = leave torch's setting), restoring the setting
    afterwards."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
