"""×2 upsampling: nearest or bilinear (``align_corners`` False, or True for ``legacy=true``), with
formulations for ``torch.compile`` and for deterministic CUDA backwards; and the run's
``deterministic`` flag that selects them (also read by ``blocks.reflect_pad``)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

#: set by ``set_deterministic`` (the run's ``deterministic=true``): on CUDA, bilinear ×2 upsampling
#: then runs as ``bilinear_up2`` / ``bilinear_up2_aligned`` and reflection padding with its own
#: backward, all deterministic (interpolate's CUDA backward uses atomic adds; aten's reflection-pad
#: backward is refused in deterministic mode; the CPU kernels are deterministic).
_DETERMINISTIC = False


def set_deterministic(flag: bool) -> None:
    global _DETERMINISTIC
    _DETERMINISTIC = bool(flag)


def deterministic_cuda(x: torch.Tensor) -> bool:
    """True when ``x`` is on CUDA and the run is ``deterministic=true``."""
    return _DETERMINISTIC and x.is_cuda


def _up2_along(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Linear ×2 upsampling of one dim (half-pixel centres, edges clamped): output 2i is
    ¼·x[i−1] + ¾·x[i] and output 2i+1 is ¾·x[i] + ¼·x[i+1], with x[−1] = x[0] and x[n] = x[n−1]."""
    n = x.shape[dim]
    prev = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
    nxt = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
    pair = torch.stack([0.25 * prev + 0.75 * x, 0.75 * x + 0.25 * nxt], dim + 1)
    return pair.flatten(dim, dim + 1)


def bilinear_up2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear ×2 upsampling, equal to ``F.interpolate(x, scale_factor=2, mode='bilinear',
    align_corners=False)``, written as shifted blends: its backward is slices and adds, with no
    scatter. That makes it deterministic on CUDA, and under ``torch.compile`` it fuses into the
    neighbouring kernels; inductor lowers interpolate's backward to a serial scatter-add instead
    (measured on the 2-core CPU, skip net at 128²: that one kernel took 50 ms of a 210 ms step).
    In eager mode aten's kernel is faster (channels_last, 64² → 128², forward + backward: 1.5 ms vs 30 ms)."""
    return _up2_along(_up2_along(x, x.dim() - 2), x.dim() - 1)


_ALIGNED: dict = {}


def _aligned_matrix(n: int, like: torch.Tensor) -> torch.Tensor:
    """(2n, n) weights of linear ×2 upsampling with ``align_corners=True``: output i samples source
    position i·(n − 1)/(2n − 1), between its two neighbours. Built from one-hot rows (no scatter)."""
    key = (n, like.device, like.dtype)
    if key not in _ALIGNED:
        src = torch.arange(2 * n, device=like.device, dtype=torch.float64) * ((n - 1) / max(2 * n - 1, 1))
        i0 = src.floor().long().clamp(max=n - 1)
        i1 = (i0 + 1).clamp(max=n - 1)
        frac = (src - i0.double())[:, None]
        m = (1 - frac) * F.one_hot(i0, n).double() + frac * F.one_hot(i1, n).double()
        _ALIGNED[key] = m.to(like.dtype)
    return _ALIGNED[key]


def bilinear_up2_aligned(x: torch.Tensor) -> torch.Tensor:
    """Bilinear ×2 upsampling with ``align_corners=True`` (``legacy=true``, torch < 0.4), equal to
    ``F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=True)``, as two small matrix
    products (rows, then columns): their backward is matrix products too, deterministic on CUDA,
    where interpolate's backward uses atomic adds."""
    mh, mw = _aligned_matrix(x.shape[-2], x), _aligned_matrix(x.shape[-1], x)
    return torch.matmul(torch.matmul(mh, x), mw.t())


def nearest_up2(x: torch.Tensor) -> torch.Tensor:
    """Nearest ×2 upsampling, equal to ``F.interpolate(x, scale_factor=2, mode='nearest')``, as a
    broadcast: its backward is a sum over the 2×2 copies, where inductor would lower interpolate's
    backward to a scatter-add (see ``bilinear_up2``). Used under ``torch.compile`` only."""
    n, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)


class Upsample(nn.Module):
    """×2 upsampling: 'nearest' or 'bilinear' (``align_corners=True`` is torch < 0.4's behaviour)."""

    def __init__(self, mode: str = "bilinear", align_corners: bool = False):
        super().__init__()
        if mode not in ("nearest", "bilinear"):
            raise ValueError(f"unknown upsample mode {mode!r}; choose nearest or bilinear")
        self.mode = mode
        self.align_corners = align_corners if mode == "bilinear" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        compiling = torch.compiler.is_compiling()
        deterministic = deterministic_cuda(x)
        if self.mode == "bilinear" and self.align_corners and deterministic:
            return bilinear_up2_aligned(x)
        if self.mode == "bilinear" and not self.align_corners and (compiling or deterministic):
            return bilinear_up2(x)
        if self.mode == "nearest" and compiling and x.dim() == 4:
            return nearest_up2(x)
        return F.interpolate(x, scale_factor=2, mode=self.mode, align_corners=self.align_corners)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, align_corners={self.align_corners}"


def replicate_pad(x: torch.Tensor, pad: int | tuple[int, int, int, int]) -> torch.Tensor:
    """``F.pad(x, pad, mode='replicate')`` (``pad``: (left, right, top, bottom), or one int for all
    four); on CUDA under ``deterministic=true`` built from expanded edge rows and columns, whose
    backward is sums (aten's replication-pad backward is refused in deterministic mode there). Used
    by the operators of SR (Lanczos downsampler) and deblurring."""
    pads = (pad,) * 4 if isinstance(pad, int) else tuple(int(p) for p in pad)
    if not any(pads):
        return x
    if not deterministic_cuda(x):
        return F.pad(x, pads, mode="replicate")
    return _replicate_pad_by_expand(x, pads)


def _replicate_pad_by_expand(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    def along(t: torch.Tensor, dim: int, before: int, after: int) -> torch.Tensor:
        parts = []
        for n, at in ((before, 0), (None, None), (after, t.shape[dim] - 1)):
            if n is None:
                parts.append(t)
            elif n > 0:
                size = list(t.shape)
                size[dim] = n
                parts.append(t.narrow(dim, at, 1).expand(size))
        return torch.cat(parts, dim)

    left, right, top, bottom = pads
    return along(along(x, x.dim() - 2, top, bottom), x.dim() - 1, left, right)
