"""Timing helpers of the benchmark: device syncs only at the timing boundaries, the autocast
Lightning's precision uses, a quiet session; resident memory comes from ``dip_lightning.rss``."""
from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable

from dip_lightning.rss import maxrss_mb, rss_mb  # noqa: F401  (the benchmark's names for them)


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
