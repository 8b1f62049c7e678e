"""Ho et al.'s CIFAR-10 U-Net as diffusers' ``UNet2DModel``.

With the defaults (the full profile of ``params/02_generative.yaml``): channels 128, multipliers (1,
2, 2, 2), two residual blocks per resolution, single-head self-attention at 16x16, dropout 0.1 --
the paper's 35.7 M parameters. The smaller profiles use a narrow U-Net of the same shape.
"""
from __future__ import annotations

import torch.nn as nn


def build_unet(*, channels: int = 128, multipliers=(1, 2, 2, 2), layers_per_block: int = 2,
               attention_resolutions=(16,), dropout: float = 0.1,
               image_size: int = 32) -> nn.Module:
    """diffusers' ``UNet2DModel`` laid out as Ho et al.'s U-Net (see the module docstring)."""
    from diffusers import UNet2DModel

    res = [image_size // 2 ** i for i in range(len(multipliers))]
    down = tuple("AttnDownBlock2D" if r in attention_resolutions else "DownBlock2D" for r in res)
    up = tuple("AttnUpBlock2D" if r in attention_resolutions else "UpBlock2D"
               for r in reversed(res))
    return UNet2DModel(sample_size=image_size, in_channels=3, out_channels=3,
                       layers_per_block=layers_per_block,
                       block_out_channels=tuple(channels * m for m in multipliers),
                       down_block_types=down, up_block_types=up, dropout=dropout,
                       attention_head_dim=None, norm_num_groups=min(32, channels))
