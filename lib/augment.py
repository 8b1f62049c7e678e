"""Batched augmentation on the training device: crop/flip and normalisation (chapter 3's
RandAugment is :mod:`lib.randaugment`).

Every function takes a whole ``(B, C, H, W)`` batch; random draws come from the caller (offsets,
flips), so a batch is a pure function of ``(seed, step)`` and resumed runs see the same images.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

# the presentation's normalisation constants (SPEC 1.8): per-channel mean and std of the training
# set
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
# per-channel (mean, std) by name: the presentation's, and kekmodel/MPL-pytorch's (data.py)
NORMALIZATION = {"presentation": (MEAN, STD),
                 "mpl-pytorch": ((0.491400, 0.482158, 0.4465231), (0.247032, 0.243485, 0.2615877))}
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
                     padding: int = 4, fill: int = 0) -> torch.Tensor:
    """Batched ``RandomCrop(size, padding, fill)`` + ``RandomHorizontalFlip`` on a ``(B, C, H, W)``
    tensor.

    ``offsets`` is ``(B, 2)`` integers in ``[0, 2 * padding]`` (row, column of the crop in the
    padded image) and ``flips`` is ``(B,)`` booleans; drawing them is the caller's job so the
    result is reproducible.
    """
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding), value=fill)
    rows = offsets[:, 0:1].to(x.device) + torch.arange(h, device=x.device)          # (B, H)
    cols = offsets[:, 1:2].to(x.device) + torch.arange(w, device=x.device)          # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]      # (B, H, W, C)
    out = out.permute(0, 3, 1, 2)
    flips = flips.to(x.device).view(b, 1, 1, 1)
    return torch.where(flips, out.flip(3), out).contiguous()


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


class Cutout:
    """DeVries & Taylor's Cutout (2017; their code's ``--cutout --length 16`` for CIFAR-10): one
    ``size`` x ``size`` square per image, centred on a uniformly drawn pixel and clipped at the
    border, set to the data mean (0 after normalisation, as their code zeroes the normalised
    image). Batched on the device; a :class:`lib.batches.BatchLoader` draws the centres of a whole
    epoch at once (``draw``) and applies them batch by batch (``__call__``)."""

    def __init__(self, size: int, *, mean=MEAN):
        self.size = size
        self.fill = tuple(round(255 * m) for m in mean)
        self._fill: dict[str, torch.Tensor] = {}

    def draw(self, count: int, generator: torch.Generator, *, size: int = 32) -> torch.Tensor:
        """``(count, 2)`` centres ``(x, y)``, uniform over the image's pixels."""
        return torch.randint(0, size, (count, 2), generator=generator)

    def __call__(self, x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        key = str(x.device)
        if key not in self._fill:  # made once per device, not per batch
            self._fill[key] = torch.tensor(self.fill, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        half = self.size // 2
        # half-open [c - size/2, c + size/2) as in the reference code, clipped by the comparison
        return torch.where(box_mask(x, centres - half, centres + half), self._fill[key], x)


def box_mask(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` mask of one box per image of ``x``: columns in ``[lo[:, 0], hi[:, 0])`` and
    rows in ``[lo[:, 1], hi[:, 1])`` (bounds may lie outside the image: the box is clipped)."""
    h, w = x.shape[-2:]
    cols = torch.arange(w, device=x.device)
    rows = torch.arange(h, device=x.device)
    in_x = (cols >= lo[:, 0:1]) & (cols < hi[:, 0:1])                      # (B, W)
    in_y = (rows >= lo[:, 1:2]) & (rows < hi[:, 1:2])                      # (B, H)
    return (in_y[:, :, None] & in_x[:, None, :])[:, None]
