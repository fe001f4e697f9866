"""Building blocks shared by the networks: padded convolutions, down/up-sampling, norms, activations.

All nets are built from these few blocks so that later transformations (memory format, packing
K fits with grouped convolutions) only have to know them.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dip_lightning.nets.upsample import (Upsample, bilinear_up2, bilinear_up2_aligned, deterministic_cuda,  # noqa: F401
                                         nearest_up2, replicate_pad, set_deterministic)
from dip_lightning.ops import lanczos_kernel


def activation(name: str) -> nn.Module:
    """'LeakyReLU' (slope 0.2, the paper's), 'ReLU', 'ELU', 'Tanh' or 'none'."""
    table = {
        "leakyrelu": lambda: nn.LeakyReLU(0.2, inplace=True),
        "relu": lambda: nn.ReLU(inplace=True),
        "elu": lambda: nn.ELU(inplace=True),
        "tanh": nn.Tanh,
        "none": nn.Identity,
    }
    key = str(name).lower()
    if key not in table:
        raise ValueError(f"unknown activation {name!r}; choose one of LeakyReLU, ReLU, ELU, Tanh, none")
    return table[key]()


def norm(name: str | None, channels: int, legacy_init: bool = False) -> nn.Module:
    """'batch' (BatchNorm2d, always in batch-statistics mode for DIP), 'instance' or None.

    ``legacy_init`` reproduces torch < 1.2, which initialised BatchNorm weights U(0, 1)
    (the paper's numbers were produced that way); today's default is 1.
    """
    if name in (None, "none", False):
        return nn.Identity()
    if name == "batch":
        layer = nn.BatchNorm2d(channels)
    elif name == "instance":
        layer = nn.InstanceNorm2d(channels, affine=True)
    else:
        raise ValueError(f"unknown norm {name!r}; choose batch, instance or none")
    if legacy_init:
        nn.init.uniform_(layer.weight)
    return layer


class LanczosDownsample(nn.Module):
    """Anti-aliased ×factor downsampling with a Lanczos2 kernel (see ``ops.lanczos_kernel``)."""

    def __init__(self, channels: int, factor: int):
        super().__init__()
        self.factor = factor
        self.channels = channels
        k = lanczos_kernel(factor)
        self.register_buffer("weight", k.expand(channels, 1, *k.shape).clone(), persistent=False)
        self.pad = (k.shape[0] - factor) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = replicate_pad(x, self.pad)
        return F.conv2d(x, self.weight.to(x.dtype), stride=self.factor, groups=self.channels)


class _ReflectPad(torch.autograd.Function):
    """``F.pad(x, pad, mode='reflect')`` with a backward that folds the border gradient back with a
    few row/column adds onto one copy of the interior, in ``x``'s memory format. Slices and adds
    only: deterministic on CUDA, where aten's reflection-pad backward is refused under
    deterministic mode; and in channels_last cheaper than aten's, which round-trips the gradient
    through NCHW (~4 full-size copies per call)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
        ctx.pad = pad
        ctx.fmt = torch.channels_last if is_channels_last(x) else torch.contiguous_format
        return F.pad(x, pad, mode="reflect")

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        left, right, top, bottom = ctx.pad
        h, w = g.shape[-2] - top - bottom, g.shape[-1] - left - right

        def fold_cols(strip: torch.Tensor, fmt=torch.preserve_format) -> torch.Tensor:
            """(…, W + left + right) -> (…, W): reflected columns added to their sources."""
            core = strip[..., left:left + w].clone(memory_format=fmt)
            for j in range(1, left + 1):
                core[..., j] += strip[..., left - j]
            for i in range(right):
                core[..., w - 2 - i] += strip[..., left + w + i]
            return core

        out = fold_cols(g[..., top:top + h, :], ctx.fmt)
        for i in range(1, top + 1):  # padded row top - i reflects input row i
            out[..., i, :] += fold_cols(g[..., top - i, :])
        for i in range(bottom):  # padded row top + h + i reflects input row h - 2 - i
            out[..., h - 2 - i, :] += fold_cols(g[..., top + h + i, :])
        return out, None


def reflect_pad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Reflection padding (left, right, top, bottom) of the last two dims, as ``F.pad(mode='reflect')``.
    Inputs that need a gradient get ``_ReflectPad``'s backward when channels_last, and in every
    layout on CUDA under ``deterministic=true``; else aten's (fine in NCHW)."""
    if not (x.requires_grad and torch.is_grad_enabled()):
        return F.pad(x, pad, mode="reflect")
    if not is_channels_last(x) and not deterministic_cuda(x):
        return F.pad(x, pad, mode="reflect")
    return _ReflectPad.apply(x, tuple(int(p) for p in pad))


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` whose ``padding_mode='reflect'`` pads with ``reflect_pad`` (same values,
    cheaper backward in channels_last). Same parameters and state dict as ``nn.Conv2d``."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode == "reflect":
            return F.conv2d(reflect_pad(input, self._reversed_padding_repeated_twice), weight, bias, self.stride,
                            0, self.dilation, self.groups)
        return super()._conv_forward(input, weight, bias)


def conv(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, bias: bool = True,
         pad: str = "reflection", downsample_mode: str = "stride") -> nn.Module:
    """k×k convolution with 'same' padding; stride 2 downsamples by the chosen mode.

    ``pad`` is 'reflection' (the paper's) or 'zero'. ``downsample_mode`` for stride > 1:
    'stride' (strided conv), 'avg' / 'max' (stride-1 conv then pooling), 'lanczos2'
    (stride-1 conv then a Lanczos2 ×stride downsampler).
    """
    if pad not in ("reflection", "zero"):
        raise ValueError(f"unknown pad {pad!r}; choose reflection or zero")
    if downsample_mode not in ("stride", "avg", "max", "lanczos2"):
        raise ValueError(f"unknown downsample_mode {downsample_mode!r}; choose stride, avg, max or lanczos2")
    conv_stride = stride if downsample_mode == "stride" else 1
    p = (kernel_size - 1) // 2
    layer = Conv2d(in_ch, out_ch, kernel_size, stride=conv_stride, padding=p, bias=bias,
                      padding_mode="reflect" if (pad == "reflection" and p > 0) else "zeros")
    if stride == 1 or downsample_mode == "stride":
        return layer
    down = {"avg": lambda: nn.AvgPool2d(stride, stride), "max": lambda: nn.MaxPool2d(stride, stride),
            "lanczos2": lambda: LanczosDownsample(out_ch, stride)}[downsample_mode]()
    return nn.Sequential(layer, down)


def legacy_parts(net: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """The bilinear upsamplers and BatchNorms ``legacy=true`` changes; a net with neither is a clear
    error (the setting would silently change nothing)."""
    ups = [m for m in net.modules() if isinstance(m, Upsample) and m.mode == "bilinear"]
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    if not ups and not bns:
        raise ValueError(f"legacy=true changes bilinear upsampling and BatchNorm's init, and this {type(net).__name__} "
                         f"has neither (see its upsample_mode / norm_layer); set legacy=false")
    return ups, bns


def use_legacy(net: nn.Module) -> None:
    """``legacy=true`` for a built net: paper-era torch semantics, bilinear upsampling with
    ``align_corners=True`` (torch < 0.4) and BatchNorm weights drawn U(0, 1) (torch < 1.2). A net
    with neither is a clear error (the setting would silently change nothing)."""
    ups, bns = legacy_parts(net)
    for m in ups:
        m.align_corners = True
    for m in bns:
        nn.init.uniform_(m.weight)


def is_channels_last(x: torch.Tensor) -> bool:
    """True for a 4-d tensor stored channels_last (and not also plain contiguous)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class _KeepGradLayout(torch.autograd.Function):
    """Identity whose backward returns the gradient in the input's memory format.

    ``torch.cat``'s backward hands each branch a channel slice of the output gradient; in
    channels_last that slice is strided, and the upsampling / convolution backwards that follow
    fall back to slow paths and NCHW results (measured: bilinear-upsample backward 7× slower and a
    layout round trip per level). Making the slice contiguous in the input's format costs one small copy.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.channels_last = is_channels_last(x)
        # as_strided, not view_as: a view recomputes the stride of a size-1 batch dim, and aten then
        # no longer sees the tensor as channels_last (torch.cat of such views returns NCHW)
        return x.as_strided(x.shape, x.stride(), x.storage_offset())

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last if ctx.channels_last else torch.contiguous_format
        return grad.contiguous(memory_format=fmt)


def keep_grad_layout(x: torch.Tensor) -> torch.Tensor:
    """``x``, with its gradient made contiguous in ``x``'s memory format (see ``_KeepGradLayout``).
    Not under ``torch.compile``, where inductor chooses the layouts (and an ``as_strided`` in the graph
    kept it from fusing the concatenation: measured 1.50 vs 1.74 it/s at 256²)."""
    if not (x.requires_grad and torch.is_grad_enabled()) or torch.compiler.is_compiling():
        return x
    return _KeepGradLayout.apply(x)


class Concat(nn.Module):
    """Run branches on the same input and concatenate along channels.

    Where branch outputs disagree in size (odd inputs through stride-2 + ×2 upsampling), each is
    centre-cropped to the smallest, as the original code did.
    """

    def __init__(self, *branches: nn.Module):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.groups = 1  # K packed fits: concatenate per fit, keeping each fit's channels together

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        if any(is_channels_last(o) for o in outs):  # one layout for all: a mixed cat is slow and NCHW
            outs = [o.contiguous(memory_format=torch.channels_last) for o in outs]
        outs = [keep_grad_layout(o) for o in outs]
        h = min(o.shape[-2] for o in outs)
        w = min(o.shape[-1] for o in outs)
        outs = [o if o.shape[-2:] == (h, w) else
                o[..., (o.shape[-2] - h) // 2:(o.shape[-2] - h) // 2 + h,
                  (o.shape[-1] - w) // 2:(o.shape[-1] - w) // 2 + w] for o in outs]
        if self.groups == 1:
            return torch.cat(outs, dim=1)
        return _GroupedCat.apply(self.groups, *outs)


class _GroupedCat(torch.autograd.Function):
    """Channel concatenation of K packed fits, fit by fit: [a_0 b_0 | a_1 b_1 | …] from
    a = [a_0 | a_1 | …] and b = [b_0 | …]. Block copies into one output in the inputs' memory
    format, and the backward copies the blocks back, each gradient in its input's format (a
    reshape to (N, K, C/K, H, W) and back, as before, returned NCHW tensors in a channels_last net)."""

    @staticmethod
    def forward(ctx, k: int, *outs: torch.Tensor) -> torch.Tensor:
        ctx.k, ctx.sizes = k, [o.shape[1] // k for o in outs]
        ctx.fmts = [torch.channels_last if is_channels_last(o) else torch.contiguous_format for o in outs]
        ctx.dtypes = [o.dtype for o in outs]
        n, _, h, w = outs[0].shape
        per_fit = sum(ctx.sizes)
        dtype = outs[0].dtype
        for o in outs[1:]:  # as torch.cat promotes
            dtype = torch.promote_types(dtype, o.dtype)
        out = torch.empty((n, k * per_fit, h, w), dtype=dtype, device=outs[0].device,
                          memory_format=ctx.fmts[0])
        for j in range(k):
            at = j * per_fit
            for o, c in zip(outs, ctx.sizes):
                out[:, at:at + c].copy_(o[:, j * c:(j + 1) * c])
                at += c
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        k, per_fit = ctx.k, sum(ctx.sizes)
        n, _, h, w = grad.shape
        grads = [torch.empty((n, k * c, h, w), dtype=dt, device=grad.device, memory_format=fmt)
                 for c, fmt, dt in zip(ctx.sizes, ctx.fmts, ctx.dtypes)]
        for j in range(k):
            at = j * per_fit
            for g, c in zip(grads, ctx.sizes):
                g[:, j * c:(j + 1) * c].copy_(grad[:, at:at + c])
                at += c
        return (None, *grads)


def per_level(value, levels: int, name: str) -> list:
    """Broadcast a scalar knob to one value per level; check a list's length."""
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, str)):
        value = list(value)
        if len(value) != levels:
            raise ValueError(f"{name} has {len(value)} entries but the net has {levels} levels; "
                             f"give one value per level or a single value")
        return value
    return [value] * levels


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())

