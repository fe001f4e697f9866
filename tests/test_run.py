"""End to end through run(): files, metrics, determinism, observed images, backtracking."""
import json

import numpy as np
import pytest
import torch

from dip_lightning.run import run
from conftest import QUIET, TINY_NET

FILES = ["restored.png", "restored_ema.png", "restored_best.png", "observed.png", "panel.png", "psnr.png",
         "metrics.json", "config.yaml"]
KEYS = ["psnr_observed", "psnr_final", "psnr_ema_final", "psnr_best", "best_step", "iters_done", "wall_s",
        "it_per_s", "status"]


def tiny(compose_cfg, path, *extra, out="run"):
    return compose_cfg(f"image={path}", "iters=12", "eval_every=3", "input.depth=4", *QUIET, *TINY_NET, *extra,
                       out=out)


def test_run_writes_every_output(compose_cfg, image_file):
    res = run(tiny(compose_cfg, image_file(21, 26, 3)))
    d = res["output_dir"]
    for f in FILES:
        assert (d / f).is_file(), f
    m = json.loads((d / "metrics.json").read_text())
    for k in KEYS:
        assert k in m and m[k] is not None, k
    assert m["iters_done"] == 12 and 1 <= m["best_step"] <= 12
    assert m["psnr_best"] >= max(v for v in res["history"]["psnr/gt"])  - 1e-3
    assert res["history"]["step"] == [1, 3, 6, 9, 12]


def test_same_seed_same_curve_to_the_bit(compose_cfg, image_file):
    path = image_file(20, 20, 1)
    a = run(tiny(compose_cfg, path, "seed=3", out="a"))
    b = run(tiny(compose_cfg, path, "seed=3", out="b"))
    c = run(tiny(compose_cfg, path, "seed=4", out="c"))
    assert a["history"]["psnr/gt"] == b["history"]["psnr/gt"]
    assert a["history"]["loss"] == b["history"]["loss"]
    assert torch.equal(a["restored"], b["restored"])
    assert a["history"]["loss"] != c["history"]["loss"]


def test_already_corrupted_image_has_no_ground_truth(compose_cfg, image_file):
    res = run(tiny(compose_cfg, image_file(19, 23, 3), "observed=true"))
    d = res["output_dir"]
    m = json.loads((d / "metrics.json").read_text())
    assert m["ground_truth"] is False and m["psnr_final"] is None and m["psnr_best"] is None
    assert m["psnr_obs_final"] is not None
    assert not (d / "restored_best.png").exists() and (d / "restored.png").is_file()


def test_sr_on_a_real_low_resolution_image(compose_cfg, image_file):
    res = run(tiny(compose_cfg, image_file(9, 7, 3), "observed=true", "task=sr", "task.factor=4"))
    assert res["restored"].shape == (3, 36, 28)


def test_crop_mode_is_the_originals_centre_crop(compose_cfg, image_file):
    res = run(tiny(compose_cfg, image_file(37, 29, 3), "fit_size=crop"))
    assert res["restored"].shape == (3, 32, 24)


def test_backtracking_restores_the_last_good_parameters(compose_cfg, image_file):
    # An absurd learning rate makes the fit collapse; backtracking must fire and the run still end sane.
    cfg = tiny(compose_cfg, image_file(24, 24, 3), "optim.lr=50", "iters=20", "backtrack_db=1.0")
    res = run(cfg)
    m = res["metrics"]
    assert m["backtracks"] > 0
    assert np.isfinite(m["psnr_final"])


def test_backtrack_mechanism_directly():
    from dip_lightning.backtrack import Backtracker

    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    guard = Backtracker(fits=1)
    guard.update(torch.tensor(True), opt)  # first call: snapshot
    with torch.no_grad():
        p.mul_(7)
    p.grad = torch.ones(3)
    guard.update(torch.tensor(False), opt)  # bad step: restored, gradient zeroed
    assert torch.equal(p.data, torch.ones(3)) and torch.equal(p.grad, torch.zeros(3))
    with torch.no_grad():
        p.mul_(2)
    guard.update(torch.tensor(True), opt)  # good step: kept, becomes the snapshot
    assert torch.equal(p.data, torch.full((3,), 2.0)) and torch.equal(guard.snapshot[0], p.data)


def test_csv_logger_gets_the_curves(compose_cfg, image_file):
    cfg = tiny(compose_cfg, image_file(16, 16, 3), "logger=csv", "log_every=4")
    res = run(cfg)
    text = (res["output_dir"] / "csv" / "metrics.csv").read_text()
    header = text.splitlines()[0]
    assert "psnr/gt" in header and "psnr_ema/gt" in header and "loss" in header and "psnr/best" in header
    assert len(text.strip().splitlines()) == 1 + 5


def test_bad_iters_is_a_clear_error(compose_cfg, image_file):
    with pytest.raises(ValueError, match="iters=0"):
        run(tiny(compose_cfg, image_file(), "iters=0"))


def test_channels_last_runs_with_backtracking_and_matches_nchw(compose_cfg, image_file):
    path = image_file(24, 24, 3)
    # float64: float32 kernels of the two layouts round differently and the fit amplifies it
    a = run(tiny(compose_cfg, path, "memory_format=channels_last", "backtrack_db=5", "trainer.precision=64-true",
                 out="cl"))
    b = run(tiny(compose_cfg, path, "memory_format=contiguous", "backtrack_db=5", "trainer.precision=64-true",
                 out="nchw"))
    assert a["metrics"]["status"] == "completed"
    assert torch.allclose(a["restored"], b["restored"], atol=1e-6)


@pytest.mark.parametrize("sync_free", [False, True])
@pytest.mark.parametrize("k", [2, 4])
def test_a_collapse_restores_parameters_moments_and_step_count_exactly(k, sync_free):
    """A parameter set to NaN at step k: the restore puts back the parameters, Adam's moments and
    its step count of step k−1 exactly (at k = 2, before the first update: zero moments, step 0);
    the first call, with nothing to restore, restores nothing."""
    from dip_lightning.backtrack import Backtracker, state_tensors, step_counts

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    guard, x = Backtracker(1), torch.randn(1, 2, 8, 8)
    for step in range(1, k + 1):
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        bad = step == k
        if bad:
            with torch.no_grad():
                next(net.parameters()).view(-1)[0] = float("nan")
        else:  # the state the guard sees at step k - 1 (moments absent before the first update: zero)
            expect = [t.clone() for t in state_tensors(opt)]
            expect_steps = [c.clone() for c in step_counts(opt)]
        restored = guard.update(torch.tensor([not bad]), opt, sync_free)
        assert bool(restored) == bad and (step > 1 or not bool(restored))
        if bad:
            now, steps = state_tensors(opt), step_counts(opt)
            params = len(list(net.parameters()))
            assert all(torch.equal(a, b) for a, b in zip(now[:params], expect[:params]))
            moments = expect[params:] or [torch.zeros_like(t) for t in now[params:]]
            assert len(now) - params == 2 * params and all(torch.equal(a, b) for a, b in zip(now[params:], moments))
            assert [float(c) for c in steps] == ([float(c) for c in expect_steps] or [0.0] * params)
        opt.step()


def test_jitter_and_observation_noise_are_independent_streams(compose_cfg, image_file):
    """Same seed, same draws (twice); but step 1's jitter ε is not the denoising noise realisation
    (both generators seeded with the seed itself drew the same values)."""
    from dip_lightning.run import build

    cfg = compose_cfg(f"image={image_file(24, 20, 3)}", "task.sigma=5", "reg_noise_std=0.05", "input.depth=4",
                      "iters=2", *QUIET, *TINY_NET)
    draws = []
    for _ in range(2):
        torch.manual_seed(123)  # the global stream must not matter for these two
        m = build(cfg).module
        m.on_fit_start()
        eps = ((m._input() - m.z) / 0.05).flatten()
        top, left, h, w = m.box
        noise = ((m.y[..., top:top + h, left:left + w] - m.x_true) * 255 / 5).flatten()
        draws.append((eps, noise))
    (e1, n1), (e2, n2) = draws
    assert torch.equal(e1, e2) and torch.equal(n1, n2)
    k = min(len(e1), len(n1))
    assert not torch.allclose(e1[:k], n1[:k], atol=1e-3)
    assert abs(torch.corrcoef(torch.stack([e1[:k], n1[:k]]))[0, 1]) < 0.1
