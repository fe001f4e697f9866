"""Denoising: A = identity, y = clip(x + n, 0, 1) with n ~ N(0, (σ/255)²) (paper, Sec. 4), or
Poisson (shot) noise y = clip(Poisson(peak · x) / peak, 0, 1)."""
from __future__ import annotations

import torch

from dip_lightning.tasks.base import Task


class Denoise(Task):
    """Additive white Gaussian noise of standard deviation ``sigma`` in 0–255 units (``noise='gaussian'``),
    or Poisson noise (``noise='poisson'``): y = Poisson(peak · x) / peak, so E[y] = x and
    Var[y] = x / peak (``peak`` is the photon count of a white pixel; lower = noisier; ``sigma`` unused).

    The observation is kept in float (not quantised), clipped to [0, 1] when ``clip`` is set,
    as in the original notebooks.
    """

    def __init__(self, sigma: float = 25.0, clip: bool = True, noise: str = "gaussian", peak: float = 30.0):
        super().__init__()
        if sigma < 0:
            raise ValueError(f"task.sigma={sigma} is negative; give the noise level in 0–255 units, e.g. task.sigma=25")
        if noise not in ("gaussian", "poisson"):
            raise ValueError(f"task.noise={noise!r}; choose gaussian or poisson")
        if peak <= 0:
            raise ValueError(f"task.peak={peak} must be a positive photon count for a white pixel, e.g. task.peak=30")
        self.sigma = float(sigma)
        self.clip = clip
        self.noise = noise
        self.peak = float(peak)

    def simulate(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.noise == "poisson":
            y = torch.poisson(x.clamp(min=0.0) * self.peak, generator=generator) / self.peak
        else:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) * (self.sigma / 255.0)
            y = x + noise
        return y.clamp(0.0, 1.0) if self.clip else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
