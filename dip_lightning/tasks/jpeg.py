"""JPEG artifact removal: A = identity, y = decode(encode_JPEG(x, quality)) (paper, Sec. 4)."""
from __future__ import annotations

import io

import torch
from PIL import Image

from dip_lightning.io import pil_to_tensor, to_uint8
from dip_lightning.tasks.base import Task


class JPEGArtifacts(Task):
    """The clean image is quantised to 8 bits, saved as a JPEG of ``quality`` (1–95, PIL's scale)
    in memory — grayscale for one channel, RGB for three — and decoded back to float in [0, 1].
    The network fits the compressed image directly (A(x) = x); early stopping does the rest.
    """

    def __init__(self, quality: int = 10):
        super().__init__()
        q = int(quality)
        if q != quality or not 1 <= q <= 95:
            raise ValueError(f"task.quality={quality} must be an integer JPEG quality in 1..95, e.g. task.quality=10")
        self.quality = q

    def simulate(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        c = x.shape[1]
        if c not in (1, 3):
            raise ValueError(f"a JPEG holds 1 (gray) or 3 (RGB) channels but the image has {c}; give a gray or RGB image")
        buffer = io.BytesIO()
        Image.fromarray(to_uint8(x[0])).save(buffer, format="JPEG", quality=self.quality)
        buffer.seek(0)
        with Image.open(buffer) as img:
            img.load()
            y = pil_to_tensor(img)
        return y[None].to(dtype=x.dtype, device=x.device)

    @property
    def tile_align(self) -> int:
        """Tiles start on the JPEG's 8×8 blocks."""
        return 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
