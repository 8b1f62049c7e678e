"""Batch streams on the training device, deterministic per ``(seed, step)`` so a resumed run sees
the batches an uninterrupted one would have: :class:`BatchLoader` (images and labels,
crop/flip/normalise, optionally RandAugment or Cutout) and :class:`SSLBatches` (labelled images plus weak and
strong views of unlabelled ones).

Every random choice of an epoch (order, crops, flips, RandAugment's ops and Cutout centres) is drawn
at the epoch's start from a CPU generator seeded by ``(seed, epoch)`` and moved to the device in one
copy, so producing a batch is a fixed sequence of device kernels that never waits for the host, and
the batches are the same on every device."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from .augment import Cutout, normalize, random_crop_flip
from .randaugment import RandAugmentCIFAR


def upload(t, device: torch.device):
    """``t`` (a tensor, or RandAugment's draws) on ``device``. On CUDA the copy goes through pinned
    memory without blocking: a copy from pageable memory makes the host wait for the GPU (a host
    sync at every epoch's upload), a pinned one is queued behind the running steps."""
    if torch.device(device).type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


class BatchLoader:
    """Deterministic batches from uint8 tensors held on ``device``, augmented there.

    The order and augmentation of epoch ``e`` depend only on ``(seed, e)``, so a run resumed at any
    step sees exactly the batches an uninterrupted run would have seen. Yields ``(images, labels)``
    with images as normalised float32 (``channels_last`` when asked). Training batches are
    crop (padding filled with ``fill``) + flip, then ``strong`` (a :class:`RandAugmentCIFAR` or a
    :class:`lib.augment.Cutout`) when given; ``shuffle=False`` keeps the images' order every epoch and ``drop_last=False`` ends an
    epoch with the partial batch.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                 device: torch.device | str = "cpu", train: bool = True, augment: bool = True,
                 padding: int = 4, seed: int = 0, channels_last: bool = False,
                 normalize_fn=normalize, fill: int = 0, strong: RandAugmentCIFAR | Cutout | None = None,
                 shuffle: bool = True, drop_last: bool = True):
        if len(x) != len(y):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
        if train and batch_size > len(y):
            raise ValueError(f"batch_size {batch_size} is larger than the {len(y)} training images")
        self.device = torch.device(device)
        self.x = x.to(self.device)
        self.y = y.to(self.device)
        self.batch_size, self.train, self.augment = batch_size, train, augment and train
        self.padding, self.seed, self.channels_last = padding, seed, channels_last
        self.normalize_fn, self.fill, self.strong = normalize_fn, fill, strong
        self.shuffle, self.drop_last = shuffle, drop_last

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.train and self.drop_last else -(-n // self.batch_size)

    def _finish(self, xb: torch.Tensor) -> torch.Tensor:
        xb = self.normalize_fn(xb)
        return xb.contiguous(memory_format=torch.channels_last) if self.channels_last else xb

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``epoch``, starting at batch index ``start`` (for resuming mid-epoch)."""
        n, bs = len(self.y), self.batch_size
        if not self.train:
            for i in range(start * bs, n, bs):
                yield self._finish(self.x[i:i + bs]), self.y[i:i + bs]
            return
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)
        if not self.shuffle:
            perm = torch.arange(n)
        offsets = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=g)
        flips = torch.rand(n, generator=g) < 0.5
        strong = self.strong.draw(n, g) if self.strong is not None else None
        # one epoch's draws move to the device once, not per batch
        perm_d = upload(perm, self.device)
        offsets, flips = upload(offsets, self.device), upload(flips, self.device)
        strong = upload(strong, self.device) if strong is not None else None
        for i in range(start, len(self)):
            sl = slice(i * bs, (i + 1) * bs)
            idx = perm_d[sl]
            xb = self.x[idx]
            if self.augment:
                xb = random_crop_flip(xb, offsets[sl], flips[sl], padding=self.padding,
                                      fill=self.fill)
                if strong is not None:
                    xb = self.strong(xb, strong[sl])
            yield self._finish(xb), self.y[idx]

    def forever(self, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """An endless stream of training batches; step ``s`` is batch ``s % len`` of epoch
        ``s // len``."""
        epoch, start = divmod(start_step, len(self))
        while True:
            yield from self.epoch(epoch, start)
            epoch, start = epoch + 1, 0


@dataclass
class SSLBatch:
    """One training step's data: labelled images and labels, and two views of the unlabelled
    images."""

    x_l: torch.Tensor
    y_l: torch.Tensor
    x_uw: torch.Tensor | None  # weak view: crop + flip
    x_us: torch.Tensor | None  # strong view: crop + flip + RandAugment + Cutout


class SSLBatches:
    """Deterministic labelled + unlabelled batches on ``device``; ``forever(start_step)`` for
    :func:`fit`.

    The labelled stream is a :class:`BatchLoader` (crop + flip); the unlabelled stream has its own
    epochs: an order, two independent crop/flip draws per image (weak and strong view) and the
    strong view's RandAugment draws, all drawn per ``(seed, epoch)`` and moved to the device once.
    ``unlabelled_batch=0`` yields labelled data only (supervised baseline). ``fill`` pads the crops,
    ``mean``/``std`` normalise.
    """

    def __init__(self, labelled_x, labelled_y, unlabelled_x, *, labelled_batch: int,
                 unlabelled_batch: int, device, seed: int, strong: RandAugmentCIFAR | None,
                 fill: int = 0, mean=None, std=None, channels_last: bool = False):
        self.device = torch.device(device)
        norm = {k: v for k, v in (("mean", mean), ("std", std)) if v is not None}
        self._normalize = lambda x: normalize(x, **norm)
        self.labelled = BatchLoader(labelled_x, labelled_y, batch_size=labelled_batch,
                                    device=self.device, seed=seed, channels_last=channels_last,
                                    fill=fill, normalize_fn=self._normalize)
        if unlabelled_batch > len(unlabelled_x):
            raise ValueError(f"unlabelled batch {unlabelled_batch} is larger than the "
                             f"{len(unlabelled_x)} unlabelled images; lower batch_size or mu, or "
                             "raise unlabelled_size")
        self.ux = unlabelled_x.to(self.device) if unlabelled_batch else None
        self.ub, self.seed, self.strong, self.fill = unlabelled_batch, seed, strong, fill
        self.channels_last = channels_last
        self._draws: tuple = (None,)  # (epoch, order, crops, flips, RandAugment draws)

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        x = self._normalize(x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def unlabelled_steps_per_epoch(self) -> int:
        return len(self.ux) // self.ub

    def _epoch_draws(self, epoch: int) -> tuple:
        """The unlabelled order, both views' crops and flips and the strong view's RandAugment draws
        of ``epoch``, from a generator seeded by ``(seed, epoch)``, moved to the device once."""
        if self._draws[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7_919 * epoch + 17)
            n = len(self.ux)
            perm = torch.randperm(n, generator=g)
            offsets = torch.randint(0, 9, (2, n, 2), generator=g)
            flips = torch.rand(2, n, generator=g) < 0.5
            strong = self.strong.draw(n, g) if self.strong is not None else None
            self._draws = (epoch, *(upload(t, self.device) if t is not None else None
                                    for t in (perm, offsets, flips, strong)))
        return self._draws[1:]

    def unlabelled_views(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 weak and strong views of the unlabelled batch of ``step``."""
        epoch, i = divmod(step, self.unlabelled_steps_per_epoch())
        perm, offsets, flips, strong = self._epoch_draws(epoch)
        sl = slice(i * self.ub, (i + 1) * self.ub)
        xb = self.ux[perm[sl]]
        weak = random_crop_flip(xb, offsets[0, sl], flips[0, sl], fill=self.fill)
        x_s = random_crop_flip(xb, offsets[1, sl], flips[1, sl], fill=self.fill)
        if strong is not None:
            x_s = self.strong(x_s, strong[sl])
        return weak, x_s

    def forever(self, start_step: int = 0) -> Iterator[SSLBatch]:
        labelled = self.labelled.forever(start_step)
        step = start_step
        while True:
            x_l, y_l = next(labelled)
            x_uw = x_us = None
            if self.ub:
                weak, strong = self.unlabelled_views(step)
                x_uw, x_us = self._finish(weak), self._finish(strong)
            yield SSLBatch(x_l, y_l, x_uw, x_us)
            step += 1
