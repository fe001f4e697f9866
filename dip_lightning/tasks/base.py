"""A restoration task is a degradation operator A plus its observation model.

DIP fits min_θ ‖A(f_θ(z)) − y‖² (mean over all elements, as in the paper); the module is the
same for every task, only A and the way y is made differ.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn as nn

from dip_lightning.io import pad_image


#: the data terms E(A(x̂), y) a task can fit (``data_error``)
LOSSES = ("l2", "l1", "poisson")


def data_error(a: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """The data term per element, averaged by the module: ``l2`` (A(x̂) − y)², the paper's; ``l1``
    |A(x̂) − y|; ``poisson`` the Poisson deviance per unit of peak, a − y − y·log(a / y) with
    a = max(A(x̂), 1e-6): for y = Poisson(peak·x) / peak it is the negative log-likelihood of x,
    scaled by 1/peak and shifted to 0 at a = y (so it is ≥ 0, as the other two)."""
    if loss == "l1":
        return (a - y).abs()
    if loss == "poisson":
        a = a.clamp_min(1e-6)
        return a - y - torch.xlogy(y, a) + torch.xlogy(y, y)
    return (a - y).pow(2)


class Task(nn.Module):
    """Base class. Subclasses implement ``simulate`` and ``forward`` (A); the rest has defaults.

    Operator state (masks, kernels) lives in buffers so it moves with the LightningModule.
    ``scale`` is the ratio of the restored image's size to the observation's (SR factor; else 1).
    """

    scale: int = 1
    #: True when the run's image is always the observation (no ground truth), e.g. flash/no-flash
    blind: bool = False
    #: True when the task reads the image file's alpha channel; the run then sets ``self.alpha``
    needs_alpha: bool = False
    #: False when y is not an image of the restored size (deepinv physics: k-space, sinograms, ...)
    image_observation: bool = True
    #: True when the image may leave [0, 1] (complex data): the net gets no output sigmoid
    linear_output: bool = False
    #: False when A mixes the whole image (deepinv physics: MRI, CT, compressed sensing): no tiles
    local: bool = True
    #: the data term (``LOSSES``, ``data_error``): mean (A(x̂) − y)² (l2), mean |A(x̂) − y| (l1), or
    #: the mean Poisson deviance (poisson)
    loss: str = "l2"

    @property
    def tile_align(self) -> int:
        """Tile corners lie on multiples of this many image pixels (SR: the factor)."""
        return int(self.scale)

    @property
    def tile_margin(self) -> int:
        """Image pixels next to a tile's border whose A(x) reaches beyond the tile (a blur kernel's
        half-width); they get no blending weight where a neighbour covers them."""
        return 0

    def tile(self, box: Sequence[int]) -> "Task":
        """This operator for one tile: a copy whose state (a mask, a flash photo) is cropped to
        ``box`` = (top, left, height, width) in observation pixels."""
        part = copy.deepcopy(self)
        part.crop_state(box)
        return part

    def crop_state(self, box: Sequence[int]) -> None:
        """Crop operator state of the observation's size to ``box`` (none here)."""

    def net_channels(self, channels: int) -> int:
        """Output channels of the net for an image of ``channels`` channels."""
        return channels

    def observation_hw(self, y: torch.Tensor) -> tuple[int, int]:
        """(h, w) of the observation grid that is padded to the net's multiple (× scale = the image)."""
        return tuple(y.shape[-2:])

    def observation_box(self, box: Sequence[int]) -> tuple[int, ...] | None:
        """Where the real observation lies in the padded y, from the image's ``box`` on the canvas
        (None: y is not padded)."""
        return tuple(int(v) // int(self.scale) for v in box)

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """The picture of an estimate: what is scored against the ground truth, saved and stopped on."""
        return x

    def picture(self, y: torch.Tensor) -> torch.Tensor:
        """The observation as an image, for observed.png and the panel."""
        return y

    @property
    def input_channels(self) -> int | None:
        """Channels of ``network_input()`` when the task supplies the net's input, else None."""
        return None

    def crop_like(self, box: Sequence[int], full: Sequence[int] | None = None) -> None:
        """Crop operator state of the image's size ``full`` = (H, W) to ``box`` = (top, left, height,
        width), as the image was cropped (``fit_size='crop'``)."""

    def crop_ground_truth(self, x: torch.Tensor) -> torch.Tensor:
        """Make a clean image (1, C, H, W) valid for this task (e.g. SR: a multiple of the factor)."""
        return x

    def simulate(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Degrade a clean image x (1, C, H, W) into the observation y."""
        raise NotImplementedError

    def adopt(self, y: torch.Tensor) -> torch.Tensor:
        """Take a user's already-degraded image as the observation (no ground truth)."""
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A(x): the restored-image-space estimate mapped into observation space."""
        raise NotImplementedError

    def pad(self, pads: Sequence[int]) -> None:
        """Pad operator state in observation space by (top, bottom, left, right), like y."""

    def baseline(self, y: torch.Tensor) -> torch.Tensor:
        """A naive estimate from y alone at the restored size (for ``psnr_observed``)."""
        return y

    def network_input(self) -> torch.Tensor | None:
        """A fixed network input that replaces the configured z (flash/no-flash), or None."""
        return None

    def pad_observation(self, y: torch.Tensor, pads: Sequence[int]) -> torch.Tensor:
        return pad_image(y, pads, mode="reflect")
