"""Inpainting: A(x) = m ⊙ x with a binary mask m (1 = known), loss averaged over all pixels."""
from __future__ import annotations

from typing import Sequence

import torch

from dip_lightning.io import pad_image
from dip_lightning.tasks import masks
from dip_lightning.tasks.base import Task


class Inpaint(Task):
    """``mask``: 'text' (rendered text, the paper's kate figure), 'random' (each pixel missing with
    probability ``missing``), 'box' (one rectangle ``box`` = [top, left, height, width] fractions),
    'alpha' (the image file's own alpha channel: transparent = missing), or a path to a mask image
    (white = known) of the image's size.
    The same mask applies to every channel; the observation is y = m ⊙ x.
    """

    def __init__(self, mask: str = "text", text: str = masks.DEFAULT_TEXT, font_size: int | None = None,
                 missing: float = 0.5, box: Sequence[float] = (0.3, 0.3, 0.35, 0.35)):
        super().__init__()
        self.mask_source = str(mask)
        self.needs_alpha = self.mask_source == "alpha"
        self.alpha: torch.Tensor | None = None  # (C, H, W) alpha channel, set by the runner for mask=alpha
        self.text = text
        self.font_size = font_size
        self.missing = float(missing)
        self.box = list(box)
        self.register_buffer("mask", torch.ones(1, 1, 1, 1))
        self.crop_box: tuple[int, int, int, int] | None = None  # fit_size=crop: the image's crop
        self.full_size: tuple[int, int] | None = None  # ... of an image of this size

    def crop_like(self, box: Sequence[int], full: Sequence[int] | None = None) -> None:
        """A mask file or alpha channel has the image's size; fit_size=crop cropped the image to ``box``."""
        self.crop_box, self.full_size = tuple(int(v) for v in box), None if full is None else tuple(full)

    def make_mask(self, height: int, width: int, generator: torch.Generator | None) -> torch.Tensor:
        src = self.mask_source
        if src == "text":
            return masks.text_mask(height, width, self.text, self.font_size)
        if src == "random":
            if generator is None:
                generator = torch.Generator().manual_seed(0)
            return masks.random_mask(height, width, self.missing, generator)
        if src == "box":
            return masks.box_mask(height, width, self.box)
        if src == "alpha":  # the image's own alpha channel, set by the runner: opaque = known
            alpha = self.alpha
            if alpha is None:
                raise ValueError("task.mask=alpha needs an image file with an alpha channel")
            return self._crop((alpha.mean(0) > 0.5).float()[None, None])
        if self.crop_box is not None and self.full_size is not None:  # the file has the uncropped image's size
            return self._crop(masks.file_mask(src, *self.full_size))
        return masks.file_mask(src, height, width)

    def _crop(self, m: torch.Tensor) -> torch.Tensor:
        """A mask of the image's size, cropped as fit_size=crop cropped the image."""
        if self.crop_box is None:
            return m
        t, l, h, w = self.crop_box
        return m[..., t:t + h, l:l + w]

    def _set_mask(self, m: torch.Tensor) -> None:
        known = m.mean().item()
        if known == 0.0:
            raise ValueError("the inpainting mask has no known pixels; white (1) marks known pixels")
        if known == 1.0:
            raise ValueError("the inpainting mask has no missing pixels; nothing to inpaint (black (0) marks holes)")
        self.mask = m

    def simulate(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self._set_mask(self.make_mask(x.shape[-2], x.shape[-1], generator))
        return x * self.mask

    def adopt(self, y: torch.Tensor) -> torch.Tensor:
        if self.mask_source in ("text", "random", "box"):
            raise ValueError("an already-corrupted image (observed=true) needs its mask: task.mask=<path to mask image>")
        self._set_mask(self.make_mask(y.shape[-2], y.shape[-1], None))
        return y * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask

    def crop_state(self, box: Sequence[int]) -> None:
        t, l, h, w = box
        self.mask = self.mask[..., t:t + h, l:l + w]

    def pad(self, pads: Sequence[int]) -> None:
        self.mask = pad_image(self.mask, pads, mode="reflect")

    @property
    def known_fraction(self) -> float:
        return float(self.mask.mean())
