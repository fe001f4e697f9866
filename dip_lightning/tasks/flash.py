"""Flash / no-flash (paper, Sec. 4, Fig. 9): the *flash* image is the network input z (fixed, no
jitter), the *no-flash* image the target y; A = identity. The fit, stopped early, keeps the flash
image's detail with the no-flash image's lighting. There is no ground truth."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from dip_lightning.io import load_image, pad_image
from dip_lightning.tasks.base import Task


class FlashNoFlash(Task):
    """``flash``: path to the flash photo; ``image`` (the run's image) is the no-flash photo of the
    same size. ``resize``: the flash photo is scaled as the no-flash one is (the run's ``resize``:
    its longer side to that many pixels). The run uses ``network_input`` instead of the configured
    noise input."""

    blind = True  # the run's image is the observation itself

    def __init__(self, flash: str | None = None, resize: int | None = None):
        super().__init__()
        if not flash:
            raise ValueError("task=flash needs the flash photo: task.flash=path/to/flash.jpg (image= is the no-flash photo)")
        path = Path(str(flash)).expanduser()
        if path.is_dir():
            raise IsADirectoryError(f"task.flash={str(flash)!r} is a folder; give the flash photo's file")
        if not path.is_file():
            raise FileNotFoundError(f"task.flash={str(flash)!r} does not exist; give the path of the flash photo")
        self.register_buffer("flash", load_image(path, resize)[None])

    @property
    def input_channels(self) -> int:
        return int(self.flash.shape[1])

    def adopt(self, y: torch.Tensor) -> torch.Tensor:
        if y.shape[-2:] != self.flash.shape[-2:]:
            fh, fw = self.flash.shape[-2:]
            raise ValueError(f"the flash photo is {fh}x{fw} but the no-flash image is {y.shape[-2]}x{y.shape[-1]}; "
                             f"give two photos of the same size")
        return y

    def crop_like(self, box: Sequence[int], full: Sequence[int] | None = None) -> None:
        t, l, h, w = box
        self.flash = self.flash[..., t:t + h, l:l + w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def crop_state(self, box: Sequence[int]) -> None:
        self.crop_like(box)

    def pad(self, pads: Sequence[int]) -> None:
        self.flash = pad_image(self.flash, pads, mode="reflect")

    def network_input(self) -> torch.Tensor:
        return self.flash
