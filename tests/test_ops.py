"""The Lanczos2 SR downsampler against hand computation."""
import math

import numpy as np
import pytest
import torch

from dip_lightning.ops import lanczos_kernel
from dip_lightning.tasks import SuperResolution


def lanczos2_by_hand(x: float) -> float:
    if x == 0:
        return 1.0
    if abs(x) >= 2:
        return 0.0
    return 2 * math.sin(math.pi * x) * math.sin(math.pi * x / 2) / (math.pi ** 2 * x ** 2)


def test_factor1_kernel_is_the_classic_four_tap_filter():
    # taps at ±0.5, ±1.5: L(0.5) = 2·sin(π/2)·sin(π/4)/(π²/4), L(1.5) = −2·sin(3π/4)/(9π²/4)
    k = lanczos_kernel(1)
    assert k.shape == (4, 4)
    one_d = np.array([lanczos2_by_hand(t) for t in (-1.5, -0.5, 0.5, 1.5)])
    one_d /= one_d.sum()
    np.testing.assert_allclose(k.numpy(), np.outer(one_d, one_d), atol=1e-7)
    np.testing.assert_allclose(one_d, [-0.0625, 0.5625, 0.5625, -0.0625], atol=2e-3)


@pytest.mark.parametrize("factor,size", [(4, 16), (8, 32)])
def test_kernel_sizes_match_the_paper(factor, size):
    k = lanczos_kernel(factor)
    assert k.shape == (size, size)
    assert torch.allclose(k.sum(), torch.tensor(1.0))
    assert torch.allclose(k, k.flip(0)) and torch.allclose(k, k.T)


def test_downsampler_matches_explicit_loops_on_a_small_image():
    f = 2
    x = torch.arange(6 * 8, dtype=torch.float64).reshape(1, 1, 6, 8) / 47.0
    op = SuperResolution(factor=f)
    y = op(x.float()).double()
    assert y.shape == (1, 1, 3, 4)
    # by hand: kernel 8×8, taps at (n − 4 + 0.5)/2, replicate-pad 3 px, stride 2
    taps = np.array([lanczos2_by_hand((n - 4 + 0.5) / 2) for n in range(8)])
    k = np.outer(taps, taps)
    k /= k.sum()
    xp = np.pad(x[0, 0].numpy(), 3, mode="edge")
    expected = np.array([[np.sum(xp[2 * i:2 * i + 8, 2 * j:2 * j + 8] * k) for j in range(4)] for i in range(3)])
    np.testing.assert_allclose(y[0, 0].numpy(), expected, atol=1e-5)


def test_downsampler_keeps_constants_and_output_size():
    op = SuperResolution(factor=4)
    x = torch.full((1, 3, 40, 24), 0.3)
    y = op(x)
    assert y.shape == (1, 3, 10, 6)
    assert torch.allclose(y, torch.full_like(y, 0.3), atol=1e-6)


@pytest.mark.parametrize("factor", [2, 3, 4, 5, 6, 7, 8])
def test_every_factor_maps_an_odd_modcropped_image_to_its_lr_size_with_a_centred_kernel(factor):
    """H×W (a multiple of the factor) -> H/f × W/f, and a linear ramp comes out as the value at each
    LR pixel's block centre (a symmetric kernel centred there preserves linear functions)."""
    h, w = 7 * factor, 9 * factor
    op = SuperResolution(factor=factor)
    k = lanczos_kernel(factor)
    assert k.shape[0] == 4 * factor + (factor % 2) and torch.allclose(k, k.flip(0)) and torch.allclose(k, k.T)
    ramp = torch.arange(w, dtype=torch.float64).expand(1, 1, h, w).clone()
    y = op(ramp.float()).double()
    assert y.shape == (1, 1, 7, 9)
    centres = torch.arange(9, dtype=torch.float64) * factor + (factor - 1) / 2
    inner = slice(2, 7)  # away from the replicated border
    assert torch.allclose(y[0, 0, 3, inner], centres[inner], atol=1e-4)


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_sr_runs_on_an_odd_image_at_factor(factor, tmp_path):
    """dip-restore task=sr task.factor=f on an odd-size image: the output has the modcropped size."""
    from PIL import Image

    from conftest import QUIET, TINY_NET, synthetic_image
    from dip_lightning.api import compose_config
    from dip_lightning.run import run

    path = tmp_path / "odd.png"
    h, w = 8 * factor + 1, 6 * factor + 3
    Image.fromarray((synthetic_image(h, w, 3) * 255).astype(np.uint8)).save(path)
    cfg = compose_config([f"image={path}", "task=sr", f"task.factor={factor}", "iters=2", "input.depth=4", *QUIET,
                          *TINY_NET, f"paths.output_dir={tmp_path / 'out'}"])
    res = run(cfg)
    assert res["restored"].shape == (3, h - h % factor, w - w % factor)
