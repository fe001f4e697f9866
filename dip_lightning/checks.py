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

from dip_lightning import malloc as cpu_malloc
from dip_lightning.metrics import PROTOCOLS

log = logging.getLogger(__name__)

#: torch.compile's modes (reduce-overhead: CUDA graphs)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_values(cfg: DictConfig) -> None:
    """Values a user can get wrong, each with a one-line message naming it and the fix."""
    if int(cfg.iters) < 1:
        raise ValueError(f"iters={cfg.iters} must be a positive number of steps, e.g. iters=3000")
    lr = cfg.optim.get("lr")
    if lr is not None and float(lr) <= 0:
        raise ValueError(f"optim.lr={lr} must be positive, e.g. optim.lr=0.01")
    if float(cfg.reg_noise_std) < 0:
        raise ValueError(f"reg_noise_std={cfg.reg_noise_std} must be >= 0 (0 turns the input jitter off)")
    w = cfg.exp_weight
    if w is not None and not 0.0 <= float(w) < 1.0:
        raise ValueError(f"exp_weight={w} must be in [0, 1) (e.g. 0.99), or null to turn the EMA off")
    if int(cfg.eval_every) < 1:
        raise ValueError(f"eval_every={cfg.eval_every} must be a positive number of steps")
    cpu_malloc.check(str(cfg.get("cpu_malloc", "reuse")))
    mode = str(cfg.get("compile_mode") or "default")
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile_mode={mode}; choose one of {', '.join(COMPILE_MODES)}")
    protocol, scored = cfg.get("eval_protocol"), str(cfg.get("eval_output") or "final")
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"eval_protocol={protocol}; choose {' or '.join(PROTOCOLS)} (or null for none)")
    if scored not in ("final", "ema", "best"):
        raise ValueError(f"eval_output={scored}; choose final, ema or best")
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
    fp32 image at the detected step."""
    es = cfg.get("es")
    if not es:
        return 0
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
        raise MemoryError(f"a {canvas[0]}x{canvas[1]} fit needs about {need / gib:.1f} GiB but {free / gib:.1f} GiB "
                          f"of {device} memory are free; shrink it with resize=<longer side>, use a smaller net "
                          f"or a shorter es.window")
    if need > free / 2:
        log.warning("a %dx%d fit needs about %.1f GiB of the %.1f GiB free on %s", canvas[0], canvas[1], need / gib,
                    free / gib, device)


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
