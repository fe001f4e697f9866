"""Deep Random Projector (Li, Wang, Zhuang, Sun, CVPR 2023): DIP with the network frozen.

The convolutions keep their random initialisation (weights and biases); only the input z, the
BatchNorm affine parameters and a BatchNorm on z itself are trained, all at ``lr`` (authors: 0.1),
with the loss √mean((A(x̂) − y)²) + λ·TV(x̂) (authors: λ = 0.45, anisotropic TV per element).
Fewer trainable parameters and a shallow net (authors: the skip net with one scale, 64 channels,
a 3-channel z ~ 0.1·N(0, 1)) make it a speed method. Returns the last iterate. Needs a net with
BatchNorm (``norm_layer: batch``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from dip_lightning.methods.base import Method, packed, trainable_input
from dip_lightning.metrics import split, total_variation


class DRP(Method):
    name = "drp"

    def __init__(self, lr: float = 0.1, tv_weight: float = 0.45):
        super().__init__()
        if lr <= 0 or tv_weight < 0:
            raise ValueError(f"method=drp needs lr > 0 and tv_weight >= 0; got lr={lr}, tv_weight={tv_weight}")
        self.lr, self.tv_weight = float(lr), float(tv_weight)

    def attach(self, module) -> None:
        norms = [m for m in module.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]
        if not norms:
            raise ValueError(f"method=drp trains only BatchNorm and the input, but {type(module.net).__name__} has no "
                             f"BatchNorm; use a net with norm_layer=batch (e.g. net=skip)")
        for p in module.net.parameters():
            p.requires_grad_(False)
        self.norm_params = [p for m in norms for p in (m.weight, m.bias)]
        for p in self.norm_params:
            p.requires_grad_(True)
        self.z = trainable_input(module)
        self.z_norm = nn.BatchNorm2d(module.z.shape[1])

    def trainable(self, module) -> list:
        return [{"params": [self.z, *self.z_norm.parameters(), *self.norm_params], "lr": self.lr}]

    def input(self, module) -> torch.Tensor:
        return self.z_norm(packed(self.z))

    def data_loss(self, losses: torch.Tensor) -> torch.Tensor:
        return losses.clamp_min(1e-20).sqrt().sum()

    def forward(self, module, z_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = module.net(z_in)
        if self.tv_weight <= 0:
            return out, None
        k = module.fits
        return out, self.tv_weight * torch.stack([total_variation(o) for o in split(out.float(), k)])
