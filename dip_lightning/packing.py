"""Packing K independent DIP fits into one network (issue: "packed restorations").

K structurally identical nets (each initialised with its own seed) are fused into one net whose
every layer is K-fold wider: convolutions become grouped convolutions (groups × K, weights of fit k
in output block k), BatchNorm / InstanceNorm become K-fold wider (statistics are per channel, so
the fits stay independent), channel concatenations interleave per fit. Channel layout everywhere:
[fit 0 channels | fit 1 channels | … ]. Adam is element-wise, so with the loss Σ_k L_k every fit
follows exactly the trajectory it would follow alone (up to float rounding of grouped kernels).

Only nets built from these blocks can be packed; a net says so with ``packable = True``.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn as nn

from dip_lightning.nets.blocks import Concat, LanczosDownsample, Upsample

#: leaf modules without parameters that act per channel (or element-wise): safe as they are
_CHANNELWISE = (nn.LeakyReLU, nn.ReLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.AvgPool2d, nn.MaxPool2d,
                nn.Upsample, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.ZeroPad2d, Upsample)


def _cat(tensors: list[torch.Tensor | None]) -> torch.Tensor | None:
    return None if tensors[0] is None else torch.cat([t.detach() for t in tensors], 0)


def _packed_conv(m: nn.Module, peers: list[nn.Module], k: int) -> nn.Module:
    kwargs = dict(stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups * k,
                  bias=m.bias is not None, padding_mode=m.padding_mode)
    if isinstance(m, nn.ConvTranspose2d):
        new = nn.ConvTranspose2d(m.in_channels * k, m.out_channels * k, m.kernel_size,
                                 output_padding=m.output_padding, **kwargs)
    else:
        new = type(m)(m.in_channels * k, m.out_channels * k, m.kernel_size, **kwargs)  # nn.Conv2d or a subclass
    with torch.no_grad():
        new.weight.copy_(_cat([p.weight for p in peers]))  # dim 0: out (conv) / in (transposed) channels
        if new.bias is not None:
            new.bias.copy_(_cat([p.bias for p in peers]))
    return new


def _packed_norm(m: nn.Module, peers: list[nn.Module], k: int) -> nn.Module:
    new = type(m)(m.num_features * k, eps=m.eps, momentum=m.momentum, affine=m.affine,
                  track_running_stats=m.track_running_stats)
    with torch.no_grad():
        if m.affine:
            new.weight.copy_(_cat([p.weight for p in peers]))
            new.bias.copy_(_cat([p.bias for p in peers]))
        if m.track_running_stats and m.running_mean is not None:
            new.running_mean.copy_(_cat([p.running_mean for p in peers]))
            new.running_var.copy_(_cat([p.running_var for p in peers]))
    return new


def packable_nets() -> list[str]:
    """The ``net=`` choices (configs/net) whose class can be packed (``packable = True``)."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    names = []
    for path in sorted((Path(__file__).resolve().parent.parent / "configs" / "net").glob("*.yaml")):
        target = OmegaConf.load(path).get("_target_")
        try:
            packable = getattr(get_class(str(target)), "packable", False) is True
        except Exception:  # a config whose class cannot be imported here
            packable = False
        if packable:
            names.append(path.stem)
    return names


def pack_nets(nets: list[nn.Module]) -> nn.Module:
    """Fuse K identical-architecture nets into one grouped net (see the module docstring)."""
    k = len(nets)
    if k == 1:
        return nets[0]
    if not getattr(nets[0], "packable", False):
        choices = " or ".join(f"net={name}" for name in packable_nets()) or "a packable net"
        raise ValueError(f"net {type(nets[0]).__name__} cannot be packed (pack={k}); use {choices} or pack=1")
    packed = copy.deepcopy(nets[0])
    tables = [dict(n.named_modules()) for n in nets]
    for name, m in list(packed.named_modules()):
        if not name:
            continue
        peers = [t[name] for t in tables]
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            packed.set_submodule(name, _packed_conv(m, peers, k))
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)):
            packed.set_submodule(name, _packed_norm(m, peers, k))
        elif isinstance(m, LanczosDownsample):
            packed.set_submodule(name, LanczosDownsample(m.channels * k, m.factor))
        elif isinstance(m, Concat):
            m.groups = k
        elif not list(m.children()) and not isinstance(m, _CHANNELWISE):
            raise ValueError(f"cannot pack layer {name} ({type(m).__name__}); use pack=1")
    return packed


class PackedTask(nn.Module):
    """The operators of K fits side by side: A(x) = [A_0(x_0) | A_1(x_1) | …] over channel blocks."""

    def __init__(self, tasks: list[nn.Module]):
        super().__init__()
        self.tasks = nn.ModuleList(tasks)
        self.scale = int(getattr(tasks[0], "scale", 1))
        losses = {str(getattr(t, "loss", "l2")) for t in tasks}
        if len(losses) > 1:
            raise ValueError(f"packed fits need one data term; got task.loss {' and '.join(sorted(losses))}")
        self.loss = losses.pop()

    def observation_box(self, box):
        return self.tasks[0].observation_box(box)

    def view(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.chunk(len(self.tasks), dim=1)
        return torch.cat([t.view(p) for t, p in zip(self.tasks, parts)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.chunk(len(self.tasks), dim=1)
        return torch.cat([t(p) for t, p in zip(self.tasks, parts)], 1)
