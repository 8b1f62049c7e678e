"""Classifier registry: every chapter-1 model by name, built for 32x32 CIFAR-10 inputs.

``build_model("resnet18", num_classes=10, width=1.0)`` returns an ``nn.Module``; ``MODELS`` lists the names.
``width`` scales every channel count (the smoke profile uses narrow models so a CPU proves every code path
in seconds; ``width=1.0`` is the real architecture). Each model exposes ``features(x)`` (the last
convolutional feature map) and ``classifier`` (the head after global average pooling), which CAM and
retrieval use.

Each model also has ``cam_layer``, the module whose output is ``features(x)`` (Grad-CAM's target layer).

ResNets are torchvision's builders with the CIFAR stem (3x3 stride-1 first convolution, no max-pool), as in
the presentation and the kuangliu/pytorch-cifar reference: ResNet-18 with 10 classes has 11,173,962 parameters.
Their last feature map is 4x4 for a 32x32 input.

DRN-C-26 and DRN-D-22 are written in ``lib.drn`` after Yu, Koltun & Funkhouser (2017); on 32x32 inputs their last
feature map is 8x8 (output stride 4; see ``lib.drn`` for the stride adaptation). ``imagenet=True`` builds the
paper's ImageNet strides (output stride 8) for checking against its parameter counts.

EfficientNet-B0 is timm's ``efficientnet_b0`` (4,020,358 parameters with 10 classes). Trained from scratch
(default) its stem convolution has stride 1 instead of 2, so a 32x32 image ends on a 2x2 map instead of 1x1
(total stride 16). ``pretrained=True`` instead loads timm's ImageNet weights (``timm/efficientnet_b0.ra_in1k``
from the Hugging Face Hub, stride-2 stem unchanged) for fine-tuning at 224 px: the model then resizes each
normalised 32x32 batch to 224x224 (bilinear) and re-normalises it from the CIFAR statistics to ImageNet's
inside ``forward``/``features``, so the data pipeline stays the same (last feature map 7x7). Where the weights
cannot be downloaded it fails with a message saying how to get them or to use ``pretrained: false``.
``resize_to=224`` (without ``pretrained``) builds the same ImageNet-shaped model with random weights, for reloading
a fine-tuned checkpoint offline. ``drop_rate`` / ``drop_path_rate`` are timm's dropout options (default 0).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from torchvision.models import resnet as tv_resnet

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    def deco(fn):
        MODELS[name] = fn
        return fn
    return deco


def build_model(name: str, *, num_classes: int = 10, width: float = 1.0, **kwargs) -> nn.Module:
    """Build a registered model; unknown names fail with the list of known ones."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes=num_classes, width=width, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_image(model: nn.Module, image_size: int = 32) -> int:
    """Forward FLOPs for one image, counted by ``torch.utils.flop_counter`` (a multiply-add counts as 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, image_size, image_size, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())


def _scaled(channels: int, width: float) -> int:
    return max(4, int(round(channels * width)))


class CifarResNet(tv_resnet.ResNet):
    """torchvision's ResNet with the CIFAR stem, and channel widths scaled by ``width``."""

    def __init__(self, block, layers, *, num_classes: int = 10, width: float = 1.0):
        super().__init__(block, layers, num_classes=num_classes)
        widths = [_scaled(c, width) for c in (64, 128, 256, 512)]
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = self._norm_layer(widths[0])
        self.maxpool = nn.Identity()
        self.layer1 = self._make_layer(block, widths[0], layers[0])
        self.layer2 = self._make_layer(block, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], stride=2)
        self.fc = nn.Linear(widths[3] * block.expansion, num_classes)
        for m in self.modules():  # torchvision's initialisation, re-applied to the rebuilt layers
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    @property
    def classifier(self) -> nn.Linear:
        return self.fc

    @property
    def cam_layer(self) -> nn.Module:
        """The module whose output is ``features(x)``: Grad-CAM's target layer."""
        return self.layer4


for _name, _block, _layers in (("resnet18", tv_resnet.BasicBlock, [2, 2, 2, 2]),
                               ("resnet34", tv_resnet.BasicBlock, [3, 4, 6, 3]),
                               ("resnet50", tv_resnet.Bottleneck, [3, 4, 6, 3]),
                               ("resnet101", tv_resnet.Bottleneck, [3, 4, 23, 3])):
    register(_name)(lambda *, num_classes=10, width=1.0, _b=_block, _l=_layers:
                    CifarResNet(_b, _l, num_classes=num_classes, width=width))


# WRN-28-2 for semi-supervised learning (chapter 3); ``dropout`` is its one extra option.
from .wrn import wrn28_2 as _wrn28_2  # noqa: E402

register("wrn28_2")(_wrn28_2)


from . import drn as _drn  # noqa: E402  (registered after the ResNets so MODELS keeps a stable order)

register("drn_c_26")(_drn.drn_c_26)
register("drn_d_22")(_drn.drn_d_22)


class EfficientNetB0(nn.Module):
    """timm's EfficientNet-B0 with the one ``features``/``classifier``/``cam_layer`` interface of this registry.

    ``input_size=None`` feeds images at their own size (from-scratch CIFAR training, stride-1 stem);
    ``input_size=224`` resizes every batch to 224x224 and converts the CIFAR normalisation to ImageNet's
    (the pretrained route), so callers always pass the usual normalised 32x32 batches.
    """

    def __init__(self, net: nn.Module, *, input_size: int | None = None):
        super().__init__()
        self.net = net
        self.input_size = input_size
        if input_size is not None:
            from .data import MEAN, STD

            cfg = getattr(net, "pretrained_cfg", {}) or {}
            src_mean, src_std = torch.tensor(MEAN), torch.tensor(STD)
            dst_mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406)))
            dst_std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225)))
            # x_imagenet = (x_cifar * src_std + src_mean - dst_mean) / dst_std = x_cifar * scale + shift
            self.register_buffer("scale", (src_std / dst_std).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("shift", ((src_mean - dst_mean) / dst_std).view(1, 3, 1, 1), persistent=False)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is None:
            return x
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                          align_corners=False)
        return x * self.scale + self.shift

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(self._prepare(x))

    @property
    def classifier(self) -> nn.Linear:
        return self.net.classifier

    @property
    def cam_layer(self) -> nn.Module:
        """timm's ``bn2`` (BatchNorm + SiLU after ``conv_head``): the last module of ``forward_features``."""
        return self.net.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._prepare(x))


def _pretrained_efficientnet_b0(num_classes: int, **kwargs) -> nn.Module:
    import timm

    errors: tuple[type[BaseException], ...] = (OSError, RuntimeError, ValueError)
    try:
        import httpx
        errors += (httpx.HTTPError,)
    except ImportError:
        pass
    try:
        return timm.create_model("efficientnet_b0", pretrained=True, num_classes=num_classes, **kwargs)
    except errors as err:
        raise RuntimeError(
            "efficientnet_b0 with pretrained=True needs timm's ImageNet weights (Hugging Face Hub repository "
            "'timm/efficientnet_b0.ra_in1k'), and they could not be loaded: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}\n"
            "Fix: run once on a machine that can reach huggingface.co (the weights are cached under "
            "$HF_HOME, default ~/.cache/huggingface, and found offline afterwards), or copy that cache here; "
            "or set `pretrained: false` to train EfficientNet-B0 from scratch at 32x32.") from err


@register("efficientnet_b0")
def efficientnet_b0(*, num_classes: int = 10, width: float = 1.0, pretrained: bool = False,
                    resize_to: int | None = None, drop_rate: float = 0.0,
                    drop_path_rate: float = 0.0) -> EfficientNetB0:
    """timm's EfficientNet-B0: from scratch at 32x32 with a stride-1 stem, or ImageNet-pretrained at 224 px.

    ``pretrained=True`` loads the ImageNet weights and resizes inputs to ``resize_to`` (default 224).
    ``resize_to`` without ``pretrained`` builds that same ImageNet-shaped model with random weights (stride-2 stem,
    resized inputs): use it to reload a fine-tuned checkpoint without downloading anything.
    """
    import timm

    if pretrained or resize_to is not None:
        if width != 1.0:
            raise ValueError(f"the ImageNet-shaped efficientnet_b0 (pretrained / resize_to) exists only at width 1.0, "
                             f"not width={width}")
        kwargs = dict(num_classes=num_classes, drop_rate=drop_rate, drop_path_rate=drop_path_rate)
        net = (_pretrained_efficientnet_b0(**kwargs) if pretrained
               else timm.create_model("efficientnet_b0", pretrained=False, **kwargs))
        return EfficientNetB0(net, input_size=resize_to or 224)
    if width == 1.0:
        net = timm.create_model("efficientnet_b0", pretrained=False, num_classes=num_classes, drop_rate=drop_rate,
                                drop_path_rate=drop_path_rate)
    else:  # timm's own generator with a channel multiplier (what efficientnet_b0 calls with 1.0)
        from timm.models.efficientnet import _gen_efficientnet

        net = _gen_efficientnet("efficientnet_b0", channel_multiplier=width, depth_multiplier=1.0, pretrained=False,
                                num_classes=num_classes, drop_rate=drop_rate, drop_path_rate=drop_path_rate)
    net.conv_stem.stride = (1, 1)  # the CIFAR adaptation: total stride 16, a 32x32 image ends on 2x2 (not 1x1)
    return EfficientNetB0(net)
