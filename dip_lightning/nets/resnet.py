"""Full-resolution residual net of the original code's ``models/resnet.py`` (Ulyanov et al. 2018, Sec. 4)."""
from __future__ import annotations

import torch
import torch.nn as nn

from dip_lightning.nets.blocks import activation, conv, norm, use_legacy


class Residual(nn.Sequential):
    """``x + body(x)`` (no activation after the sum, as in the original)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


class ResNet(nn.Module):
    """ResNet without any down-sampling: every layer works at the image's resolution::

        conv_3(in → C)·act
        · num_blocks × [x + conv_3(C → C)·N·act·conv_3(C → C)·N]      (no bias; plain blocks if
                                                                       need_residual is false)
        · conv_3(C → C)·N · conv_3(C → out) · [Sigmoid]

    ``pad`` applies to the first and last convolutions; the inner ones are zero-padded, as in the
    original. The inpainting notebook's library net (1 → 3 channels, 8 blocks of 32 channels,
    BatchNorm, LeakyReLU) has 158,979 parameters.
    """

    def __init__(
        self,
        in_channels: int = 32,
        out_channels: int = 3,
        num_blocks: int = 8,
        num_channels: int = 32,
        need_residual: bool = True,
        act: str = "LeakyReLU",
        need_sigmoid: bool = True,
        norm_layer: str | None = "batch",
        pad: str = "reflection",
        legacy: bool = False,
    ):
        super().__init__()
        if int(num_blocks) < 0:
            raise ValueError(f"num_blocks={num_blocks} must be >= 0")
        if int(num_channels) < 1:
            raise ValueError(f"num_channels={num_channels} must be a positive number of channels")
        c = int(num_channels)
        self.multiple = 1
        block = Residual if need_residual else nn.Sequential
        layers: list[nn.Module] = [conv(in_channels, c, 3, 1, True, pad), activation(act)]
        for _ in range(int(num_blocks)):
            layers.append(block(conv(c, c, 3, 1, False, "zero"), norm(norm_layer, c), activation(act),
                                conv(c, c, 3, 1, False, "zero"), norm(norm_layer, c)))
        layers += [conv(c, c, 3, 1, True, "zero"), norm(norm_layer, c), conv(c, out_channels, 3, 1, True, pad)]
        if need_sigmoid:
            layers.append(nn.Sigmoid())
        self.body = nn.Sequential(*layers)
        if legacy:
            use_legacy(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)
