"""Per task: a short real fit moves the estimate towards the ground truth."""
import json

import pytest
import torch

from dip_lightning.run import run
from conftest import QUIET, TINY_NET

FIT = QUIET + ["input.depth=8", "eval_every=5", "reg_noise_std=0.0"]


def history_first_last(result, key="psnr/gt"):
    vals = result["history"][key]
    return vals[0], vals[-1]


def test_denoise_beats_the_noisy_observation(compose_cfg, image_file):
    path = image_file(40, 36, 3)
    cfg = compose_cfg(f"image={path}", "task=denoise", "task.sigma=25", "iters=250", *FIT,
                      "net.channels_down=[16,16,16]", "net.channels_up=[16,16,16]", "net.channels_skip=[4,4,4]")
    res = run(cfg)
    m = res["metrics"]
    first, last = history_first_last(res)
    assert last > first + 5
    assert m["psnr_best"] > m["psnr_observed"] + 1.0, m
    assert m["psnr_ema_final"] is not None


def test_sr_output_is_high_resolution_and_improves(compose_cfg, image_file):
    path = image_file(36, 28, 3)
    cfg = compose_cfg(f"image={path}", "task=sr", "task.factor=4", "iters=60", *FIT, *TINY_NET,
                      "exp_weight=null", "backtrack_db=null")
    res = run(cfg)
    assert res["restored"].shape == (3, 36, 28)
    first, last = history_first_last(res)
    assert last > first + 3
    obs = json.loads((res["output_dir"] / "metrics.json").read_text())
    assert obs["psnr_observed"] is not None  # bicubic baseline


def test_inpaint_keeps_known_pixels_near_the_observation(compose_cfg, image_file):
    path = image_file(33, 40, 1)
    cfg = compose_cfg(f"image={path}", "task=inpaint", "task.mask=random", "task.missing=0.5", "iters=80",
                      *FIT, *TINY_NET, "exp_weight=null", "backtrack_db=null")
    res = run(cfg)
    first, last = history_first_last(res)
    assert last > first + 3
    from dip_lightning.io import load_image

    observed = load_image(res["output_dir"] / "observed.png")
    known = observed > 0  # the synthetic image is never black, holes are exactly 0
    err = (res["restored"] - observed).abs()[known]
    assert err.mean() < 0.05, err.mean()
    assert res["restored"].shape == (1, 33, 40)


@pytest.mark.parametrize("mask", ["text", "box", "random"])
def test_mask_sources(mask):
    from dip_lightning.tasks import Inpaint

    t = Inpaint(mask=mask)
    y = t.simulate(torch.rand(1, 3, 64, 48), torch.Generator().manual_seed(0))
    assert y.shape == (1, 3, 64, 48)
    assert 0.05 < t.known_fraction < 0.99


def test_mask_file_and_size_mismatch(tmp_path):
    from PIL import Image
    import numpy as np
    from dip_lightning.tasks import Inpaint

    m = np.full((20, 30), 255, np.uint8)
    m[5:10, 5:10] = 0
    Image.fromarray(m).save(tmp_path / "m.png")
    t = Inpaint(mask=str(tmp_path / "m.png"))
    t.simulate(torch.rand(1, 1, 20, 30), torch.Generator())
    assert t.known_fraction == pytest.approx(1 - 25 / 600)
    with pytest.raises(ValueError, match="20x30 but the image is 21x30"):
        Inpaint(mask=str(tmp_path / "m.png")).simulate(torch.rand(1, 1, 21, 30), torch.Generator())


def test_denoise_noise_level_and_clipping():
    from dip_lightning.tasks import Denoise

    x = torch.full((1, 1, 200, 200), 0.5)
    y = Denoise(sigma=25).simulate(x, torch.Generator().manual_seed(1))
    assert (y - x).std().item() == pytest.approx(25 / 255, rel=0.03)
    y2 = Denoise(sigma=100).simulate(torch.zeros(1, 1, 50, 50), torch.Generator())
    assert y2.min() >= 0 and y2.max() <= 1


def test_flash_uses_the_flash_photo_as_input(compose_cfg, image_file, tmp_path):
    noflash = image_file(24, 28, 3, name="noflash.png")
    flash = image_file(24, 28, 3, name="flash.png")
    cfg = compose_cfg(f"image={noflash}", "task=flash", f"task.flash={flash}", "iters=3", "reg_noise_std=0",
                      *QUIET, *TINY_NET)
    res = run(cfg)
    assert res["restored"].shape == (3, 24, 28) and res["metrics"]["ground_truth"] is False
    with pytest.raises(ValueError, match="same size"):
        run(compose_cfg(f"image={image_file(20, 28, 3, name='small.png')}", "task=flash", f"task.flash={flash}",
                        "iters=1", *QUIET, *TINY_NET, out="bad"))
    with pytest.raises(ValueError, match="task.flash"):
        run(compose_cfg(f"image={noflash}", "task=flash", "iters=1", *QUIET, *TINY_NET, out="none"))
    # resize= scales the flash photo as it scales the no-flash one
    res = run(compose_cfg(f"image={image_file(48, 56, 3, name='nf2.png')}", "task=flash", "resize=28",
                          f"task.flash={image_file(48, 56, 3, name='f2.png')}", "iters=2", "reg_noise_std=0",
                          *QUIET, *TINY_NET, out="resized"))
    assert res["restored"].shape == (3, 24, 28)


def test_tv_term_smooths_the_output(compose_cfg, image_file):
    from dip_lightning.metrics import total_variation

    path = image_file(32, 32, 1)
    tv = {}
    for w in (0.0, 1.0):
        res = run(compose_cfg(f"image={path}", "iters=40", f"tv_weight={w}", "input.depth=4", "reg_noise_std=0",
                              *QUIET, *TINY_NET, out=f"tv{w}"))
        tv[w] = total_variation(res["restored"][None]).item()
    assert tv[1.0] < tv[0.0]
