"""The hooks of a DIP method, and plain DIP (Ulyanov et al. 2018), which is the identity at each.

``DIPModule`` calls, in this order:

- ``input_depth(channels)`` before the net is built (a method that shapes its own z sets its depth);
- ``attach(module)`` once, when the module is built (freeze parameters, make z trainable);
- ``trainable(module)``: what the optimiser gets (parameters or param groups);
- every step ``input(module)`` (the input before the jitter), ``forward(module, z_in)`` →
  (x̂, the method's extra loss terms per fit (length K, logged as ``loss/method``) or None), ``data_loss(losses)`` (the per-fit data terms → one loss), and after
  the optimiser step ``after_step(module, step, out)``;
- ``estimate(module)``: the canvas image returned instead of the last iterate (None: the iterate),
  and ``images(module)``: extra canvas images to save, by file stem.

A method is an ``nn.Module`` child of ``DIPModule``: its parameters and buffers move with it and are
in its checkpoints (``get_extra_state`` holds generator states), so every method resumes.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class Method(nn.Module):
    """Plain DIP: train the net's weights on the fixed input z; return the last iterate."""

    name = "dip"

    def input_depth(self, channels: int) -> int | None:
        """The net's input channels when the method makes its own input (given the net's output
        ``channels``), else None: the configured input (``input.depth``) or the task's."""
        return None

    def attach(self, module) -> None:
        """Called once by ``DIPModule.__init__`` (net, z and the fits are set)."""

    def trainable(self, module) -> list:
        return list(module.net.parameters())

    def input(self, module) -> torch.Tensor:
        return module.z

    def forward(self, module, z_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return module.net(z_in), None

    def data_loss(self, losses: torch.Tensor) -> torch.Tensor:
        """The per-fit data terms mean((A(x̂) − y)²) (length K) as one loss."""
        return losses.sum()

    @torch.no_grad()
    def after_step(self, module, step: int, out: torch.Tensor) -> None:
        """After the optimiser step (``out``: this step's x̂ on the canvas, detached)."""

    def estimate(self, module) -> torch.Tensor | None:
        return None

    def images(self, module) -> dict[str, torch.Tensor]:
        return {}


def trainable_input(module, init: torch.Tensor | None = None) -> nn.Parameter:
    """The input z as a parameter of shape (K, D, H, W): one block per fit along dim 0, as the
    backtracking restore and packing expect (``module.z`` is (1, K·D, H, W))."""
    z = module.z if init is None else init
    k = module.fits
    return nn.Parameter(z.detach().reshape(k, z.shape[1] // k, *z.shape[-2:]).clone())


def packed(z: torch.Tensor) -> torch.Tensor:
    """(K, D, H, W) -> (1, K·D, H, W)."""
    return z.reshape(1, -1, *z.shape[-2:])


class Streams:
    """One ``torch.Generator`` per fit, from per-fit seeds, made on the device of first use; its
    ``state()`` goes into a method's checkpoint (``get_extra_state``) and ``load`` restores it
    (kept pending until the generators exist)."""

    def __init__(self) -> None:
        self.seeds: list[int] = []
        self._gens: list[torch.Generator] | None = None
        self._pending: list | None = None

    def on(self, device: torch.device) -> list[torch.Generator]:
        if self._gens is None or self._gens[0].device != device:
            self._gens = [torch.Generator(device=device).manual_seed(s) for s in self.seeds]
            for g, st in zip(self._gens, self._pending or []):
                g.set_state(st)
            self._pending = None
        return self._gens

    def state(self) -> dict:
        return {"gens": self._pending if self._gens is None else [g.get_state() for g in self._gens]}

    def load(self, state: dict | None) -> None:
        self._gens, self._pending = None, (state or {}).get("gens")
