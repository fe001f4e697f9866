"""The fixed network input z (paper Sec. 3): noise U(0,1)·0.1 (or normal), or a meshgrid."""
from __future__ import annotations

import torch


class NoiseInput:
    """``depth`` channels of i.i.d. noise: 'uniform' U(0, 1)·scale (paper default, scale 0.1) or
    'normal' N(0, 1)·scale."""

    def __init__(self, depth: int = 32, kind: str = "uniform", scale: float = 0.1):
        if int(depth) < 1:
            raise ValueError(f"input.depth={depth} must be a positive number of channels")
        if kind not in ("uniform", "normal"):
            raise ValueError(f"input.kind={kind!r}; choose uniform or normal")
        self.depth, self.kind, self.scale = int(depth), kind, float(scale)

    def __call__(self, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        shape = (1, self.depth, height, width)
        draw = torch.rand if self.kind == "uniform" else torch.randn
        return draw(shape, generator=generator) * self.scale


class MeshgridInput:
    """Two channels holding the x and y pixel coordinates, each spanning [0, 1]."""

    depth = 2

    def __call__(self, height: int, width: int, generator: torch.Generator | None = None) -> torch.Tensor:
        ys = torch.linspace(0.0, 1.0, height) if height > 1 else torch.zeros(1)
        xs = torch.linspace(0.0, 1.0, width) if width > 1 else torch.zeros(1)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([gx, gy])[None]
