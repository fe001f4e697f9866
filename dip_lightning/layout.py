"""``memory_format=auto``: the tensor layout that measured faster for the whole step on the device.

Measured with ``scripts/benchmark.py --memory-format {contiguous,channels_last}`` (docs/speed.md):

- CUDA: NCHW (``contiguous``). The stock reflection-pad backward then runs, one kernel per pad,
  where the channels_last one takes eleven (``--count-ops``: 14 against 154 launches per step of
  the default skip net), and the step on a GPU is bound by its launches.
- CPU with AVX-512: channels_last, which measured 1.05–1.12× faster for the whole step on the
  2-core machine the first speed table came from (conv peak about 300 GFLOP/s).
- CPU without it (AVX2): NCHW, 1.56× faster than channels_last at 256² and 1.12× at 128² on the
  2-core AMD EPYC of docs/speed.md (conv peak 130 GFLOP/s), where oneDNN's NHWC kernels lose.

The choice is a fixed rule, not a timing at start-up: a run and its resume always agree.
"""
from __future__ import annotations

import torch

LAYOUTS = ("contiguous", "channels_last")


def cpu_prefers_channels_last() -> bool:
    """Whether this CPU has AVX-512 (torch's dispatch capability), where channels_last measured faster."""
    return "AVX512" in torch.backends.cpu.get_cpu_capability()


def resolve_memory_format(value: str, device_type: str) -> str:
    """``value`` (contiguous | channels_last | auto) for a run on ``device_type`` ('cpu' or 'cuda')."""
    if value != "auto":
        return value
    if device_type == "cuda":
        return "contiguous"
    return "channels_last" if cpu_prefers_channels_last() else "contiguous"
