"""EfficientNet-B0 (timm), from scratch at 32x32 with a stride-1 stem, or ImageNet-pretrained at 224
px."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..augment import MEAN, STD
from .registry import register


class EfficientNetB0(nn.Module):
    """timm's EfficientNet-B0 with the one ``features``/``classifier``/``cam_layer`` interface of
    this registry.

    ``input_size=None`` feeds images at their own size (from-scratch CIFAR training, stride-1 stem);
    ``input_size=224`` resizes every batch to 224x224 and converts the CIFAR normalisation to
    ImageNet's (the pretrained route), so callers always pass the usual normalised 32x32 batches.
    """

    def __init__(self, net: nn.Module, *, input_size: int | None = None):
        super().__init__()
        self.net = net
        self.input_size = input_size
        if input_size is not None:
            cfg = getattr(net, "pretrained_cfg", {}) or {}
            src_mean, src_std = torch.tensor(MEAN), torch.tensor(STD)
            dst_mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406)))
            dst_std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225)))
            # x_imagenet = (x_cifar * src_std + src_mean - dst_mean) / dst_std
            #            = x_cifar * scale + shift
            self.register_buffer("scale", (src_std / dst_std).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("shift", ((src_mean - dst_mean) / dst_std).view(1, 3, 1, 1),
                                 persistent=False)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is None:
            return x
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = nn.functional.interpolate(x, size=(self.input_size, self.input_size),
                                          mode="bilinear", align_corners=False)
        return x * self.scale + self.shift

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(self._prepare(x))

    @property
    def classifier(self) -> nn.Linear:
        return self.net.classifier

    @property
    def cam_layer(self) -> nn.Module:
        """timm's ``bn2`` (BatchNorm + SiLU after ``conv_head``): the last module of
        ``forward_features``."""
        return self.net.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._prepare(x))


class PretrainedWeightsUnavailable(RuntimeError):
    """timm's ImageNet weights could not be loaded (offline, or not in the Hugging Face cache)."""


def _pretrained_efficientnet_b0(num_classes: int, **kwargs) -> nn.Module:
    import timm

    errors: tuple[type[BaseException], ...] = (OSError, RuntimeError, ValueError)
    try:
        import httpx
        errors += (httpx.HTTPError,)
    except ImportError:
        pass
    try:
        return timm.create_model("efficientnet_b0", pretrained=True, num_classes=num_classes,
                                 **kwargs)
    except errors as err:
        raise PretrainedWeightsUnavailable(
            "efficientnet_b0 with pretrained=True needs timm's ImageNet weights (Hugging Face Hub "
            "repository 'timm/efficientnet_b0.ra_in1k'), and they could not be loaded: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}\n"
            "Fix: run once on a machine that can reach huggingface.co (the weights are "
            "cached under $HF_HOME, default ~/.cache/huggingface, and found offline afterwards), "
            "or copy that cache here; or set `pretrained: false` to train EfficientNet-B0 from "
            "scratch at 32x32.") from err


@register("efficientnet_b0")
def efficientnet_b0(*, num_classes: int = 10, width: float = 1.0, pretrained: bool = False,
                    resize_to: int | None = None, drop_rate: float = 0.0,
                    drop_path_rate: float = 0.0) -> EfficientNetB0:
    """timm's EfficientNet-B0: from scratch at 32x32 with a stride-1 stem, or ImageNet-pretrained at
    224 px.

    ``pretrained=True`` loads the ImageNet weights and resizes inputs to ``resize_to`` (default
    224). ``resize_to`` without ``pretrained`` builds that same ImageNet-shaped model with random
    weights (stride-2 stem, resized inputs): use it to reload a fine-tuned checkpoint without
    downloading anything.
    """
    import timm

    if pretrained or resize_to is not None:
        if width != 1.0:
            raise ValueError("the ImageNet-shaped efficientnet_b0 (pretrained / resize_to) exists "
                             f"only at width 1.0, not width={width}")
        kwargs = dict(num_classes=num_classes, drop_rate=drop_rate, drop_path_rate=drop_path_rate)
        net = (_pretrained_efficientnet_b0(**kwargs) if pretrained
               else timm.create_model("efficientnet_b0", pretrained=False, **kwargs))
        return EfficientNetB0(net, input_size=resize_to or 224)
    if width == 1.0:
        net = timm.create_model("efficientnet_b0", pretrained=False, num_classes=num_classes,
                                drop_rate=drop_rate, drop_path_rate=drop_path_rate)
    else:  # timm's own generator with a channel multiplier (what efficientnet_b0 calls with 1.0)
        from timm.models.efficientnet import _gen_efficientnet

        net = _gen_efficientnet("efficientnet_b0", channel_multiplier=width, depth_multiplier=1.0,
                                pretrained=False, num_classes=num_classes, drop_rate=drop_rate,
                                drop_path_rate=drop_path_rate)
    # the CIFAR adaptation: total stride 16, a 32x32 image ends on 2x2 (not 1x1)
    net.conv_stem.stride = (1, 1)
    return EfficientNetB0(net)
