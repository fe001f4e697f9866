"""UNet, ResNet, TextureNet, DeepDecoder, ConvDecoder: parameter counts, shapes, real-config runs."""
import inspect
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dip_lightning.nets import ConvDecoder, DeepDecoder, ResNet, TextureNet, UNet, count_parameters

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "net"


@pytest.mark.parametrize("net,expected", [
    # the inpainting notebook's library nets (input_depth 1, RGB): the paper's counts
    (UNet(1, 3, feature_scale=8, more_layers=1, upsample_mode="deconv", pad="zero", norm_layer="instance"),
     1_616_315),
    (ResNet(1, 3, num_blocks=8, num_channels=32), 158_979),
    # defaults with 32 input and 3 output channels
    (UNet(32, 3), 2_467_555),
    (ResNet(32, 3), 167_907),
    (TextureNet(32, 3), 129_443),
    (DeepDecoder(32, 3), 23_488),       # d = 6, k = 64, 1×1 convs, no bias
    (ConvDecoder(32, 3), 203_712),      # same with 3×3 convs
])
def test_parameter_counts(net, expected):
    assert count_parameters(net) == expected


SHAPE_CASES = [
    (UNet, dict(feature_scale=16), (32, 48)),
    (UNet, dict(feature_scale=16, more_layers=1, upsample_mode="bilinear", norm_layer="batch",
                pad="reflection"), (64, 64)),
    (UNet, dict(feature_scale=8, concat_x=True, upsample_mode="nearest", norm_layer="none"), (32, 32)),
    (ResNet, dict(num_blocks=2, num_channels=8), (13, 7)),
    (ResNet, dict(num_blocks=2, num_channels=8, need_residual=False, norm_layer="instance"), (9, 10)),
    (TextureNet, dict(ratios=[4, 2, 1], conv_num=4), (16, 24)),
    (TextureNet, dict(ratios=[8, 4, 2, 1], conv_num=4, pad="reflection", fill_noise=True), (32, 16)),
    (DeepDecoder, dict(channels=[8, 8, 8]), (16, 24)),
    (ConvDecoder, dict(channels=[8, 8, 8, 8]), (32, 16)),
]


@pytest.mark.parametrize("cls,kwargs,hw", SHAPE_CASES)
@pytest.mark.parametrize("out_channels", [1, 3])
def test_same_size_gray_and_rgb(cls, kwargs, hw, out_channels):
    net = cls(in_channels=4, out_channels=out_channels, **kwargs)
    assert hw[0] % net.multiple == 0 and hw[1] % net.multiple == 0
    out = net(torch.rand(1, 4, *hw))
    assert out.shape == (1, out_channels, *hw)
    assert 0 <= out.min() and out.max() <= 1


def test_multiples():
    assert UNet(4, 3).multiple == 16 and UNet(4, 3, more_layers=2).multiple == 64
    assert ResNet(4, 3).multiple == 1
    assert TextureNet(4, 3).multiple == 32
    assert DeepDecoder(4, 3).multiple == 32 and ConvDecoder(4, 3, channels=[8, 8]).multiple == 2


def test_bad_knobs_name_the_choices():
    with pytest.raises(ValueError, match="deconv, bilinear or nearest"):
        UNet(4, 3, upsample_mode="bicubic")
    with pytest.raises(ValueError, match="batch, instance or none"):
        UNet(4, 3, norm_layer="group")
    with pytest.raises(ValueError, match="halve down to 1"):
        TextureNet(4, 3, ratios=[16, 4, 1])
    with pytest.raises(ValueError, match="must be odd"):
        ConvDecoder(4, 3, kernel_size=2)
    with pytest.raises(ValueError, match="non-empty"):
        DeepDecoder(4, 3, channels=[])


@pytest.mark.parametrize("name,cls", [("unet", UNet), ("resnet", ResNet), ("texture", TextureNet),
                                      ("decoder", DeepDecoder), ("convdecoder", ConvDecoder)])
def test_config_mirrors_the_constructor(name, cls):
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}.yaml"))
    assert cfg.pop("_target_") == f"dip_lightning.nets.{cls.__name__}"
    params = inspect.signature(cls.__init__).parameters
    defaults = {k: p.default for k, p in params.items() if k not in ("self", "in_channels", "out_channels")}
    assert set(cfg) == set(defaults)
    for key, value in cfg.items():
        default = defaults[key]
        if isinstance(value, str) and value.startswith("${"):  # set from the top level (legacy: ${legacy})
            continue
        assert (list(default) if isinstance(default, tuple) else default) == value, key


@pytest.mark.parametrize("net,extra,bilinear", [
    ("unet", ["net.upsample_mode=bilinear", "net.norm_layer=batch"], True),
    ("resnet", [], False),
    ("decoder", [], True),
    ("convdecoder", [], True),
    ("texture", ["net.upsample_mode=bilinear"], True),
])
def test_legacy_reaches_every_net(compose_cfg, net, extra, bilinear):
    """legacy=true: every bilinear Upsample uses align_corners=True, every BatchNorm weight is U(0, 1)."""
    from hydra.utils import instantiate

    from dip_lightning.nets.blocks import Upsample

    cfg = compose_cfg(f"net={net}", "legacy=true", *extra)
    torch.manual_seed(0)
    model = instantiate(cfg.net, in_channels=4, out_channels=3)
    ups = [m for m in model.modules() if isinstance(m, Upsample) and m.mode == "bilinear"]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bool(ups) == bilinear and all(m.align_corners for m in ups)
    assert bns and all(not torch.all(m.weight == 1) and m.weight.min() >= 0 and m.weight.max() <= 1 for m in bns)
    plain = instantiate(compose_cfg(f"net={net}", *extra, out="plain").net, in_channels=4, out_channels=3)
    assert not any(m.align_corners for m in plain.modules() if isinstance(m, Upsample) and m.mode == "bilinear")


@pytest.mark.parametrize("net, extra", [("unet", []), ("skip", ["net.upsample_mode=nearest", "net.norm_layer=none"])])
def test_legacy_on_a_net_it_cannot_change_is_a_clear_error(compose_cfg, image_file, net, extra):
    """Every net, the skip net included: legacy=true where it would change nothing is one line."""
    from dip_lightning.run import run

    name = {"unet": "UNet", "skip": "SkipNet"}[net]
    with pytest.raises(ValueError, match=f"^legacy=true changes bilinear upsampling and BatchNorm's init, and this {name}"):
        run(compose_cfg(f"image={image_file(32, 32, 3)}", f"net={net}", *extra, "legacy=true", "iters=1",
                        "logger=none", "trainer.enable_progress_bar=false"))
