"""Denoising: A = identity; y = x degraded by one of four noise models, clipped to [0, 1].

The noise models (x in [0, 1], every pixel and channel drawn independently):

- ``gaussian``: y = x + n, n ~ N(0, (sigma/255)²) (the paper, Sec. 4: sigma = 25).
- ``poisson`` (shot noise): y = Poisson(peak · x) / peak, so E[y] = x and Var[y] = x / peak.
- ``impulse`` (salt and pepper): a fraction ``amount`` of the values is replaced, half by 0 and
  half by 1 (scikit-image's ``random_noise(mode='s&p')``, salt_vs_pepper = 0.5).
- ``speckle``: y = x + x · n, n ~ N(0, speckle_sigma²) (multiplicative).

``severity`` 1–5 sets the model's parameter to the ImageNet-C levels (Hendrycks & Dietterich,
"Benchmarking Neural Network Robustness to Common Corruptions and Perturbations", ICLR 2019;
their Gaussian, shot, impulse and speckle noise), which DIP early-stopping papers evaluate on:

=========  ====================  =====================================
severity   gaussian σ (0–1)      shot: peak · impulse: amount · speckle: σ
=========  ====================  =====================================
1          0.08                  60 · 0.03 · 0.35
2          0.12                  25 · 0.06 · 0.45
3          0.18                  12 · 0.09 · 0.60
4          0.26                  5 · 0.17 · 0.80
5          0.38                  3 · 0.27 · 1.00
=========  ====================  =====================================

The data term (``loss``) defaults to what the DIP literature fits each model with: the squared
error, except for impulse noise, whose outliers the L1 error does not chase.
"""
from __future__ import annotations

import torch

from dip_lightning.tasks.base import LOSSES, Task

NOISES = ("gaussian", "poisson", "impulse", "speckle")
#: ImageNet-C's parameter per noise model for severities 1-5 (gaussian: σ in 0-1 units)
SEVERITY = {
    "gaussian": (0.08, 0.12, 0.18, 0.26, 0.38),
    "poisson": (60.0, 25.0, 12.0, 5.0, 3.0),
    "impulse": (0.03, 0.06, 0.09, 0.17, 0.27),
    "speckle": (0.35, 0.45, 0.60, 0.80, 1.00),
}
#: the data term each noise model is fitted with by default
DEFAULT_LOSS = {"gaussian": "l2", "poisson": "l2", "impulse": "l1", "speckle": "l2"}


class Denoise(Task):
    """Denoising under ``noise`` (see the module docstring).

    Args:
        sigma: gaussian noise standard deviation in 0–255 units.
        clip: clip the observation to [0, 1] (the original notebooks keep it in float, clipped).
        noise: gaussian | poisson | impulse | speckle.
        peak: poisson: the photon count of a white pixel (lower = noisier).
        amount: impulse: the fraction of values replaced by 0 or 1.
        speckle_sigma: speckle: standard deviation of the multiplicative n.
        severity: 1–5 sets the noise model's parameter to ImageNet-C's level (None: the parameter).
        loss: the data term, l2 | l1 | poisson (``tasks.base.data_error``; None: the noise model's
            default, L1 for impulse noise).
    """

    def __init__(self, sigma: float = 25.0, clip: bool = True, noise: str = "gaussian", peak: float = 30.0,
                 amount: float = 0.05, speckle_sigma: float = 0.4, severity: int | None = None,
                 loss: str | None = None):
        super().__init__()
        if noise not in NOISES:
            raise ValueError(f"task.noise={noise!r}; choose {', '.join(NOISES)}")
        if severity is not None:
            if int(severity) not in range(1, 6):
                raise ValueError(f"task.severity={severity}; choose 1-5 (ImageNet-C's levels) or null")
            level = SEVERITY[noise][int(severity) - 1]
            sigma, peak, amount, speckle_sigma = {
                "gaussian": (level * 255.0, peak, amount, speckle_sigma), "poisson": (sigma, level, amount, speckle_sigma),
                "impulse": (sigma, peak, level, speckle_sigma), "speckle": (sigma, peak, amount, level)}[noise]
        if sigma < 0:
            raise ValueError(f"task.sigma={sigma} is negative; give the noise level in 0–255 units, e.g. task.sigma=25")
        if peak <= 0:
            raise ValueError(f"task.peak={peak} must be a positive photon count for a white pixel, e.g. task.peak=30")
        if not 0.0 <= amount <= 1.0:
            raise ValueError(f"task.amount={amount} must be the fraction of values replaced, in [0, 1], e.g. 0.05")
        if speckle_sigma < 0:
            raise ValueError(f"task.speckle_sigma={speckle_sigma} is negative; e.g. task.speckle_sigma=0.4")
        loss = DEFAULT_LOSS[noise] if loss is None else str(loss)
        if loss not in LOSSES:
            raise ValueError(f"task.loss={loss!r}; choose {', '.join(LOSSES[:-1])} or {LOSSES[-1]} (or null: the noise model's own)")
        self.sigma, self.clip, self.noise = float(sigma), clip, noise
        self.peak, self.amount, self.speckle_sigma = float(peak), float(amount), float(speckle_sigma)
        self.severity = None if severity is None else int(severity)
        self.loss = loss

    def simulate(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.noise == "poisson":
            y = torch.poisson(x.clamp(min=0.0) * self.peak, generator=generator) / self.peak
        elif self.noise == "impulse":
            u = torch.rand(x.shape, generator=generator, dtype=x.dtype)
            salt = torch.rand(x.shape, generator=generator, dtype=x.dtype) < 0.5
            y = torch.where(u < self.amount, salt.to(x.dtype), x)
        elif self.noise == "speckle":
            y = x + x * torch.randn(x.shape, generator=generator, dtype=x.dtype) * self.speckle_sigma
        else:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) * (self.sigma / 255.0)
            y = x + noise
        return y.clamp(0.0, 1.0) if self.clip else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
