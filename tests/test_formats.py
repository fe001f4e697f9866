"""Numeric image files (``dip_lightning.formats``): .npy, .npz[:key], 16-bit PNG, TIFF of any type
read to the same tensor as the 8-bit PNG of the same picture (within quantisation)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from conftest import QUIET, TINY_NET, synthetic_image
from dip_lightning.run import run
from dip_lightning.formats import write_png16
from dip_lightning.io import load_image


@pytest.mark.parametrize("channels", [1, 3])
def test_every_format_reads_the_picture_of_its_8_bit_png(tmp_path, channels):
    x = synthetic_image(23, 31, channels)  # odd sizes; (H, W) for gray
    a8, a16 = np.round(x * 255).astype(np.uint8), np.round(x * 65535).astype(np.uint16)
    Image.fromarray(a8).save(tmp_path / "p8.png")
    write_png16(tmp_path / "p16.png", a16)
    tifffile.imwrite(tmp_path / "t16.tif", a16)
    tifffile.imwrite(tmp_path / "f32.tiff", x.astype(np.float32))
    np.save(tmp_path / "a.npy", a8)
    np.savez(tmp_path / "pair.npz", clean=x.astype(np.float32), noisy=a16)
    ref = load_image(tmp_path / "p8.png")
    assert ref.shape == (channels, 23, 31)
    for name in ("p16.png", "t16.tif", "f32.tiff", "a.npy", "pair.npz", "pair.npz:noisy"):
        t = load_image(str(tmp_path / name))
        assert t.shape == ref.shape and t.dtype == torch.float32, name
        assert (t - ref).abs().max() <= 0.5 / 255 + 1e-6, name  # within 8-bit quantisation
    assert torch.equal(load_image(str(tmp_path / "a.npy")), ref)  # uint8 scaled by 255, exactly
    exact16 = torch.from_numpy(a16.astype(np.float64) / 65535).float().reshape(ref.shape[1], ref.shape[2], -1)
    assert torch.equal(load_image(str(tmp_path / "p16.png")), exact16.permute(2, 0, 1))  # all 16 bits kept


def test_chw_arrays_alpha_and_bad_values_are_one_line(tmp_path):
    x = synthetic_image(9, 11, 3)
    np.save(tmp_path / "chw.npy", x.transpose(2, 0, 1))
    assert torch.equal(load_image(str(tmp_path / "chw.npy")), torch.from_numpy(x.transpose(2, 0, 1).copy()).float())
    np.save(tmp_path / "rgba.npy", np.concatenate([x, np.ones_like(x[..., :1])], 2))
    assert load_image(str(tmp_path / "rgba.npy")).shape == (3, 9, 11)
    np.save(tmp_path / "big.npy", x * 255)
    with pytest.raises(ValueError, match=r"float with values in \[38.25, 190.4\]; float images must lie in \[0, 1\]"):
        load_image(str(tmp_path / "big.npy"))
    np.save(tmp_path / "nan.npy", np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="non-finite"):
        load_image(str(tmp_path / "nan.npy"))
    np.savez(tmp_path / "p.npz", noisy=x)
    with pytest.raises(ValueError, match=r"has no array 'clean'; it has noisy \(give p.npz:NAME\)"):
        load_image(str(tmp_path / "p.npz:clean"))
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match=r"shape \(2, 3, 4, 5\)"):
        load_image(str(tmp_path / "cube.npy"))


def test_a_run_restores_an_npz_observation_with_a_tiff_mask(compose_cfg, tmp_path):
    """image= and task.mask= through the real config: an inpainting run on a float .npz and a
    16-bit TIFF mask (1 = known)."""
    x = synthetic_image(33, 27, 3)
    np.savez(tmp_path / "img.npz", image=x.astype(np.float32))
    mask = np.ones((33, 27), np.uint16) * 65535
    mask[10:20, 5:15] = 0
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    cfg = compose_cfg(f"image={tmp_path / 'img.npz'}:image", "task=inpaint", f"task.mask={tmp_path / 'mask.tif'}",
                      "iters=4", "input.depth=4", *QUIET, *TINY_NET)
    res = run(cfg)
    m = json.loads((res["output_dir"] / "metrics.json").read_text())
    assert m["status"] == "completed"
    assert Image.open(res["output_dir"] / "restored.png").size == (27, 33)  # (W, H): the image's own size
