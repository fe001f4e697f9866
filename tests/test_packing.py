"""K packed fits (one K-fold wider grouped network) equal K fits run one after the other."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from dip_lightning.nets import SkipNet
from dip_lightning.packing import pack_nets
from dip_lightning.run import run
from conftest import QUIET, TINY_NET, synthetic_image


@pytest.mark.parametrize("down", ["stride", "lanczos2", "avg"])
def test_packed_net_is_the_nets_side_by_side(down):
    nets = []
    for s in range(3):
        torch.manual_seed(s)
        nets.append(SkipNet(4, 3, [8, 8, 8], [8, 8, 8], [2, 0, 2], downsample_mode=down, upsample_mode="nearest"))
    packed = pack_nets(nets)
    zs = [torch.rand(1, 4, 32, 24) for _ in range(3)]
    out = packed(torch.cat(zs, 1))
    ref = torch.cat([n(z) for n, z in zip(nets, zs)], 1)
    assert torch.allclose(out, ref, atol=1e-5)
    assert sum(p.numel() for p in packed.parameters()) == 3 * sum(p.numel() for p in nets[0].parameters())


def test_three_packed_fits_equal_three_sequential_fits(compose_cfg, image_file):
    # float64, so that the comparison is not swamped by the fit's amplification of float32 rounding
    # (grouped and plain convolutions sum in different orders; in float32 the curves drift apart by
    # ~0.1 dB after a dozen steps, in float64 they agree to ~1e-10)
    path = image_file(24, 20, 3)
    common = [f"image={path}", "iters=12", "eval_every=3", "input.depth=4", "reg_noise_std=0.05", "es.window=3",
              "trainer.precision=64-true", *QUIET, *TINY_NET]
    packed = run(compose_cfg(*common, "pack=3", "seed=5", out="packed"))
    assert packed["metrics"]["fits"] == 3 and len(packed["fits"]) == 3
    for k in range(3):
        alone = run(compose_cfg(*common, f"seed={15 + k}", out=f"alone{k}"))  # seed·K + k
        fit = packed["fits"][k]
        assert torch.allclose(fit["restored"], alone["restored"], atol=1e-6), k
        assert torch.allclose(fit["restored_ema"], alone["restored_ema"], atol=1e-6), k
        for key in ("psnr_final", "psnr_best", "best_step", "psnr_ema_final", "psnr_observed", "backtracks"):
            assert fit["metrics"][key] == pytest.approx(alone["metrics"][key], abs=1e-4), (k, key)
        assert np.allclose(fit["history"]["psnr/gt"], alone["history"]["psnr/gt"], atol=1e-4)
        assert (packed["output_dir"] / f"fit{k}" / "restored.png").is_file()
        assert (packed["output_dir"] / f"fit{k}" / "snapshots" / "step_000010.png").is_file()
    top = json.loads((packed["output_dir"] / "metrics.json").read_text())
    assert top["fits"] == 3 and len(top["fit_metrics"]) == 3 and top["pack_it_per_s"] > 0


def test_pack_different_images_of_one_size(compose_cfg, tmp_path):
    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        Image.fromarray((synthetic_image(20, 26, 1, seed=i) * 255).astype(np.uint8)).save(p)
        paths.append(str(p))
    res = run(compose_cfg(f"pack_images=[{paths[0]},{paths[1]}]", "pack=2", "task=inpaint", "task.mask=random",
                          "iters=4", "input.depth=4", "logger=csv", *[q for q in QUIET if q != "logger=none"],
                          *TINY_NET))
    assert [f["restored"].shape for f in res["fits"]] == [(1, 20, 26), (1, 20, 26)]
    header = (res["output_dir"] / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "fit0/psnr/gt" in header and "fit1/psnr/gt" in header


def test_pack_errors_are_clear(compose_cfg, image_file, tmp_path):
    a, b = image_file(20, 20, 3, name="a.png"), image_file(24, 20, 3, name="b.png")
    with pytest.raises(ValueError, match="images of one size"):
        run(compose_cfg(f"pack_images=[{a},{b}]", "pack=2", "iters=2", "input.depth=4", *QUIET, *TINY_NET))
    with pytest.raises(ValueError, match="cannot be packed"):
        run(compose_cfg(f"image={a}", "pack=2", "net=unet", "net.feature_scale=32", "iters=2", "input.depth=4",
                        *QUIET, out="unet"))
    with pytest.raises(ValueError, match="one image per fit"):
        run(compose_cfg(f"pack_images=[{a}]", "pack=2", "iters=2", *QUIET, *TINY_NET, out="n"))


def test_packed_fits_stay_exact_when_backtracking_restores_one_fit_and_not_the_other(compose_cfg, image_file):
    """Each fit has its own Adam step count (dip_lightning/optimizers.py): where one fit backtracks
    and the other goes on, both still equal their lone runs (float64; with a shared count the
    restored fit ended 1.6e-2 away)."""
    path = image_file(24, 20, 3)
    common = [f"image={path}", "iters=40", "eval_every=3", "input.depth=4", "reg_noise_std=0.05", "es.window=3",
              "backtrack_db=0.5", "optim.lr=0.05", "trainer.precision=64-true", *QUIET, *TINY_NET]
    packed = run(compose_cfg(*common, "pack=2", "seed=2", out="packed"))
    counts = [f["metrics"]["backtracks"] for f in packed["fits"]]
    assert counts[0] != counts[1] and min(counts) > 0, counts  # restores in one fit at steps the other goes on
    for k in range(2):
        alone = run(compose_cfg(*common, f"seed={4 + k}", out=f"alone{k}"))
        assert alone["metrics"]["backtracks"] == counts[k]
        assert (packed["fits"][k]["restored"] - alone["restored"]).abs().max() < 1e-8, k


def test_a_seed_sweep_of_packed_runs_fits_distinct_seeds(compose_cfg, image_file):
    from dip_lightning.problem import build_fits
    from dip_lightning.instantiate import instantiate

    path = image_file(20, 20, 3)
    seen = []
    for seed in (0, 1, 2):
        cfg = compose_cfg(f"image={path}", "pack=3", f"seed={seed}", "input.depth=4", *QUIET, *TINY_NET)
        seen += [f.seed for f in build_fits(cfg, None, instantiate(cfg.input))]
    assert sorted(seen) == list(range(9))


def test_lbfgs_is_refused_for_packed_fits(compose_cfg, image_file):
    from dip_lightning.run import build

    with pytest.raises(ValueError, match="^pack=2 fits are exact only .* use optim=adam or pack=1$"):
        build(compose_cfg(f"image={image_file(20, 20, 3)}", "pack=2", "optim=lbfgs", "input.depth=4", *QUIET, *TINY_NET))
