"""The sync-free backtracking (the GPU path, forced here on the CPU) does exactly what the
tensor-by-tensor path does: same restores, same runs, packed or not, NCHW or channels_last."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import QUIET, TINY_NET
from dip_lightning.flatstate import FlatState, flat_view
from dip_lightning.module import DIPModule
from dip_lightning.run import run


def test_select_matches_per_tensor_where_for_packed_mixed_layouts():
    torch.manual_seed(0)
    k = 3
    shapes = [(6, 5, 3, 3), (6,), (9, 2, 1, 1), (3, 4, 5, 7)]
    now = [torch.randn(s) for s in shapes]
    now[0] = now[0].contiguous(memory_format=torch.channels_last)
    now[3] = now[3].contiguous(memory_format=torch.channels_last)
    now[1][2] = float("nan")  # a diverged value in fit 1's block: must be replaced, not multiplied
    snap = [torch.randn_like(t) for t in now]
    good = torch.tensor([True, False, True])
    expect = [torch.where(good.repeat_interleave(t.shape[0] // k).view(-1, *[1] * (t.dim() - 1)), t, s)
              for t, s in zip(now, snap)]
    state = FlatState.of(now, k)
    new = state.select(good, state.gather(now), state.gather(snap))
    state.scatter(new, now)
    for t, e in zip(now, expect):
        assert torch.equal(t, e)
    assert now[0].is_contiguous(memory_format=torch.channels_last)  # written in place, layout kept
    views = state.views(new, now)
    assert all(torch.equal(v, t) and v.stride() == t.stride() for v, t in zip(views, now))
    assert state.holds(views, new) and not state.holds(snap, new)
    assert flat_view(torch.randn(4, 6)[:, ::2]) is None and FlatState.of([torch.randn(4, 6)[:, ::2]], 1) is None


def tiny(compose_cfg, image, *extra, out):
    return compose_cfg(f"image={image}", "iters=24", "input.depth=4", "eval_every=4", "es=none", *QUIET, *TINY_NET,
                       *extra, out=out)


@pytest.mark.parametrize("extra", [
    pytest.param(["optim.lr=50", "backtrack_db=1.0"], id="collapse"),
    pytest.param(["optim.lr=0.05", "backtrack_db=0.05", "pack=2", "memory_format=contiguous"], id="packed-nchw"),
    pytest.param(["optim.lr=0.05", "backtrack_db=0.05", "pack=2"], id="packed-channels-last"),
])
def test_sync_free_run_equals_the_cpu_path(compose_cfg, image_file, monkeypatch, extra):
    img = image_file(24, 24, 3)
    results = {}
    for sync_free in (False, True):
        monkeypatch.setattr(DIPModule, "sync_free_backtrack", sync_free)
        results[sync_free] = run(tiny(compose_cfg, img, *extra, out=f"sf{sync_free}"))
    a, b = results[False], results[True]
    fits = [a] if "pack=2" not in extra else a["fits"]
    fits_b = [b] if "pack=2" not in extra else b["fits"]
    total = 0
    for fa, fb in zip(fits, fits_b):
        assert fa["metrics"]["backtracks"] == fb["metrics"]["backtracks"]
        total += fa["metrics"]["backtracks"]
        for key in ("psnr_final", "psnr_best", "psnr_ema_final", "best_step"):
            assert fa["metrics"][key] == fb["metrics"][key], key
        assert torch.equal(fa["restored"], fb["restored"])
        assert np.array_equal(np.array(fa["history"]["psnr/gt"]), np.array(fb["history"]["psnr/gt"]), equal_nan=True)
    assert total > 0  # the restore really ran
    if "pack=2" in extra:  # and per fit: the fits' counts differ
        assert len({f["metrics"]["backtracks"] for f in fits}) > 1
