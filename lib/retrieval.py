"""Similarity search with a trained classifier's features (chapter 4): query by image, cosine vs Euclidean.

An image is embedded as the global-average-pooled output of ``model.features`` (the penultimate layer of a
chapter-1 classifier, before ``model.classifier``). The gallery (CIFAR-10 training images) is embedded once and
cached on disk, keyed by the checkpoint file and the exact images, so re-running the chapter only scores.

* :func:`load_embedder` wraps chapter 1's checkpoint; :meth:`Embedder.cached` embeds a tensor of images once.
* :func:`load_query_image` reads any PNG/JPEG/... file (RGB, RGBA, L, palette, 16-bit, EXIF-rotated) as a
  32x32 uint8 image, the way the training data was decoded; :func:`resolve_query` also accepts a test index.
* :func:`top_k` retrieves neighbours by ``cosine`` similarity or ``euclidean`` distance with one matrix product
  per chunk of queries (never a Python loop over the gallery).
* :func:`rank_metrics` ranks the *whole* gallery for every query and returns precision@k and mAP (relevant =
  same class), vectorised per chunk; :func:`precision_at_k` and :func:`average_precision` are the small pure
  definitions it is tested against.
* :func:`show_similar_images` draws a query and its neighbours, one row per metric; :func:`xyz_example` and
  :func:`xyz_figure` find and draw three real vectors on which the two metrics disagree (SPEC 4.1).

Errors the user can fix (a missing checkpoint, a missing or unreadable image) raise :class:`RetrievalError`,
which a notebook shows as one clear message instead of a deep traceback.
"""
from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import data as D

METRICS = ("cosine", "euclidean")
ROOT = Path(__file__).resolve().parent.parent
SHIPPED_QUERY = ROOT / "assets" / "plane.png"


class RetrievalError(ValueError):
    """A problem the user fixes (missing checkpoint, unreadable query image): shown as its message only."""

    def _render_traceback_(self):  # IPython/Jupyter show this instead of the traceback
        return [f"{type(self).__name__}: {self}"]


class MissingCheckpointError(RetrievalError, FileNotFoundError):
    """Chapter 1 has not produced the classifier whose features chapter 4 uses."""


class QueryImageError(RetrievalError):
    """The query file is missing, not an image, or truncated; or a test index is out of range."""


# ---------------------------------------------------------------------------------------------- embeddings
@dataclass
class Embedder:
    """A chapter-1 classifier used as a feature extractor: ``embed(uint8 images) -> (N, D) float32``."""

    model: torch.nn.Module
    info: dict
    checkpoint: Path
    device: torch.device

    @property
    def dim(self) -> int:
        return int(self.model.classifier.in_features)

    @torch.inference_mode()
    def embed(self, images: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
        """Penultimate features (global average pool of ``model.features``) of uint8 ``(N, 3, 32, 32)`` images."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        out = []
        for i in range(0, len(images), batch_size):
            x = D.normalize(images[i:i + batch_size].to(self.device))
            out.append(self.model.features(x).float().mean(dim=(2, 3)).cpu())
        return torch.cat(out) if out else torch.zeros(0, self.dim)

    @torch.inference_mode()
    def predict(self, features: torch.Tensor, classes=D.CLASSES) -> list[tuple[str, float]]:
        """The classifier's top class and its probability for each feature vector."""
        p = self.model.classifier(features.to(self.device).float()).softmax(1).cpu()
        conf, idx = p.max(1)
        return [(classes[int(i)], float(c)) for i, c in zip(idx, conf)]

    def cache_key(self, images: torch.Tensor, source: str) -> str:
        """Checkpoint (path, size, mtime) + data source + a hash of the exact image bytes."""
        st = self.checkpoint.stat()
        h = hashlib.sha256(f"{self.checkpoint.resolve()}|{st.st_size}|{st.st_mtime_ns}|{source}|"
                           f"{tuple(images.shape)}".encode())
        h.update(images.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def cached(self, images: torch.Tensor, *, name: str, source: str, cache_dir: str | Path,
               batch_size: int = 1000) -> tuple[torch.Tensor, bool]:
        """``(features, loaded_from_cache)``: embed ``images`` once and keep them in ``cache_dir``."""
        cache_dir = Path(cache_dir)
        path = cache_dir / f"{name}-{self.info['model']}-{self.cache_key(images, source)}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True)["features"], True
        feats = self.embed(images, batch_size=batch_size)
        D.save_atomic({"features": feats, "checkpoint": str(self.checkpoint), "source": source, "n": len(images)}, path)
        return feats, False


def load_embedder(profile_dir: str | Path, run_name: str = "resnet18", *, device: str | torch.device = "cpu"
                  ) -> Embedder:
    """Chapter 1's best checkpoint of ``run_name`` under ``outputs/<profile>`` as an :class:`Embedder`."""
    from .supervised import load_classifier

    try:
        model, info = load_classifier(profile_dir, run_name, device=str(device))
    except FileNotFoundError as err:
        raise MissingCheckpointError(f"chapter 4 embeds images with chapter 1's {run_name!r} classifier, "
                                     f"which is not there yet: {err}") from None
    path = Path(profile_dir) / "checkpoints" / "01_supervised" / info["checkpoint"]
    return Embedder(model=model, info=info, checkpoint=path, device=torch.device(device))


def pixel_vectors(images: torch.Tensor) -> torch.Tensor:
    """The raw-pixel baseline: uint8 ``(N, 3, 32, 32)`` flattened to ``(N, 3072)`` floats in [0, 1]."""
    return images.reshape(len(images), -1).float() / 255.0


# ---------------------------------------------------------------------------------------------- query images
def _to_rgb_uint8(im) -> np.ndarray:
    """Any PIL mode -> ``(H, W, 3)`` uint8. 16/32-bit and float images are scaled, transparency goes on white."""
    from PIL import Image

    if im.mode.startswith("I") or im.mode == "F":  # I;16, I;16B, I;16L, I (32-bit int), F (float)
        arr = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16") or arr.max(initial=0) > 255:
            arr = arr / 257.0  # 0..65535 -> 0..255
        elif im.mode == "F" and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0  # floats in [0, 1]
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_query_image(path: str | os.PathLike, *, size: int = 32, crop: str = "center") -> torch.Tensor:
    """Read an image file of any size and mode as a uint8 ``(3, size, size)`` tensor.

    EXIF orientation is applied, transparency is composited on white, 16-bit images are scaled to 8 bits.
    ``crop="center"`` takes the central square first (keeps the aspect ratio); ``"squash"`` resizes the whole
    image. The resize is Pillow's antialiased bilinear filter, as when the training images were decoded.
    Missing files, folders, non-images and truncated files raise :class:`QueryImageError` saying what to do.
    """
    from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

    if crop not in ("center", "squash"):
        raise ValueError(f"crop must be 'center' or 'squash', got {crop!r}")
    path = Path(path).expanduser()
    hint = "set query_image to a PNG or JPEG file (any size), or query by a test-set index instead"
    if not path.exists():
        raise QueryImageError(f"query image {path} does not exist; {hint}")
    if not path.is_file():
        raise QueryImageError(f"query image {path} is a folder, not an image file; {hint}")
    strict = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a cut-off file must fail, not silently decode as grey
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            if crop == "center" and im.size[0] != im.size[1]:
                side = min(im.size)
                left, top = (im.size[0] - side) // 2, (im.size[1] - side) // 2
                im = im.crop((left, top, left + side, top + side))
            rgb = _to_rgb_uint8(im)
    except UnidentifiedImageError:
        raise QueryImageError(f"{path} is not an image file Pillow can read (PNG, JPEG, BMP, WebP, TIFF, ...); "
                              f"{hint}") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise QueryImageError(f"{path} is truncated or corrupt and cannot be decoded ({err}); "
                              f"re-save or re-download it, or {hint}") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = strict
    if min(rgb.shape[:2]) == 0:
        raise QueryImageError(f"{path} has no pixels ({rgb.shape[1]}x{rgb.shape[0]}); {hint}")
    img = Image.fromarray(rgb, mode="RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def resolve_query(query: str | os.PathLike | int, *, test_x: torch.Tensor, test_y: torch.Tensor,
                  classes=D.CLASSES) -> tuple[torch.Tensor, int | None, str]:
    """``(uint8 image (3, 32, 32), label or None, description)`` for a test index or an image file path."""
    if isinstance(query, (int, np.integer)) and not isinstance(query, bool):
        if not 0 <= int(query) < len(test_y):
            raise QueryImageError(f"test index {query} is out of range: the test set here has {len(test_y)} "
                                  f"images (0 to {len(test_y) - 1})")
        label = int(test_y[int(query)])
        return test_x[int(query)], label, f"test image #{int(query)} ({classes[label]})"
    path = Path(query)
    return load_query_image(path), None, f"{path.name} (a file, resized to 32x32)"


# ---------------------------------------------------------------------------------------------- scoring
def _prepare(gallery: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    gallery = gallery.float()
    if metric == "cosine":
        return F.normalize(gallery, dim=1), None
    return gallery, (gallery * gallery).sum(1)


def _ranking_keys(q: torch.Tensor, g: torch.Tensor, g_sq: torch.Tensor | None, metric: str) -> torch.Tensor:
    """Lower = more similar, one matrix product. Cosine: ``-q_hat . g_hat``. Euclidean: ``|g|^2 - 2 q.g``, which
    is ``|q - g|^2 - |q|^2`` and so ranks the gallery exactly as the distance does."""
    if metric == "cosine":
        return F.normalize(q.float(), dim=1).neg_() @ g.T
    return torch.addmm(g_sq.unsqueeze(0), q.float(), g.T, alpha=-2.0)


def top_k(queries: torch.Tensor, gallery: torch.Tensor, *, metric: str, k: int = 10, chunk_size: int = 1000
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, indices)`` of the ``k`` nearest gallery items per query, best first.

    Values are cosine similarities (``metric="cosine"``) or Euclidean distances (``"euclidean"``). Each chunk
    of queries is one matrix product against the whole gallery, so memory is ``chunk_size x len(gallery)``.
    """
    g, g_sq = _prepare(gallery, metric)
    k = min(k, len(g))
    vals, idxs = [], []
    for i in range(0, len(queries), chunk_size):
        q = queries[i:i + chunk_size].float().to(g.device)
        v, ix = _ranking_keys(q, g, g_sq, metric).topk(k, dim=1, largest=False)
        if metric == "cosine":
            v = v.neg()
        else:  # exact distances of the k kept items (the expanded form loses digits near zero)
            v = (q[:, None, :] - g[ix]).norm(dim=2)
        vals.append(v.cpu())
        idxs.append(ix.cpu())
    return torch.cat(vals), torch.cat(idxs)


def neighbours(query: torch.Tensor, gallery: torch.Tensor, *, k: int = 8) -> dict[str, tuple]:
    """``{metric: (scores, indices)}`` of the ``k`` nearest gallery items of one query vector, per metric."""
    query = query.reshape(1, -1)
    return {m: tuple(t[0] for t in top_k(query, gallery, metric=m, k=k)) for m in METRICS}


def similarity(queries: torch.Tensor, gallery: torch.Tensor, *, metric: str) -> torch.Tensor:
    """The full ``(Q, N)`` matrix: cosine similarity or Euclidean distance (for small examples and plots)."""
    if metric == "cosine":
        return F.normalize(queries.float(), dim=1) @ F.normalize(gallery.float(), dim=1).T
    if metric == "euclidean":
        return torch.cdist(queries.float(), gallery.float())
    raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")


# ---------------------------------------------------------------------------------------------- metrics
def precision_at_k(relevant_ranked: np.ndarray | torch.Tensor, k: int) -> np.ndarray:
    """Per query: the fraction of the top ``k`` results that are relevant (rows are rankings, best first)."""
    rel = np.asarray(relevant_ranked, dtype=np.float64)
    return rel[:, :k].mean(axis=1)


def average_precision(relevant_ranked: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per query: mean over relevant items of the precision at their rank (0 when a query has none)."""
    rel = np.asarray(relevant_ranked, dtype=np.float64)
    ranks = np.arange(1, rel.shape[1] + 1)
    hits = rel.sum(axis=1)
    ap = (rel * np.cumsum(rel, axis=1) / ranks).sum(axis=1)
    return np.divide(ap, hits, out=np.zeros_like(ap), where=hits > 0)


def _sort_rows_inplace(keys: np.ndarray, workers: int) -> None:
    """Sort each row ascending; numpy's SIMD sort releases the GIL, so row blocks sort in parallel threads."""
    if workers <= 1 or len(keys) < 2 * workers:
        keys.sort(axis=1)
        return
    bounds = np.linspace(0, len(keys), workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda ab: keys[ab[0]:ab[1]].sort(axis=1), zip(bounds[:-1], bounds[1:])))


def ranked_relevance(keys: torch.Tensor, relevant: torch.Tensor, *, workers: int | None = None) -> np.ndarray:
    """Boolean rows of relevance in ranked order (lowest key = most similar first) for a ``(Q, N)`` block.

    The relevance bit is packed into the lowest mantissa bit of the float32 sort key (in place: ``keys`` is
    consumed), so one value-only sort ranks the whole gallery without an argsort and a gather (on the CPU,
    numpy's sort on row blocks in parallel threads; on a GPU, torch's). The packed bit moves a key by at most
    one unit in the last place, which can only reorder items whose keys already tie in float32.
    """
    keys = keys.float().contiguous()
    bits = keys.view(torch.int32)
    bits.bitwise_and_(-2).bitwise_or_(relevant.to(torch.int32))
    if keys.device.type != "cpu":
        return (torch.sort(keys, dim=1).values.view(torch.int32) & 1).bool().cpu().numpy()
    arr = keys.numpy()
    _sort_rows_inplace(arr, workers or torch.get_num_threads())
    return (arr.view(np.int32) & 1).astype(bool)


def _average_precision_sparse(rel: np.ndarray) -> np.ndarray:
    """:func:`average_precision` of boolean rows, touching only the relevant positions (about 1/10 of a row)."""
    rel = np.asarray(rel, dtype=bool)
    q, n = rel.shape
    flat = np.flatnonzero(rel)                # row-major, so each row's hits come in rank order
    rows, cols = np.divmod(flat, n)
    hits = np.bincount(rows, minlength=q)
    start = np.cumsum(hits) - hits
    j = np.arange(1, len(flat) + 1) - start[rows]  # 1-based rank among the row's relevant items
    ap = np.bincount(rows, weights=j / (cols + 1.0), minlength=q)
    return np.divide(ap, hits, out=np.zeros(q), where=hits > 0)


def rank_metrics(queries: torch.Tensor, query_labels: torch.Tensor, gallery: torch.Tensor,
                 gallery_labels: torch.Tensor, *, metric: str, ks=(1, 5, 10), chunk_size: int = 500) -> dict:
    """precision@k and mAP of ``metric`` with the whole gallery ranked for every query (relevant = same class).

    Returns ``{"P@1": .., ..., "mAP": .., "queries": Q, "gallery": N, "rank_s": seconds}``. Chunks of queries
    keep memory at ``chunk_size x N``; within a chunk everything is matrix operations.
    """
    g, g_sq = _prepare(gallery, metric)
    gl = gallery_labels.to(g.device)
    classes = torch.unique(torch.cat([gl, query_labels.to(g.device)]))
    member = (gl[None, :] == classes[:, None]).to(torch.int32)  # (C, N): one row per class, gathered per query
    ks = tuple(int(k) for k in ks)
    prec = {k: [] for k in ks}
    aps = []
    t0 = time.perf_counter()
    for i in range(0, len(queries), chunk_size):
        q = queries[i:i + chunk_size].to(g.device)
        ql = torch.searchsorted(classes, query_labels[i:i + chunk_size].to(g.device))
        rel = ranked_relevance(_ranking_keys(q, g, g_sq, metric), member[ql])
        aps.append(_average_precision_sparse(rel))
        for k in ks:
            prec[k].append(rel[:, :k].mean(axis=1))
    elapsed = time.perf_counter() - t0
    out = {f"P@{k}": float(np.concatenate(v).mean()) for k, v in prec.items()}
    out.update({"mAP": float(np.concatenate(aps).mean()), "queries": len(queries), "gallery": len(gallery),
                "rank_s": elapsed})
    return out


def time_top_k(queries: torch.Tensor, gallery: torch.Tensor, *, metric: str, k: int = 10,
               chunk_size: int = 1000) -> float:
    """Seconds to score every query against the whole gallery and keep its top ``k``."""
    t0 = time.perf_counter()
    top_k(queries, gallery, metric=metric, k=k, chunk_size=chunk_size)
    return time.perf_counter() - t0


def comparison_spaces(name: str, query_features: torch.Tensor, query_labels: torch.Tensor,
                      gallery_features: torch.Tensor, query_images: torch.Tensor, gallery_images: torch.Tensor, *,
                      baseline_queries: int = 0, seed: int = 0) -> dict[str, tuple]:
    """The rows of :func:`retrieval_table`: learned features on every query, and raw pixels.

    Raw pixels are 3,072-d, so ranking 50,000 of them for all 10,000 queries takes minutes on a CPU; with
    ``baseline_queries`` they use a class-balanced subset, and the learned features are scored on that same
    subset too, so the comparison stays like for like.
    """
    spaces = {name: (query_features, query_labels, gallery_features)}
    sub = torch.arange(len(query_labels))
    if baseline_queries and baseline_queries < len(query_labels):
        sub = D.stratified_split(query_labels, {"keep": baseline_queries}, seed=seed)["keep"]
        spaces[f"{name} (same {len(sub):,} queries)"] = (query_features[sub], query_labels[sub], gallery_features)
    spaces["raw pixels"] = (pixel_vectors(query_images[sub]), query_labels[sub], pixel_vectors(gallery_images))
    return spaces


def retrieval_table(spaces: dict[str, tuple], gallery_labels: torch.Tensor, *, ks=(1, 5, 10),
                    chunk_size: int = 500, k_time: int = 10, context: dict | None = None) -> pd.DataFrame:
    """One row per (feature space, metric): precision@k, mAP over the whole gallery, and time per query.

    ``spaces`` maps a row name to ``(query vectors, query labels, gallery vectors)``, e.g. learned features and
    raw pixels. ``context`` (profile, data, device, ...) is appended to every row so the table explains itself.
    """
    rows = []
    for name, (qv, ql, gv) in spaces.items():
        for metric in METRICS:
            m = rank_metrics(qv, ql, gv, gallery_labels, metric=metric, ks=ks, chunk_size=chunk_size)
            t_top = time_top_k(qv, gv, metric=metric, k=k_time, chunk_size=max(chunk_size, 1000))
            rows.append({"features": name, "dim": int(qv.shape[1]), "metric": metric,
                         **{f"P@{k} (%)": round(100 * m[f"P@{k}"], 2) for k in ks},
                         "mAP (%)": round(100 * m["mAP"], 2),
                         f"top-{k_time} ms/query": round(1000 * t_top / len(qv), 3),
                         "full-ranking ms/query": round(1000 * m["rank_s"] / len(qv), 3),
                         "queries": len(qv), "gallery": len(gv), **(context or {})})
    return pd.DataFrame(rows)


def baseline_check(table: pd.DataFrame, *, learned: str, baseline: str) -> pd.DataFrame:
    """Per metric and score column: does ``learned`` beat ``baseline`` (rows with the same number of queries)?"""
    scores = [c for c in table.columns if c.startswith("P@") or c.startswith("mAP")]
    rows = []
    for metric in METRICS:
        b = table[(table.features == baseline) & (table.metric == metric)].iloc[0]
        same = table[(table.features.str.startswith(learned)) & (table.metric == metric)
                     & (table.queries == b.queries)].iloc[0]
        for col in scores:
            rows.append({"metric": metric, "score": col, "learned": same[col], "raw pixels": b[col],
                         "queries": int(b.queries), "learned better": bool(same[col] > b[col])})
    return pd.DataFrame(rows)


def normalised_agreement(queries: torch.Tensor, gallery: torch.Tensor, *, k: int = 10,
                         chunk_size: int = 1000) -> pd.DataFrame:
    """How often cosine and Euclidean give the same top-``k``, on raw and on L2-normalised features.

    On unit vectors ``|a - b|^2 = 2 - 2 cos(a, b)``, so the rankings must coincide; the last column checks
    that identity numerically.
    """
    _, cos_idx = top_k(queries, gallery, metric="cosine", k=k, chunk_size=chunk_size)
    rows = []
    for name, (qv, gv) in {"raw features": (queries, gallery),
                           "L2-normalised features": (F.normalize(queries.float(), dim=1),
                                                      F.normalize(gallery.float(), dim=1))}.items():
        _, euc_idx = top_k(qv, gv, metric="euclidean", k=k, chunk_size=chunk_size)
        same_order = (cos_idx == euc_idx).all(1).float().mean()
        overlap = (cos_idx[:, :, None] == euc_idx[:, None, :]).any(2).float().sum(1) / k
        n = min(len(qv), 1000)
        qn, gn = F.normalize(qv[:n].float(), dim=1), F.normalize(gv.float(), dim=1)
        identity = None
        if name.startswith("L2"):
            identity = float((torch.cdist(qv[:n].float(), gv.float()).pow(2) - (2 - 2 * qn @ gn.T)).abs().max())
        # where the orders differ: the cosine gap (float64) between the first two items they disagree on
        mism = cos_idx != euc_idx
        differ = mism.any(1).nonzero().flatten()
        first = mism[differ].float().argmax(1)
        a, b = cos_idx[differ, first], euc_idx[differ, first]
        q64, g64 = F.normalize(queries[differ].double(), dim=1), F.normalize(gallery.double(), dim=1)
        gap = (q64 * (g64[a] - g64[b])).sum(1).abs().max() if len(differ) else torch.tensor(float("nan"))
        rows.append({"Euclidean on": name, "queries": len(qv),
                     "same top-1 as cosine (%)": round(100 * float((cos_idx[:, 0] == euc_idx[:, 0]).float().mean()), 2),
                     f"same ordered top-{k} (%)": round(100 * float(same_order), 2),
                     f"mean top-{k} overlap (%)": round(100 * float(overlap.mean()), 2),
                     "max |d^2 - (2 - 2 cos)|": identity,
                     "largest cosine gap where orders differ": float(gap)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- 4.1 example
@dataclass
class XYZ:
    """Three real vectors where cosine puts Y nearer to X, Euclidean puts Z nearer (SPEC 4.1)."""

    x: int
    y: int
    z: int
    vectors: torch.Tensor  # (3, D): X, Y, Z
    cos_xy: float
    cos_xz: float
    dist_xy: float
    dist_xz: float


def xyz_example(queries: torch.Tensor, gallery: torch.Tensor, *, query_labels: torch.Tensor | None = None,
                gallery_labels: torch.Tensor | None = None, candidates: int = 500) -> XYZ:
    """X = a query; Y = its cosine nearest neighbour; Z = its Euclidean nearest neighbour, where they differ.

    Among the first ``candidates`` queries whose two nearest neighbours differ, prefers one where Y has the
    query's class and Z does not (cosine right, Euclidean wrong), then the largest gap in norms of Y and Z.
    """
    qs = queries[:candidates]
    _, ci = top_k(qs, gallery, metric="cosine", k=1)
    _, ei = top_k(qs, gallery, metric="euclidean", k=1)
    ci, ei = ci[:, 0], ei[:, 0]
    differ = (ci != ei).nonzero().flatten()
    if len(differ) == 0:
        raise ValueError(f"cosine and Euclidean agree on the nearest neighbour of all {len(qs)} queries")
    norms = gallery.float().norm(dim=1)
    gap = (norms[ci[differ]] - norms[ei[differ]]).abs()
    score = gap / gap.max().clamp_min(1e-12)
    if query_labels is not None and gallery_labels is not None:
        ql = query_labels[:candidates][differ]
        score = score + 2.0 * ((gallery_labels[ci[differ]] == ql) & (gallery_labels[ei[differ]] != ql)).float()
    j = int(differ[score.argmax()])
    x, y, z = qs[j].float(), gallery[ci[j]].float(), gallery[ei[j]].float()
    return XYZ(x=j, y=int(ci[j]), z=int(ei[j]), vectors=torch.stack([x, y, z]),
               cos_xy=float(F.cosine_similarity(x, y, dim=0)), cos_xz=float(F.cosine_similarity(x, z, dim=0)),
               dist_xy=float((x - y).norm()), dist_xz=float((x - z).norm()))


def xyz_table(ex: XYZ, labels: tuple, *, classes=D.CLASSES) -> pd.DataFrame:
    """The numbers behind the 4.1 figure: each vector's class and norm, and its cosine and distance to X."""
    rows = []
    for name, idx, v, lab in zip("XYZ", ("test", "gallery", "gallery"), ex.vectors, labels):
        rows.append({"vector": name, "image": f"{idx} #{(ex.x, ex.y, ex.z)['XYZ'.index(name)]}",
                     "class": classes[int(lab)], "norm": round(float(v.norm()), 3),
                     "cosine to X": round(float(F.cosine_similarity(v, ex.vectors[0], dim=0)), 4),
                     "Euclidean distance to X": round(float((v - ex.vectors[0]).norm()), 3)})
    return pd.DataFrame(rows)


def xyz_plane(ex: XYZ) -> np.ndarray:
    """2-D points for X, Y, Z that keep every length and both angles to X exact (X on the horizontal axis,
    Y above it, Z below), so both |X - Y| and |X - Z| in the drawing equal the real distances."""
    nx, ny, nz = (float(v.norm()) for v in ex.vectors)
    ay, az = np.arccos(np.clip(ex.cos_xy, -1, 1)), np.arccos(np.clip(ex.cos_xz, -1, 1))
    return np.array([[nx, 0.0], [ny * np.cos(ay), ny * np.sin(ay)], [nz * np.cos(az), -nz * np.sin(az)]])


def xyz_figure(ex: XYZ, images: tuple[torch.Tensor, torch.Tensor, torch.Tensor], labels: tuple, *,
               classes=D.CLASSES) -> plt.Figure:
    """(a) X, Y, Z as arrows from the origin (exact norms and angles to X); (b) the three images."""
    pts = xyz_plane(ex)
    fig = plt.figure(figsize=(12, 4.6), layout="constrained")
    gs = fig.add_gridspec(1, 4, width_ratios=[2.2, 1, 1, 1])
    ax = fig.add_subplot(gs[0])
    colors = {"X": "black", "Y": "tab:blue", "Z": "tab:orange"}
    for (name, c), (px, py) in zip(colors.items(), pts):
        ax.annotate("", xy=(px, py), xytext=(0, 0), arrowprops=dict(arrowstyle="-|>", color=c, lw=2))
        ax.text(px, py, f" {name}", color=c, fontsize=13, fontweight="bold", va="center")
    ax.plot(*zip(pts[0], pts[1]), ls="--", color=colors["Y"], lw=1)
    ax.plot(*zip(pts[0], pts[2]), ls="--", color=colors["Z"], lw=1)
    for p, d in ((pts[1], ex.dist_xy), (pts[2], ex.dist_xz)):
        mid = (pts[0] + p) / 2
        ax.text(*mid, f"{d:.2f}", fontsize=9, ha="left", va="center", color="dimgray")
    lim = np.abs(pts).max() * 1.15
    ax.set(xlim=(-0.05 * lim, lim), ylim=(-lim * 0.6, lim * 0.6), aspect="equal",
           title=f"cosine: cos(X,Y) = {ex.cos_xy:.3f} > cos(X,Z) = {ex.cos_xz:.3f}  -> Y closer\n"
                 f"Euclidean: |X-Z| = {ex.dist_xz:.2f} < |X-Y| = {ex.dist_xy:.2f}  -> Z closer")
    ax.title.set_fontsize(10)
    for i, (name, img, lab) in enumerate(zip("XYZ", images, labels)):
        a = fig.add_subplot(gs[i + 1])
        a.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
        a.set_title(f"{name}: {classes[int(lab)]}\n|{name}| = {float(ex.vectors[i].norm()):.2f}",
                    color=colors[name], fontsize=10)
        a.axis("off")
    return fig


def first_disagreement(queries: torch.Tensor, gallery: torch.Tensor, *, k: int = 5, start: int = 0,
                       block: int = 256) -> int:
    """Index of the first query (from ``start``) whose top-``k`` set differs between cosine and Euclidean."""
    for i in range(start, len(queries), block):  # blocks of queries, so a hit early on costs one block
        _, ci = top_k(queries[i:i + block], gallery, metric="cosine", k=k)
        _, ei = top_k(queries[i:i + block], gallery, metric="euclidean", k=k)
        differ = (ci.sort(1).values != ei.sort(1).values).any(1).nonzero().flatten()
        if len(differ):
            return i + int(differ[0])
    raise ValueError(f"cosine and Euclidean give the same top-{k} for every query from {start} on")


# ---------------------------------------------------------------------------------------------- figures
def show_similar_images(query_image: torch.Tensor, neighbours: dict[str, tuple[torch.Tensor, torch.Tensor]],
                        gallery_images: torch.Tensor, gallery_labels: torch.Tensor, *, query_label: int | None = None,
                        query_title: str = "query", classes=D.CLASSES) -> plt.Figure:
    """The query and its nearest gallery images, one row per metric, each titled with its class and score.

    ``neighbours`` maps a metric to ``(scores, indices)`` of one query (from :func:`top_k`). When the query's
    label is known, neighbours of the same class are titled in green and the others in red.
    """
    k = max(len(ix) for _, ix in neighbours.values())
    fig, axes = plt.subplots(len(neighbours), k + 1, figsize=(1.45 * (k + 1), 1.75 * len(neighbours)),
                             squeeze=False, layout="constrained")
    for row, (metric, (scores, idx)) in enumerate(neighbours.items()):
        ax = axes[row, 0]
        ax.imshow(query_image.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(query_title + (f"\n({classes[query_label]})" if query_label is not None else ""), fontsize=8)
        ax.set_ylabel(metric, fontsize=10)
        ax.set_xticks([]), ax.set_yticks([])
        for s in ax.spines.values():
            s.set(color="black", linewidth=2)
        for col in range(k):
            ax = axes[row, col + 1]
            ax.axis("off")
            if col >= len(idx):
                continue
            g = int(idx[col])
            lab = int(gallery_labels[g])
            color = "black" if query_label is None else ("tab:green" if lab == query_label else "tab:red")
            what = "cos" if metric == "cosine" else "dist"
            ax.imshow(gallery_images[g].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(f"{classes[lab]}\n{what} {float(scores[col]):.3f}", fontsize=8, color=color)
    return fig


def tsne_figure(features: torch.Tensor, labels: torch.Tensor, *, n: int, seed: int = 0,
                classes=D.CLASSES) -> plt.Figure:
    """t-SNE (scikit-learn) of a class-balanced subsample of ``n`` embeddings, coloured by class."""
    import seaborn as sns
    from sklearn.manifold import TSNE

    from threadpoolctl import threadpool_limits

    x, y = D.subsample(features, labels, n, seed=seed)
    with threadpool_limits(limits=1):  # its OpenMP threads spin-wait; on a shared 2-core CPU that costs 15x
        xy = TSNE(n_components=2, init="pca", perplexity=min(30.0, (len(x) - 1) / 3), random_state=seed
                  ).fit_transform(F.normalize(x.float(), dim=1).numpy())
    fig, ax = plt.subplots(figsize=(7, 6), layout="constrained")
    sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=[classes[int(i)] for i in y], hue_order=list(classes),
                    palette="tab10", s=8, linewidth=0, ax=ax)
    ax.set(xticks=[], yticks=[], title=f"t-SNE of {len(x):,} test-image embeddings (cosine geometry)")
    ax.legend(markerscale=2, fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
    return fig
