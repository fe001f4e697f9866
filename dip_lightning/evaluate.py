"""Evaluation protocols of the paper's tables.

SR (the original's evaluation script): both images quantised to 8 bits, converted to BT.601 luma
Y = (16 + 65.481·R + 128.553·G + 24.966·B) / 255 (so Y ∈ [16, 235]/255), a border shaved —
4 pixels top/left and 5 bottom/right, the script's off-by-one — and PSNR with peak 1.
Inpainting / denoising tables: PSNR over the whole image (all channels), peak 1, 8-bit images.
"""
from __future__ import annotations

import torch


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to 8 bits, as the saved result images are."""
    return torch.round(x.clamp(0, 1) * 255.0) / 255.0


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """(C, H, W) RGB (or gray, treated as R = G = B) in [0, 1] -> (1, H, W) BT.601 luma in [16, 235]/255."""
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    r, g, b = x[0], x[1], x[2]
    return ((16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0)[None]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * torch.log10(torch.tensor(1.0 / mse)).item()


def psnr_y_shaved(restored: torch.Tensor, truth: torch.Tensor, top_left: int = 4, bottom_right: int = 5) -> float:
    """The SR protocol: Y channel, border shaved (4 top/left, 5 bottom/right), 8-bit images."""
    ya, yb = rgb_to_y(quantize(restored)), rgb_to_y(quantize(truth))
    h, w = ya.shape[-2:]
    sl = (slice(None), slice(top_left, h - bottom_right), slice(top_left, w - bottom_right))
    return psnr(ya[sl], yb[sl])


def psnr_full(restored: torch.Tensor, truth: torch.Tensor) -> float:
    """Whole-image PSNR of the 8-bit images (inpainting / denoising tables)."""
    return psnr(quantize(restored), quantize(truth))
