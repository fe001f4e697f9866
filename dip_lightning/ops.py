"""Small numerical operators shared by tasks and networks."""
from __future__ import annotations

import torch


def lanczos(x: torch.Tensor, a: int = 2) -> torch.Tensor:
    """Lanczos window L(x) = sinc(x) · sinc(x / a) for |x| < a, else 0 (sinc(x) = sin(πx)/(πx))."""
    out = torch.sinc(x) * torch.sinc(x / a)
    return torch.where(x.abs() < a, out, torch.zeros_like(out))


def lanczos_kernel(factor: int, a: int = 2) -> torch.Tensor:
    """The paper's SR downsampling kernel, Lanczos-a with its support scaled by the factor, centred
    on each low-resolution pixel's block of factor × factor high-resolution pixels.

    Even factors: the original's phase 0.5, 2·a·factor taps at offsets (n − a·factor + 0.5) / factor,
    n = 0 … 2·a·factor − 1 (16×16 for ×4, 32×32 for ×8). Odd factors: the block's centre is a pixel,
    so 2·a·factor + 1 taps at offsets (n − a·factor) / factor (13×13 for ×3); the original's
    phase-0.5 kernel cannot be centred there (its padding of 1.5·factor px is not whole).
    The 2-D kernel is the outer product, normalised to sum 1; pad it by (size − factor) / 2 px.
    """
    if factor % 2 == 0 or factor == 1:  # (×1: the classic 4-tap half-pixel filter)
        t = (torch.arange(2 * a * factor, dtype=torch.float64) - a * factor + 0.5) / factor
    else:
        t = (torch.arange(2 * a * factor + 1, dtype=torch.float64) - a * factor) / factor
    k1 = lanczos(t, a)
    k2 = torch.outer(k1, k1)
    return (k2 / k2.sum()).float()


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """Normalised 2-D Gaussian kernel of odd ``size``."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    k = torch.outer(g, g)
    return (k / k.sum()).float()


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)

