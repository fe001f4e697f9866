"""FLOPs of one DIP training step (forward + backward), counted by torch.utils.flop_counter."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode


def step_flops(net: torch.nn.Module, z: torch.Tensor, task: torch.nn.Module, y: torch.Tensor) -> int:
    """FLOPs of forward + backward of mse(task(net(z)), y) (parameter gradients are left zeroed)."""
    with FlopCounterMode(display=False) as counter:
        loss = F.mse_loss(task(net(z)).float(), y)
        loss.backward()
    net.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())
