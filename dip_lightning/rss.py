"""This process's resident memory, now and at its peak (Linux /proc, else ``getrusage``): for the
runs' ``peak_mem_mb`` and the benchmark."""
from __future__ import annotations

import os
import resource
import sys


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
