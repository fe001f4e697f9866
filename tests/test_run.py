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
