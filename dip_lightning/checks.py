"""Checks before a run spends time: the values a user can get wrong, the output directory, memory.

Each failure is one line naming the bad value and the fix (the CLI prints it without a traceback).
The memory check estimates one training step's activations from a small probe forward.
"""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import torch
import torch.nn as nn
from omegaconf import DictConfig

from dip_lightning import schema

log = logging.getLogger(__name__)



def check_values(cfg: DictConfig) -> None:
    """Values a user can get wrong, each with a one-line message naming it and the fix: every key's
    type and range (``dip_lightning.schema``), then what depends on two keys."""
    schema.validate(cfg)
    scored = str(cfg.get("eval_output") or "final")
    if scored == "ema" and cfg.exp_weight is None:
        raise ValueError("eval_output=ema but exp_weight=null (no EMA); set exp_weight=0.99 or eval_output=final")


def writable_dir(path: Path) -> Path:
    """``path``, created; a clear error when it cannot be written to."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"cannot write to the output directory {str(path)!r} ({exc.strerror or exc}); "
                         f"choose another with hydra.run.dir=... or paths.output_dir=...") from None
    return path


def run_device(cfg: DictConfig) -> str:
    """The device a run's trainer will use: 'cuda' when the accelerator allows it and one exists."""
    accel = str(cfg.trainer.get("accelerator", "auto"))
    return "cuda" if (accel in ("auto", "gpu", "cuda") and torch.cuda.is_available()) else "cpu"


def stopping_bytes(cfg: DictConfig, image_elements: int) -> int:
    """What early stopping keeps on the device for an image of ``image_elements`` values (all fits):
    ES-WMV a ring of ``window`` fp32 outputs and an fp64 running sum; ES-EMV an fp64 mean; both the
    fp32 image at the detected step (the held-out rule keeps only that)."""
    es = cfg.get("es")
    if not es:
        return 0
    if str(es.get("_target_", "")).endswith("HoldoutStopping"):
        return image_elements * 4
    if str(es.get("method", "wmv")) == "wmv":
        return image_elements * (4 * int(es.get("window", 100)) + 8 + 4)
    return image_elements * (8 + 4)


def check_memory(net, in_channels: int, canvas: tuple[int, int], cfg: DictConfig, out_channels: int = 3) -> None:
    """Refuse a problem whose estimated memory (one training step, and early stopping's buffers)
    exceeds what is free; warn above half of it."""
    need = estimate_step_bytes(net, in_channels, canvas) + stopping_bytes(cfg, out_channels * canvas[0] * canvas[1])
    device = run_device(cfg)
    free = available_bytes(device)
    if free is None:
        return
    gib = 2 ** 30
    if need > free:
        tile = fitting_tile(net, in_channels, cfg, out_channels, free, canvas)
        hint = f"restore it in tiles with tile={tile}, " if tile else ""
        raise MemoryError(f"a {canvas[0]}x{canvas[1]} fit needs about {need / gib:.1f} GiB but {free / gib:.1f} GiB "
                          f"of {device} memory are free; {hint}shrink it with resize=<longer side>, use a smaller "
                          f"net or a shorter es.window")
    if need > free / 2:
        log.warning("a %dx%d fit needs about %.1f GiB of the %.1f GiB free on %s", canvas[0], canvas[1], need / gib,
                    free / gib, device)


def fitting_tile(net, in_channels: int, cfg: DictConfig, out_channels: int, free: int,
                 canvas: tuple[int, int]) -> int | None:
    """The largest tile side (a multiple of the net's, below the canvas) whose fit the estimate
    puts within ``free`` bytes, or None. (A packed net's estimate covers all its fits.)"""
    if cfg.get("tile"):
        return None
    multiple = int(getattr(net, "multiple", 1))
    overlap = int(cfg.get("tile_overlap") or 0)  # a tile must exceed the overlap the user set
    for side in (2048, 1536, 1024, 768, 512, 384, 256, 192, 128, 96, 64):
        side -= side % multiple
        if overlap < side < max(canvas) and side >= int(getattr(net, "min_size", 2 * multiple)):
            if estimate_step_bytes(net, in_channels, (side, side)) + stopping_bytes(cfg, out_channels * side * side) <= free:
                return side
    return None


# ------------------------------------------------------------------ the memory estimate
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
