"""DIP variants (method=dip|sgld|drp|selfguided): what defines each, and that each runs everywhere DIP does."""
import numpy as np
import pytest
import torch

from dip_lightning.io import crop
from dip_lightning.methods import SGLD
from dip_lightning.run import build, run
from dip_lightning.stages import fit
from conftest import QUIET, TINY_NET

SHORT = {"sgld": ["method=sgld", "method.burn_in=4", "method.sample_every=3"],
         "drp": ["method=drp"],
         "selfguided": ["method=selfguided", "input.depth=3", "reg_noise_std=0"],
         "dip": ["method=dip"]}


def common(path, iters=13):
    return [f"image={path}", f"iters={iters}", "eval_every=1", "input.depth=4", *QUIET, *TINY_NET]


def test_sgld_parameter_noise_has_the_configured_scale(compose_cfg, image_file):
    """After a step every 4-D conv weight gets N(0, (σ_p·lr)²) noise; no other parameter does."""
    built = build(compose_cfg(*common(image_file(32, 32, 3)), "method=sgld", "method.param_noise=3", "method.burn_in=4",
                              "net.channels_down=[32,32,32]", "net.channels_up=[32,32,32]"))
    module, method = built.module, built.module.method
    opt = torch.optim.SGD(module.net.parameters(), lr=0.01)
    module._torch_optimizer = lambda: opt
    before = {n: p.detach().clone() for n, p in module.net.named_parameters()}
    method.after_step(module, 1, module.last_out)
    noise = torch.cat([(p.detach() - before[n]).flatten() for n, p in module.net.named_parameters() if p.ndim == 4])
    assert noise.numel() > 20000 and noise.std().item() == pytest.approx(3 * 0.01, rel=0.03)
    assert abs(noise.mean().item()) < 0.003
    assert all(torch.equal(p, before[n]) for n, p in module.net.named_parameters() if p.ndim != 4)


def test_sgld_returns_the_mean_of_the_post_burn_in_samples(compose_cfg, image_file, monkeypatch):
    samples = []
    step_of = SGLD.after_step

    def record(self, module, step, out):
        if step > self.burn_in and (step - self.burn_in) % self.sample_every == 0:
            samples.append(out.clone())
        step_of(self, module, step, out)

    monkeypatch.setattr(SGLD, "after_step", record)
    cfg = compose_cfg(*common(image_file(21, 26, 3)), *SHORT["sgld"])
    built = build(cfg)
    fit(cfg, built)
    module = built.module
    assert len(samples) == 3  # steps 7, 10, 13
    mean = torch.stack(samples).double().mean(0).float()
    torch.testing.assert_close(module.final_image(), crop(mean, module.box), atol=1e-6, rtol=0)
    assert not torch.allclose(module.final_image(), crop(samples[-1], module.box))
    assert set(module.method.images(module)) == {"restored_std"}


def test_drp_keeps_the_convolutions_and_trains_z_and_batchnorm(compose_cfg, image_file):
    cfg = compose_cfg(*common(image_file(24, 24, 3), iters=6), *SHORT["drp"])
    built = build(cfg)
    before = {n: p.detach().clone() for n, p in built.module.named_parameters()}
    fit(cfg, built)
    moved = {n for n, p in built.module.named_parameters() if not torch.equal(p, before[n])}
    norms = {f"net.{n}" for n, m in built.module.net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    convs = [n for n, p in built.module.named_parameters() if n.startswith("net.") and n.rsplit(".", 1)[0] not in norms]
    assert convs and not moved & set(convs)  # every conv weight and bias bitwise unchanged
    assert "method.z" in moved and any(n.startswith("method.z_norm.") for n in moved)
    assert moved <= {n for n in before if n.rsplit(".", 1)[0] in norms} | {"method.z"} | \
        {n for n in before if n.startswith("method.z_norm.")}
    assert any(n.rsplit(".", 1)[0] in norms for n in moved)


def test_selfguided_trains_z_and_logs_its_regulariser(compose_cfg, image_file):
    cfg = compose_cfg(*common(image_file(24, 20, 3), iters=8), *SHORT["selfguided"])
    built = build(cfg)
    z0 = built.module.method.z.detach().clone()
    fit(cfg, built)
    assert not torch.equal(built.module.method.z, z0)
    reg = built.module.history_dict(0)["loss/method"]
    assert len(reg) == 8 and all(np.isfinite(reg)) and all(r > 0 for r in reg)


@pytest.mark.parametrize("method", ["sgld", "drp", "selfguided"])
def test_method_resumes_and_packs(method, compose_cfg, image_file):
    """A resumed run equals the uninterrupted one; two packed fits run; the curves name the method."""
    path = image_file(22, 18, 3)
    args = [*common(path, iters=10), *SHORT[method], "es.window=3"]
    full = run(compose_cfg(*args, "ckpt_every=5", out="full"))
    resumed = run(compose_cfg(*args, f"ckpt_path={full['output_dir'] / 'checkpoints' / 'step_000005.ckpt'}",
                              out="resumed"))
    assert torch.equal(resumed["restored"], full["restored"])
    assert np.array_equal(resumed["history"]["loss"], full["history"]["loss"])
    assert full["metrics"]["method"] == method
    packed = run(compose_cfg(*args, "pack=2", out="packed"))
    assert [f["restored"].shape for f in packed["fits"]] == [(3, 22, 18)] * 2
    assert "loss/method" in (full["output_dir"] / "curves.csv").read_text().splitlines()[0]


def test_method_errors_are_clear(compose_cfg, image_file):
    path = image_file(20, 20, 3)
    with pytest.raises(ValueError, match="no BatchNorm.*norm_layer=batch"):
        build(compose_cfg(*common(path), "method=drp", "net.norm_layer=none"))
    with pytest.raises(ValueError, match="burn_in=7000 is not below iters=13"):
        build(compose_cfg(*common(path), "method=sgld", "method.burn_in=7000"))
    with pytest.raises(ValueError, match="sample_every > 0"):
        build(compose_cfg(*common(path), "method=sgld", "method.sample_every=0"))


@pytest.mark.parametrize("iters", [3, 40])
def test_sgld_burn_in_and_sampling_are_fractions_of_iters_by_default(compose_cfg, image_file, iters):
    """method=sgld with its defaults takes samples at any iters: burn-in 35% and a sample every 0.25%
    of the steps (at least 1); absolute numbers of steps still work."""
    path = image_file(20, 20, 3)
    sgld = build(compose_cfg(*common(path, iters=iters), "method=sgld")).module.method
    assert (sgld.burn_in, sgld.sample_every) == ((1, 1) if iters == 3 else (14, 1))
    assert sgld.samples(iters) >= 2
    sgld = build(compose_cfg(*common(path, iters=4000), "method=sgld")).module.method
    assert (sgld.burn_in, sgld.sample_every) == (1400, 10)
    sgld = build(compose_cfg(*common(path, iters=40), "method=sgld", "method.burn_in=7", "method.sample_every=5")
                 ).module.method
    assert (sgld.burn_in, sgld.sample_every) == (7, 5)


def test_selfguided_gives_the_net_an_image_shaped_input_whatever_input_depth_says(compose_cfg, image_file):
    for channels in (1, 3):
        module = build(compose_cfg(*common(image_file(20, 23, channels)), "method=selfguided", "input.depth=32"
                                   )).module
        assert module.method.z.shape[1] == channels and module.z.shape[1] == channels
        assert module.net(module.method.input(module)).shape[1] == channels


METHODS = ["dip", "sgld", "drp", "selfguided"]


@pytest.mark.parametrize("optim", ["adam", "lbfgs"])
@pytest.mark.parametrize("memory_format", ["channels_last", "contiguous"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_with_every_optimiser_and_memory_format(compose_cfg, image_file, method, optim,
                                                                  memory_format):
    """method × optimiser × memory format on a tiny odd-sized grayscale image, every other setting
    at its default (input.depth and the method's own settings included): 3 steps complete."""
    cfg = compose_cfg(f"image={image_file(19, 22, 1)}", "iters=3", *QUIET, *TINY_NET, f"method={method}",
                      f"optim={optim}", f"memory_format={memory_format}")
    if (method, optim) == ("selfguided", "lbfgs"):  # z and θ at two learning rates: one line says why not
        with pytest.raises(ValueError, match="^method=selfguided trains .* LBFGS cannot .*; use optim=adam$"):
            build(cfg)
        return
    built = build(cfg)
    assert fit(cfg, built) == ("completed", None)
    assert built.module.global_step == 3 and torch.isfinite(built.module.final_image()).all()


def test_compare_methods_and_make_crops(tmp_path):
    """scripts/make_crops.py, then scripts/compare.py method=dip,drp on the crops: one row per method,
    DRP trains fewer parameters, the table's mean is the jobs' mean."""
    import csv
    import json
    import statistics
    import sys
    from pathlib import Path

    from PIL import Image
    from conftest import synthetic_image

    scripts = Path(__file__).resolve().parents[1] / "scripts"
    sys.path.insert(0, str(scripts))
    import compare
    import make_crops

    for i in range(2):
        Image.fromarray((synthetic_image(40, 52, 3, seed=i) * 255).astype(np.uint8)).save(tmp_path / f"im{i}.png")
    assert make_crops.main(["--data", str(tmp_path), "--size", "24", "--out", str(tmp_path / "crops")]) == 0
    assert [Image.open(p).size for p in sorted((tmp_path / "crops").iterdir())] == [(24, 24), (24, 24)]
    out = tmp_path / "cmp"
    assert compare.main(["--out", str(out), "method=dip,drp", "seed=0,1", f"image={tmp_path / 'crops'}", "iters=4",
                         "input.depth=4", "threads=1", *TINY_NET]) == 0
    rows = {r["method"]: r for r in csv.DictReader(open(out / "compare.csv"))}
    assert set(rows) == {"dip", "drp"} and int(rows["drp"]["trained"]) < int(rows["dip"]["trained"])
    assert rows["dip"]["params"] == rows["dip"]["trained"]
    vals = [json.loads(p.read_text())["psnr_best"] for p in (out / "drp").rglob("metrics.json")]
    assert len(vals) == 4 and float(rows["drp"]["mean"]) == pytest.approx(statistics.mean(vals), abs=1e-3)
    assert all(r["final_minus_best"] not in ("", None) for r in rows.values())
