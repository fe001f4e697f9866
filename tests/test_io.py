"""Image loading and pad/crop round trips for odd sizes, gray and RGB."""
import numpy as np
import pytest
import torch
from PIL import Image

from dip_lightning.io import crop, load_image, pad_amounts, pad_image, save_image


@pytest.mark.parametrize("shape", [(1, 37, 53), (3, 37, 53), (3, 32, 32), (1, 5, 3), (3, 1, 7)])
@pytest.mark.parametrize("multiple", [8, 32])
def test_pad_then_crop_is_identity(shape, multiple):
    x = torch.rand(shape)
    (t, b), (l, r) = pad_amounts(shape[1], multiple), pad_amounts(shape[2], multiple)
    p = pad_image(x, (t, b, l, r))
    assert p.shape[1] % multiple == 0 and p.shape[2] % multiple == 0
    assert torch.equal(crop(p, (t, l, shape[1], shape[2])), x)


def test_reflection_pad_mirrors_without_repeating_the_edge():
    x = torch.arange(4.0).repeat(3, 1)[None]  # (1, 3, 4)
    p = pad_image(x, (0, 0, 2, 2))
    assert p[0, 0].tolist() == [2, 1, 0, 1, 2, 3, 2, 1]
    big = pad_image(x, (0, 0, 7, 0))  # a pad larger than the image: repeated reflection
    assert big.shape == (1, 3, 11) and torch.equal(big[..., 7:], x)
    assert big[0, 0, 4:7].tolist() == [3, 2, 1]


def test_load_gray_rgb_rgba_and_16bit(tmp_path):
    g = np.arange(35, dtype=np.uint8).reshape(5, 7) * 7
    Image.fromarray(g).save(tmp_path / "g.png")
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 10
    Image.fromarray(rgba).save(tmp_path / "a.png")
    g16 = (np.arange(35, dtype=np.uint16).reshape(5, 7) * 1800)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    t = load_image(tmp_path / "g.png")
    assert t.shape == (1, 5, 7) and abs(t[0, 0, 1].item() - 7 / 255) < 1e-6
    a = load_image(tmp_path / "a.png")
    assert a.shape == (3, 5, 7) and a[0].min() == 1.0
    t16 = load_image(tmp_path / "g16.png")
    assert t16.shape == (1, 5, 7)
    assert abs(t16[0, 4, 6].item() - 34 * 1800 / 65535) < 1e-5


def test_skimage_sample_and_resize():
    t = load_image("camera", resize=64)
    assert t.shape == (1, 64, 64) and 0 <= t.min() and t.max() <= 1
    rgb = load_image("astronaut", resize=40)
    assert rgb.shape == (3, 40, 40)


def test_unknown_image_names_the_choices():
    with pytest.raises(FileNotFoundError, match="astronaut"):
        load_image("no_such_image.png")


def test_save_roundtrip_is_8bit_exact(tmp_path):
    x = torch.rand(3, 9, 11)
    save_image(x, tmp_path / "x.png")
    back = load_image(tmp_path / "x.png")
    assert back.shape == x.shape and (back - x).abs().max() <= 0.5 / 255 + 1e-6
