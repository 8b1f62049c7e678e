"""How sure a number is: 95% bootstrap intervals from the data a run saved, and the three verdicts.

Accuracy, recall, AUC and retrieval scores are means over test images (or queries), so their
intervals come from :func:`scipy.stats.bootstrap` over those images: *paired* (the same resampled
images for every side) whenever two models are compared on the same test set. FID is not a mean; its
replicates come from :func:`fid_replicates` (generated images resampled, the reference statistics
fixed); a resample with duplicates inflates FID, so only the replicates' spread is used, centred on
the estimate (:func:`replicate_interval`). Where a model trained with several seeds,
:func:`seeds_bootstrap` resamples the seeds too, so the interval covers run-to-run variation as well.
Every resampling is seeded, so an interval is reproducible.

A claim becomes a *margin* (positive on the claim's side) with an interval; :func:`verdict` reads it:
**holds** when the whole interval lies above zero, **does not hold** when it lies below, **not
decided** when it straddles zero. A claim of several margins (A beats each of B and C) reads each
with :func:`verdict_all`.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 1000        # bootstrap resamples of every test-image statistic
SEED = 0                # every resampling starts from this seed

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "not decided at this scale"

# seconds this process spent on the work behind intervals, by kind (a chapter's provenance keeps
# its share, so the cost of the intervals is measured, not guessed)
SPENT: dict[str, float] = {}


def counted(kind: str):
    """Add a function's wall time to ``SPENT[kind]``."""
    def wrap(fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                SPENT[kind] = SPENT.get(kind, 0.0) + time.perf_counter() - t0
        return timed
    return wrap


@dataclass(frozen=True)
class Interval:
    """A point estimate and its two-sided ``CONFIDENCE`` interval."""

    estimate: float
    low: float
    high: float

    def scaled(self, k: float) -> "Interval":
        return Interval(k * self.estimate, k * self.low, k * self.high)

    def rounded(self, decimals: int) -> "Interval":
        """At the precision a table reports its value: the estimate rounded, the bounds rounded
        outwards, so the interval still holds the value shown (a degenerate interval at 0.1111
        holds a reported 0.111)."""
        k = 10.0 ** decimals
        estimate = round(self.estimate, decimals)
        return Interval(estimate, min(np.floor(self.low * k) / k, estimate),
                        max(np.ceil(self.high * k) / k, estimate))

    def text(self, fmt: str = ".2f", unit: str = "") -> str:
        return (f"{self.estimate:+{fmt}}{unit} [{self.low:+{fmt}}, {self.high:+{fmt}}]")


def verdict(iv: Interval | None) -> str:
    """holds / does not hold / not decided, from an interval of a margin (positive = the claim's
    side)."""
    if iv is None or not np.isfinite([iv.low, iv.high]).all():
        return UNDECIDED
    if iv.low > 0:
        return HOLDS
    if iv.high < 0:
        return FAILS
    return UNDECIDED


def verdict_all(parts: list[Interval]) -> str:
    """The verdict of a claim made of several margins (A beats each of B, C, ...): holds when every
    part's interval lies above zero, does not hold when any part's lies below, else not decided.
    (Reading each part on its own avoids the bias of the minimum of noisy margins, which leans
    negative when the parts tie.)"""
    if any(verdict(p) == FAILS for p in parts):
        return FAILS
    if parts and all(verdict(p) == HOLDS for p in parts):
        return HOLDS
    return UNDECIDED


def bootstrap(samples: tuple, statistic: Callable, *, paired: bool = True,
              resamples: int = RESAMPLES, seed: int = SEED) -> list[Interval]:
    """Percentile intervals of a vectorised ``statistic(*samples, axis=-1)`` returning one value or a
    1-D vector of values, over resamples of the last axis of ``samples`` (scipy.stats.bootstrap).
    One :class:`Interval` per value."""
    from scipy.stats import bootstrap as scipy_bootstrap

    samples = tuple(np.asarray(s) for s in samples)
    estimate = np.atleast_1d(statistic(*samples, axis=-1))
    # scipy broadcasts the samples to one shape and resamples `batch` at a time: ~40 MB a sample
    size = int(np.prod(np.broadcast_shapes(*(s.shape for s in samples)))) if paired else \
        max(s.size for s in samples)
    res = scipy_bootstrap(samples, statistic, paired=paired, vectorized=True, axis=-1,
                          n_resamples=resamples, confidence_level=CONFIDENCE, method="percentile",
                          batch=max(1, 5_000_000 // max(1, size)),
                          rng=np.random.default_rng(seed))
    low, high = (np.atleast_1d(res.confidence_interval.low),
                 np.atleast_1d(res.confidence_interval.high))
    return [Interval(float(e), float(lo), float(hi)) for e, lo, hi in zip(estimate, low, high)]


def seeds_bootstrap(samples: tuple, statistic: Callable, *, resamples: int = RESAMPLES,
                    seed: int = SEED) -> list[Interval]:
    """Percentile intervals that cover the spread between training seeds and test-set sampling: a
    two-level bootstrap of a vectorised ``statistic(*values, axis=-1)`` (as :func:`bootstrap`'s).

    Each of ``samples`` is ``(seeds, n)``: one row per training seed of one model, one column per
    test item, the same items in the same order in every sample (the seed counts may differ). Each
    resample first draws every sample's seeds with replacement, independently (runs of two models
    with the same seed are not matched pairs), and averages the drawn rows; then it draws ``n``
    items with replacement, the same items for every sample (paired, as :func:`bootstrap`). The
    estimate is the statistic of the rows' means. Averaging the seeds before the statistic is exact
    for statistics that are means over the items (accuracy, recall and their differences), which
    this is for. One seed per sample makes it a one-level paired bootstrap over the items; rows
    that do not vary over the items make it a bootstrap over the seeds alone.
    """
    samples = tuple(np.asarray(s, dtype=float) for s in samples)
    if not samples or any(s.ndim != 2 or not len(s) for s in samples):
        raise ValueError("each sample must be a (seeds, items) array with at least one seed, got "
                         f"shapes {[s.shape for s in samples]}")
    n = samples[0].shape[1]
    if any(s.shape[1] != n for s in samples):
        raise ValueError(f"every sample needs the same items, got shapes {[s.shape for s in samples]}")
    estimate = np.atleast_1d(statistic(*(s.mean(0) for s in samples), axis=-1))
    rng = np.random.default_rng(seed)
    batch = max(1, 5_000_000 // (n * len(samples)))  # ~40 MB of resampled values at a time
    reps = []
    for start in range(0, resamples, batch):
        b = min(batch, resamples - start)
        items = rng.integers(n, size=(b, n))
        values = []
        for s in samples:
            counts = resampled_weights(rng.integers(len(s), size=(b, len(s))), len(s))
            values.append(np.take_along_axis((counts / len(s)) @ s, items, axis=-1))
        out = np.asarray(statistic(*values, axis=-1))
        reps.append(out.reshape(-1, b))
    alpha = (1 - CONFIDENCE) / 2
    low, high = np.quantile(np.concatenate(reps, axis=1), [alpha, 1 - alpha], axis=1)
    return [Interval(float(e), float(lo), float(hi)) for e, lo, hi in zip(estimate, low, high)]


def mean_interval(values, **kw) -> Interval:
    """The mean of ``values`` (e.g. 0/1 correctness per test image) with its interval."""
    return bootstrap((np.asarray(values, dtype=float),), lambda v, axis: v.mean(axis), **kw)[0]


def paired_difference(a, b, **kw) -> Interval:
    """mean(a) - mean(b) over the same items (e.g. two models' correctness on the same test
    images), resampled together."""
    return bootstrap((np.asarray(a, dtype=float), np.asarray(b, dtype=float)),
                     lambda x, y, axis: x.mean(axis) - y.mean(axis), **kw)[0]


def replicate_interval(estimate: float, replicates, *, method: str = "centred") -> Interval:
    """The interval from bootstrap ``replicates`` of a statistic: ``centred`` (the replicates'
    spread around their mean, placed on the estimate: for FID, whose level a resample with
    duplicates inflates, so only its spread is used) or ``percentile``."""
    r = np.asarray(replicates, dtype=float)
    alpha = (1 - CONFIDENCE) / 2
    q_lo, q_hi = np.quantile(r, [alpha, 1 - alpha])
    if method == "centred":
        return Interval(float(estimate), float(estimate + q_lo - r.mean()),
                        float(estimate + q_hi - r.mean()))
    if method == "percentile":
        return Interval(float(estimate), float(q_lo), float(q_hi))
    raise ValueError(f"unknown interval method {method!r}; expected 'centred' or 'percentile'")


# ------------------------------------------------------------------ statistics over test images
def class_recalls(labels, correct, *, axis=-1, classes: int = 10):
    """Recall of each class (fraction of its images classified correctly), stacked on a new first
    axis: ``(classes, ...)``. Vectorised over resamples."""
    labels, correct = np.asarray(labels), np.asarray(correct, dtype=float)
    out = []
    for c in range(classes):
        mask = labels == c
        out.append((correct * mask).sum(axis) / np.maximum(mask.sum(axis), 1))
    return np.stack(out)


def report_metrics(labels, pred, *, axis=-1, classes: int = 10):
    """scikit-learn's classification report as a vector per resample: for each class precision,
    recall and f1, then accuracy, macro and weighted precision / recall / f1. The names are
    :func:`report_metric_names`."""
    labels, pred = np.asarray(labels), np.asarray(pred)
    rows, support = [], []
    for c in range(classes):
        true_c, pred_c = labels == c, pred == c
        tp = (true_c & pred_c).sum(axis).astype(float)
        n_true, n_pred = true_c.sum(axis), pred_c.sum(axis)
        precision = np.divide(tp, n_pred, out=np.zeros_like(tp), where=n_pred > 0)
        recall = np.divide(tp, n_true, out=np.zeros_like(tp), where=n_true > 0)
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
        rows.append(np.stack([precision, recall, f1]))
        support.append(n_true)
    per_class = np.stack(rows)                      # (classes, 3, ...)
    support = np.stack(support).astype(float)       # (classes, ...)
    accuracy = (labels == pred).mean(axis)
    macro = per_class.mean(0)
    weighted = (per_class * support[:, None]).sum(0) / support.sum(0)
    return np.concatenate([per_class.reshape(classes * 3, *per_class.shape[2:]),
                           accuracy[None], macro, weighted])


def report_metric_names(classes) -> list[str]:
    names = [f"{c}/{m}" for c in classes for m in ("precision", "recall", "f1")]
    return names + ["accuracy"] + [f"{avg}/{m}" for avg in ("macro avg", "weighted avg")
                                   for m in ("precision", "recall", "f1")]


def resampled_weights(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` items occurs in each resample: ``idx`` is ``(..., n)`` resampled
    indices (scipy.stats.bootstrap over ``np.arange(n)``), the result ``(..., n)`` counts."""
    idx = np.asarray(idx)
    rows = idx.reshape(-1, idx.shape[-1])
    flat = (rows + n * np.arange(len(rows))[:, None]).ravel()
    return np.bincount(flat, minlength=len(rows) * n).reshape(*idx.shape[:-1], n)


class MacroAUC:
    """Macro one-vs-rest ROC AUC of several score sets on the same images (scikit-learn's
    ``roc_auc_score(..., multi_class="ovr", average="macro")``), for any weighting of the images.

    ``scores`` is ``(sets, n, classes)`` (e.g. one set per sweep cell); ``labels`` ``(n,)``. The
    images are sorted once per set and class, so a resample (a weight per image, see
    :func:`resampled_weights`) costs a few cumulative sums: the Mann-Whitney count of negatives
    below each positive, ties counting a half.
    """

    def __init__(self, labels, scores):
        self.labels = np.asarray(labels)
        scores = np.asarray(scores, dtype=np.float64)
        self.n, self.classes = scores.shape[1], scores.shape[2]
        self.order, self.first, self.last = [], [], []
        for k in range(len(scores)):
            for c in range(self.classes):
                o = np.argsort(scores[k, :, c], kind="stable")
                s = scores[k, o, c]
                # index range [first, last) of each sorted item's tie group
                self.order.append(o)
                self.first.append(np.searchsorted(s, s, side="left"))
                self.last.append(np.searchsorted(s, s, side="right"))
        self.sets = len(scores)

    def __call__(self, weights=None) -> np.ndarray:
        """AUC of each set, ``(..., sets)`` for ``weights`` ``(..., n)`` (default: all ones)."""
        w = np.ones(self.n) if weights is None else np.asarray(weights, dtype=np.float64)
        out = np.zeros((*w.shape[:-1], self.sets))
        for k in range(self.sets):
            for c in range(self.classes):
                i = k * self.classes + c
                o = self.order[i]
                pos = (self.labels[o] == c)
                wo = w[..., o]
                neg_cum = np.concatenate([np.zeros((*w.shape[:-1], 1)),
                                          np.cumsum(wo * ~pos, axis=-1)], axis=-1)
                below = np.take(neg_cum, self.first[i], axis=-1)
                tied = np.take(neg_cum, self.last[i], axis=-1) - below
                u = (wo * pos * (below + 0.5 * tied)).sum(-1)
                n_pos, n_neg = (wo * pos).sum(-1), (wo * ~pos).sum(-1)
                out[..., k] += u / np.maximum(n_pos * n_neg, 1e-12)
        return out / self.classes

    def intervals(self, **kw) -> list[Interval]:
        """Each set's AUC with its interval over resampled images."""
        return bootstrap((np.arange(self.n),),
                         lambda idx, axis: np.moveaxis(self(resampled_weights(idx, self.n)), -1, 0),
                         **kw)


# ---------------------------------------------------------------------------------------- FID
def fid_replicates(features: np.ndarray, reference, *, resamples: int, seed: int = SEED,
                   device: str = "cpu") -> np.ndarray:
    """FID of ``resamples`` bootstrap resamples of generated ``features`` (n x 2048) against fixed
    ``reference`` statistics (:class:`lib.evaluate.fid.Stats`): the interval covers the sampling
    of the generated images, not of the reference.

    Each resample's trace term uses tr sqrt(S_g S_r) = tr sqrt(R S_g R) with R = sqrt(S_r)
    computed once, i.e. the sum of the singular values of (F_g - mean) R / sqrt(n - 1); F_g R is
    computed once too (centring commutes with R), so a resample costs a row gather and one
    eigen-decomposition of a min(n, d)-sized Gram matrix, in float64 on ``device``.
    """
    import torch

    from .fid import trace_sqrt

    dev = torch.device(device)
    f = torch.as_tensor(features, dtype=torch.float64, device=dev)
    mu_r = torch.as_tensor(reference.mu, dtype=torch.float64, device=dev)
    projected = f @ reference.root().to(dev)
    tr_r = float(np.trace(reference.sigma))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n = len(f)
    out = np.empty(resamples)
    for i in range(resamples):
        idx = torch.randint(n, (n,), generator=gen).to(dev)
        x, p = f[idx], projected[idx]
        mu = x.mean(0)
        tr_sqrt = trace_sqrt((p - p.mean(0)) / (n - 1) ** 0.5)
        tr_g = (x - mu).pow(2).sum() / (n - 1)
        out[i] = float((mu - mu_r).pow(2).sum() + tr_g + tr_r - 2 * tr_sqrt)
    return out
