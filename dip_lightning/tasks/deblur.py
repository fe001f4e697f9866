"""Deblurring: A(x) = k * x per channel ('same' size, replicate padding), y = clip(A(x) + n, 0, 1)
with n ~ N(0, (σ/255)²)."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from dip_lightning.io import load_image
from dip_lightning.nets.upsample import replicate_pad
from dip_lightning.ops import gaussian_kernel
from dip_lightning.tasks.base import Task


class Deblur(Task):
    """Blur with a known kernel k (sum 1), the same for every channel.

    ``kernel``: 'gaussian' (``size``×``size``, standard deviation ``sigma`` pixels), 'uniform'
    (a ``size``×``size`` box, every tap 1/size²) or 'file' (the image at ``path``, its gray values
    normalised to sum 1). A true convolution: (k * x)(i, j) = Σ_{u,v} k(u, v) · x(i − u, j − v),
    with the kernel's centre at (kh // 2, kw // 2), so a delta image blurs into k. For an
    even-sized kernel file that is the tap right of / below the middle: the convention of MATLAB's
    ``conv2(x, k, "same")`` and ``scipy.ndimage.convolve`` (``scipy.signal.convolve(..., mode="same")``
    takes the tap left of / above it, (kh − 1) // 2: one pixel apart).
    ``noise_sigma``: white Gaussian noise added to the blurred observation, in 0–255 units.
    """

    def __init__(self, kernel: str = "gaussian", size: int = 9, sigma: float = 2.0, path: str | None = None,
                 noise_sigma: float = 0.0):
        super().__init__()
        if noise_sigma < 0:
            raise ValueError(f"task.noise_sigma={noise_sigma} is negative; give the noise level in 0–255 units, "
                             f"e.g. task.noise_sigma=0")
        self.kernel_source = str(kernel)
        self.noise_sigma = float(noise_sigma)
        self.register_buffer("kernel", self.make_kernel(str(kernel), size, sigma, path)[None, None])

    @staticmethod
    def make_kernel(kernel: str, size: int, sigma: float, path: str | None) -> torch.Tensor:
        """The (kh, kw) blur kernel, normalised to sum 1."""
        if kernel in ("gaussian", "uniform"):
            if int(size) != size or size < 1 or size % 2 == 0:
                raise ValueError(f"task.size={size} must be an odd positive kernel width, e.g. task.size=9")
            size = int(size)
            if kernel == "uniform":
                return torch.full((size, size), 1.0 / size ** 2)
            if sigma <= 0:
                raise ValueError(f"task.sigma={sigma} must be a positive width in pixels, e.g. task.sigma=2")
            return gaussian_kernel(size, float(sigma))
        if kernel == "file":
            return Deblur.load_kernel(path)
        raise ValueError(f"task.kernel={kernel!r}; choose gaussian, uniform or file (with task.path)")

    @staticmethod
    def load_kernel(path: str | None) -> torch.Tensor:
        """A kernel image (any mode; channels are averaged), normalised so its taps sum to 1."""
        if path is None or not Path(path).expanduser().is_file():
            raise ValueError(f"task.path={path!r} is not a kernel image file; task.kernel=file needs "
                             f"task.path=<path to the kernel image>")
        k = load_image(Path(path).expanduser()).mean(0).double()
        total = float(k.sum())
        if total <= 0:
            raise ValueError(f"the kernel image {path!r} is all black; bright pixels are the kernel's taps")
        return (k / total).float()

    @property
    def tile_margin(self) -> int:
        return max(self.kernel.shape[-2:]) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        kh, kw = self.kernel.shape[-2:]
        top, left = (kh - 1) // 2, (kw - 1) // 2
        x = replicate_pad(x, (left, kw - 1 - left, top, kh - 1 - top))
        # conv2d is a correlation; flipping the kernel makes it a convolution
        weight = torch.flip(self.kernel, (-2, -1)).to(x.dtype).expand(c, 1, kh, kw)
        return F.conv2d(x, weight, groups=c)

    def simulate(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        blurred = self.forward(x)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) * (self.noise_sigma / 255.0)
        return (blurred + noise.to(x.device)).clamp(0.0, 1.0)

    def baseline(self, y: torch.Tensor) -> torch.Tensor:
        """The blurred observation itself."""
        return y
