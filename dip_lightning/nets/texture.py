"""Multi-scale generator of the original code's ``models/texture_nets.py`` (Ulyanov et al. 2016, Texture Networks)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from dip_lightning.nets.blocks import Concat, Upsample, activation, conv, norm, use_legacy


class FillNoise(nn.Module):
    """Replace the input by fresh N(0, 1) noise of the same shape (the original's ``fill_noise``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(x)


class TextureNet(nn.Module):
    """Texture-nets generator: one branch per scale, merged coarse to fine.

    With ratios r_1 > … > r_n = 1 (each half the previous) and n_c = ``conv_num``::

        B(r)   = AvgPool_r · [FillNoise] · conv_3(in → n_c)·N·act · conv_3(n_c → n_c)·N·act
                 · conv_1(n_c → n_c)·N·act
        G_1    = B(r_1) · Upsample×2
        G_j    = Concat(G_{j-1}·N, B(r_j)·N) · [conv_3, conv_3, conv_1](j·n_c → j·n_c)·N·act each
                 · (Upsample×2 for j < n, conv_1(n·n_c → out) for j = n)

    and the net is G_n · [Sigmoid]. The original defaults to no sigmoid; here it is on, since the
    framework's images live in [0, 1]. Defaults (ratios 32..1, 8 channels) with 32 input and
    3 output channels: 129,443 parameters.
    """

    def __init__(
        self,
        in_channels: int = 32,
        out_channels: int = 3,
        ratios: Sequence[int] = (32, 16, 8, 4, 2, 1),
        fill_noise: bool = False,
        conv_num: int = 8,
        pad: str = "zero",
        act: str = "LeakyReLU",
        norm_layer: str | None = "batch",
        upsample_mode: str = "nearest",
        need_sigmoid: bool = True,
        legacy: bool = False,
    ):
        super().__init__()
        ratios = [int(r) for r in ratios]
        n = len(ratios)
        if n < 2 or ratios != [2 ** (n - 1 - i) for i in range(n)]:
            raise ValueError(f"ratios={ratios} must halve down to 1 with at least two scales, e.g. [32, 16, 8, 4, 2, 1]")
        if int(conv_num) < 1:
            raise ValueError(f"conv_num={conv_num} must be a positive number of channels")
        k = int(conv_num)
        self.multiple = ratios[0]

        def N(c: int) -> nn.Module:
            return norm(norm_layer, c)

        def cna(c_in: int, c_out: int, size: int) -> list[nn.Module]:
            return [conv(c_in, c_out, size, 1, True, pad), N(c_out), activation(act)]

        def branch(ratio: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.AvgPool2d(ratio, ratio) if ratio > 1 else nn.Identity()]
            if fill_noise:
                layers.append(FillNoise())
            return layers + cna(in_channels, k, 3) + cna(k, k, 3) + cna(k, k, 1)

        current = nn.Sequential(*branch(ratios[0]), Upsample(upsample_mode))
        for j in range(2, n + 1):
            c = j * k
            merged = Concat(nn.Sequential(current, N(c - k)), nn.Sequential(*branch(ratios[j - 1]), N(k)))
            layers = [merged] + cna(c, c, 3) + cna(c, c, 3) + cna(c, c, 1)
            layers.append(conv(c, out_channels, 1, 1, True, pad) if j == n else Upsample(upsample_mode))
            current = nn.Sequential(*layers)
        if need_sigmoid:
            current.append(nn.Sigmoid())
        self.body = current
        if legacy:
            use_legacy(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)
