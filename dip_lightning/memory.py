"""A memory estimate before allocating: activations of one training step, scaled from a small probe."""
from __future__ import annotations

import copy
import os

import torch
import torch.nn as nn


def activation_elements(net: nn.Module, in_channels: int, size: int) -> int:
    """Elements of all leaf-module outputs of one forward pass at size×size (what backward keeps)."""
    total = 0

    def hook(_module, _inp, out):
        nonlocal total
        if torch.is_tensor(out):
            total += out.numel()

    probe = copy.deepcopy(net)  # leave the real net's BatchNorm statistics alone
    handles = [m.register_forward_hook(hook) for m in probe.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            probe(torch.zeros(1, in_channels, size, size))
    finally:
        for h in handles:
            h.remove()
    return total


def estimate_step_bytes(net: nn.Module, in_channels: int, canvas: tuple[int, int]) -> int:
    """Rough peak bytes of one fp32 step: activations (kept for backward, and their gradients) plus
    parameters, gradients and two Adam moments."""
    multiple = int(getattr(net, "multiple", 1))
    probe = max(64, int(getattr(net, "min_size", 2 * multiple)))
    probe += (-probe) % multiple
    acts = activation_elements(net, in_channels, probe) * (canvas[0] * canvas[1]) / (probe * probe)
    params = sum(p.numel() for p in net.parameters())
    return int(4 * (2 * acts + 4 * params))


def available_bytes(device: str = "cpu") -> int | None:
    """Free memory of the device the run will use (CUDA: free GPU memory; else MemAvailable)."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info()[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
