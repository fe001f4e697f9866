"""Under-parameterised decoders: Deep Decoder (Heckel & Hand, ICLR 2019) and ConvDecoder
(Darestani & Heckel, IEEE TCI 2021).

Both map a low-resolution input through d = len(channels) layers with d − 1 ×2 upsamplings. In
this framework z has the output's size, so the nets first average-pool z by 2**(d−1) to make the
papers' low-resolution input (pooling i.i.d. noise shrinks its spread by that factor; BatchNorm
after the first layer rescales the activations).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from dip_lightning.nets.blocks import Upsample, activation, conv, norm, use_legacy


class _Decoder(nn.Module):
    """AvgPool_{2^(d−1)} · d × layer · conv_1(c_{d−1} → out) · [Sigmoid].

    layer i: conv_k(c_{i−1} → c_i) then Upsample×2 (i < d−1) if not ``upsample_first``, else
    Upsample×2 (i > 0) then conv_k; both followed by ReLU · BatchNorm. c_{−1} = in_channels.
    """

    def __init__(self, in_channels: int, out_channels: int, channels: Sequence[int], kernel_size: int,
                 upsample_mode: str, need_sigmoid: bool, bias: bool, pad: str, upsample_first: bool):
        super().__init__()
        ch = [int(c) for c in channels]
        if not ch or min(ch) < 1:
            raise ValueError(f"channels={ch} must be a non-empty list of positive widths, e.g. [64] * 6")
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size} must be odd (same-size convolutions)")
        d = len(ch)
        self.multiple = 2 ** (d - 1)
        layers: list[nn.Module] = [nn.AvgPool2d(self.multiple) if d > 1 else nn.Identity()]
        c_prev = in_channels
        for i, c in enumerate(ch):
            c_layer = conv(c_prev, c, int(kernel_size), 1, bias, pad)
            if upsample_first:
                layers += ([Upsample(upsample_mode)] if i > 0 else []) + [c_layer]
            else:
                layers += [c_layer] + ([Upsample(upsample_mode)] if i < d - 1 else [])
            layers += [activation("ReLU"), norm("batch", c)]
            c_prev = c
        layers.append(conv(c_prev, out_channels, 1, 1, bias, pad))
        if need_sigmoid:
            layers.append(nn.Sigmoid())
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


class DeepDecoder(_Decoder):
    """Deep Decoder: per layer conv_1 · Upsample×2 · ReLU · BatchNorm (channel normalisation);
    the last layer has no upsampling; output conv_1 · Sigmoid. No convolution wider than 1×1,
    no bias by default (as in the paper's code).

    ``channels=[64] * 6`` (the paper's d = 6, k = 64) with 32 input and 3 output channels:
    23,488 parameters. ``multiple`` = 2**(len(channels) − 1).
    """

    def __init__(
        self,
        in_channels: int = 32,
        out_channels: int = 3,
        channels: Sequence[int] = (64, 64, 64, 64, 64, 64),
        upsample_mode: str = "bilinear",
        need_sigmoid: bool = True,
        bias: bool = False,
        legacy: bool = False,
    ):
        super().__init__(in_channels, out_channels, channels, 1, upsample_mode, need_sigmoid, bias,
                         "zero", upsample_first=False)
        if legacy:
            use_legacy(self)


class ConvDecoder(_Decoder):
    """ConvDecoder: per layer Upsample×2 · conv_k · ReLU · BatchNorm (the first layer, at the lowest
    resolution, has no upsampling); output conv_1 · Sigmoid.

    ``channels=[64] * 6``, 3×3 kernels, with 32 input and 3 output channels: 203,712 parameters.
    The original MRI code upsamples to arbitrary intermediate sizes and adds extra 1×1 layers and
    skip concatenations; this is the paper's plain form with ×2 steps. ``multiple`` =
    2**(len(channels) − 1).
    """

    def __init__(
        self,
        in_channels: int = 32,
        out_channels: int = 3,
        channels: Sequence[int] = (64, 64, 64, 64, 64, 64),
        kernel_size: int = 3,
        upsample_mode: str = "bilinear",
        need_sigmoid: bool = True,
        bias: bool = False,
        pad: str = "reflection",
        legacy: bool = False,
    ):
        super().__init__(in_channels, out_channels, channels, kernel_size, upsample_mode, need_sigmoid, bias,
                         pad, upsample_first=True)
        if legacy:
            use_legacy(self)
