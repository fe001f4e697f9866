"""cpu_malloc=reuse: glibc serves big tensors from the heap and keeps freed memory, so a step's
second allocation of a large activation does not page-fault it in again (README "Speed")."""
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import QUIET, TINY_NET
from dip_lightning.run import run

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="the setting is glibc's mallopt")

PROBE = """
import resource, sys, torch
from dip_lightning import malloc
if sys.argv[1] == "reuse":
    assert malloc.reuse_freed_memory() and malloc.in_effect()
def step():  # a step's pattern: large temporaries (above glibc's 32 MiB mmap ceiling), small objects between
    a = torch.ones(1 << 24)
    b = torch.ones(3 << 22) * a[:3 << 22]
    c = (a[:1 << 23] + 1).sum()
    return [str(c.item())] * 100
flt = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(8):
    f0 = flt(); keep = step(); print(flt() - f0)
"""


def faults_per_step(mode: str) -> list[int]:
    proc = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [int(v) for v in proc.stdout.split()]


@glibc
def test_reuse_keeps_freed_memory_mapped():
    """Steady state (steps 3-8): glibc's defaults fault every large temporary in again (measured
    ~49k faults a step, all of its 192 MiB); with reuse most steps fault nothing (measured ~10%)."""
    system, reuse = faults_per_step("system")[2:], faults_per_step("reuse")[2:]
    assert min(system) > 30_000, system
    assert sum(reuse) < 0.3 * sum(system), (reuse, system)


@glibc
def test_run_applies_it_and_records_it(compose_cfg, image_file):
    cfg = compose_cfg(f"image={image_file(20, 24, 1)}", "iters=2", "input.depth=4", *QUIET, *TINY_NET)
    out = Path(run(cfg)["output_dir"])
    from dip_lightning import malloc

    assert malloc.in_effect()
    assert json.loads((out / "environment.json").read_text())["cpu_malloc_reuse"] is True


@glibc
def test_release_gives_the_heap_back():
    """A run's heap, kept by the setting, counts as free memory again after release() (run() calls
    it before its memory check): resident memory drops by the freed 256 MiB."""
    probe = """
import torch
from dip_lightning import malloc
assert malloc.reuse_freed_memory()
rss = lambda: int(open('/proc/self/statm').read().split()[1]) * 4096 >> 20
x = torch.ones(1 << 26); del x
kept = rss(); malloc.release(); print(kept - rss())
"""
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.split()[-1]) > 200, proc.stdout
