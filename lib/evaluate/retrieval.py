"""Similarity search over feature vectors: cosine vs Euclidean ranking and retrieval metrics.

* :func:`top_k` retrieves neighbours by ``cosine`` similarity or ``euclidean`` distance with one
  matrix product per chunk of queries (never a Python loop over the gallery).
* :func:`rank_metrics` ranks the *whole* gallery for every query and returns precision@k and mAP
  (relevant = same class), vectorised per chunk; :func:`precision_at_k` and
  :func:`average_precision` are the small pure definitions it is tested against.
* :func:`normalised_agreement` checks that L2-normalised features rank identically under both
  metrics.
* :func:`nearest_neighbours` finds the nearest training images of generated samples (memorisation
  check).
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

METRICS = ("cosine", "euclidean")


def pixel_vectors(images: torch.Tensor) -> torch.Tensor:
    """The raw-pixel baseline: uint8 ``(N, 3, 32, 32)`` flattened to ``(N, 3072)`` floats in [0,
    1]."""
    return images.reshape(len(images), -1).float() / 255.0


def _prepare(gallery: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    gallery = gallery.float()
    if metric == "cosine":
        return F.normalize(gallery, dim=1), None
    return gallery, (gallery * gallery).sum(1)


def _ranking_keys(q: torch.Tensor, g: torch.Tensor, g_sq: torch.Tensor | None,
                  metric: str) -> torch.Tensor:
    """Lower = more similar, one matrix product. Cosine: ``-q_hat . g_hat``. Euclidean:
    ``|g|^2 - 2 q.g``, which is ``|q - g|^2 - |q|^2`` and so ranks the gallery exactly as the
    distance does."""
    if metric == "cosine":
        return F.normalize(q.float(), dim=1).neg_() @ g.T
    return torch.addmm(g_sq.unsqueeze(0), q.float(), g.T, alpha=-2.0)


def top_k(queries: torch.Tensor, gallery: torch.Tensor, *, metric: str, k: int = 10,
          chunk_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, indices)`` of the ``k`` nearest gallery items per query, best first.

    Values are cosine similarities (``metric="cosine"``) or Euclidean distances (``"euclidean"``).
    Each chunk of queries is one matrix product against the whole gallery, so memory is
    ``chunk_size x len(gallery)``.
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
    """``{metric: (scores, indices)}`` of the ``k`` nearest gallery items of one query vector, per
    metric."""
    query = query.reshape(1, -1)
    return {m: tuple(t[0] for t in top_k(query, gallery, metric=m, k=k)) for m in METRICS}


def similarity(queries: torch.Tensor, gallery: torch.Tensor, *, metric: str) -> torch.Tensor:
    """The full ``(Q, N)`` matrix: cosine similarity or Euclidean distance (for small examples and
    plots)."""
    if metric == "cosine":
        return F.normalize(queries.float(), dim=1) @ F.normalize(gallery.float(), dim=1).T
    if metric == "euclidean":
        return torch.cdist(queries.float(), gallery.float())
    raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")


def precision_at_k(relevant_ranked: np.ndarray | torch.Tensor, k: int) -> np.ndarray:
    """Per query: the fraction of the top ``k`` results that are relevant (rows are rankings, best
    first)."""
    rel = np.asarray(relevant_ranked, dtype=np.float64)
    return rel[:, :k].mean(axis=1)


def average_precision(relevant_ranked: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per query: mean over relevant items of the precision at their rank (0 when a query has
    none)."""
    rel = np.asarray(relevant_ranked, dtype=np.float64)
    ranks = np.arange(1, rel.shape[1] + 1)
    hits = rel.sum(axis=1)
    ap = (rel * np.cumsum(rel, axis=1) / ranks).sum(axis=1)
    return np.divide(ap, hits, out=np.zeros_like(ap), where=hits > 0)


def _sort_rows_inplace(keys: np.ndarray, workers: int) -> None:
    """Sort each row ascending; numpy's SIMD sort releases the GIL, so row blocks sort in parallel
    threads."""
    if workers <= 1 or len(keys) < 2 * workers:
        keys.sort(axis=1)
        return
    bounds = np.linspace(0, len(keys), workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda ab: keys[ab[0]:ab[1]].sort(axis=1), zip(bounds[:-1], bounds[1:])))


def ranked_relevance(keys: torch.Tensor, relevant: torch.Tensor, *,
                     workers: int | None = None) -> np.ndarray:
    """Boolean rows of relevance in ranked order (lowest key = most similar first) for a ``(Q, N)``
    block.

    The relevance bit is packed into the lowest mantissa bit of the float32 sort key (in place:
    ``keys`` is consumed), so one value-only sort ranks the whole gallery without an argsort and a
    gather (on the CPU, numpy's sort on row blocks in parallel threads; on a GPU, torch's). The
    packed bit moves a key by at most one unit in the last place, which can only reorder items whose
    keys already tie in float32.
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
    """:func:`average_precision` of boolean rows, touching only the relevant positions (about 1/10
    of a row)."""
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
                 gallery_labels: torch.Tensor, *, metric: str, ks=(1, 5, 10),
                 chunk_size: int = 500) -> dict:
    """precision@k and mAP of ``metric`` with the whole gallery ranked for every query (relevant =
    same class).

    Returns ``{"P@1": .., ..., "mAP": .., "queries": Q, "gallery": N, "rank_s": seconds,
    "per_query": {"P@1": array, ..., "AP": array}}`` (each query's score, for intervals). Chunks
    of queries keep memory at ``chunk_size x N``; within a chunk everything is matrix operations.
    """
    g, g_sq = _prepare(gallery, metric)
    gl = gallery_labels.to(g.device)
    classes = torch.unique(torch.cat([gl, query_labels.to(g.device)]))
    # (C, N): one row per class, gathered per query
    member = (gl[None, :] == classes[:, None]).to(torch.int32)
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
    per_query = {f"P@{k}": np.concatenate(v) for k, v in prec.items()}
    per_query["AP"] = np.concatenate(aps)
    out = {f"P@{k}": float(per_query[f"P@{k}"].mean()) for k in ks}
    out.update({"mAP": float(per_query["AP"].mean()), "queries": len(queries),
                "gallery": len(gallery), "rank_s": elapsed, "per_query": per_query})
    return out


def time_top_k(queries: torch.Tensor, gallery: torch.Tensor, *, metric: str, k: int = 10,
               chunk_size: int = 1000) -> float:
    """Seconds to score every query against the whole gallery and keep its top ``k``."""
    t0 = time.perf_counter()
    top_k(queries, gallery, metric=metric, k=k, chunk_size=chunk_size)
    return time.perf_counter() - t0


def normalised_agreement(queries: torch.Tensor, gallery: torch.Tensor, *, k: int = 10,
                         chunk_size: int = 1000, per_query: dict | None = None) -> pd.DataFrame:
    """How often cosine and Euclidean give the same top-``k``, on raw and on L2-normalised features.

    On unit vectors ``|a - b|^2 = 2 - 2 cos(a, b)``, so the rankings must coincide; the last column
    checks that identity numerically. ``per_query``, if given, receives each query's "same ordered
    top-k" as ``raw_same_order`` and ``normalised_same_order`` (boolean arrays).
    """
    _, cos_idx = top_k(queries, gallery, metric="cosine", k=k, chunk_size=chunk_size)
    rows = []
    for name, (qv, gv) in {"raw features": (queries, gallery),
                           "L2-normalised features": (F.normalize(queries.float(), dim=1),
                                                      F.normalize(gallery.float(), dim=1))}.items():
        _, euc_idx = top_k(qv, gv, metric="euclidean", k=k, chunk_size=chunk_size)
        same = (cos_idx == euc_idx).all(1)
        if per_query is not None:
            per_query["raw_same_order" if name.startswith("raw") else "normalised_same_order"] = \
                same.cpu().numpy()
        same_order = same.float().mean()
        overlap = (cos_idx[:, :, None] == euc_idx[:, None, :]).any(2).float().sum(1) / k
        n = min(len(qv), 1000)
        qn, gn = F.normalize(qv[:n].float(), dim=1), F.normalize(gv.float(), dim=1)
        identity = None
        if name.startswith("L2"):
            identity = float((torch.cdist(qv[:n].float(), gv.float()).pow(2)
                              - (2 - 2 * qn @ gn.T)).abs().max())
        # where the orders differ: the cosine gap (float64) between the first two items they
        # disagree on
        mism = cos_idx != euc_idx
        differ = mism.any(1).nonzero().flatten()
        first = mism[differ].float().argmax(1)
        a, b = cos_idx[differ, first], euc_idx[differ, first]
        q64, g64 = (F.normalize(queries[differ].double(), dim=1),
                    F.normalize(gallery.double(), dim=1))
        gap = ((q64 * (g64[a] - g64[b])).sum(1).abs().max() if len(differ)
               else torch.tensor(float("nan")))
        rows.append({"Euclidean on": name, "queries": len(qv),
                     "same top-1 as cosine (%)":
                         round(100 * float((cos_idx[:, 0] == euc_idx[:, 0]).float().mean()), 2),
                     f"same ordered top-{k} (%)": round(100 * float(same_order), 2),
                     f"mean top-{k} overlap (%)": round(100 * float(overlap.mean()), 2),
                     "max |d^2 - (2 - 2 cos)|": identity,
                     "largest cosine gap where orders differ": float(gap)})
    return pd.DataFrame(rows)


def first_disagreement(queries: torch.Tensor, gallery: torch.Tensor, *, k: int = 5, start: int = 0,
                       block: int = 256) -> int:
    """Index of the first query (from ``start``) whose top-``k`` set differs between cosine and
    Euclidean."""
    # blocks of queries, so a hit early on costs one block
    for i in range(start, len(queries), block):
        _, ci = top_k(queries[i:i + block], gallery, metric="cosine", k=k)
        _, ei = top_k(queries[i:i + block], gallery, metric="euclidean", k=k)
        differ = (ci.sort(1).values != ei.sort(1).values).any(1).nonzero().flatten()
        if len(differ):
            return i + int(differ[0])
    raise ValueError(f"cosine and Euclidean give the same top-{k} for every query from {start} on")


def nearest_neighbours(samples: torch.Tensor, train: torch.Tensor, *, k: int = 3,
                       chunk: int = 10000) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(n, k)`` and L2 pixel distances of each sample's ``k`` nearest training images
    (uint8 inputs); a sample that equals a training image betrays memorisation."""
    q = samples.flatten(1).float() / 255
    best_d, best_i = None, None
    for start in range(0, len(train), chunk):
        t = train[start:start + chunk].flatten(1).float() / 255
        d = torch.cdist(q, t, compute_mode="donot_use_mm_for_euclid_dist")  # exact: a copy is at 0
        d, i = d.topk(min(k, d.shape[1]), dim=1, largest=False)
        i = i + start
        if best_d is not None:
            d, i = torch.cat([best_d, d], 1), torch.cat([best_i, i], 1)
            d, order = d.topk(k, dim=1, largest=False)
            i = i.gather(1, order)
        best_d, best_i = d, i
    return best_i, best_d
