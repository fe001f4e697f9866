"""Super-resolution: A = the paper's Lanczos2 ×f downsampler (strided conv, replication padding)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dip_lightning.io import pil_resize
from dip_lightning.nets.upsample import replicate_pad
from dip_lightning.ops import lanczos_kernel
from dip_lightning.tasks.base import Task


class SuperResolution(Task):
    """×``factor`` SR. The loss compares D(f_θ(z)) with the low-resolution image y, where D convolves
    each channel with a 4f×4f Lanczos2 kernel (phase 0.5) at stride f after replication padding of
    1.5·f pixels, so an H×W image maps to exactly H/f × W/f.

    ``observe``: how synthetic LR images are made — 'pil' (PIL's Lanczos resize of the HR image,
    as the original notebooks did) or 'operator' (y = D(x)).
    ``modcrop``: crop a ground-truth image whose size is not a multiple of the factor down to one
    (bottom/right, the usual SR protocol); if false such an image is an error.
    """

    def __init__(self, factor: int = 4, observe: str = "pil", modcrop: bool = True):
        super().__init__()
        factor = int(factor)
        if factor < 1:
            raise ValueError(f"task.factor={factor} must be a positive integer, e.g. task.factor=4")
        if observe not in ("pil", "operator"):
            raise ValueError(f"task.observe={observe!r}; choose pil or operator")
        self.scale = factor
        self.observe = observe
        self.modcrop = modcrop
        k = lanczos_kernel(factor)
        self.register_buffer("kernel", k[None, None], persistent=False)
        self.pad_px = (k.shape[0] - factor) // 2

    @property
    def factor(self) -> int:
        return self.scale

    @property
    def tile_margin(self) -> int:
        """The LR pixels next to a tile's border average HR pixels up to 1.5 f beyond it: 2 f."""
        return -(-self.pad_px // self.scale) * self.scale

    def crop_ground_truth(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        f = self.scale
        if h % f == 0 and w % f == 0:
            return x
        if not self.modcrop or h < f or w < f:
            raise ValueError(f"image size {h}x{w} is not divisible by task.factor={f}; "
                             f"crop it to a multiple of {f} or set task.modcrop=true")
        return x[..., : h - h % f, : w - w % f]

    def simulate(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.observe == "operator":
            return self.forward(x)
        return pil_resize(x[0], h // self.scale, w // self.scale, "lanczos")[None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        x = replicate_pad(x, self.pad_px)
        weight = self.kernel.to(x.dtype).expand(c, 1, *self.kernel.shape[-2:])
        return F.conv2d(x, weight, stride=self.scale, groups=c)

    def baseline(self, y: torch.Tensor) -> torch.Tensor:
        """Bicubic upsampling of the LR image (the usual SR baseline)."""
        h, w = y.shape[-2:]
        return pil_resize(y[0].cpu(), h * self.scale, w * self.scale, "bicubic")[None].to(y.device)
