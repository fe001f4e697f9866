"""``reference=``: an observation made elsewhere (``observed=true``) scored against its clean image."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import QUIET, TINY_NET, synthetic_image
from dip_lightning.run import run


def metrics(res) -> dict:
    return json.loads((res["output_dir"] / "metrics.json").read_text())


def test_a_pair_is_scored_like_the_synthetic_run_it_came_from(compose_cfg, tmp_path):
    from dip_lightning.instantiate import instantiate
    from dip_lightning.problem import build_fits

    x = synthetic_image(37, 29, 3).astype(np.float32)
    np.save(tmp_path / "clean.npy", x)
    common = ("iters=30", "eval_every=5", "input.depth=4", *QUIET, *TINY_NET)
    cfg = compose_cfg(f"image={tmp_path / 'clean.npy'}", *common, out="syn")
    fit = build_fits(cfg, None, instantiate(cfg.input))[0]  # as run() makes it
    np.save(tmp_path / "noisy.npy", fit.prob.y[0].numpy().transpose(1, 2, 0))  # the observation, exactly
    syn = metrics(run(cfg))
    pair = metrics(run(compose_cfg(f"image={tmp_path / 'noisy.npy'}", "observed=true",
                                   f"reference={tmp_path / 'clean.npy'}", *common, out="pair")))
    assert pair["status"] == "completed"
    # same observation, reference, net and z (z has its own stream): the same fit, the same scores
    for key in ("psnr_observed", "psnr_final", "psnr_best", "best_step", "psnr_ema_final", "ssim_final",
                "psnr_obs_final", "es_step", "es_psnr", "es_gap", "backtracks"):
        assert pair[key] == syn[key], (key, pair[key], syn[key])
    assert pair["psnr_best"] > pair["psnr_observed"]


def test_sr_reference_is_factor_times_larger_and_mismatches_are_one_line(compose_cfg, tmp_path):
    x = synthetic_image(32, 24, 3).astype(np.float32)
    np.save(tmp_path / "hr.npy", x)
    np.save(tmp_path / "lr.npy", x[::4, ::4])
    common = ("iters=4", "input.depth=4", *QUIET, *TINY_NET, "observed=true")
    m = metrics(run(compose_cfg("task=sr", "task.factor=4", f"image={tmp_path / 'lr.npy'}",
                                f"reference={tmp_path / 'hr.npy'}", *common, out="sr")))
    assert m["status"] == "completed" and np.isfinite(m["psnr_final"])
    with pytest.raises(ValueError, match=r"reference is 3×32×24 \(C×H×W\) but the observation needs 3×16×12 "
                                         r"\(2 × the observation's 8×6\)"):
        run(compose_cfg("task=sr", "task.factor=2", f"image={tmp_path / 'lr.npy'}", f"reference={tmp_path / 'hr.npy'}",
                        *common, out="bad"))
    with pytest.raises(ValueError, match="add observed=true"):
        run(compose_cfg(f"image={tmp_path / 'hr.npy'}", f"reference={tmp_path / 'hr.npy'}", "iters=2", *QUIET,
                        *TINY_NET, out="noobs"))


def test_a_gray_pair_in_tiles(compose_cfg, tmp_path):
    x = synthetic_image(45, 39, 1).astype(np.float32)
    noisy = np.clip(x + np.random.default_rng(0).normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    np.save(tmp_path / "clean.npy", x)
    np.save(tmp_path / "noisy.npy", noisy)
    m = metrics(run(compose_cfg(f"image={tmp_path / 'noisy.npy'}", "observed=true", f"reference={tmp_path / 'clean.npy'}",
                                "tile=32", "iters=3", "input.depth=4", *QUIET, *TINY_NET, out="tiles")))
    want = float(-10 * np.log10(np.mean((noisy - x) ** 2)))
    assert m["status"] == "completed" and abs(m["psnr_observed"] - want) < 1e-3
    assert torch.isfinite(torch.tensor(m["psnr_final"]))
