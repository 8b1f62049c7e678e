"""Batch streams on the training device, deterministic per ``(seed, step)`` so a resumed run sees
the batches an uninterrupted one would have: :class:`BatchLoader` (images and labels,
crop/flip/normalise) and :class:`SSLBatches` (labelled images plus weak and strong views of
unlabelled ones)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from .augment import cpu_threads, cutout, normalize, rand_augment, random_crop_flip


class BatchLoader:
    """Deterministic batches from uint8 tensors held on ``device``, augmented there.

    The order and augmentation of epoch ``e`` depend only on ``(seed, e)``, so a run resumed at any
    step sees exactly the batches an uninterrupted run would have seen. Yields ``(images, labels)``
    with images as normalised float32 (``channels_last`` when asked).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                 device: torch.device | str = "cpu", train: bool = True, augment: bool = True,
                 padding: int = 4, seed: int = 0, channels_last: bool = False,
                 normalize_fn=normalize):
        if len(x) != len(y):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
        if train and batch_size > len(y):
            raise ValueError(f"batch_size {batch_size} is larger than the {len(y)} training images")
        self.device = torch.device(device)
        self.x = x.to(self.device)
        self.y = y.to(self.device)
        self.batch_size, self.train, self.augment = batch_size, train, augment and train
        self.padding, self.seed, self.channels_last = padding, seed, channels_last
        self.normalize_fn = normalize_fn

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

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
        offsets = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=g)
        flips = torch.rand(n, generator=g) < 0.5
        # one epoch's draws move to the device once, not per batch
        perm_d = perm.to(self.device)
        offsets, flips = offsets.to(self.device), flips.to(self.device)
        for i in range(start, len(self)):
            sl = slice(i * bs, (i + 1) * bs)
            idx = perm_d[sl]
            xb = self.x[idx]
            if self.augment:
                xb = random_crop_flip(xb, offsets[sl], flips[sl], padding=self.padding)
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

    The labelled stream is a :class:`BatchLoader`; the unlabelled stream draws its own permutation,
    two independent crop/flip draws per image, and the RandAugment/Cutout choices from generators
    seeded by ``(seed, epoch)`` and ``(seed, step)``. ``unlabelled_batch=0`` yields labelled data
    only (supervised baseline).
    """

    def __init__(self, labelled_x, labelled_y, unlabelled_x, *, labelled_batch: int,
                 unlabelled_batch: int, device, seed: int, randaug_ops: int, randaug_magnitude: int,
                 cutout_size: int, channels_last: bool = False):
        self.device = torch.device(device)
        self.labelled = BatchLoader(labelled_x, labelled_y, batch_size=labelled_batch,
                                    device=self.device, seed=seed, channels_last=channels_last)
        if unlabelled_batch > len(unlabelled_x):
            raise ValueError(f"unlabelled batch {unlabelled_batch} is larger than the "
                             f"{len(unlabelled_x)} unlabelled images; lower batch_size or mu, or "
                             "raise unlabelled_size")
        self.ux = unlabelled_x.to(self.device) if unlabelled_batch else None
        self.ub, self.seed = unlabelled_batch, seed
        self.randaug_ops, self.randaug_magnitude, self.cutout_size = (
            randaug_ops, randaug_magnitude, cutout_size)
        self.channels_last = channels_last
        self._draws: tuple = (None,)  # (epoch, order, crops, flips) of the epoch being served

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        x = normalize(x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def unlabelled_steps_per_epoch(self) -> int:
        return len(self.ux) // self.ub

    def _epoch_draws(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The unlabelled order and both views' crops and flips of ``epoch``, drawn from a generator
        seeded by ``(seed, epoch)`` and moved to the device once per epoch."""
        if self._draws[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7_919 * epoch + 17)
            n = len(self.ux)
            perm = torch.randperm(n, generator=g)
            offsets = torch.randint(0, 9, (2, n, 2), generator=g)
            flips = torch.rand(2, n, generator=g) < 0.5
            self._draws = (epoch, *(t.to(self.device) for t in (perm, offsets, flips)))
        return self._draws[1:]

    def unlabelled_views(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 weak and strong views of the unlabelled batch of ``step``."""
        epoch, i = divmod(step, self.unlabelled_steps_per_epoch())
        perm, offsets, flips = self._epoch_draws(epoch)
        sl = slice(i * self.ub, (i + 1) * self.ub)
        xb = self.ux[perm[sl]]
        weak = random_crop_flip(xb, offsets[0, sl], flips[0, sl])
        strong = random_crop_flip(xb, offsets[1, sl], flips[1, sl])
        gs = torch.Generator().manual_seed(self.seed * 7_777_777 + step)
        # many small ops: one thread is fastest
        with cpu_threads(1 if self.device.type == "cpu" else 0):
            strong = rand_augment(strong, num_ops=self.randaug_ops,
                                  magnitude=self.randaug_magnitude, generator=gs)
        strong = cutout(strong, size=self.cutout_size, generator=gs)
        return weak, strong

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
