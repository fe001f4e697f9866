"""Restoration (paper, Sec. 4, "image restoration"): a random fraction of pixels is missing.

y = m ⊙ x with m(i) = 1 iff U(i) > missing, U(i) ~ U(0, 1) drawn once per pixel and shared by every
channel (the original notebook copies channel 0 of its Bernoulli mask into the others).
The original used missing = 0.5 for barbara and 0.98 for kate.
"""
from __future__ import annotations

from typing import Sequence

from dip_lightning.tasks import masks
from dip_lightning.tasks.inpaint import Inpaint


class Restore(Inpaint):
    """Inpainting with a Bernoulli mask by default: each pixel is missing with probability ``missing``.

    ``mask`` may still be 'text', 'box' or a mask path (see ``Inpaint``); an already-corrupted
    image (observed=true) needs ``mask=<path to mask image>``.
    """

    def __init__(self, mask: str = "random", missing: float = 0.5, text: str = masks.DEFAULT_TEXT,
                 font_size: int | None = None, box: Sequence[float] = (0.3, 0.3, 0.35, 0.35)):
        if str(mask) == "random" and not 0.0 < float(missing) < 1.0:
            raise ValueError(f"task.missing={missing} must be a fraction in (0, 1), e.g. task.missing=0.5")
        super().__init__(mask=mask, text=text, font_size=font_size, missing=missing, box=box)
