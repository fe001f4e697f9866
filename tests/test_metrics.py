"""One PSNR: plain tensor maths equal to torchmetrics' to the bit, per fit and whole, and the
paper's protocols built on it."""
import math

import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from dip_lightning.metrics import psnr, psnr_full, psnr_y_shaved, quantize, rgb_to_y, split, ssim


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [1, 3])
def test_psnr_equals_torchmetrics_in_float32_to_the_bit_and_the_exact_formula_in_float64(dtype, channels):
    g = torch.Generator().manual_seed(0)
    k = 3
    a = torch.rand(1, k * channels, 19, 23, generator=g, dtype=dtype)
    b = (a + 0.05 * torch.randn(a.shape, generator=g, dtype=dtype)).clamp(0, 1)
    per_fit = [10 * math.log10(1 / ((x.double() - y.double()) ** 2).mean().item()) for x, y in zip(split(a, k), split(b, k))]
    assert psnr(a, b, k).tolist() == pytest.approx(per_fit, abs=1e-4 if dtype == torch.float32 else 1e-10)
    assert psnr(a, b).dtype == dtype and psnr(a, b, k).shape == (k,)
    if dtype == torch.float32:  # the step's PSNRs: torchmetrics' values, to the bit
        whole = peak_signal_noise_ratio(a, b, data_range=1.0)
        per = peak_signal_noise_ratio(split(a, k), split(b, k), data_range=1.0, reduction="none", dim=(1, 2, 3))
        assert torch.equal(psnr(a, b), whole) and torch.equal(psnr(a, b, k), per)


def test_psnr_has_no_host_to_device_copy():
    """No torch.tensor(python data) inside (a blocking copy on CUDA): the dispatcher sees no lift_fresh."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    a, b = torch.rand(1, 6, 8, 8), torch.rand(1, 6, 8, 8)
    with Record():
        psnr(a, b, 2)
        psnr(a, b)
    assert seen and not [f for f in seen if "lift_fresh" in f or "_local_scalar_dense" in f]
    with Record():
        peak_signal_noise_ratio(split(a, 2), split(b, 2), data_range=1.0, reduction="none", dim=(1, 2, 3))
    assert [f for f in seen if "lift_fresh" in f]  # the detector works: torchmetrics' PSNR does copy


def test_protocols_on_8_bit_images():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 21, 30, generator=g)
    y = (x + 0.03 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    mse = ((quantize(x).double() - quantize(y).double()) ** 2).mean().item()
    assert psnr_full(x, y) == pytest.approx(10 * math.log10(1 / mse), abs=1e-9)
    ya, yb = rgb_to_y(quantize(x)).double(), rgb_to_y(quantize(y)).double()
    shaved = ((ya[:, 4:-5, 4:-5] - yb[:, 4:-5, 4:-5]) ** 2).mean().item()
    assert psnr_y_shaved(x, y) == pytest.approx(10 * math.log10(1 / shaved), abs=1e-9)
    assert psnr_full(x, x) == math.inf


def test_ssim_is_nan_below_the_window_and_per_fit_otherwise():
    a = torch.rand(1, 2, 8, 8)
    assert torch.isnan(ssim(a, a)) and ssim(a, a, 2).shape == (2,)
    b = torch.rand(1, 6, 16, 16)
    per = ssim(b, b, 2)
    assert per.shape == (2,) and torch.allclose(per, torch.ones(2))


def test_steps_to_95_count_the_gain_over_the_observation():
    """From an observation at 20 dB to a best of 30 dB, 95% of the gain is 29.5 dB (95% of 30 dB in
    dB would be 28.5 dB, reached two rows earlier)."""
    from dip_lightning.outputs import convergence

    history = {"step": [1, 10, 20, 30, 40], "psnr/gt": [20.0, 28.6, 29.0, 29.6, 30.0]}
    assert convergence(history, 30.0, 10.0, psnr_start=20.0) == {"steps_to_95": 30, "s_to_95": 3.0}
    assert convergence(history, 30.0, None)["steps_to_95"] == 30  # no observation PSNR: the curve's start
    assert convergence(history, None, 10.0) == {"steps_to_95": None, "s_to_95": None}
