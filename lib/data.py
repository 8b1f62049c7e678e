"""CIFAR-10 as uint8 tensors: loading from any source, an on-disk cache, splits, and batch streams.

Sources (``data=`` parameter, or the ``CIFAR10_ROOT`` environment variable when ``data="auto"``):

* ``"torchvision"`` -- the official archive, downloaded by torchvision (the default where the
  network allows) in one attempt bounded by ``$CIFAR10_DOWNLOAD_TIMEOUT_S`` (default 600 s), so an
  offline machine stops with a message saying how to pass a local copy instead of hanging;
* a folder or ``.tar.gz``/``.tgz``/``.tar``/``.zip`` archive laid out as ``train/<class>/*`` and
  ``test/<class>/*`` (optionally inside one top-level folder), e.g.
  ``../shared/datasets/cifar10-jpeg.tar.gz``;
* ``"synthetic"`` -- a small learnable 10-class 32x32 set made on the fly, for unit tests only.

Whatever the source, images are decoded once into ``(N, 3, 32, 32)`` uint8 tensors and cached on
disk, keyed by the source's path, size and modification time, so later runs skip the decode.
:mod:`lib.batches` keeps the images on the training device and augments whole batches there
(:mod:`lib.augment`); under CUDA the loader never touches a PIL image.
"""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .storage import UnreadableFile, recover, save_atomic, torch_load

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
LAYOUT_HELP = ("expected a folder or archive containing train/<class>/<image> and "
               f"test/<class>/<image> with the ten classes {', '.join(CLASSES)}")


class DataError(RuntimeError):
    """The data source is missing, unreadable or not laid out as expected."""


@dataclass
class Cifar10:
    """Decoded CIFAR-10: images ``(N, 3, 32, 32)`` uint8, labels int64, and where they came from."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str
    classes: tuple = CLASSES

    def describe(self) -> str:
        return f"{self.source} ({len(self.train_y):,} train / {len(self.test_y):,} test images)"


# -------------------------------------------------------------------------------- sources
def default_cache_dir() -> Path:
    """Where decoded datasets are cached: ``$CIFAR_REPORT_CACHE``, else
    ``~/.cache/cifar10-report``."""
    if os.environ.get("CIFAR_REPORT_CACHE"):
        return Path(os.environ["CIFAR_REPORT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cifar10-report"


def resolve_source(data: str | os.PathLike = "auto") -> str:
    """``auto`` -> ``$CIFAR10_ROOT`` if set, else ``torchvision``. Paths are made absolute."""
    data = str(data)
    if data == "auto":
        data = os.environ.get("CIFAR10_ROOT") or "torchvision"
    if data in ("torchvision", "synthetic"):
        return data
    return str(Path(data).expanduser().resolve())


def load_cifar10(data: str | os.PathLike = "auto", *, cache_dir: str | os.PathLike | None = None,
                 download_root: str | os.PathLike | None = None) -> Cifar10:
    """Load CIFAR-10 from ``data`` (see module docstring), decoding once and caching the tensors."""
    source = resolve_source(data)
    if source == "synthetic":
        return make_synthetic()
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if source == "torchvision":
        key, label = "torchvision-official", "torchvision official CIFAR-10"
    else:
        path = Path(source)
        if not path.exists():
            raise DataError(f"CIFAR-10 source {path} does not exist; {LAYOUT_HELP}. "
                            "Set data= in the params file, --data for run_all.sh, or CIFAR10_ROOT.")
        stat = path.stat()
        key = hashlib.sha256(
            f"{path}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:16]
        label = f"local {path.name} ({'JPEG' if _is_jpeg_source(path) else 'images'})"
    # the cache is keyed by the source's path, size and modification time (not its bytes: hashing
    # the archive would cost about as much as decoding it)
    cached = cache_dir / f"cifar10-{key}.pt"
    if cached.is_file():
        try:
            blob = torch_load(cached, mmap=True)
            ds = Cifar10(blob["train_x"], blob["train_y"], blob["test_x"], blob["test_y"],
                         source=blob["source"])
            if ds.train_x.shape[1:] != (3, 32, 32) or len(ds.train_x) != len(ds.train_y):
                raise UnreadableFile(f"unexpected shapes {tuple(ds.train_x.shape)}")
            return ds
        except (UnreadableFile, KeyError, TypeError) as err:
            recover(cached, str(err), "decoding the source again")
    if source == "torchvision":
        arrays = _load_torchvision(Path(download_root) if download_root
                                   else cache_dir / "torchvision")
    else:
        arrays = _load_image_tree(Path(source))
    ds = Cifar10(*arrays, source=label)
    cache_dir.mkdir(parents=True, exist_ok=True)
    save_atomic({"train_x": ds.train_x, "train_y": ds.train_y, "test_x": ds.test_x,
                        "test_y": ds.test_y, "source": ds.source}, cached)
    return ds


def _is_jpeg_source(path: Path) -> bool:
    return "jpeg" in path.name.lower() or "jpg" in path.name.lower()


DOWNLOAD_TIMEOUT_S = 600.0  # the official archive is 163 MB: minutes on a slow link, never hours


def _download_command(root: Path) -> list[str]:
    """A child process that downloads the official archive into ``root`` (killed if it overruns)."""
    code = ("import sys; from torchvision.datasets import CIFAR10; "
            "CIFAR10(sys.argv[1], train=True, download=True)")
    return [sys.executable, "-c", code, str(root)]


def _download_bounded(root: Path) -> None:
    """One download attempt, stopped after ``$CIFAR10_DOWNLOAD_TIMEOUT_S`` seconds: an offline
    machine (a GPU node behind a firewall) ends here with what to do, instead of hanging."""
    timeout_s = float(os.environ.get("CIFAR10_DOWNLOAD_TIMEOUT_S", DOWNLOAD_TIMEOUT_S))
    print(f"[data] downloading CIFAR-10 (163 MB) with torchvision into {root}, for at most "
          f"{timeout_s:g} s", flush=True)
    remedy = ("Offline? Pass a local copy: --data PATH for run_all.sh (or data: in the params file, "
              f"or CIFAR10_ROOT=PATH); {LAYOUT_HELP}")
    try:
        proc = subprocess.run(_download_command(root), capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise DataError(f"could not download CIFAR-10 with torchvision into {root}: no answer "
                        f"within {timeout_s:g} s (CIFAR10_DOWNLOAD_TIMEOUT_S). {remedy}.") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise DataError(f"could not download CIFAR-10 with torchvision into {root} "
                        f"({lines[-1] if lines else 'no output'}). {remedy}.")


def _load_torchvision(root: Path):
    from torchvision.datasets import CIFAR10

    def read():
        return [CIFAR10(str(root), train=train, download=False) for train in (True, False)]

    try:
        splits = read()
    except RuntimeError:  # "Dataset not found or corrupted": not downloaded yet
        _download_bounded(root)
        splits = read()
    out = []
    for ds in splits:
        out.append(torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))))
        out.append(torch.tensor(ds.targets, dtype=torch.int64))
    return out


def _load_image_tree(path: Path):
    """Decode ``train/<class>/*`` and ``test/<class>/*`` from a folder or archive into tensors."""
    entries = _list_entries(path)  # {(split, class): [(name, reader)]}
    out = []
    for split in ("train", "test"):
        missing = [c for c in CLASSES if not entries.get((split, c))]
        if missing:
            found = sorted({f"{s}/{c}" for s, c in entries})[:12]
            raise DataError(f"{path}: no images for {split}/{', '.join(missing)}; {LAYOUT_HELP}. "
                            f"Found: {found or 'nothing in that layout'}")
        xs, ys = [], []
        for label, cls in enumerate(CLASSES):
            for name, read in sorted(entries[(split, cls)], key=lambda e: e[0]):
                xs.append(_decode(read(), f"{path}:{name}"))
                ys.append(label)
        out.append(torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous())
        out.append(torch.tensor(ys, dtype=torch.int64))
    return out


def _list_entries(path: Path) -> dict:
    entries: dict = {}

    def add(name: str, reader) -> None:
        parts = Path(name).parts
        if len(parts) < 3 or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            return
        split, cls = parts[-3], parts[-2]
        if split in ("train", "test") and cls in CLASSES:
            entries.setdefault((split, cls), []).append((name, reader))

    name = path.name.lower()
    if path.is_dir():
        for p in path.rglob("*"):
            if p.is_file():
                add(str(p.relative_to(path)), p.read_bytes)
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            with tarfile.open(path) as tar:
                for member in tar:
                    if member.isfile():
                        data = tar.extractfile(member).read()
                        add(member.name, lambda data=data: data)
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DataError(f"{path} is not a readable tar archive "
                            f"({err}); {LAYOUT_HELP}") from None
    elif name.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.is_dir():
                        data = zf.read(info)
                        add(info.filename, lambda data=data: data)
        except (zipfile.BadZipFile, OSError) as err:
            raise DataError(f"{path} is not a readable zip archive "
                            f"({err}); {LAYOUT_HELP}") from None
    else:
        raise DataError(f"{path} is neither a folder nor a .tar.gz/.tgz/.tar/.zip archive; "
                        f"{LAYOUT_HELP}")
    return entries


def _decode(blob: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(blob)) as im:
            im = im.convert("RGB")
            if im.size != (32, 32):
                im = im.resize((32, 32), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"cannot decode image {where}: {err}") from None


def make_synthetic(n_train: int = 2000, n_test: int = 500, *, seed: int = 0) -> Cifar10:
    """A learnable stand-in for CIFAR-10: each class is a fixed smooth colour pattern plus noise and
    a shift.

    For unit tests only: it exercises every code path in seconds, and a small network separates the
    classes within a few epochs, so "loss goes down" and "accuracy above chance" are meaningful
    checks.
    """
    g = torch.Generator().manual_seed(seed)
    protos = F.interpolate(torch.rand(10, 3, 4, 4, generator=g), size=32, mode="bilinear",
                           align_corners=False)

    def draw(n):
        y = torch.arange(n) % 10
        y = y[torch.randperm(n, generator=g)]
        x = protos[y] * 0.7 + 0.3 * torch.rand(n, 3, 32, 32, generator=g)
        shift = torch.randint(-2, 3, (2,), generator=g).tolist()
        x = torch.roll(x, shifts=shift, dims=(2, 3))
        return (x * 255).round().clamp(0, 255).to(torch.uint8), y

    tx, ty = draw(n_train)
    vx, vy = draw(n_test)
    return Cifar10(tx, ty, vx, vy, source="synthetic (unit-test stand-in, not CIFAR-10)")


# -------------------------------------------------------------------------------- splits
def stratified_split(labels: torch.Tensor, sizes: dict[str, int], *,
                     seed: int) -> dict[str, torch.Tensor]:
    """Split indices of ``labels`` into disjoint, class-balanced parts, e.g.
    ``{"val": 5000, "train": -1}``.

    A size of ``-1`` takes everything left over (at most one part may use it). Each part gets
    ``size // num_classes`` images of every class, so a 5,000-image validation split holds 500 per
    class.
    """
    classes = labels.unique()
    g = torch.Generator().manual_seed(seed)
    pools = {int(c): (labels == c).nonzero().flatten()[torch.randperm(int((labels == c).sum()),
                                                                      generator=g)]
             for c in classes}
    taken = {int(c): 0 for c in classes}
    out = {}
    for name, size in sizes.items():
        if size == -1:
            continue
        per_class, rest = divmod(size, len(classes))
        if rest:
            raise ValueError(f"split {name!r}: size {size} is not a multiple of "
                             f"{len(classes)} classes")
        parts = []
        for c, pool in pools.items():
            if taken[c] + per_class > len(pool):
                raise ValueError(f"split {name!r}: class {c} has only {len(pool) - taken[c]} "
                                 f"images left, {per_class} needed (sizes {sizes}, "
                                 f"{len(labels)} images)")
            parts.append(pool[taken[c]:taken[c] + per_class])
            taken[c] += per_class
        out[name] = torch.cat(parts).sort().values
    for name, size in sizes.items():
        if size == -1:
            out[name] = torch.cat([pool[taken[c]:] for c, pool in pools.items()]).sort().values
    return {name: out[name] for name in sizes}


def subsample(x: torch.Tensor, y: torch.Tensor, n: int | None, *, seed: int):
    """A class-balanced subset of ``n`` items (all of them when ``n`` is None, 0 or >= len)."""
    if not n or n >= len(y):
        return x, y
    idx = stratified_split(y, {"keep": n}, seed=seed)["keep"]
    return x[idx], y[idx]
