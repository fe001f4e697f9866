"""Self-Guided DIP (Liang, Bell, Qu, Wang, Ravishankar; arXiv 2402.04097, IEEE TCI 2025).

The input z (image-shaped: the output's channels, whatever ``input.depth`` says) is trained jointly with the weights, and the
network's expected output under input noise is tied to z::

    x̄ = (1/S) Σ_j f_θ(z + η_j),   η_j ~ U[0, noise · max(z))   (fresh every step; authors: S = 3, noise = ½)
    L  = ‖A(x̄) − y‖ + α ‖z − x̄‖                                (authors: α = 2, unsquared norms)

with the norms as root-mean-squares here (the same ratio as the norms when A keeps the size).
x̄ is the step's image; the estimate is its EMA (authors: weight 0.99), so set ``exp_weight``.
The authors train z at lr 0.1 (``z_lr``) and θ at 3e-4 (MRI; ``optim.lr``); z starts U[0, 1).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from dip_lightning.methods.base import Method, Streams, packed
from dip_lightning.metrics import split
from dip_lightning.seeds import stream_seed


class SelfGuided(Method):
    name = "selfguided"

    def __init__(self, alpha: float = 2.0, noise: float = 0.5, samples: int = 3, z_lr: float = 0.1):
        super().__init__()
        if alpha < 0 or noise < 0 or samples < 1 or z_lr <= 0:
            raise ValueError(f"method=selfguided needs alpha >= 0, noise >= 0, samples >= 1 and z_lr > 0; got "
                             f"alpha={alpha}, noise={noise}, samples={samples}, z_lr={z_lr}")
        self.alpha, self.noise, self.samples, self.z_lr = float(alpha), float(noise), int(samples), float(z_lr)
        self.streams = Streams()  # per-fit random streams (SGLD: the Langevin noise; Self-Guided: η)

    def input_depth(self, channels: int) -> int:
        """z is image-shaped: the net's input has its output's channels, whatever ``input.depth`` says."""
        return channels

    def attach(self, module) -> None:
        k, c = module.fits, module.channels
        zs = [torch.rand(1, c, *module.z.shape[-2:], generator=torch.Generator().manual_seed(stream_seed(s, "selfguided")))
              for s in module.seeds]  # U[0, 1), each fit from its own seed
        self.z = nn.Parameter(torch.cat(zs, 0).to(module.z.dtype))
        self.streams.seeds = [stream_seed(s, "selfguided_noise") for s in module.seeds]  # the η stream
        self.register_buffer("reg", torch.zeros(k))

    def trainable(self, module) -> list:
        return [{"params": list(module.net.parameters())}, {"params": [self.z], "lr": self.z_lr}]

    def input(self, module) -> torch.Tensor:
        return packed(self.z)

    def forward(self, module, z_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        k = module.fits
        gens = self.streams.on(z_in.device)
        top = self.noise * split(z_in.detach(), k).amax(dim=(1, 2, 3))  # per fit: noise · max(z)
        outs = []
        for _ in range(self.samples):
            eta = torch.cat([torch.rand((1, z_in.shape[1] // k, *z_in.shape[-2:]), generator=g, device=z_in.device,
                                        dtype=z_in.dtype) * top[i] for i, g in enumerate(gens)], 1)
            outs.append(module.net(z_in + eta))
        x_bar = torch.stack(outs).mean(0)
        gap = (z_in - x_bar).float().pow(2).reshape(k, -1).mean(1).clamp_min(1e-20).sqrt()  # RMS ‖z − x̄‖ per fit
        self.reg = gap.detach()
        return x_bar, self.alpha * gap

    def data_loss(self, losses: torch.Tensor) -> torch.Tensor:
        return losses.clamp_min(1e-20).sqrt().sum()

    def estimate(self, module) -> torch.Tensor | None:
        return module.ema if module.exp_weight is not None else None

    def get_extra_state(self) -> dict:
        return self.streams.state()

    def set_extra_state(self, state: dict) -> None:
        self.streams.load(state)
