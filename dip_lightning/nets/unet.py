"""U-Net of the original code's ``models/unet.py`` (Ulyanov et al. 2018, supp. mat.; Ronneberger et al. 2015)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dip_lightning.nets.blocks import Upsample, conv, norm, use_legacy

UPSAMPLE_MODES = ("deconv", "bilinear", "nearest")


def _norm(name: str | None, channels: int) -> nn.Module:
    """The original's norms: InstanceNorm2d without affine parameters (torch's default), else blocks.norm."""
    if name == "instance":
        return nn.InstanceNorm2d(channels)
    return norm(name, channels)


def _double_conv(c_in: int, c_out: int, norm_layer: str | None, bias: bool, pad: str) -> nn.Sequential:
    """conv_3(c_in → c_out)·N·ReLU · conv_3(c_out → c_out)·N·ReLU."""
    return nn.Sequential(conv(c_in, c_out, 3, 1, bias, pad), _norm(norm_layer, c_out), nn.ReLU(inplace=True),
                         conv(c_out, c_out, 3, 1, bias, pad), _norm(norm_layer, c_out), nn.ReLU(inplace=True))


def _center_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]


class _Up(nn.Module):
    """Decoder level: up(deep: c_deep → c_out), concat with the skip (c_out), double conv without norm.

    ``up`` is ConvTranspose2d(4, stride 2, pad 1) for 'deconv', else Upsample×2 · conv_3.
    """

    def __init__(self, c_deep: int, c_out: int, mode: str, bias: bool, pad: str):
        super().__init__()
        if mode == "deconv":
            self.up: nn.Module = nn.ConvTranspose2d(c_deep, c_out, 4, stride=2, padding=1, bias=bias)
        else:
            self.up = nn.Sequential(Upsample(mode), conv(c_deep, c_out, 3, 1, bias, pad))
        self.conv = _double_conv(2 * c_out, c_out, None, bias, pad)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(deep)
        h, w = min(up.shape[-2], skip.shape[-2]), min(up.shape[-1], skip.shape[-1])
        return self.conv(torch.cat([_center_crop(up, h, w), _center_crop(skip, h, w)], 1))


class UNet(nn.Module):
    """U-Net with 4 + ``more_layers`` max-pool levels (the original's ``UNet``).

    Widths f = [64, 128, 256, 512, 1024] // feature_scale; the extra levels keep f[4]::

        start = DC(in → f0)
        down_i = MaxPool2 · DC(f_{i-1} → f_i)            i = 1..4, then more_layers × DC(f4 → f4)
        up     = Up(deep → f_i) · cat(skip_i) · DC_noN(2 f_i → f_i)   deepest first
        head   = conv_1(f0 → out) · [Sigmoid]

    DC = two conv_3·N·ReLU; the decoder's DCs have no norm (as in the original). ``concat_x``
    concatenates the average-pooled input z to every encoder output (each level then produces
    f_i − in_channels channels itself). 'instance' norm is InstanceNorm2d without affine
    parameters, as in the original. The inpainting notebook's library net (1 → 3 channels,
    feature_scale 8, more_layers 1, deconv, zero pad, instance norm) has 1,616,315 parameters.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        feature_scale: int = 4,
        more_layers: int = 0,
        concat_x: bool = False,
        upsample_mode: str = "deconv",
        pad: str = "zero",
        norm_layer: str | None = "instance",
        need_sigmoid: bool = True,
        need_bias: bool = True,
        legacy: bool = False,
    ):
        super().__init__()
        if upsample_mode not in UPSAMPLE_MODES:
            raise ValueError(f"unknown upsample_mode {upsample_mode!r}; choose deconv, bilinear or nearest")
        if not 1 <= int(feature_scale) <= 64:
            raise ValueError(f"feature_scale={feature_scale} must be between 1 and 64 (widths are 64..1024 // it)")
        if int(more_layers) < 0:
            raise ValueError(f"more_layers={more_layers} must be >= 0")
        if norm_layer not in (None, "none", False, "batch", "instance"):
            raise ValueError(f"unknown norm {norm_layer!r}; choose batch, instance or none")
        f = [c // int(feature_scale) for c in (64, 128, 256, 512, 1024)]
        f += [f[4]] * int(more_layers)
        if concat_x and min(f) <= in_channels:
            raise ValueError(f"concat_x needs every width {f} > in_channels={in_channels}; lower feature_scale")
        self.concat_x = bool(concat_x)
        self.multiple = 2 ** (len(f) - 1)
        own = [c - in_channels if concat_x else c for c in f]  # channels each encoder level computes

        self.start = _double_conv(in_channels, own[0], norm_layer, need_bias, pad)
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2, 2), _double_conv(f[i - 1], own[i], norm_layer, need_bias, pad))
            for i in range(1, len(f)))
        # deepest first: level i+1 (f[i+1] channels) goes up to f[i] and meets skip i
        self.ups = nn.ModuleList(_Up(f[i + 1], f[i], upsample_mode, need_bias, pad)
                                 for i in reversed(range(len(f) - 1)))
        head = [conv(f[0], out_channels, 1, 1, need_bias, pad)]
        if need_sigmoid:
            head.append(nn.Sigmoid())
        self.head = nn.Sequential(*head)
        if legacy:
            use_legacy(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.start(z)
        pooled = z
        if self.concat_x:
            x = torch.cat([x, z], 1)
        skips = [x]
        for down in self.downs:
            x = down(x)
            if self.concat_x:
                pooled = F.avg_pool2d(pooled, 2, 2)
                x = torch.cat([x, _center_crop(pooled, *x.shape[-2:])], 1)
            skips.append(x)
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)
