"""Every paper preset: its network has the paper's parameter count, and it runs on a synthetic image
of the preset's expected size (with the channel widths shrunk so the test stays fast)."""
import numpy as np
import pytest
from hydra.utils import instantiate
from PIL import Image

from dip_lightning.nets import count_parameters
from dip_lightning.run import run
from conftest import QUIET, synthetic_image

# preset -> (expected image size (H, W), channels, input channels, parameter count from PAPER.md, extra files)
PRESETS = {
    "paper_denoise": ((512, 512), 3, 32, 2_217_831, []),
    "paper_jpeg": ((261, 400), 3, 3, 572_827, []),
    "paper_sr": ((384, 576), 3, 32, 2_217_831, []),
    "paper_sr_x8": ((384, 576), 3, 32, 2_217_831, []),
    "paper_inpaint": ((512, 512), 3, 32, 3_002_627, ["mask"]),
    "paper_inpaint_vase": ((320, 320), 3, 2, 2_157_955, ["mask"]),
    "paper_inpaint_library": ((448, 704), 3, 1, 2_996_467, ["mask"]),
    "paper_restore": ((512, 512), 1, 32, 2_217_573, []),
    "paper_flash": ((706, 774), 3, 3, 2_184_307, ["flash"]),
}


def files(tmp_path, preset):
    (h, w), c, _, _, extra = PRESETS[preset]
    img = tmp_path / "img.png"
    Image.fromarray((synthetic_image(h, w, c) * 255).astype(np.uint8)).save(img)
    over = [f"image={img}"]
    if "mask" in extra:
        m = np.full((h, w), 255, np.uint8)
        m[h // 3:h // 2, w // 4:w // 2] = 0
        Image.fromarray(m).save(tmp_path / "mask.png")
        over.append(f"task.mask={tmp_path / 'mask.png'}")
    if "flash" in extra:
        Image.fromarray((synthetic_image(h, w, c, seed=1) * 255).astype(np.uint8)).save(tmp_path / "flash.png")
        over.append(f"task.flash={tmp_path / 'flash.png'}")
    return over


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_network_has_the_papers_parameter_count(preset, compose_cfg):
    _, c, depth, count, _ = PRESETS[preset]
    cfg = compose_cfg(f"experiment={preset}", "image=x.png", "task.mask=m.png" if "inpaint_" in preset else "iters=1",
                      "task.flash=f.png" if preset == "paper_flash" else "seed=0")
    if preset != "paper_flash" and cfg.input.get("_target_", "").endswith("NoiseInput"):
        assert cfg.input.depth == depth
    net = instantiate(cfg.net, in_channels=depth, out_channels=c)
    assert count_parameters(net) == count


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_runs_at_its_expected_size(preset, compose_cfg, tmp_path):
    levels = 6 if preset == "paper_inpaint_library" else 5
    small = [f"net.channels_down=[{','.join(['4'] * levels)}]", f"net.channels_up=[{','.join(['4'] * levels)}]"]
    if preset in ("paper_denoise", "paper_sr", "paper_sr_x8", "paper_restore", "paper_inpaint", "paper_flash"):
        small.append(f"net.channels_skip=[{','.join(['2'] * levels)}]")
    if preset == "paper_jpeg":
        small = []  # already small
    over = files(tmp_path, preset)
    if preset not in ("paper_inpaint_vase", "paper_inpaint_library", "paper_jpeg", "paper_flash"):
        over.append("input.depth=4")
    cfg = compose_cfg(f"experiment={preset}", "iters=1", *over, *small, *QUIET)
    res = run(cfg)
    (h, w), c, *_ = PRESETS[preset]
    if cfg.fit_size == "crop":  # the original's centre crop to a multiple of 32
        h, w = h - h % 32, w - w % 32
    assert res["restored"].shape == (c, h, w)
    assert res["metrics"]["iters_done"] == 1
