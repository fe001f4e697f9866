"""Timing and memory helpers of the benchmark: device syncs only at the timing boundaries, the
autocast Lightning's precision uses, resident memory, a quiet session."""
from __future__ import annotations

import contextlib
import math
import os
import resource
import sys
import time
from typing import Any, Callable


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: str, precision: str):
    """The autocast context Lightning's precision plugin puts around ``training_step``."""
    import torch

    if precision == "bf16-mixed":
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def quiet_session(threads: int | None):
    """Lightning's chatter off (``loggers.quiet_lightning``) and ``threads`` set; both restored on
    exit (the benchmark may run inside another program, e.g. the tests)."""
    import torch

    from dip_lightning.loggers import quiet_lightning

    old_threads = torch.get_num_threads()
    with quiet_lightning():
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(old_threads)


def timed_loop(step: Callable[[int], Any], warmup: int, steps: int, device: str) -> float:
    """Run ``warmup`` untimed then ``steps`` timed calls of ``step(i)`` (i = 1, 2, ...); return it/s.
    Synchronises the device only at the two timing boundaries."""
    for i in range(1, warmup + 1):
        step(i)
    sync(device)
    t0 = time.perf_counter()
    for i in range(warmup + 1, warmup + steps + 1):
        step(i)
    sync(device)
    return steps / (time.perf_counter() - t0)


def best_time(once: Callable[[], Any], repeats: int, device: str) -> float:
    """The fastest of ``repeats`` timed calls of ``once()`` (seconds), the device synchronised around each."""
    best = math.inf
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        once()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def rss_mb() -> float:
    """Current resident set size (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return maxrss_mb()


def maxrss_mb() -> float:
    """This process's peak resident set: Linux's VmHWM (of this program's memory since its exec),
    else ``ru_maxrss``, which Linux carries over from the parent through fork and exec (a job
    started by a big process would report the parent's size)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux
