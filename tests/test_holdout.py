"""``holdout=FRACTION``: pixels left out of the data term and scored (``psnr_holdout``), a search
objective and a stopping rule (``es=holdout``) that need no reference."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import QUIET, TINY_NET, synthetic_image
from dip_lightning.instantiate import instantiate
from dip_lightning.problem import build_fits
from dip_lightning.run import run

COMMON = ("observed=true", "holdout=0.3", "iters=8", "eval_every=2", "input.depth=4", "es=none", *QUIET, *TINY_NET)


def test_held_out_pixels_never_reach_the_gradient(compose_cfg, tmp_path):
    """Two observations that differ only on the held-out pixels fit to bit-identical outputs, and
    score differently there."""
    y = synthetic_image(37, 29, 3).astype(np.float32)
    np.save(tmp_path / "a.npy", y)
    cfg = compose_cfg(f"image={tmp_path / 'a.npy'}", *COMMON, out="a")
    held = build_fits(cfg, None, instantiate(cfg.input))[0].prob.holdout  # padded like y
    box = build_fits(cfg, None, instantiate(cfg.input))[0].prob.box
    mask = held[0, 0, box[0]:box[0] + 37, box[1]:box[1] + 29].numpy().astype(bool)
    assert 0.2 < mask.mean() < 0.4
    other = y.copy()
    other[mask] = 1.0 - other[mask]  # only the held-out pixels change
    np.save(tmp_path / "b.npy", other)
    a = run(cfg)
    b = run(compose_cfg(f"image={tmp_path / 'b.npy'}", *COMMON, out="b"))
    assert torch.equal(a["restored"], b["restored"])
    assert a["metrics"]["psnr_holdout"] != b["metrics"]["psnr_holdout"]
    curve = [r for r in (tmp_path / "a" / "curves.csv").read_text().splitlines()[0].split(",")]
    assert "psnr/holdout" in curve


def test_es_holdout_marks_the_peak_and_needs_a_holdout(compose_cfg, tmp_path):
    img = tmp_path / "y.npy"
    np.save(img, synthetic_image(40, 40, 1).astype(np.float32))
    m = run(compose_cfg(f"image={img}", *[c for c in COMMON if c not in ("es=none", "iters=8")], "iters=30",
                        "es=holdout", "es.patience=4", "es.check_every=2", out="es"))["metrics"]
    assert m["es_method"] == "holdout" and m["es_step"] is not None and m["status"] == "completed"
    with pytest.raises(ValueError, match="holdout=null holds no pixel out"):
        run(compose_cfg(f"image={img}", "iters=2", "es=holdout", *QUIET, *TINY_NET, out="none"))


def test_a_tiled_run_holds_the_same_pixels_out_of_every_tile(compose_cfg, tmp_path):
    """tile=SIZE with holdout: the whole run's held-out pixels, held out of every tile (changing them
    leaves the tiled result bit-identical), scored on the assembled image; es=holdout stops each tile."""
    from dip_lightning.regions import observe

    y = synthetic_image(45, 38, 3).astype(np.float32)
    np.save(tmp_path / "a.npy", y)
    tiled = (*COMMON, "tile=24", "tile_overlap=8", "tile_batch=2")
    cfg = compose_cfg(f"image={tmp_path / 'a.npy'}", *tiled, out="a")
    whole_mask = build_fits(compose_cfg(f"image={tmp_path / 'a.npy'}", *COMMON, out="w"), None,
                            instantiate(cfg.input))[0].prob.holdout
    held = observe(cfg).holdout
    box = build_fits(compose_cfg(f"image={tmp_path / 'a.npy'}", *COMMON, out="w"), None, instantiate(cfg.input))[0].prob.box
    assert torch.equal(held, whole_mask[..., box[0]:box[0] + 45, box[1]:box[1] + 38])  # the whole run's pixels
    mask = held[0, 0].numpy().astype(bool)
    other = y.copy()
    other[mask] = 1.0 - other[mask]
    np.save(tmp_path / "b.npy", other)
    a = run(cfg)
    b = run(compose_cfg(f"image={tmp_path / 'b.npy'}", *tiled, out="b"))
    assert a["metrics"]["tiles"] > 1 and torch.equal(a["restored"], b["restored"])
    assert a["metrics"]["psnr_holdout"] is not None and a["metrics"]["psnr_holdout"] != b["metrics"]["psnr_holdout"]
    assert all(v == v for v in a["history"]["psnr/holdout"])  # pooled at every row
    es = run(compose_cfg(f"image={tmp_path / 'a.npy'}", *[c for c in tiled if c != "es=none"], "es=holdout",
                         "es.patience=2", "es.check_every=2", out="es"))["metrics"]
    assert es["es_method"] == "holdout" and all(s is not None for s in es["tile_es_steps"])


@pytest.mark.slow
def test_a_search_on_psnr_holdout_needs_no_reference(tmp_path, image_file):
    from test_search import TINY, study_of
    from test_sweeps import metrics, multirun

    args = ["hparams_search=optuna_lr", f"image={image_file(16, 16, 3)}", "observed=true", *TINY,
            "hydra.sweeper.n_trials=2", "hydra.sweeper.objective=psnr_holdout"]
    proc = multirun(args, tmp_path / "a", check=False)
    assert proc.returncode != 0 and "holdout=null holds none out" in proc.stderr
    multirun([*args, "holdout=0.2", "eval_every=1"], tmp_path / "b")
    trials = study_of(tmp_path / "b").get_trials()
    assert len(trials) == 2
    for t in trials:
        assert t.value == pytest.approx(metrics(tmp_path / "b" / f"trial_{t.number:04d}")["psnr_holdout"])
    assert json.loads((tmp_path / "b" / "trial_0000" / "metrics.json").read_text())["ground_truth"] is False
