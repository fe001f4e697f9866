"""Image quality: one PSNR for the step, the outputs and the paper's evaluation protocols.

PSNR (peak 1) = −10·log10(MSE), written as plain tensor maths: no Python data becomes a tensor,
so on a GPU it never copies from the host (torchmetrics' PSNR with ``dim=`` builds
``tensor(target.size())`` on every call). The arithmetic is torchmetrics' own,
``−ln(SSE / n) · (10 / ln 10)``, so float32 values (the step's) equal it to the bit; the constant
is taken in the input's precision (torchmetrics takes it in float32 even for float64 images, which
costs float64 protocols ~1e-6 dB).

Protocols of the paper's tables:
- SR (the original evaluation script): both images quantised to 8 bits, BT.601 luma
  Y = (16 + 65.481·R + 128.553·G + 24.966·B) / 255, a border shaved (4 px top/left, 5 px
  bottom/right: the script's off-by-one), PSNR with peak 1.
- Inpainting / denoising: PSNR over the whole 8-bit image (all channels).
"""
from __future__ import annotations

import math

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

#: 10 / ln(10) in float32 (as torchmetrics computes it) and in float64
_DB_PER_NEPER = {torch.float32: float(10.0 / torch.log(torch.tensor(10.0))), torch.float64: 10.0 / math.log(10.0)}


def split(x: torch.Tensor, k: int) -> torch.Tensor:
    """(1, K·C, H, W) -> (K, C, H, W): one image per fit."""
    return x.reshape(k, x.shape[1] // k, *x.shape[-2:])


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV: mean |x[i+1, j] − x[i, j]| + mean |x[i, j+1] − x[i, j]|."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def psnr(a: torch.Tensor, b: torch.Tensor, fits: int | None = None) -> torch.Tensor:
    """PSNR (peak 1) of ``a`` against ``b``: a 0-d tensor over all elements, or with ``fits=K`` a
    length-K vector, one per packed fit (channels [k·C, (k+1)·C))."""
    if fits is None:
        mse = torch.sum(torch.pow(a - b, 2)) / b.numel()
    else:
        if a.ndim == 4:  # images: (1, K·C, H, W) -> (K, C, H, W)
            d = split(a, fits) - split(b, fits)
            mse = torch.sum(d * d, dim=(1, 2, 3)) / (b.numel() // fits)
        else:  # any observation: packed fits are consecutive blocks of dim 1
            d = (a - b).reshape(fits, -1)
            mse = torch.sum(d * d, dim=1) / (b.numel() // fits)
    return -torch.log(mse) * _DB_PER_NEPER.get(mse.dtype, _DB_PER_NEPER[torch.float32])


def masked_psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, fits: int) -> torch.Tensor:
    """PSNR (peak 1) of ``a`` against ``b`` over the elements where ``mask`` is 1, per packed fit
    (length K); a fit with an empty mask counts one element (no division by zero)."""
    d = (a - b).reshape(fits, -1)
    m = mask.expand_as(a).reshape(fits, -1)
    return -10.0 * torch.log10((d * d * m).sum(1) / m.sum(1).clamp_min(1.0))


def ssim(a: torch.Tensor, b: torch.Tensor, fits: int | None = None) -> torch.Tensor:
    """SSIM (11×11 Gaussian window, data range 1): 0-d, or per fit with ``fits=K``; NaN for images
    under 11 pixels."""
    k = 1 if fits is None else fits
    if min(a.shape[-2:]) < 11:
        return torch.full(() if fits is None else (k,), math.nan, device=a.device)
    if fits is None:
        return structural_similarity_index_measure(a, b, data_range=1.0)
    return structural_similarity_index_measure(split(a, k), split(b, k), data_range=1.0, reduction="none")


# ------------------------------------------------------------------ the paper's protocols
def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to 8 bits, as the saved result images are."""
    return torch.round(x.clamp(0, 1) * 255.0) / 255.0


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """(C, H, W) RGB (or gray, treated as R = G = B) in [0, 1] -> (1, H, W) BT.601 luma in [16, 235]/255."""
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    r, g, b = x[0], x[1], x[2]
    return ((16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0)[None]


def psnr_y_shaved(restored: torch.Tensor, truth: torch.Tensor, top_left: int = 4, bottom_right: int = 5) -> float:
    """The SR protocol: Y channel, border shaved (4 top/left, 5 bottom/right), 8-bit images."""
    ya, yb = rgb_to_y(quantize(restored)), rgb_to_y(quantize(truth))
    h, w = ya.shape[-2:]
    sl = (slice(None), slice(top_left, h - bottom_right), slice(top_left, w - bottom_right))
    return float(psnr(ya[sl].double(), yb[sl].double()))


def psnr_full(restored: torch.Tensor, truth: torch.Tensor) -> float:
    """Whole-image PSNR of the 8-bit images (inpainting / denoising tables)."""
    return float(psnr(quantize(restored).double(), quantize(truth).double()))


#: ``eval_protocol`` -> the score of (restored, ground truth), both (C, H, W) in [0, 1]
PROTOCOLS = {"full": psnr_full, "y_shaved": psnr_y_shaved}


def score(t: torch.Tensor | float | None) -> float | None:
    """A metric as metrics.json holds it: a float rounded to 4 places; None when missing or not finite."""
    if t is None:
        return None
    v = float(t)
    return None if math.isnan(v) or math.isinf(v) else round(v, 4)
