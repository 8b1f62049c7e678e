"""The reference MPL code's strong augmentation, ``RandAugmentCIFAR(n, m)``, batched on the device.

kekmodel/MPL-pytorch (``augmentation.py``) augments each PIL image on the host: it picks ``n`` ops
from a pool of 15 (with replacement), applies each with probability ``p ~ U(0.2, 0.8)`` at the
*fixed* magnitude ``m`` on a 0-10 scale (``PARAMETER_MAX = 10``, so ``m = 16`` is 1.6 times each
op's range), fills uncovered pixels grey (128), resamples bicubically, and ends with a Cutout of
``int(m * 8 / 10)`` pixels. :class:`RandAugmentCIFAR` does the same to a whole ``(B, 3, H, W)``
uint8 batch with per-image draws and a fixed number of kernels per round, whatever the batch:

* every geometric op (rotate, shear, translate) of every image is one per-image 2x3 matrix, applied
  by one ``affine_grid`` + ``grid_sample``;
* every colour op is computed for the whole batch at its (fixed) magnitude and each image keeps the
  result of its own op through ``torch.where``;
* the random draws (:class:`Draws`) are made ahead, e.g. once per epoch, and moved to the device
  once, so producing a batch reads nothing back to the host.

Point ops (AutoContrast, Equalize, Invert, Posterize, Solarize), the blend ops (Color, Contrast,
Brightness, Sharpness) and Cutout follow Pillow's arithmetic and give the reference's pixels
exactly. Geometric ops differ by interpolation only: Pillow's affine bicubic uses the cubic with
``a = -1``, ``grid_sample`` the one with ``a = -0.75`` (tests/test_randaugment.py states the
tolerance).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from .augment import box_mask

PARAMETER_MAX = 10  # the reference's magnitude scale: m / 10 of each op's range


@dataclass(frozen=True)
class Op:
    """One op of the pool: the reference's ``(op, max_v, bias)`` and how its magnitude is read."""

    name: str
    max_v: float | None = None
    bias: float = 0.0
    kind: str = "colour"     # colour | geometric | cutout
    signed: bool = False     # geometric ops flip their magnitude's sign with probability 1/2
    read: str = "float"      # float | int | bits: _float/_int_parameter, 8 - _round_parameter

    def value(self, m: float) -> float | None:
        """The op's argument at magnitude ``m``, computed as the reference computes it."""
        if self.max_v is None:
            return None
        v = m * self.max_v / PARAMETER_MAX
        if self.read == "int":
            v = int(v)
        elif self.read == "bits":  # Posterize keeps 8 - round(...) bits
            v = 8 - int(round(v))
        return v + self.bias


# the reference's cifar_augment_pool(), in its order
CIFAR_POOL = (
    Op("AutoContrast"), Op("Equalize"), Op("Invert"),
    Op("Rotate", 30, kind="geometric", signed=True),
    Op("Posterize", 4, read="bits"),
    Op("Solarize", 256, read="int"),
    Op("Color", 1.8, 0.1), Op("Contrast", 1.8, 0.1), Op("Brightness", 1.8, 0.1),
    Op("Sharpness", 1.8, 0.1),
    Op("ShearX", 0.3, kind="geometric", signed=True),
    Op("ShearY", 0.3, kind="geometric", signed=True),
    Op("TranslateXConst", 32 // 8, kind="geometric", signed=True),
    Op("TranslateYConst", 32 // 8, kind="geometric", signed=True),
    Op("CutoutConst", 32 // 8, kind="cutout", read="int"),
)
MEANING = {
    "AutoContrast": "stretch each channel to 0-255",
    "Equalize": "equalise each channel's histogram",
    "Invert": "255 - x", "Rotate": "rotate by +-v degrees about the centre",
    "Posterize": "keep 8 - round(...) = v bits", "Solarize": "invert pixels >= 255 - v",
    "Color": "saturation factor v", "Contrast": "contrast factor v",
    "Brightness": "brightness factor v", "Sharpness": "sharpness factor v",
    "ShearX": "shear x by +-v (about the top-left corner)",
    "ShearY": "shear y by +-v (about the top-left corner)",
    "TranslateXConst": "shift x by +-v pixels", "TranslateYConst": "shift y by +-v pixels",
    "CutoutConst": "grey v x v square at a random centre",
}


@dataclass
class Draws:
    """Every random choice RandAugmentCIFAR makes for ``N`` images (one row each): per round the
    op, whether it applies (``U(0,1) <= p``, ``p ~ U(0.2, 0.8)``), its sign and a Cutout centre,
    plus the final Cutout's centre. Slice with ``draws[i:j]``; move with ``draws.to(device)``."""

    ops: torch.Tensor        # (N, n) int64 indices into the pool
    apply: torch.Tensor      # (N, n) bool
    negative: torch.Tensor   # (N, n) bool
    centres: torch.Tensor    # (N, n + 1, 2) float (x, y) in [0, W) x [0, H); the last is final

    def __getitem__(self, sl) -> Draws:
        return Draws(*(getattr(self, f.name)[sl] for f in fields(self)))

    def __len__(self) -> int:
        return len(self.ops)

    def to(self, device, *, non_blocking: bool = False) -> Draws:
        return Draws(*(getattr(self, f.name).to(device, non_blocking=non_blocking)
                       for f in fields(self)))

    def pin_memory(self) -> Draws:
        return Draws(*(getattr(self, f.name).pin_memory() for f in fields(self)))


class RandAugmentCIFAR:
    """``RandAugmentCIFAR(n, m)`` of the reference on uint8 batches (see the module docstring).

    ``final_cutout`` overrides the closing Cutout's side (default ``int(m * 8 / 10)``, 12 at
    ``m = 16``; 0 = none); ``fill`` is the grey of uncovered pixels.
    """

    def __init__(self, n: int = 2, m: float = 16, *, fill: int = 128,
                 final_cutout: int | None = None, pool: tuple[Op, ...] = CIFAR_POOL):
        if not 0 <= m <= 20:
            raise ValueError(f"RandAugment magnitude m={m} is outside 0-20 (on the reference's "
                             "0-10 scale Posterize would keep fewer than 0 bits above 20)")
        self.n, self.m, self.fill, self.pool = int(n), m, fill, pool
        self.final_cutout = (int(m * (32 // 4) / PARAMETER_MAX) if final_cutout is None
                             else final_cutout)
        self._values = [op.value(m) for op in pool]

    def table(self) -> list[dict]:
        """The op pool with each op's range and the value used at this magnitude."""
        rows = [{"op": op.name, "does": MEANING.get(op.name, ""),
                 "range (max_v, at m = 10)": op.max_v,
                 "bias": op.bias if op.max_v is not None and op.bias else None,
                 f"value used (m = {self.m})": (None if v is None else round(v, 4)),
                 "sign": "+-" if op.signed else ""} for op, v in zip(self.pool, self._values)]
        rows.append({"op": "final Cutout", "does": "grey square ending every strong view",
                     "range (max_v, at m = 10)": 32 // 4, "bias": None,
                     f"value used (m = {self.m})": self.final_cutout, "sign": ""})
        return rows

    def draw(self, count: int, generator: torch.Generator, *, size: int = 32) -> Draws:
        """The draws for ``count`` images from ``generator`` (any device)."""
        dev = generator.device
        n = self.n
        ops = torch.randint(len(self.pool), (count, n), generator=generator, device=dev)
        p = 0.2 + 0.6 * torch.rand(count, n, generator=generator, device=dev)
        apply = torch.rand(count, n, generator=generator, device=dev) <= p
        negative = torch.rand(count, n, generator=generator, device=dev) < 0.5
        centres = size * torch.rand(count, n + 1, 2, generator=generator, device=dev)
        return Draws(ops, apply, negative, centres)

    def __call__(self, x: torch.Tensor, draws: Draws) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
            raise TypeError(f"RandAugmentCIFAR expects uint8 (B, 3, H, W) images, got {x.dtype} "
                            f"{tuple(x.shape)}")
        if len(draws) != len(x):
            raise ValueError(f"{len(draws)} draws for {len(x)} images")
        for r in range(self.n):
            x = self.round(x, draws.ops[:, r], draws.apply[:, r], draws.negative[:, r],
                           draws.centres[:, r])
        if self.final_cutout > 0:
            x = cutout(x, draws.centres[:, -1], self.final_cutout, fill=self.fill)
        return x

    def round(self, x, ops, apply, negative, centre) -> torch.Tensor:
        """One op per image: ``ops[i]`` applied to image ``i`` where ``apply[i]``."""
        sign = torch.where(negative, -1.0, 1.0)
        out = x
        theta, geometric = _identity(len(x), x.device), torch.zeros_like(apply)
        for k, op in enumerate(self.pool):
            chosen = ops == k
            if op.kind == "geometric":  # gathered into one resampling below
                m = _matrix(op.name, self._values[k] * sign, x.shape[-1], x.shape[-2])
                theta = torch.where(chosen.view(-1, 1, 1), m, theta)
                geometric = geometric | chosen
                continue
            if op.kind == "cutout":
                result = cutout(x, centre, int(self._values[k]), fill=self.fill)
            else:
                result = colour_op(op.name, x, self._values[k])
            out = torch.where((apply & chosen).view(-1, 1, 1, 1), result, out)
        if any(op.kind == "geometric" for op in self.pool):
            warped = affine(x, theta, fill=self.fill)
            out = torch.where((apply & geometric).view(-1, 1, 1, 1), warped, out)
        return out


def _identity(b: int, device) -> torch.Tensor:
    return torch.eye(2, 3, device=device).expand(b, 2, 3)


def _matrix(name: str, v: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """Per-image Pillow affine data ``(a, b, c, d, e, f)`` (output pixel -> input pixel, in pixel
    coordinates, pixel centres at +0.5) of a geometric op with per-image value ``v`` (B,), as a
    (B, 2, 3) matrix in ``affine_grid``'s normalised coordinates."""
    one, zero = torch.ones_like(v), torch.zeros_like(v)
    if name == "Rotate":  # Image.rotate: counter-clockwise about the centre
        a = -v * (math.pi / 180)
        cos, sin = torch.cos(a), torch.sin(a)
        cx, cy = w / 2, h / 2
        rows = (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)
    elif name == "ShearX":
        rows = (one, v, zero, zero, one, zero)
    elif name == "ShearY":
        rows = (one, zero, zero, v, one, zero)
    elif name == "TranslateXConst":
        rows = (one, zero, v, zero, one, zero)
    elif name == "TranslateYConst":
        rows = (one, zero, zero, zero, one, v)
    else:
        raise ValueError(f"{name} is not a geometric op")
    # pixel coordinates u = S (u_n + 1), S = diag(W/2, H/2): theta = S^-1 [A | A S 1 + t] - [0|1]
    # (Python scalars only: nothing is copied from the host per call)
    a, b, c, d, e, f = rows
    sx, sy = w / 2, h / 2
    theta = (a, b * sy / sx, (a * sx + b * sy + c) / sx - 1,
             d * sx / sy, e, (d * sx + e * sy + f) / sy - 1)
    return torch.stack(theta, -1).view(-1, 2, 3)


def affine(x: torch.Tensor, theta: torch.Tensor, *, fill: int) -> torch.Tensor:
    """uint8 images resampled bicubically at per-image affine positions; a pixel whose source lies
    outside the image is ``fill`` (Pillow's rule), neighbours at the border are clamped."""
    grid = F.affine_grid(theta.to(torch.float32), list(x.shape), align_corners=False)
    out = F.grid_sample(x.float(), grid, mode="bicubic", padding_mode="border",
                        align_corners=False)
    outside = ((grid < -1) | (grid >= 1)).any(-1, keepdim=True).permute(0, 3, 1, 2)
    return torch.where(outside, float(fill), out.round().clamp(0, 255)).to(torch.uint8)


def cutout(x: torch.Tensor, centres: torch.Tensor, size: int, *, fill: int) -> torch.Tensor:
    """The reference's ``CutoutConst``: corner ``int(max(0, c - size / 2))`` of a float centre
    ``c``, far corner ``int(min(W, corner + size))``, filled as Pillow's ``rectangle`` fills it
    (both ends included, so ``size + 1`` pixels unless clipped at the border)."""
    if size <= 0:
        return x
    lo = (centres - size / 2).clamp(min=0).floor()                       # (B, 2) x0, y0
    # far corner lo + size included (Pillow); past the border the mask clips it
    return x.masked_fill(box_mask(x, lo, lo + size + 1), fill)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Pillow's RGB -> L: ``(19595 R + 38470 G + 7471 B + 0x8000) >> 16``, as (B, 1, H, W) int."""
    r, g, b = x.int().unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)[:, None]


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: float) -> torch.Tensor:
    """Pillow's ``Image.blend(degenerate, x, factor)``: float32, clipped, truncated."""
    d = degenerate.float()
    return (d + factor * (x.float() - d)).clamp(0, 255).to(torch.uint8)


_SMOOTH: dict[str, torch.Tensor] = {}


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """Pillow's ``ImageFilter.SMOOTH`` (3x3 ``[[1,1,1],[1,5,1],[1,1,1]] / 13``, rounded; the border
    pixels keep their values)."""
    key = str(x.device)
    if key not in _SMOOTH:
        k = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]], device=x.device) / 13
        _SMOOTH[key] = k.expand(3, 1, 3, 3).contiguous()
    inner = F.conv2d(x.float(), _SMOOTH[key], groups=3).round()
    return F.pad(inner, (1, 1, 1, 1)).where(_interior(x), x.float())


def _interior(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    r = torch.arange(h, device=x.device)
    c = torch.arange(w, device=x.device)
    return (((r > 0) & (r < h - 1))[:, None] & ((c > 0) & (c < w - 1))[None, :])


def colour_op(name: str, x: torch.Tensor, v: float | None) -> torch.Tensor:
    """The Pillow op ``name`` at argument ``v`` on every image of a uint8 batch."""
    if name == "AutoContrast":  # ImageOps.autocontrast(cutoff=0): per channel, int() of the lut
        lo = x.amin((-2, -1), keepdim=True).double()
        hi = x.amax((-2, -1), keepdim=True).double()
        # a true division (``255.0 / t`` multiplies by a reciprocal and can land 1 ulp lower)
        scale = torch.full_like(hi, 255.0).div((hi - lo).clamp(min=1))
        out = (x.double() * scale - lo * scale).trunc().clamp(0, 255).to(torch.uint8)
        return torch.where(hi > lo, out, x)
    if name == "Equalize":  # torchvision's batched equalize follows ImageOps.equalize exactly
        from torchvision.transforms.v2.functional import equalize
        return equalize(x)
    if name == "Invert":
        return 255 - x
    if name == "Posterize":
        bits = int(v)
        return x & (~(2 ** (8 - bits) - 1) & 0xFF)
    if name == "Solarize":  # ImageOps.solarize(x, 255 - v): invert pixels >= the threshold
        return torch.where(x.int() >= 255 - int(v), 255 - x, x)
    if name == "Color":
        return _blend(_grey(x).expand_as(x), x, v)
    if name == "Contrast":  # grey level = int(mean of L + 0.5)
        mean = (_grey(x).double().mean((-3, -2, -1), keepdim=True) + 0.5).floor()
        return _blend(mean.expand_as(x), x, v)
    if name == "Brightness":
        return _blend(torch.zeros_like(x), x, v)
    if name == "Sharpness":
        return _blend(_smooth(x), x, v)
    raise ValueError(f"unknown colour op {name!r}")
