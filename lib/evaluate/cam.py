"""Class activation maps for the chapter-1 classifiers (SPEC 1.2, 1.3): CAM, Grad-CAM, overlays and
the figure.

* ``class_activation_map(model, x, class_idx)`` is classic CAM (Zhou et al., CVPR 2016): for a
  network that ends in global average pooling + a linear layer, the map of class c is
  ``M_c = sum_k w[c, k] * f_k(x)`` over the channels k of the last feature map
  ``f = model.features(x)``, upsampled (bilinear) to the input size and min-max normalised to [0,
  1]. ``upsample=False, normalize=False`` returns the raw (h, w) map.
* ``grad_cam(model, x, class_idx)`` is Grad-CAM (Selvaraju et al. 2017) from the ``grad-cam``
  package (``pytorch_grad_cam.GradCAM``) on ``model.cam_layer``, the module that outputs
  ``features(x)``. For a global-average pool + linear head, Grad-CAM's channel weights are
  ``w[c, k] / (h * w)``, so Grad-CAM = ReLU(CAM) up to scale.
* ``activation_map(model, x)`` is the class-agnostic channel mean of the last feature map (SPEC
  1.2's DRN vs ResNet comparison: its resolution is the network's output resolution).
* ``overlay(image_uint8, cam)`` draws a map over an image with the jet colormap, as presented;
  ``cam_rows(model, x)`` computes the rows of the comparison figure and
  ``cam_figure(images, rows, titles)`` draws input / CAM (predicted class) / CAM (a wrong class) /
  Grad-CAM (predicted class); any {row label: maps} works, e.g. one ``activation_map`` row per model
  for SPEC 1.2.

Every model in ``lib.models`` provides ``features(x)``, ``classifier`` (``nn.Linear``, or the DRNs'
1x1 convolution) and ``cam_layer``; ``head_weights(model)`` turns the classifier into a
(num_classes, C) matrix. Inputs ``x`` are normalised image tensors, one image (3, H, W) or a batch
(B, 3, H, W); maps come back on the CPU as float tensors, (H, W) for one image and (B, H, W) for a
batch. The model's train/eval mode is restored.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import CLASSES


def head_weights(model: nn.Module) -> torch.Tensor:
    """The class weights of the model's head as a (num_classes, C) matrix (``nn.Linear`` or a 1x1
    ``nn.Conv2d``)."""
    head = getattr(model, "classifier", None)
    if isinstance(head, nn.Linear):
        return head.weight.detach()
    if isinstance(head, nn.Conv2d) and head.kernel_size == (1, 1) and head.groups == 1:
        return head.weight.detach().flatten(1)
    raise TypeError("CAM needs a model whose `classifier` is an nn.Linear or a 1x1 nn.Conv2d "
                    f"applied after global average pooling; {type(model).__name__}.classifier is "
                    f"{type(head).__name__}")


def target_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM hooks: ``model.cam_layer`` (the module whose output is
    ``model.features(x)``)."""
    layer = getattr(model, "cam_layer", None)
    if not isinstance(layer, nn.Module):
        raise TypeError(f"{type(model).__name__} has no `cam_layer` module; models in lib.models "
                        "name the module that outputs features(x) as `cam_layer`")
    return layer


@contextmanager
def _eval_mode(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _as_batch(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if not isinstance(x, torch.Tensor) or x.ndim not in (3, 4) or x.shape[-3] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError("expected a normalised image tensor (3, H, W) or a batch (B, 3, H, W); "
                         f"got {shape}")
    return (x.unsqueeze(0), True) if x.ndim == 3 else (x, False)


def _class_indices(class_idx, batch: int) -> torch.Tensor:
    idx = torch.as_tensor(class_idx, dtype=torch.long).flatten().cpu()
    if idx.numel() == 1:
        idx = idx.expand(batch)
    if idx.numel() != batch:
        raise ValueError(f"class_idx must be one class or one per image; got {idx.numel()} for "
                         f"{batch} images")
    return idx


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - lo
    return torch.where(span > 0, (maps - lo) / span.clamp_min(1e-12), torch.zeros_like(maps))


def _finish(maps: torch.Tensor, size, *, upsample: bool, normalize: bool, single: bool):
    """Maps ``(B, h, w)`` upsampled to ``size`` (bilinear) and min-max scaled to [0, 1]."""
    if upsample:
        maps = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    if normalize:
        maps = _minmax(maps)
    return maps[0] if single else maps


def class_activation_map(model: nn.Module, x: torch.Tensor, class_idx, *, upsample: bool = True,
                         normalize: bool = True) -> torch.Tensor:
    """CAM of ``class_idx`` (an int, or one per image): sum_k w[c, k] f_k(x), upsampled to x's size,
    in [0, 1]."""
    xb, single = _as_batch(x)
    weights = head_weights(model)
    idx = _class_indices(class_idx, len(xb))
    if int(idx.max()) >= weights.shape[0] or int(idx.min()) < 0:
        raise ValueError(f"class_idx {idx.tolist()} out of range for a "
                         f"{weights.shape[0]}-class model")
    with torch.no_grad(), _eval_mode(model):
        fmap = model.features(xb.to(weights.device)).float()
    if fmap.shape[1] != weights.shape[1]:
        raise ValueError(f"features(x) has {fmap.shape[1]} channels but the classifier expects "
                         f"{weights.shape[1]}")
    maps = torch.einsum("bc,bchw->bhw", weights[idx.to(weights.device)].float(), fmap).cpu()
    return _finish(maps, xb.shape[-2:], upsample=upsample, normalize=normalize, single=single)


def activation_map(model: nn.Module, x: torch.Tensor, *, upsample: bool = True,
                   normalize: bool = True) -> torch.Tensor:
    """Class-agnostic activation map (SPEC 1.2): the channel mean of the last feature map, upsampled
    and in [0, 1].

    Shows where, and at what resolution, the network responds: 4x4 cells for the CIFAR ResNets, 8x8
    for the DRNs.
    """
    xb, single = _as_batch(x)
    device = next(model.parameters()).device
    with torch.no_grad(), _eval_mode(model):
        maps = model.features(xb.to(device)).float().mean(dim=1).cpu()
    return _finish(maps, xb.shape[-2:], upsample=upsample, normalize=normalize, single=single)


def grad_cam(model: nn.Module, x: torch.Tensor, class_idx) -> torch.Tensor:
    """Grad-CAM of ``class_idx`` at ``model.cam_layer`` via ``pytorch_grad_cam.GradCAM``:
    input-sized maps in [0, 1].

    Leaves the model's parameter gradients cleared (``grad-cam`` back-propagates through the model).
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    xb, single = _as_batch(x)
    idx = _class_indices(class_idx, len(xb))
    layer = target_layer(model)
    with _eval_mode(model), GradCAM(model=model, target_layers=[layer]) as cam:
        maps = cam(input_tensor=xb.detach(), targets=[ClassifierOutputTarget(int(c)) for c in idx])
    model.zero_grad(set_to_none=True)
    maps = torch.from_numpy(np.ascontiguousarray(maps)).float()
    return maps[0] if single else maps


def _to_hwc_uint8(image) -> np.ndarray:
    img = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image (3, H, W) or (H, W, 3); got {img.dtype} "
                         f"{img.shape}")
    return img


def overlay(image_uint8, cam, *, alpha: float = 0.5) -> np.ndarray:
    """The map drawn over the image with the jet colormap: (H, W, 3) float RGB in [0, 1] (``alpha``
    = map weight)."""
    import matplotlib

    img = _to_hwc_uint8(image_uint8).astype(np.float32) / 255.0
    m = (cam.detach().cpu().float().numpy() if isinstance(cam, torch.Tensor)
         else np.asarray(cam, dtype=np.float32))
    if m.shape != img.shape[:2]:
        raise ValueError(f"map shape {m.shape} does not match the image's {img.shape[:2]}; "
                         "use class_activation_map(..., upsample=True)")
    lo, hi = float(m.min()), float(m.max())
    m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    heat = matplotlib.colormaps["jet"](m)[..., :3].astype(np.float32)
    return np.clip((1 - alpha) * img + alpha * heat, 0.0, 1.0)


def cam_rows(model: nn.Module, x: torch.Tensor, *, labels=None, wrong_class: int | None = None,
             classes: Sequence[str] = CLASSES) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The maps of the comparison figure for a batch, and a title per image.

    Rows: CAM of the predicted class, CAM of a wrong class (``wrong_class``, or by default the class
    the model finds least likely), Grad-CAM of the predicted class. Titles give the prediction, the
    wrong class and, when ``labels`` are given, the true class.
    """
    xb, _ = _as_batch(x)
    with torch.no_grad(), _eval_mode(model):
        logits = model(xb.to(next(model.parameters()).device)).float().cpu()
    pred = logits.argmax(1)
    wrong = logits.argmin(1) if wrong_class is None else _class_indices(wrong_class, len(xb))
    rows = {"CAM (predicted class)": class_activation_map(model, xb, pred),
            "CAM (wrong class)": class_activation_map(model, xb, wrong),
            "Grad-CAM (predicted class)": grad_cam(model, xb, pred)}
    titles = []
    for i in range(len(xb)):
        t = f"pred: {classes[pred[i]]}\nwrong: {classes[wrong[i]]}"
        if labels is not None:
            t = f"true: {classes[int(labels[i])]}\n" + t
        titles.append(t)
    return rows, titles


def cam_figure(images, cams: Mapping[str, Sequence] | Sequence, titles: Sequence[str] | None = None,
               *, alpha: float = 0.5, title: str = ""):
    """A grid: the input images in the first row, then one row of jet overlays per entry of
    ``cams``.

    ``images``: N uint8 images ((3, H, W) or (H, W, 3), e.g. ``Cifar10.test_x[idx]``); ``cams``:
    {row label: N maps} (one row if a plain sequence); ``titles``: N column titles.
    """
    import matplotlib.pyplot as plt

    if not isinstance(cams, Mapping):
        cams = {"CAM": cams}
    n = len(images)
    for label, maps in cams.items():
        if len(maps) != n:
            raise ValueError(f"row {label!r} has {len(maps)} maps for {n} images")
    if titles is not None and len(titles) != n:
        raise ValueError(f"{len(titles)} titles for {n} images")
    nrows = 1 + len(cams)
    fig, axes = plt.subplots(nrows, n, figsize=(1.9 * n + 1.2, 2.0 * nrows), squeeze=False,
                             layout="constrained")
    row_images = [("Input image", [_to_hwc_uint8(im) for im in images])]
    row_images += [(label, [overlay(im, m, alpha=alpha) for im, m in zip(images, maps)])
                   for label, maps in cams.items()]
    for r, (label, pics) in enumerate(row_images):
        for c, pic in enumerate(pics):
            ax = axes[r, c]
            ax.imshow(pic, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
            if r == 0 and titles is not None:
                ax.set_title(titles[c], fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def central_share(maps: torch.Tensor, *, fraction: float = 0.5) -> torch.Tensor:
    """Share of each map's mass inside the central ``fraction`` x ``fraction`` box (a quarter of the
    image at 0.5), where CIFAR-10's object usually is: a proxy for "the map covers the object"."""
    h, w = maps.shape[-2:]
    top, left = round(h * (1 - fraction) / 2), round(w * (1 - fraction) / 2)
    inside = maps[..., top:h - top, left:w - left].sum(dim=(-2, -1))
    return inside / maps.sum(dim=(-2, -1)).clamp_min(1e-12)


FOCUS_ROWS = {"predicted": "predicted class", "least_likely": "least likely class",
              "random_wrong": "a random wrong class (seeded)"}


@torch.no_grad()
def focus_shares(model: nn.Module, x: torch.Tensor, *, fraction: float = 0.5,
                 batch_size: int = 200, seed: int = 0) -> dict[str, torch.Tensor]:
    """SPEC 1.3 per image: the central share of the CAM of the predicted class, of the least likely
    class and of a wrong class drawn at random (uniformly among the other nine, seeded) over
    normalised images ``x``; keys as :data:`FOCUS_ROWS`."""
    shares = {k: [] for k in FOCUS_ROWS}
    gen = torch.Generator().manual_seed(seed)
    with _eval_mode(model):
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(head_weights(model).device)
            logits = model(xb)
            pred = logits.argmax(1).cpu()
            other = torch.randint(logits.shape[1] - 1, (len(xb),), generator=gen)
            for name, idx in (("predicted", pred), ("least_likely", logits.argmin(1).cpu()),
                              ("random_wrong", other + (other >= pred).long())):
                maps = class_activation_map(model, xb, idx)
                shares[name].append(central_share(maps, fraction=fraction).cpu())
    return {k: torch.cat(v) for k, v in shares.items()}


def focus_table(shares: dict[str, torch.Tensor], *, fraction: float = 0.5) -> pd.DataFrame:
    """SPEC 1.3 measured: the mean of :func:`focus_shares` for each class of CAM, beside the share
    a uniform map would have (``fraction`` as there)."""
    uniform = round(100 * fraction ** 2, 1)
    box = f"{fraction:g} x {fraction:g} of the image"
    return pd.DataFrame([{"CAM of": FOCUS_ROWS[k], "mean share of the map in the central box (%)":
                          round(100 * v.mean().item(), 2), "uniform map (%)": uniform,
                          "images": len(v), "central box": box} for k, v in shares.items()])
