"""Restore (random missing pixels), JPEG artifacts, deblurring and Poisson denoising."""
import pytest
import torch

from dip_lightning.metrics import psnr
from dip_lightning.ops import gaussian_kernel
from dip_lightning.run import run
from dip_lightning.tasks import Deblur, Denoise, JPEGArtifacts, Restore
from conftest import QUIET, TINY_NET, synthetic_image


def smooth(height: int, width: int, channels: int) -> torch.Tensor:
    """The conftest synthetic image as (1, C, H, W)."""
    a = torch.from_numpy(synthetic_image(height, width, channels))
    return (a[None] if channels == 1 else a.permute(2, 0, 1))[None].float()


# ---------------------------------------------------------------------------- restore

@pytest.mark.parametrize("missing", [0.3, 0.5, 0.9])
def test_restore_mask_keeps_the_right_fraction_in_every_channel(missing):
    t = Restore(missing=missing)
    x = torch.rand(1, 3, 80, 70) + 0.1  # never 0, so y == 0 marks exactly the holes
    y = t.simulate(x, torch.Generator().manual_seed(0))
    assert t.mask.shape == (1, 1, 80, 70)
    assert t.known_fraction == pytest.approx(1 - missing, abs=0.03)
    holes = y == 0
    assert torch.equal(holes[:, 0], holes[:, 1]) and torch.equal(holes[:, 0], holes[:, 2])
    assert torch.equal(t(x), y)


def test_restore_rejects_a_bad_fraction():
    with pytest.raises(ValueError, match="task.missing=1.0"):
        Restore(missing=1.0)


# ---------------------------------------------------------------------------- jpeg

@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_round_trips_odd_sizes_and_quality_orders_psnr(channels):
    x = smooth(23, 31, channels)
    g = torch.Generator().manual_seed(0)
    y5 = JPEGArtifacts(quality=5).simulate(x, g)
    y50 = JPEGArtifacts(quality=50).simulate(x, g)
    assert y5.shape == x.shape and y50.shape == x.shape and y5.dtype == x.dtype
    assert not torch.allclose(y5, x, atol=1e-3)
    assert psnr(y5, x) < psnr(y50, x)
    assert 0.0 <= float(y5.min()) and float(y5.max()) <= 1.0


@pytest.mark.parametrize("quality", [0, 96, 10.5])
def test_jpeg_quality_is_validated(quality):
    with pytest.raises(ValueError, match="task.quality"):
        JPEGArtifacts(quality=quality)


# ---------------------------------------------------------------------------- deblur

def test_deblur_uniform_delta_becomes_the_box():
    size = 5
    t = Deblur(kernel="uniform", size=size)
    x = torch.zeros(1, 1, 15, 17)
    x[..., 7, 8] = 1.0
    out = t(x)
    assert out.shape == x.shape  # 'same' size
    assert float(out[0, 0, 7, 8]) == pytest.approx(1 / size ** 2)
    assert torch.allclose(out[0, 0, 5:10, 6:11], torch.full((5, 5), 1 / 25))
    assert float(out.sum()) == pytest.approx(1.0)
    assert int((out > 0).sum()) == size ** 2


def test_deblur_convolves_not_correlates(tmp_path):
    """An asymmetric kernel from a file lands on a delta unflipped: (k * δ)(c + u) = k(u)."""
    import numpy as np
    from PIL import Image

    k = np.zeros((3, 3), np.uint8)
    k[1, 1], k[1, 2] = 255, 85  # centre and one tap to the right
    Image.fromarray(k).save(tmp_path / "k.png")
    t = Deblur(kernel="file", path=str(tmp_path / "k.png"))
    assert float(t.kernel.sum()) == pytest.approx(1.0)
    x = torch.zeros(1, 2, 9, 9)
    x[..., 4, 4] = 1.0
    out = t(x)
    assert torch.allclose(out[0, :, 3:6, 3:6], t.kernel[0].expand(2, 3, 3), atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 4), (2, 6), (3, 4), (5, 5)])
def test_deblur_kernel_centre_is_matlab_conv2_same(tmp_path, shape):
    """Kernel files, even-sized ones included, are centred at (kh // 2, kw // 2), as MATLAB's
    conv2(x, k, "same") (the full convolution from row kh // 2) and scipy.ndimage.convolve centre
    them: a delta blurs into the same image."""
    import numpy as np
    from PIL import Image
    from scipy import ndimage
    from scipy.signal import convolve

    rng = np.random.default_rng(sum(shape))
    k = rng.integers(20, 256, size=shape).astype(np.uint8)
    Image.fromarray(k).save(tmp_path / "k.png")
    t = Deblur(kernel="file", path=str(tmp_path / "k.png"))
    x = np.zeros((13, 14))
    x[6, 7] = 1.0
    ours = t(torch.from_numpy(x)[None, None].float())[0, 0].numpy()
    kk = t.kernel[0, 0].double().numpy()
    conv2_same = convolve(x, kk, mode="full")[shape[0] // 2:shape[0] // 2 + 13, shape[1] // 2:shape[1] // 2 + 14]
    assert np.allclose(ours, conv2_same, atol=1e-6)
    assert np.allclose(ours, ndimage.convolve(x, kk, mode="constant"), atol=1e-6)


def test_deblur_gaussian_kernel_and_noisy_simulation():
    assert float(gaussian_kernel(9, 2.0).sum()) == pytest.approx(1.0)
    t = Deblur(kernel="gaussian", size=9, sigma=2.0, noise_sigma=10.0)
    assert t.kernel.shape == (1, 1, 9, 9) and float(t.kernel.sum()) == pytest.approx(1.0)
    x = smooth(21, 26, 3)
    y = t.simulate(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    assert float((y - t(x)).std()) == pytest.approx(10 / 255, rel=0.15)
    const = torch.full((1, 3, 12, 12), 0.4)
    assert torch.allclose(t(const), const, atol=1e-6)  # replicate padding keeps flat images flat
    assert torch.equal(t.baseline(y), y)


@pytest.mark.parametrize("kwargs,match", [
    ({"kernel": "motion"}, "task.kernel='motion'"),
    ({"kernel": "uniform", "size": 4}, "task.size=4"),
    ({"kernel": "gaussian", "sigma": 0.0}, "task.sigma=0.0"),
    ({"kernel": "file", "path": None}, "task.path=None"),
    ({"noise_sigma": -1.0}, "task.noise_sigma=-1.0"),
])
def test_deblur_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Deblur(**kwargs)


# ---------------------------------------------------------------------------- poisson

def test_poisson_noise_mean_and_variance():
    peak = 30.0
    t = Denoise(noise="poisson", peak=peak, clip=False)
    x = torch.cat([torch.full((1, 1, 200, 200), 0.2), torch.full((1, 1, 200, 200), 0.6)], dim=1)
    y = t.simulate(x, torch.Generator().manual_seed(0))
    for c, v in enumerate((0.2, 0.6)):
        assert float(y[0, c].mean()) == pytest.approx(v, rel=0.02)
        assert float(y[0, c].var()) == pytest.approx(v / peak, rel=0.05)
    # peak·y is an integer photon count
    assert torch.allclose(y * peak, (y * peak).round(), atol=1e-4)


def test_denoise_gaussian_stays_the_default():
    x = torch.rand(1, 3, 16, 16)
    t = Denoise(sigma=25)
    assert t.noise == "gaussian"
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    expected = (x + torch.randn(x.shape, generator=g2) * (25 / 255)).clamp(0, 1)
    assert torch.equal(t.simulate(x, g1), expected)
    with pytest.raises(ValueError, match="task.noise='uniform'"):
        Denoise(noise="uniform")
    with pytest.raises(ValueError, match="task.peak=0"):
        Denoise(noise="poisson", peak=0)


# ---------------------------------------------------------------------------- end to end

@pytest.mark.parametrize("task", [["task=restore"], ["task=jpeg"], ["task=deblur"],
                                  ["task=denoise", "task.noise=poisson"]])
def test_task_runs(task, compose_cfg, image_file):
    cfg = compose_cfg(f"image={image_file(24, 20, 3)}", *task, "iters=3", "input.depth=4", *QUIET, *TINY_NET)
    res = run(cfg)
    assert res["restored"].shape == (3, 24, 20) and res["metrics"]["psnr_observed"] is not None


def test_deblur_fit_improves(compose_cfg, image_file):
    cfg = compose_cfg(f"image={image_file(32, 28, 3)}", "task=deblur", "task.sigma=1.5", "iters=60",
                      "input.depth=8", "eval_every=5", "reg_noise_std=0.0", "exp_weight=null",
                      "backtrack_db=null", *QUIET, *TINY_NET)
    res = run(cfg)
    vals = res["history"]["psnr/gt"]
    assert vals[-1] > vals[0] + 3, vals
