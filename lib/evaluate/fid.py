"""Fréchet Inception Distance (SPEC 2.3) from in-memory image tensors, with cached reference
statistics.

FID compares the mean and covariance of Inception-v3 pool3 features (2,048-d; pytorch-fid offers 64,
192, 768 and 2,048 dimensions, and 2,048 is the standard the published numbers use -- the
presentation's "1,024-d" does not exist in pytorch-fid) of generated images with those of real
images::

    d^2 = ||m - m_w||^2 + Tr(C + C_w - 2 (C C_w)^(1/2))

The network is pytorch-fid's own (``InceptionV3`` with the TF 2015-12-05 weights). Instead of writing
thousands of PNG files and reading them back, images are fed as uint8 ``(N, 3, H, W)`` tensors in
batches; pytorch-fid reads a PNG into exactly the same ``[0, 1]`` floats, so the statistics agree with
its file path (``tests/test_fid.py`` checks it). The distance is the same formula as pytorch-fid's
``calculate_frechet_distance``, with its trace term taken through symmetric eigendecompositions
(:func:`frechet_distance`) rather than scipy's ``sqrtm`` of the non-symmetric product: equal within
1e-6 relative (checked against it), and one 2,048-sized decomposition per reference instead of one or
two matrix square roots per distance, which were most of chapter 2's time on a CPU.

Reference statistics of real images (the training set, and the floors: other training images and
test images) are computed once and cached as ``.npz`` under the data cache dir, keyed by data
source, split, sample count and seed. Without the Inception weights (no file and no network)
:func:`inception_status` says where to put the file, and the notebook skips the FID cells instead of
failing.

CPU throughput is a few images per second (the network runs at 299x299), so the small profiles use
tens to hundreds of images and their FIDs are not comparable with 5,000-sample values (FID is biased
upwards at small sample sizes).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
DIMS = 2048  # pool3 features; the standard FID dimensionality


class FIDUnavailable(RuntimeError):
    """The Inception weights are missing and could not be downloaded."""


def weights_path() -> Path:
    """Where pytorch-fid looks for (and downloads) its weights:
    ``$TORCH_HOME/hub/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def missing_weights_message() -> str:
    return (f"FID needs pytorch-fid's Inception weights at {weights_path()} "
            f"($TORCH_HOME/hub/checkpoints/{WEIGHTS_FILE}); they could not be downloaded here. "
            f"Copy or link the file there (e.g. ln -s ../shared/weights/{WEIGHTS_FILE} "
            f"{weights_path()}) and re-run.")


DOWNLOADS = ("try", "never")
_TRIED: dict[str, str] = {}  # weights path -> why the one download attempt of this process failed


def _download_command() -> list[str]:
    """A child process that makes pytorch-fid download its weights (killed if it overruns)."""
    code = "from pytorch_fid.inception import fid_inception_v3; fid_inception_v3()"
    return [sys.executable, "-c", code]


def inception_status(*, download: str = "try", timeout_s: float = 120) -> tuple[bool, str]:
    """``(available, message)``: whether the weights are on disk, and a line saying which file is
    used or where to put it.

    Missing weights: ``download="try"`` makes one attempt per process, in a child process stopped
    after ``timeout_s`` seconds, so an offline or flaky network never stalls a report; ``"never"``
    does not touch the network.
    """
    if download not in DOWNLOADS:
        raise ValueError(f"download must be one of {DOWNLOADS}, got {download!r}")
    path = weights_path()
    if path.is_file():
        return True, f"Inception weights: {path}"
    if download == "never":
        return False, missing_weights_message() + " (fid_download: never, so no download was tried)"
    if str(path) not in _TRIED:
        try:
            proc = subprocess.run(_download_command(), capture_output=True, text=True,
                                  timeout=timeout_s)
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            _TRIED[str(path)] = lines[-1] if proc.returncode and lines else ""
        except subprocess.TimeoutExpired:
            _TRIED[str(path)] = f"the download did not finish within {timeout_s:g} s"
        if path.is_file():
            return True, f"Inception weights downloaded to {path}"
    why = _TRIED[str(path)] or "the download left no file"
    return False, f"{missing_weights_message()} ({why})"


_MODELS: dict[str, torch.nn.Module] = {}


def load_inception(device: str | torch.device = "cpu") -> torch.nn.Module:
    """pytorch-fid's ``InceptionV3`` returning 2,048-d pool3 features, in eval mode (cached per
    device)."""
    device = torch.device(device)
    if str(device) in _MODELS:
        return _MODELS[str(device)]
    from pytorch_fid.inception import InceptionV3

    try:
        model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[DIMS]])
    # urllib errors are OSErrors; a corrupt file a RuntimeError
    except (OSError, RuntimeError, ValueError) as err:
        raise FIDUnavailable(f"{missing_weights_message()} ({type(err).__name__}: {err})") from None
    model = model.eval().to(device)
    if device.type == "cpu":
        # faster on CPU: bench/fid_throughput.py
        model = model.to(memory_format=torch.channels_last)
    _MODELS[str(device)] = model
    return model


def random_inception(device: str | torch.device = "cpu") -> torch.nn.Module:
    """pytorch-fid's ``InceptionV3`` (the FID variant's layers) with random weights and no file or
    download: its speed is the real network's, its features mean nothing (bench/gpu_check.py times
    it where the weights cannot be brought along)."""
    from unittest import mock

    from pytorch_fid import inception

    # fid_inception_v3 builds the layers, then loads the downloaded state dict: skip only that load
    with mock.patch.object(inception, "load_state_dict_from_url", return_value={}), \
            mock.patch.object(torch.nn.Module, "load_state_dict", lambda self, *a, **k: None):
        model = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[DIMS]])
    return model.eval().to(torch.device(device))


@torch.inference_mode()
def inception_features(images: torch.Tensor, *, batch_size: int = 50,
                       device: str | torch.device = "cpu",
                       model: torch.nn.Module | None = None) -> np.ndarray:
    """``(N, 2048)`` float64 pool3 features of uint8 images ``(N, 3, H, W)``, computed in batches.

    The images are scaled to ``[0, 1]`` exactly as pytorch-fid's ``ToTensor`` does; the network
    itself resizes to 299x299 and maps to ``[-1, 1]``.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images of shape (N, 3, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    device = torch.device(device)
    model = model or load_inception(device)
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device).float() / 255.0
        if device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(model(x)[0].flatten(1).double().cpu())
    return torch.cat(out).numpy()


@dataclass
class Stats:
    """Mean and covariance of Inception features, with how many images produced them."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    seconds: float = 0.0  # feature-extraction time (0 when loaded from the cache)
    # the features themselves, kept in memory for bootstrap intervals (never cached)
    features: np.ndarray | None = field(default=None, repr=False, compare=False)

    _root: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, features: np.ndarray, seconds: float = 0.0) -> "Stats":
        return cls(features.mean(0), np.cov(features, rowvar=False), len(features), seconds,
                   features)

    def root(self) -> torch.Tensor:
        """``sqrt(sigma)`` (float64), computed on first use and kept."""
        if self._root is None:
            self._root = sqrt_psd(self.sigma)
        return self._root


def sqrt_psd(sigma: np.ndarray) -> torch.Tensor:
    """The symmetric square root of a covariance (float64), negative rounding-error eigenvalues
    clipped to zero."""
    evals, evecs = torch.linalg.eigh(torch.as_tensor(sigma, dtype=torch.float64))
    return (evecs * evals.clamp(min=0).sqrt()) @ evecs.T


def trace_sqrt(centred: torch.Tensor) -> torch.Tensor:
    """``tr sqrt(A^T A)`` of an ``n x d`` matrix: the sum of its singular values, through the
    eigenvalues of the smaller of its two Gram matrices."""
    gram = centred @ centred.T if len(centred) <= centred.shape[1] else centred.T @ centred
    return torch.linalg.eigvalsh(gram).clamp(min=0).sqrt().sum()


def frechet_distance(a: Stats, b: Stats) -> float:
    """FID between ``a`` (e.g. generated) and the reference ``b``: pytorch-fid's formula
    ``||m_a - m_b||^2 + tr(C_a) + tr(C_b) - 2 tr sqrt(C_a C_b)``.

    The trace term uses ``tr sqrt(C_a C_b) = tr sqrt(R C_a R)`` with ``R = sqrt(C_b)``, computed once
    per reference and kept on it; with ``a``'s features at hand, ``R C_a R`` is the Gram matrix of the
    centred features times ``R``, so the decomposition is ``n x n`` when ``n < 2048``. Both matrices
    are symmetric positive semi-definite, so the eigenvalues are real: no complex parts to drop and
    no singular-product fallback (pytorch-fid adds 1e-6 to the diagonals when ``sqrtm`` fails).
    """
    if a.mu.shape != b.mu.shape or a.sigma.shape != b.sigma.shape:
        raise ValueError(f"FID of statistics with different dimensions: means {a.mu.shape} vs "
                         f"{b.mu.shape}, covariances {a.sigma.shape} vs {b.sigma.shape}")
    root = b.root()
    if a.features is not None and len(a.features) == a.n and a.n > 1:
        f = torch.as_tensor(a.features, dtype=torch.float64)
        tr_sqrt = trace_sqrt((f - f.mean(0)) @ root / (a.n - 1) ** 0.5)
    else:
        sig_a = torch.as_tensor(a.sigma, dtype=torch.float64)
        tr_sqrt = torch.linalg.eigvalsh(root @ sig_a @ root).clamp(min=0).sqrt().sum()
    diff = a.mu - b.mu
    return float(diff.dot(diff) + np.trace(a.sigma) + np.trace(b.sigma) - 2 * tr_sqrt.item())


def statistics(images: torch.Tensor, *, batch_size: int = 50,
               device: str | torch.device = "cpu") -> Stats:
    """Inception statistics of uint8 images, timed."""
    t0 = time.perf_counter()
    feats = inception_features(images, batch_size=batch_size, device=device)
    return Stats.of(feats, time.perf_counter() - t0)


def cache_path(images: torch.Tensor, *, split: str, cache_dir: str | Path | None = None) -> Path:
    """``<cache>/fid-stats/<split>-<n>-<hash of the exact images>.npz``: another data set, subset or
    seed never reuses statistics that are not its own."""
    from ..data import default_cache_dir

    h = hashlib.sha256(f"{tuple(images.shape)}|{images.dtype}|{DIMS}".encode())
    h.update(images.contiguous().numpy().tobytes())
    name = f"{split}-{len(images)}-{h.hexdigest()[:16]}.npz"
    return Path(cache_dir or default_cache_dir()) / "fid-stats" / name


def cached_statistics(images: torch.Tensor, *, source: str, split: str, seed: int,
                      batch_size: int = 50, device: str | torch.device = "cpu",
                      cache_dir: str | Path | None = None) -> Stats:
    """Statistics of real images, computed once and cached as ``.npz`` keyed by a hash of the images
    themselves (cheap next to Inception); ``source`` and ``seed`` are stored beside them. An
    unreadable cache file is moved aside and recomputed."""
    from ..storage import recover

    path = cache_path(images, split=split, cache_dir=cache_dir)
    if path.is_file():
        try:
            with np.load(path) as z:
                stats = Stats(z["mu"], z["sigma"], int(z["n"]))
            d = len(stats.mu)
            if stats.sigma.shape == (d, d) and stats.n == len(images):
                return stats
            raise ValueError(f"statistics of shape {stats.mu.shape} / {stats.sigma.shape}, "
                             f"n={stats.n}")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            lines = str(err).strip().splitlines()
            reason = f"{type(err).__name__}: {lines[0] if lines else ''}"
            recover(path, reason, "computing them again")
    stats = statistics(images, batch_size=batch_size, device=device)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, mu=stats.mu, sigma=stats.sigma, n=stats.n, source=source, split=split, seed=seed)
    os.replace(tmp, path)
    return stats
