"""Small numerical operators shared by tasks and networks."""
from __future__ import annotations

import torch


def lanczos(x: torch.Tensor, a: int = 2) -> torch.Tensor:
    """Lanczos window L(x) = sinc(x) · sinc(x / a) for |x| < a, else 0 (sinc(x) = sin(πx)/(πx))."""
    out = torch.sinc(x) * torch.sinc(x / a)
    return torch.where(x.abs() < a, out, torch.zeros_like(out))


def lanczos_kernel(factor: int, a: int = 2) -> torch.Tensor:
    """The paper's SR downsampling kernel: Lanczos-a, phase 0.5, 2·a·factor taps per axis.

    Taps sit at offsets (n − a·factor + 0.5) / factor for n = 0 … 2·a·factor − 1 (half-pixel phase,
    support scaled by the factor); the 2-D kernel is the outer product, normalised to sum 1.
    For factor 4 this is 16×16, for factor 8 32×32 (DIP's "lanczos2" downsampler).
    """
    n = torch.arange(2 * a * factor, dtype=torch.float64)
    t = (n - a * factor + 0.5) / factor
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

