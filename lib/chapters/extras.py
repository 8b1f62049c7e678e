"""Chapter 4 glue: similarity search with chapter 1's features -- embeddings, query images, the
X/Y/Z example, retrieval tables against a raw-pixel baseline, and the chapter's figures.

An image is embedded as the global-average-pooled output of ``model.features`` (the penultimate
layer of a chapter-1 classifier, before ``model.classifier``). The gallery (CIFAR-10 training
images) is embedded once and cached on disk, keyed by the checkpoint file and the exact images, so
re-running the chapter only scores.

* :func:`load_embedder` wraps chapter 1's checkpoint; :meth:`Embedder.cached` embeds a tensor of
  images once.
* :func:`load_query_image` reads any PNG/JPEG/... file (RGB, RGBA, L, palette, 16-bit, EXIF-rotated)
  as a 32x32 uint8 image, the way the training data was decoded; :func:`resolve_query` also accepts
  a test index.
* :func:`show_similar_images` draws a query and its neighbours, one row per metric;
  :func:`xyz_example` and :func:`xyz_figure` find and draw three real vectors on which the two
  metrics disagree, with the slide's roles: similarity to Y (SPEC 4.1).

Errors the user can fix (a missing checkpoint, a missing or unreadable image) raise
:class:`RetrievalError`, which a notebook shows as one clear message instead of a deep traceback.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import data as D
from .. import storage
from ..augment import normalize
from ..evaluate.retrieval import METRICS, pixel_vectors, rank_metrics, time_top_k, top_k

SHIPPED_QUERY = storage.ROOT / "assets" / "plane.png"
EMBED_BATCH = 1000  # images per forward pass when embedding


@dataclass
class Gallery:
    """The gallery (training images) and the queries (test images) of the chapter, class-balanced
    subsets."""

    gallery_x: torch.Tensor
    gallery_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    source: str


def load_gallery(params: dict) -> Gallery:
    """CIFAR-10 from ``params["data"]``: ``gallery_subset`` training and ``query_subset`` test
    images."""
    ds = D.load_cifar10(params["data"])
    gx, gy = D.subsample(ds.train_x, ds.train_y, params["gallery_subset"], seed=params["seed"])
    qx, qy = D.subsample(ds.test_x, ds.test_y, params["query_subset"], seed=params["seed"])
    return Gallery(gx, gy, qx, qy, source=ds.source)


class RetrievalError(ValueError):
    """A problem the user fixes (missing checkpoint, unreadable query image): shown as its message
    only."""

    def _render_traceback_(self):  # IPython/Jupyter show this instead of the traceback
        return [f"{type(self).__name__}: {self}"]


class MissingCheckpointError(RetrievalError, FileNotFoundError):
    """Chapter 1 has not produced the classifier whose features chapter 4 uses."""


class QueryImageError(RetrievalError):
    """The query file is missing, not an image, or truncated; or a test index is out of range."""


@dataclass
class Embedder:
    """A chapter-1 classifier used as a feature extractor:
    ``embed(uint8 images) -> (N, D) float32``."""

    model: torch.nn.Module
    info: dict
    checkpoint: Path
    device: torch.device

    @property
    def dim(self) -> int:
        return int(self.model.classifier.in_features)

    @torch.inference_mode()
    def embed(self, images: torch.Tensor, *, batch_size: int = EMBED_BATCH) -> torch.Tensor:
        """Penultimate features (global average pool of ``model.features``) of uint8
        ``(N, 3, 32, 32)`` images."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
        out = []
        for i in range(0, len(images), batch_size):
            x = normalize(images[i:i + batch_size].to(self.device))
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
               batch_size: int = EMBED_BATCH) -> tuple[torch.Tensor, bool]:
        """``(features, loaded_from_cache)``: embed ``images`` once and keep them in
        ``cache_dir``."""
        cache_dir = Path(cache_dir)
        path = cache_dir / f"{name}-{self.info['model']}-{self.cache_key(images, source)}.pt"
        if path.is_file():
            try:
                feats = storage.torch_load(path)["features"]
                if feats.shape == (len(images), self.dim):
                    return feats, True
                storage.recover(path, f"features of shape {tuple(feats.shape)}", "embedding again")
            except (storage.UnreadableFile, KeyError, TypeError) as err:
                storage.recover(path, str(err), "embedding again")
        feats = self.embed(images, batch_size=batch_size)
        storage.save_atomic({"features": feats, "checkpoint": str(self.checkpoint),
                             "source": source, "n": len(images)}, path)
        return feats, False


def describe_embeddings(embedder: "Embedder", data: Gallery, *, gallery_cached: bool,
                        query_cached: bool) -> str:
    """What embeds the images and how many were embedded (for the chapter's opening line)."""
    info = embedder.info
    return (f"feature extractor: chapter 1's `{info['model']}` (width {info['width']}, test "
            f"accuracy {100 * info['test_acc']:.2f}% in chapter 1), {embedder.dim}-d features. "
            f"Gallery: {len(data.gallery_y):,} training images "
            f"({'cached' if gallery_cached else 'embedded now'}); queries: {len(data.query_y):,} "
            f"test images ({'cached' if query_cached else 'embedded now'})")


def load_embedder(profile_dir: str | Path, run_name: str = "resnet18", *,
                  device: str | torch.device = "cpu") -> Embedder:
    """Chapter 1's best checkpoint of ``run_name`` under ``outputs/<profile>`` as an
    :class:`Embedder`."""
    from .supervised import load_classifier

    try:
        model, info = load_classifier(profile_dir, run_name, device=str(device))
    except FileNotFoundError as err:
        raise MissingCheckpointError(f"chapter 4 embeds images with chapter 1's {run_name!r} "
                                     f"classifier, which is not there yet: {err}") from None
    path = storage.index_path(profile_dir).parent / info["checkpoint"]
    return Embedder(model=model, info=info, checkpoint=path, device=torch.device(device))


def _to_rgb_uint8(im) -> np.ndarray:
    """Any PIL mode -> ``(H, W, 3)`` uint8. 16/32-bit and float images are scaled, transparency goes
    on white."""
    from PIL import Image

    if im.mode.startswith("I") or im.mode == "F":  # I;16, I;16B, I;16L, I (32-bit int), F (float)
        arr = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16") or arr.max(initial=0) > 255:
            arr = arr / 257.0  # 0..65535 -> 0..255
        elif im.mode == "F" and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0  # floats in [0, 1]
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if (im.mode in ("RGBA", "LA", "PA", "La", "RGBa")
            or (im.mode == "P" and "transparency" in im.info)):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_query_image(path: str | os.PathLike, *, size: int = 32,
                     crop: str = "center") -> torch.Tensor:
    """Read an image file of any size and mode as a uint8 ``(3, size, size)`` tensor.

    EXIF orientation is applied, transparency is composited on white, 16-bit images are scaled to 8
    bits. ``crop="center"`` takes the central square first (keeps the aspect ratio); ``"squash"``
    resizes the whole image. The resize is Pillow's antialiased bilinear filter, as when the
    training images were decoded. Missing files, folders, non-images and truncated files raise
    :class:`QueryImageError` saying what to do.
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
        raise QueryImageError(f"{path} is not an image file Pillow can read (PNG, JPEG, BMP, WebP, "
                              f"TIFF, ...); {hint}") from None
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
    """``(uint8 image (3, 32, 32), label or None, description)`` for a test index or an image file
    path."""
    if isinstance(query, (int, np.integer)) and not isinstance(query, bool):
        if not 0 <= int(query) < len(test_y):
            raise QueryImageError(f"test index {query} is out of range: the test set here has "
                                  f"{len(test_y)} images (0 to {len(test_y) - 1})")
        label = int(test_y[int(query)])
        return test_x[int(query)], label, f"test image #{int(query)} ({classes[label]})"
    path = Path(query)
    image = load_query_image(path)
    return image, None, f"{path.name} (a file, resized to {image.shape[2]}x{image.shape[1]})"


def comparison_spaces(name: str, query_features: torch.Tensor, query_labels: torch.Tensor,
                      gallery_features: torch.Tensor, query_images: torch.Tensor,
                      gallery_images: torch.Tensor, *,
                      baseline_queries: int = 0, seed: int = 0) -> dict[str, tuple]:
    """The rows of :func:`retrieval_table`: learned features on every query, and raw pixels.

    Raw pixels are 3,072-d, so ranking 50,000 of them for all 10,000 queries takes minutes on a CPU;
    with ``baseline_queries`` they use a class-balanced subset, and the learned features are scored
    on that same subset too, so the comparison stays like for like.
    """
    spaces = {name: (query_features, query_labels, gallery_features)}
    sub = torch.arange(len(query_labels))
    if baseline_queries and baseline_queries < len(query_labels):
        sub = D.stratified_split(query_labels, {"keep": baseline_queries}, seed=seed)["keep"]
        spaces[f"{name} (same {len(sub):,} queries)"] = (query_features[sub], query_labels[sub],
                                                         gallery_features)
    spaces["raw pixels"] = (pixel_vectors(query_images[sub]), query_labels[sub],
                            pixel_vectors(gallery_images))
    return spaces


def retrieval_table(spaces: dict[str, tuple], gallery_labels: torch.Tensor, *, ks=(1, 5, 10),
                    chunk_size: int = 500, k_time: int = 10, context: dict | None = None,
                    per_query: dict | None = None) -> pd.DataFrame:
    """One row per (feature space, metric): precision@k, mAP over the whole gallery, and time per
    query.

    ``spaces`` maps a row name to ``(query vectors, query labels, gallery vectors)``, e.g. learned
    features and raw pixels. ``context`` (profile, data, device, ...) is appended to every row so
    the table explains itself. ``per_query``, if given, receives each row's per-query scores as
    ``{(space, metric): {"P@1": array, ..., "AP": array}}``.
    """
    rows = []
    for name, (qv, ql, gv) in spaces.items():
        for metric in METRICS:
            m = rank_metrics(qv, ql, gv, gallery_labels, metric=metric, ks=ks,
                             chunk_size=chunk_size)
            if per_query is not None:
                per_query[(name, metric)] = m["per_query"]
            t_top = time_top_k(qv, gv, metric=metric, k=k_time, chunk_size=max(chunk_size, 1000))
            rows.append({"features": name, "dim": int(qv.shape[1]), "metric": metric,
                         **{f"P@{k} (%)": round(100 * m[f"P@{k}"], 2) for k in ks},
                         "mAP (%)": round(100 * m["mAP"], 2),
                         f"top-{k_time} ms/query": round(1000 * t_top / len(qv), 3),
                         "full-ranking ms/query": round(1000 * m["rank_s"] / len(qv), 3),
                         "queries": len(qv), "gallery": len(gv), **(context or {})})
    return pd.DataFrame(rows)


def paired_scores(per_query: dict, *, learned: str, baseline: str) -> dict[str, np.ndarray]:
    """The per-query scores of :func:`retrieval_table` for the learned features and the raw-pixel
    ``baseline`` on the same queries, for :meth:`lib.report.Report.per_example`: ``names``
    ("learned|cosine|P@1", "raw pixels|cosine|P@1", ...) and ``scores`` (names x queries)."""
    n = {len(v["AP"]) for (space, _), v in per_query.items() if space == baseline}
    same = [space for space, _ in per_query if space.startswith(learned)
            and len(per_query[(space, METRICS[0])]["AP"]) in n]
    if not same:
        raise KeyError(f"no {learned!r} row on the {baseline!r} queries")
    names, scores = [], []
    for metric in METRICS:
        for score in per_query[(baseline, metric)]:
            for side, space in (("learned", same[0]), ("raw pixels", baseline)):
                names.append(f"{side}|{metric}|{score}")
                scores.append(per_query[(space, metric)][score])
    return {"names": np.array(names), "scores": np.stack(scores).astype(np.float32)}


def baseline_check(table: pd.DataFrame, *, learned: str, baseline: str) -> pd.DataFrame:
    """Per metric and score column: does ``learned`` beat ``baseline`` (rows with the same number of
    queries)?"""
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


@dataclass
class XYZ:
    """Three real vectors as the slide uses them (SPEC 4.1): similarity *to Y*. By cosine X is
    closer to Y than Z is; by Euclidean distance Z is closer."""

    x: int                 # gallery index of X, Y's nearest neighbour by cosine
    y: int                 # query index of Y, the reference
    z: int                 # gallery index of Z, Y's nearest neighbour by Euclidean distance
    vectors: torch.Tensor  # (3, D): X, Y, Z
    cos_xy: float
    cos_zy: float
    dist_xy: float
    dist_zy: float


def xyz_example(queries: torch.Tensor, gallery: torch.Tensor, *,
                query_labels: torch.Tensor | None = None,
                gallery_labels: torch.Tensor | None = None, candidates: int = 500) -> XYZ:
    """Y = a query; X = its cosine nearest neighbour; Z = its Euclidean nearest neighbour, where
    they differ.

    Among the first ``candidates`` queries whose two nearest neighbours differ, prefers one where X
    has the query's class and Z does not (cosine right, Euclidean wrong), then the largest gap in
    norms of X and Z.
    """
    qs = queries[:candidates]
    _, ci = top_k(qs, gallery, metric="cosine", k=1)
    _, ei = top_k(qs, gallery, metric="euclidean", k=1)
    ci, ei = ci[:, 0], ei[:, 0]
    differ = (ci != ei).nonzero().flatten()
    if len(differ) == 0:
        raise ValueError("cosine and Euclidean agree on the nearest neighbour of all "
                         f"{len(qs)} queries")
    norms = gallery.float().norm(dim=1)
    gap = (norms[ci[differ]] - norms[ei[differ]]).abs()
    score = gap / gap.max().clamp_min(1e-12)
    if query_labels is not None and gallery_labels is not None:
        ql = query_labels[:candidates][differ]
        score = score + 2.0 * ((gallery_labels[ci[differ]] == ql)
                               & (gallery_labels[ei[differ]] != ql)).float()
    j = int(differ[score.argmax()])
    x, y, z = gallery[ci[j]].float(), qs[j].float(), gallery[ei[j]].float()
    return XYZ(x=int(ci[j]), y=j, z=int(ei[j]), vectors=torch.stack([x, y, z]),
               cos_xy=float(F.cosine_similarity(x, y, dim=0)),
               cos_zy=float(F.cosine_similarity(z, y, dim=0)),
               dist_xy=float((x - y).norm()), dist_zy=float((z - y).norm()))


def xyz_table(ex: XYZ, labels: tuple, *, classes=D.CLASSES) -> pd.DataFrame:
    """The numbers behind the 4.1 figure: each vector's class and norm, and its cosine and distance
    to Y."""
    y = ex.vectors[1]
    rows = []
    for name, split, idx, v, lab in zip("XYZ", ("gallery", "test", "gallery"), (ex.x, ex.y, ex.z),
                                        ex.vectors, labels):
        rows.append({"vector": name, "image": f"{split} #{idx}", "class": classes[int(lab)],
                     "norm": round(float(v.norm()), 3),
                     "cosine to Y": round(float(F.cosine_similarity(v, y, dim=0)), 4),
                     "Euclidean distance to Y": round(float((v - y).norm()), 3)})
    return pd.DataFrame(rows)


def xyz_plane(ex: XYZ) -> np.ndarray:
    """2-D points for X, Y, Z that keep every length and both angles to Y exact (Y on the
    horizontal axis, X above it, Z below), so both |X - Y| and |Z - Y| in the drawing equal the real
    distances."""
    nx, ny, nz = (float(v.norm()) for v in ex.vectors)
    ax, az = np.arccos(np.clip(ex.cos_xy, -1, 1)), np.arccos(np.clip(ex.cos_zy, -1, 1))
    return np.array([[nx * np.cos(ax), nx * np.sin(ax)], [ny, 0.0],
                     [nz * np.cos(az), -nz * np.sin(az)]])


def xyz_figure(ex: XYZ, images: tuple[torch.Tensor, torch.Tensor, torch.Tensor], labels: tuple, *,
               classes=D.CLASSES) -> plt.Figure:
    """(a) X, Y, Z as arrows from the origin (exact norms and angles to Y); (b) the three images."""
    pts = xyz_plane(ex)
    fig = plt.figure(figsize=(12, 4.6), layout="constrained")
    gs = fig.add_gridspec(1, 4, width_ratios=[2.2, 1, 1, 1])
    ax = fig.add_subplot(gs[0])
    colors = {"X": "tab:blue", "Y": "black", "Z": "tab:orange"}
    for (name, c), (px, py) in zip(colors.items(), pts):
        ax.annotate("", xy=(px, py), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="-|>", color=c, lw=2))
        ax.text(px, py, f" {name}", color=c, fontsize=13, fontweight="bold", va="center")
    for i, d in ((0, ex.dist_xy), (2, ex.dist_zy)):
        ax.plot(*zip(pts[1], pts[i]), ls="--", color=colors["XYZ"[i]], lw=1)
        mid = (pts[1] + pts[i]) / 2
        ax.text(*mid, f"{d:.2f}", fontsize=9, ha="left", va="center", color="dimgray")
    lim = np.abs(pts).max() * 1.15
    ax.set(xlim=(-0.05 * lim, lim), ylim=(-lim * 0.6, lim * 0.6), aspect="equal",
           title=f"similarity to Y, cosine: cos(X,Y) = {ex.cos_xy:.3f} > cos(Z,Y) = "
                 f"{ex.cos_zy:.3f}  -> X closer\n"
                 f"Euclidean: |Z-Y| = {ex.dist_zy:.2f} < |X-Y| = {ex.dist_xy:.2f}  -> Z closer")
    ax.title.set_fontsize(10)
    for i, (name, img, lab) in enumerate(zip("XYZ", images, labels)):
        a = fig.add_subplot(gs[i + 1])
        a.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
        a.set_title(f"{name}: {classes[int(lab)]}\n|{name}| = {float(ex.vectors[i].norm()):.2f}",
                    color=colors[name], fontsize=10)
        a.axis("off")
    return fig


def plan(params: dict, *, profile_dir: str | Path) -> list:
    """Notebook 04 trains nothing: it embeds with chapter 1's classifiers (see
    :func:`lib.chapters.supervised.plan`)."""
    return []
