"""deepinv interop: any deepinv physics as a task, and our DIP as a deepinv reconstructor."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import QUIET, TINY_NET, synthetic_image

dinv = pytest.importorskip("dip_lightning.deepinv").import_deepinv()

from dip_lightning.deepinv import DIPReconstructor  # noqa: E402
from dip_lightning.run import build, run  # noqa: E402
from dip_lightning.tasks.physics import PhysicsTask  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ["deepinv_blur", "deepinv_inpaint", "deepinv_mri", "deepinv_ct", "deepinv_cs"]
TINY = {"net.channels_down": [8, 8, 8], "net.channels_up": [8, 8, 8], "net.channels_skip": [2, 2, 2], "input.depth": 4}


def test_every_preset_runs_through_the_cli(tmp_path, image_file):
    """One multirun over the five presets, each at 24 × 24 (an odd canvas for the net): every job
    completes and its restored image has the physics' image size (grayscale where the preset says)."""
    img = image_file(40, 30, 3)
    cmd = [sys.executable, "-m", "dip_lightning.cli", "-m", f"task={','.join(PRESETS)}", "++task.size=24",
           f"image={img}", "iters=4", "eval_every=2", "input.depth=4", *QUIET, *TINY_NET,
           f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweep.subdir=${hydra.runtime.choices.task}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "WANDB_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for preset in PRESETS:
        job = tmp_path / "sweep" / preset
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["status"] == "completed" and metrics["image_size"] == [24, 24], preset
        gray = preset in ("deepinv_mri", "deepinv_ct", "deepinv_cs")
        restored = np.asarray(Image.open(job / "restored.png"))
        assert restored.shape == ((24, 24) if gray else (24, 24, 3)), preset
        assert np.asarray(Image.open(job / "observed.png")).shape[:2] == (24, 24), preset
        assert metrics["psnr_observed"] is not None and np.isfinite(metrics["psnr_final"]), preset


def test_physics_inpainting_gives_our_inpainting_loss_curve(compose_cfg, tmp_path):
    """deepinv's Inpainting with our mask (no noise) and our Inpaint task: the same loss curve."""
    h, w = 32, 24
    rng = np.random.default_rng(0)
    mask = (rng.random((h, w)) > 0.5).astype(np.uint8) * 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    img = tmp_path / "img.png"
    Image.fromarray((synthetic_image(h, w, 3) * 255).astype(np.uint8)).save(img)
    common = [f"image={img}", "iters=10", "eval_every=1", "input.depth=4", "seed=4", *QUIET, *TINY_NET]
    ours = run(compose_cfg(*common, "task=inpaint", f"task.mask={tmp_path / 'mask.png'}", out="ours"))
    m = torch.from_numpy(mask > 0).float()[None, None].expand(1, 3, h, w)
    physics = dinv.physics.Inpainting(img_size=(3, h, w), mask=m.clone())
    cfg = compose_cfg(*common, "task=physics", out="theirs")
    theirs = run(cfg, make_task=lambda: PhysicsTask(physics))
    np.testing.assert_allclose(theirs["history"]["loss"], ours["history"]["loss"], rtol=1e-5, atol=1e-7)
    assert theirs["metrics"]["psnr_final"] == pytest.approx(ours["metrics"]["psnr_final"], abs=1e-3)


def test_same_seed_same_observation_other_seed_other_noise(compose_cfg):
    def observation(seed):
        cfg = compose_cfg("task=deepinv_inpaint", "task.size=16", "image=camera", f"seed={seed}", "input.depth=4",
                          *QUIET, *TINY_NET, out=f"s{seed}")
        fit = build(cfg).fits[0]
        return fit.prob.y, fit.task.physics.mask

    (y0, m0), (y0b, m0b), (y1, m1) = observation(0), observation(0), observation(1)
    assert torch.equal(y0, y0b) and torch.equal(m0, m0b)
    assert not torch.equal(m0, m1) and not torch.equal(y0, y1)


@pytest.mark.slow
def test_mri_is_complex_and_beats_zero_filling(compose_cfg):
    """The MRI preset (with the complex step, dip_lightning/steps.py): the net paints 2 channels
    (real, imaginary), scored on the magnitude; after a short fit the magnitude PSNR beats the
    zero-filled A^T y (measured 19.70 against 17.19 dB; the TV term slows the first 150 steps)."""
    cfg = compose_cfg("experiment=deepinv_mri", "task.size=32", "iters=300", "eval_every=10", *QUIET, out="mri")
    res = run(cfg)
    assert res["restored"].shape == (1, 32, 32)  # the magnitude picture
    m = res["metrics"]
    assert m["channels"] == 1 and m["psnr_final"] > m["psnr_observed"] + 1.0, m


def test_mri_net_output_is_two_channel_and_linear(compose_cfg):
    cfg = compose_cfg("task=deepinv_mri", "task.size=16", "image=camera", "input.depth=4", *QUIET, *TINY_NET)
    built = build(cfg)
    out = built.module.net(built.module.z)
    assert out.shape[1] == 2 and not any(isinstance(m, torch.nn.Sigmoid) for m in built.module.net.modules())
    assert built.fits[0].task.complex and built.module.x_true.shape[1] == 1


def _dataset(n=2, size=32):
    x = torch.stack([torch.from_numpy(synthetic_image(size, size, 1, seed=i))[None] for i in range(n)])
    physics = dinv.physics.Inpainting(img_size=(1, size, size), mask=0.5, rng=torch.Generator().manual_seed(0),
                                      noise_model=dinv.physics.GaussianNoise(0.02, rng=torch.Generator().manual_seed(1)))
    return x, physics, physics(x)


def test_reconstructor_in_deepinv_test():
    x, physics, y = _dataset()
    model = DIPReconstructor(iters=15, seed=2, **TINY)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=1)
    res = dinv.test(model, loader, physics, metrics=dinv.loss.metric.PSNR(), show_progress_bar=False, verbose=False)
    assert np.isfinite(res["PSNR"]) and np.isfinite(res["PSNR_std"])
    assert res["PSNR"] > res["PSNR no learning"]


def test_reconstructor_is_seeded_fresh_and_batched():
    """Two calls with one seed give one x̂ (weights are not carried over); eval() / no_grad (as
    deepinv.test sets them) change nothing; a batch of 2 equals 2 single calls (float64)."""
    x, physics, y = _dataset()
    model = DIPReconstructor(iters=8, seed=5, **TINY, **{"trainer.precision": "64-true"})
    a0, a0_again = model(y[:1], physics), model(y[:1], physics)
    assert a0.shape == (1, 1, 32, 32) and torch.equal(a0, a0_again)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(y[:1], physics), a0)
    both = model(y, physics)
    assert both.shape == (2, 1, 32, 32)
    torch.testing.assert_close(both[:1], a0, atol=1e-8, rtol=0)
    torch.testing.assert_close(both[1:], model(y[1:], physics), atol=1e-8, rtol=0)
    final = DIPReconstructor(iters=8, seed=5, output="final", **TINY, **{"trainer.precision": "64-true"})
    assert not torch.equal(final(y[:1], physics), a0)  # the last iterate, not the EMA


def test_reconstructor_errors_are_clear():
    with pytest.raises(ValueError, match="output='best'"):
        DIPReconstructor(output="best")


def test_core_runs_without_deepinv(tmp_path):
    """deepinv hidden from the import path: importing dip_lightning and a core task still work, and
    nothing imports deepinv; a deepinv task names the extra to install."""
    code = (
        "import sys; sys.modules['deepinv'] = None\n"
        "import torch; torch.set_num_threads(1)\n"
        "from dip_lightning.api import restore\n"
        "out, m = restore('camera', task='denoise', iters=3, resize=24, output_dir=sys.argv[1] + '/a', "
        "logger='none', **{'input.depth': 4, 'net.channels_down': [8, 8], 'net.channels_up': [8, 8], "
        "'net.channels_skip': [2, 2]})\n"
        "assert out.shape == (24, 24) and 'deepinv' not in [k for k, v in sys.modules.items() if v is not None]\n"
        "try:\n"
        "    restore('camera', task='deepinv_blur', iters=1, output_dir=sys.argv[1] + '/b', logger='none')\n"
        "except ImportError as exc:\n"
        "    print('IMPORT-ERROR', exc)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "WANDB_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "IMPORT-ERROR" in proc.stdout and ".[deepinv]" in proc.stdout


def test_compare_deepinv_script(tmp_path):
    """scripts/compare_deepinv.py, shrunk: our multirun and deepinv's DIP on the same observation."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from compare_deepinv import main

    tiny = [f"{k}={v}".replace(" ", "") for k, v in TINY.items()]
    assert main(["--tasks", "deepinv_inpaint,deepinv_mri", "--images", "camera", "--seeds", "0,1", "--iters", "3",
                 "--at", "2", "--size", "24", "--work", str(tmp_path), "threads=1", *tiny]) == 0
    text = (tmp_path / "compare_deepinv.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| deepinv_")]
    assert len(rows) == 2 and all("±" in r for r in rows)
    assert "| A^T y (dB) | ours EMA @ 2 (dB) | ours EMA @ 3 (dB) |" in text.splitlines()[0]
    ours = [json.loads(p.read_text())["psnr_final"] for p in sorted((tmp_path / "ours" / "deepinv_inpaint").glob("*/*/metrics.json"))]
    assert f"{sum(ours) / len(ours):.2f}" in rows[0]  # the table's mean is the jobs' mean


def test_restore_takes_a_physics_object(tmp_path):
    from dip_lightning.api import restore

    physics = dinv.physics.Inpainting(img_size=(1, 24, 24), mask=0.5, rng=torch.Generator().manual_seed(0))
    out, m = restore("camera", physics=physics, iters=4, output_dir=tmp_path / "r", logger="none",
                     **{"task.size": 24, "task.channels": 1, "trainer.enable_progress_bar": False}, **TINY)
    assert out.shape == (24, 24) and m["task"] == "PhysicsTask" and m["status"] == "completed"
    assert m["psnr_observed"] is not None and (tmp_path / "r" / "observed.png").is_file()


def test_complex_physics_get_their_own_step_and_explicit_values_win(compose_cfg):
    """dip_lightning/steps.py: task=deepinv_mri (complex) takes lr 0.005, no jitter and TV 0.01;
    a real physics keeps the paper's step; an override wins; the reconstructor finds MRI from the object."""
    from dip_lightning.deepinv import DIPReconstructor

    mri, ct = compose_cfg("task=deepinv_mri"), compose_cfg("task=deepinv_ct")
    assert (mri.optim.lr, mri.reg_noise_std, mri.tv_weight, mri.backtrack_db) == (0.005, 0.0, 0.01, None)
    assert (ct.optim.lr, ct.reg_noise_std, ct.tv_weight) == (0.01, 0.0333, 0.05)  # the paper's step and TV
    blur = compose_cfg("task=deepinv_blur")
    assert (blur.optim.lr, blur.reg_noise_std, blur.tv_weight) == (0.01, 0.0333, 0.0)
    mine = compose_cfg("task=deepinv_mri", "optim.lr=0.02", "reg_noise_std=0.01")
    assert (mine.optim.lr, mine.reg_noise_std, mine.tv_weight) == (0.02, 0.01, 0.01)
    physics = dinv.physics.MRI(mask=torch.ones(1, 24, 24), img_size=(2, 24, 24))
    cfg = DIPReconstructor(iters=3).config(physics)
    assert cfg.task.complex is True and (cfg.optim.lr, cfg.reg_noise_std) == (0.005, 0.0)
    cfg = DIPReconstructor(iters=3, **{"optim.lr": 0.003}).config(physics)
    assert cfg.optim.lr == 0.003
    inpaint = dinv.physics.Inpainting(img_size=(1, 24, 24), mask=0.5)
    assert DIPReconstructor(iters=3).config(inpaint).optim.lr == 0.01
    ct = dinv.physics.Tomography(angles=8, img_width=24)
    assert DIPReconstructor(iters=3).config(ct).tv_weight == 0.05
    assert DIPReconstructor(iters=3, tv_weight=0.0).config(ct).tv_weight == 0.0


def test_restore_with_an_mri_physics_object_takes_the_complex_step(tmp_path):
    import yaml

    from dip_lightning.api import restore

    physics = dinv.physics.MRI(mask=torch.ones(1, 24, 24), img_size=(2, 24, 24))
    _, m = restore("camera", physics=physics, iters=2, output_dir=tmp_path / "r", logger="none",
                   **{"task.size": 24, "task.channels": 1, "trainer.enable_progress_bar": False}, **TINY)
    cfg = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert m["status"] == "completed" and cfg["task"]["complex"] is True
    assert (cfg["optim"]["lr"], cfg["reg_noise_std"], cfg["tv_weight"]) == (0.005, 0.0, 0.01)
