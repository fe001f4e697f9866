"""Denoising: A = identity, y = clip(x + n, 0, 1) with n ~ N(0, (σ/255)²) (paper, Sec. 4)."""
from __future__ import annotations

import torch

from dip_lightning.tasks.base import Task


class Denoise(Task):
    """Additive white Gaussian noise of standard deviation ``sigma`` in 0–255 units.

    The observation is kept in float (not quantised), clipped to [0, 1] when ``clip`` is set,
    as in the original notebooks.
    """

    def __init__(self, sigma: float = 25.0, clip: bool = True):
        super().__init__()
        if sigma < 0:
            raise ValueError(f"task.sigma={sigma} is negative; give the noise level in 0–255 units, e.g. task.sigma=25")
        self.sigma = float(sigma)
        self.clip = clip

    def simulate(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) * (self.sigma / 255.0)
        y = x + noise
        return y.clamp(0.0, 1.0) if self.clip else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
