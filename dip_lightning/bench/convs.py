"""The machine's conv rate and the step's conv floor: what any step on these kernels can reach."""
from __future__ import annotations

from typing import Any

from dip_lightning.bench.timing import autocast, best_time


def convs_of(net, z) -> list[tuple[Any, tuple, tuple, bool]]:
    """(conv, input shape, output shape, needs input grad) of every Conv2d call of one forward of
    ``net`` on ``z`` (with autograd on: which inputs need a gradient is part of a step's cost)."""
    import torch.nn as nn

    seen: list[tuple[Any, tuple, tuple, bool]] = []

    def hook(mod, inputs, output):
        seen.append((mod, tuple(inputs[0].shape), tuple(output.shape), bool(inputs[0].requires_grad)))

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        net(z)
    finally:
        for h in handles:
            h.remove()
    return seen


def largest_conv(net, z):
    """(conv module, input shape) of the net's most expensive Conv2d, 3×3 ones preferred."""
    def flops(mod, out_shape) -> int:
        k = mod.kernel_size[0] * mod.kernel_size[1]
        return 2 * mod.in_channels // mod.groups * mod.out_channels * k * out_shape[-2] * out_shape[-1]

    seen = convs_of(net, z)
    if not seen:
        return None, None
    pool = [s for s in seen if tuple(s[0].kernel_size) == (3, 3)] or seen
    conv, shape, _, _ = max(pool, key=lambda s: flops(s[0], s[2]))
    return conv, shape


def conv_peak(net, z, device: str, precision: str, repeats: int) -> dict:
    """The machine's rate on the net's largest conv: forward + backward (input and weight grads) of
    the same Conv2d shape with zero padding (the bare kernel), NCHW and channels_last, best of
    ``repeats`` timings each, under the run's autocast."""
    import torch
    import torch.nn as nn
    from torch.utils.flop_counter import FlopCounterMode

    ref, shape = largest_conv(net, z)
    if ref is None:
        return {"conv_peak_gflops": None, "conv_peak_layout": None, "conv_peak_shape": None}
    dev_type = torch.device(device).type
    best: dict[str, float] = {}
    flops = None
    for layout, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        conv = nn.Conv2d(ref.in_channels, ref.out_channels, ref.kernel_size, stride=ref.stride, padding=ref.padding,
                         dilation=ref.dilation, groups=ref.groups, bias=ref.bias is not None).to(device)
        conv = conv.to(memory_format=fmt)
        x = torch.randn(shape, device=device).contiguous(memory_format=fmt).requires_grad_()
        grad: list[torch.Tensor] = []

        def once(x=x, conv=conv, grad=grad, fmt=fmt) -> None:  # (bound: this layout's tensors)
            x.grad = None
            conv.zero_grad(set_to_none=True)
            with autocast(dev_type, precision):
                out = conv(x)
            if not grad:
                grad.append(torch.randn_like(out).contiguous(memory_format=fmt))
            out.backward(grad[0])

        once()  # warm-up (and the gradient's shape)
        if flops is None:
            with FlopCounterMode(display=False) as counter:
                once()
            flops = int(counter.get_total_flops())
        best[layout] = flops / best_time(once, max(2, repeats), device) / 1e9
    layout = max(best, key=best.get)
    c = ref
    return {"conv_peak_gflops": best[layout], "conv_peak_layout": layout,
            "conv_peak_by_layout": best,
            "conv_peak_shape": f"{c.in_channels}->{c.out_channels} {c.kernel_size[0]}x{c.kernel_size[1]} "
                               f"stride {c.stride[0]} on {shape[-2]}x{shape[-1]}"}


def conv_floor(net, z, device: str, precision: str, repeats: int) -> dict:
    """The time of the net's convolutions alone: every Conv2d call of one step (its own padding
    mode, groups, stride; input gradient where the net needs it), forward + backward in isolation,
    each in its faster layout (NCHW or channels_last), best of ``repeats``, summed.

    No implementation that calls these convolution kernels can step faster than
    ``conv_floor_it_per_s``: it is the ceiling that the BatchNorm / activation / padding /
    upsampling / optimiser work is measured against."""
    import copy

    import torch

    dev_type = torch.device(device).type
    total = {"nchw": 0.0, "channels_last": 0.0, "best": 0.0}
    for ref, shape, _, needs_grad in convs_of(net, z):
        times = {}
        for layout, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
            conv = copy.deepcopy(ref).to(device).to(memory_format=fmt)
            x = torch.randn(shape, device=device).contiguous(memory_format=fmt).requires_grad_(needs_grad)
            with autocast(dev_type, precision):
                grad = torch.randn_like(conv(x))

            def once(x=x, conv=conv, grad=grad) -> None:  # (bound: this layout's tensors)
                x.grad = None
                conv.zero_grad(set_to_none=True)
                with autocast(dev_type, precision):
                    out = conv(x)
                out.backward(grad)

            once()
            times[layout] = best_time(once, max(2, repeats), device)
        total["nchw"] += times["nchw"]
        total["channels_last"] += times["channels_last"]
        total["best"] += min(times.values())
    return total


def floor_fields(net, z, device: str, precision: str, repeats: int, pack: int | None) -> dict:
    """``conv_floor_*`` of the net, and with ``pack``: the same for the K-packed (grouped) net, so
    ``pack_conv_floor_speedup`` bounds what packing can gain on this machine's conv kernels."""
    import torch

    from dip_lightning.packing import pack_nets

    floor = conv_floor(net, z, device, precision, repeats)
    out = {"conv_floor_ms": 1e3 * floor["best"], "conv_floor_it_per_s": 1.0 / floor["best"],
           "conv_floor_ms_by_layout": {k: 1e3 * v for k, v in floor.items() if k != "best"}}
    if pack:
        packed = pack_nets([net] * pack).to(device)
        pfloor = conv_floor(packed, torch.cat([z] * pack, 1), device, precision, repeats)
        out.update(pack_conv_floor_ms=1e3 * pfloor["best"],
                   pack_conv_floor_speedup=pack * floor["best"] / pfloor["best"])
    return out
