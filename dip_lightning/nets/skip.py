"""The paper's encoder–decoder with skip connections ("skip", Ulyanov et al. 2018, Fig. / supp. mat.)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from dip_lightning.nets.blocks import Concat, Upsample, activation, conv, legacy_parts, norm, per_level


class SkipNet(nn.Module):
    """Hourglass with skip connections, built recursively level by level (level 0 = full res).

    Level i (input c_in channels at resolution r)::

        Concat( skip: conv_{ks}(c_in → s_i)·N·act                     [absent if s_i = 0]
                deep: conv_{kd, stride 2}(c_in → d_i)·N·act · conv_{kd}(d_i → d_i)·N·act
                      · [level i+1] · Upsample×2 )
        · N(s_i + u_{i+1} | d_i) · conv_{ku}(→ u_i)·N·act · [conv_1(u_i → u_i)·N·act]

    and the net is level 0 · conv_1(u_0 → out_channels) · [Sigmoid].
    Defaults are the paper's denoising / SR net: 5 levels of 128 channels, 4 skip channels,
    3×3 filters, bilinear upsampling, reflection padding, LeakyReLU(0.2), BatchNorm —
    2,217,831 parameters for 32 input and 3 output channels.

    ``in_channels`` / ``out_channels`` are filled in by the runner from the input and the image.
    """

    packable = True  # built only from blocks that dip_lightning.packing knows

    def __init__(
        self,
        in_channels: int = 32,
        out_channels: int = 3,
        channels_down: Sequence[int] = (128, 128, 128, 128, 128),
        channels_up: Sequence[int] = (128, 128, 128, 128, 128),
        channels_skip: Sequence[int] = (4, 4, 4, 4, 4),
        filter_size_down: int | Sequence[int] = 3,
        filter_size_up: int | Sequence[int] = 3,
        filter_size_skip: int = 1,
        need_sigmoid: bool = True,
        need_bias: bool = True,
        pad: str = "reflection",
        upsample_mode: str | Sequence[str] = "bilinear",
        downsample_mode: str | Sequence[str] = "stride",
        act: str = "LeakyReLU",
        norm_layer: str | None = "batch",
        need1x1_up: bool = True,
        legacy: bool = False,
    ):
        super().__init__()
        down, up, skip = list(channels_down), list(channels_up), list(channels_skip)
        levels = len(down)
        if not (len(up) == len(skip) == levels) or levels == 0:
            raise ValueError(f"channels_down/up/skip must have the same non-zero length, got "
                             f"{len(down)}/{len(up)}/{len(skip)}")
        k_down = per_level(filter_size_down, levels, "filter_size_down")
        k_up = per_level(filter_size_up, levels, "filter_size_up")
        ups = per_level(upsample_mode, levels, "upsample_mode")
        downs = per_level(downsample_mode, levels, "downsample_mode")
        self.levels = levels
        self.multiple = 2 ** levels  # input size must be divisible by this for exact round trips
        # smallest input: the deepest level must hold > 1 pixel (BatchNorm) and more than a filter's padding
        self.min_size = self.multiple * max(2, max((k - 1) // 2 for k in k_down + k_up) + 1)

        def N(c: int) -> nn.Module:
            return norm(norm_layer, c, legacy)  # (U(0, 1) weights drawn here, in the original's order)

        def level(i: int, c_in: int) -> nn.Sequential:
            deep = [conv(c_in, down[i], k_down[i], 2, need_bias, pad, downs[i]), N(down[i]), activation(act),
                    conv(down[i], down[i], k_down[i], 1, need_bias, pad), N(down[i]), activation(act)]
            if i + 1 < levels:
                deep.append(level(i + 1, down[i]))
                deep_out = up[i + 1]
            else:
                deep_out = down[i]
            deep.append(Upsample(ups[i], legacy))
            if skip[i] > 0:
                skip_branch = nn.Sequential(conv(c_in, skip[i], filter_size_skip, 1, need_bias, pad),
                                            N(skip[i]), activation(act))
                body: nn.Module = Concat(skip_branch, nn.Sequential(*deep))
            else:
                body = nn.Sequential(*deep)
            layers = [body, N(skip[i] + deep_out),
                      conv(skip[i] + deep_out, up[i], k_up[i], 1, need_bias, pad), N(up[i]), activation(act)]
            if need1x1_up:
                layers += [conv(up[i], up[i], 1, 1, need_bias, pad), N(up[i]), activation(act)]
            return nn.Sequential(*layers)

        head = [level(0, in_channels), conv(up[0], out_channels, 1, 1, need_bias, pad)]
        if need_sigmoid:
            head.append(nn.Sigmoid())
        self.body = nn.Sequential(*head)
        if legacy:
            legacy_parts(self)  # as every net: one line where legacy=true would change nothing

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)
