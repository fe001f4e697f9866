"""Denoising's noise models (gaussian, poisson, impulse, speckle), ImageNet-C's severities and the
data term each is fitted with (``task.loss``)."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import QUIET, TINY_NET
from dip_lightning.run import run
from dip_lightning.tasks.denoise import SEVERITY, Denoise


def flat(value: float = 0.5, n: int = 256) -> torch.Tensor:
    return torch.full((1, 3, n, n), value, dtype=torch.float64)


@pytest.mark.parametrize("noise, kw, mean, var, replaced", [
    ("gaussian", {"sigma": 20.0}, 0.5, (20 / 255) ** 2, 0.0),
    ("poisson", {"peak": 40.0}, 0.5, 0.5 / 40, None),
    ("impulse", {"amount": 0.2}, 0.5, 0.2 * 0.25, 0.2),  # half 0, half 1: mean stays, Var = p · 0.25
    ("speckle", {"speckle_sigma": 0.3}, 0.5, (0.5 * 0.3) ** 2, 0.0),
])
def test_each_noise_model_has_its_definitions_statistics_on_a_flat_image(noise, kw, mean, var, replaced):
    x = flat()
    y = Denoise(noise=noise, clip=False, **kw).simulate(x, torch.Generator().manual_seed(0))
    n = y.numel()
    assert abs(float(y.mean()) - mean) < 4 * (var / n) ** 0.5 + 1e-9
    assert abs(float(y.var()) / var - 1) < 0.03
    if replaced is not None:
        frac = float(((y == 0) | (y == 1)).double().mean())
        assert abs(frac - replaced) < 4 * (replaced * (1 - replaced) / n) ** 0.5 + 1e-9
    if noise == "impulse":  # salt and pepper in equal parts, the rest untouched
        assert abs(float((y == 1).double().mean()) - 0.1) < 0.005 and torch.all((y == 0) | (y == 1) | (y == 0.5))


def test_severities_are_imagenet_c_levels_and_losses_default_per_model():
    assert Denoise(noise="gaussian", severity=3).sigma == pytest.approx(0.18 * 255)
    assert Denoise(noise="poisson", severity=5).peak == 3.0
    assert Denoise(noise="impulse", severity=2).amount == 0.06
    assert Denoise(noise="speckle", severity=4).speckle_sigma == 0.8
    assert all(len(levels) == 5 for levels in SEVERITY.values())
    assert Denoise(noise="impulse").loss == "l1" and Denoise(noise="gaussian").loss == "l2"
    assert Denoise(noise="impulse", loss="l2").loss == "l2"
    with pytest.raises(ValueError, match="task.severity=6; choose 1-5"):
        Denoise(severity=6)
    with pytest.raises(ValueError, match="task.loss='nll'; choose l2, l1 or poisson"):
        Denoise(loss="nll")
    with pytest.raises(ValueError, match="task.noise='uniform'; choose gaussian, poisson, impulse, speckle"):
        Denoise(noise="uniform")


def test_gaussian_draws_are_unchanged():
    """The paper's model draws exactly what it drew before the other models came (same seed, same y)."""
    x = flat(0.3, 16).float()
    y = Denoise(sigma=25).simulate(x, torch.Generator().manual_seed(3))
    want = (x + torch.randn(x.shape, generator=torch.Generator().manual_seed(3)) * (25 / 255)).clamp(0, 1)
    assert torch.equal(y, want)


def fit(compose_cfg, out: str, *over: str) -> dict:
    cfg = compose_cfg("image=camera", "resize=48", "iters=120", "eval_every=10", "input.depth=8", "es=wmv",
                      "es.window=20", "es.patience=40", *QUIET, *TINY_NET, *over, out=out)
    res = run(cfg)
    return json.loads((res["output_dir"] / "metrics.json").read_text())


def test_impulse_noise_fitted_with_l1_beats_l2(compose_cfg):
    """Through the real config: salt and pepper on 30% of the values; the L1 data term restores it
    better than the squared error, and early stopping marks a step with either."""
    common = ("task=denoise", "task.noise=impulse", "task.amount=0.3", "optim.lr=0.02")
    l1 = fit(compose_cfg, "l1", *common)
    l2 = fit(compose_cfg, "l2", *common, "task.loss=l2")
    assert l1["status"] == l2["status"] == "completed"
    assert l1["psnr_best"] > l1["psnr_observed"] + 3
    assert l1["psnr_best"] > l2["psnr_best"] + 1, (l1["psnr_best"], l2["psnr_best"])
    assert l1["es_step"] is not None and l2["es_step"] is not None


def test_the_poisson_term_is_the_shifted_negative_log_likelihood():
    """data_error(poisson) = NLL of Poisson(peak·a) at counts peak·y, over peak, minus its value at a = y;
    zero where a = y (also y = 0), positive elsewhere, and its gradient is 1 − y/a."""
    from dip_lightning.tasks.base import data_error

    peak, gen = 12.0, torch.Generator().manual_seed(0)
    y = torch.poisson(torch.full((200,), 0.4 * peak), generator=gen) / peak
    a = torch.rand(200, generator=gen, dtype=torch.float64) * 0.9 + 0.05
    y = y.double()
    nll = lambda lam: (peak * lam - peak * y * torch.log(lam.clamp_min(1e-300)) + torch.lgamma(peak * y + 1)) / peak  # noqa: E731
    want = nll(a) - torch.where(y > 0, nll(y), torch.lgamma(peak * y + 1) / peak)
    got = data_error(a, y, "poisson")
    assert torch.allclose(got, want, atol=1e-12)
    assert (got >= 0).all() and torch.equal(data_error(y.clamp_min(1e-6), y.clamp_min(1e-6), "poisson"),
                                            torch.zeros_like(y))
    a.requires_grad_(True)
    data_error(a, y, "poisson").sum().backward()
    assert torch.allclose(a.grad, 1 - y / a.detach())


def test_poisson_noise_fitted_with_its_likelihood_restores(compose_cfg):
    """Through the real config: shot noise at ImageNet-C's severity 4 fitted with task.loss=poisson;
    PSNR rises above the observation's and ES-WMV marks a step."""
    m = fit(compose_cfg, "nll", "task=denoise", "task.noise=poisson", "task.severity=4", "task.loss=poisson",
            "optim.lr=0.02")
    assert m["status"] == "completed" and m["psnr_best"] > m["psnr_observed"] + 2, m
    assert m["es_step"] is not None


@pytest.mark.parametrize("noise", ["poisson", "speckle"])
def test_other_models_run_through_the_config_and_psnr_rises(compose_cfg, noise):
    m = fit(compose_cfg, noise, "task=denoise", f"task.noise={noise}", "task.severity=3", "iters=60")
    assert m["status"] == "completed" and m["psnr_best"] > m["psnr_observed"]
