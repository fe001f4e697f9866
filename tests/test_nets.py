"""SkipNet: the paper's parameter counts, odd sizes, legacy switches."""
import pytest
import torch

from dip_lightning.nets import SkipNet, count_parameters


@pytest.mark.parametrize("kwargs,expected", [
    (dict(in_channels=32, out_channels=3), 2_217_831),                      # denoise / SR default
    (dict(in_channels=32, out_channels=1), 2_217_573),                      # restoration barbara
    (dict(in_channels=1, out_channels=3, channels_down=[16, 32, 64, 128, 128, 128],
          channels_up=[16, 32, 64, 128, 128, 128], channels_skip=[0] * 6, filter_size_down=5,
          upsample_mode="nearest", need1x1_up=False), 2_996_467),           # skip_depth6 (library)
    (dict(in_channels=1, out_channels=3, channels_down=[16, 32, 64, 128], channels_up=[16, 32, 64, 128],
          channels_skip=[0] * 4, filter_size_down=5, upsample_mode="nearest", need1x1_up=False), 1_060_339),
    (dict(in_channels=1, out_channels=3, channels_down=[16, 32], channels_up=[16, 32], channels_skip=[0, 0],
          filter_size_down=5, upsample_mode="nearest", need1x1_up=False), 59_635),
    (dict(in_channels=2, out_channels=3, channels_skip=[0] * 5, upsample_mode="nearest"), 2_157_955),  # vase
    (dict(in_channels=32, out_channels=3, channels_skip=[128] * 5, upsample_mode="nearest"), 3_002_627),  # kate
    (dict(in_channels=3, out_channels=3, channels_down=[8, 16, 32, 64, 128], channels_up=[8, 16, 32, 64, 128],
          channels_skip=[0, 0, 0, 4, 4]), 572_827),                          # JPEG snail
    (dict(in_channels=32, out_channels=3, channels_down=[16, 32, 64, 128, 128],
          channels_up=[16, 32, 64, 128, 128], channels_skip=[0] * 5, downsample_mode="avg"), 1_027_379),
    (dict(in_channels=3, out_channels=3,
          upsample_mode=["nearest", "nearest", "bilinear", "bilinear", "bilinear"]), 2_184_307),  # flash
])
def test_parameter_counts_of_the_papers_configurations(kwargs, expected):
    assert count_parameters(SkipNet(**kwargs)) == expected


@pytest.mark.parametrize("hw,down", [((37, 53), "stride"), ((9, 17), "stride"), ((32, 32), "stride"),
                                     ((32, 32), "avg"), ((16, 48), "max"), ((32, 24), "lanczos2")])
def test_same_size_out(hw, down):
    # strided convs take any size (Concat centre-crops); pooling modes need the multiple the runner pads to
    net = SkipNet(4, 1, [4, 4, 4], [4, 4, 4], [2, 0, 2], downsample_mode=down)
    out = net(torch.rand(1, 4, *hw))
    assert out.shape == (1, 1, *hw)
    assert 0 <= out.min() and out.max() <= 1


def test_legacy_switches():
    net = SkipNet(4, 3, [4, 4], [4, 4], [2, 2], legacy=True)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not torch.all(b.weight == 1) for b in bns)
    ups = [m for m in net.modules() if type(m).__name__ == "Upsample"]
    assert ups and all(u.align_corners for u in ups)


def test_bad_knob_names_the_choices():
    with pytest.raises(ValueError, match="nearest or bilinear"):
        SkipNet(4, 3, [4], [4], [0], upsample_mode="bicubicx")
    with pytest.raises(ValueError, match="levels"):
        SkipNet(4, 3, [4, 4], [4, 4], [0, 0], filter_size_down=[3, 3, 3])


@pytest.mark.parametrize("pad", [(1, 1, 1, 1), (2, 1, 0, 3), (0, 2, 2, 0)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_reflect_pad_matches_f_pad_values_and_gradients(pad, channels_last):
    """blocks.reflect_pad (the convs' reflection padding, with its own backward) equals F.pad(reflect)
    in value and gradient, odd sizes, both memory formats; its gradient keeps the input's format."""
    import torch.nn.functional as F

    from dip_lightning.nets.blocks import reflect_pad

    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 5, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = reflect_pad(a, pad), F.pad(b, pad, mode="reflect")
    assert torch.equal(ya, yb)
    g = torch.randn_like(yb)
    ya.backward(g)
    yb.backward(g)
    assert torch.allclose(a.grad, b.grad, atol=1e-12)
    assert a.grad.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert torch.autograd.gradcheck(lambda t: reflect_pad(t, pad), (x.clone().requires_grad_(),))


@pytest.mark.parametrize("hw", [(1, 1), (5, 7), (8, 6)])
def test_up2_forms_match_interpolate_values_and_gradients(hw):
    """blocks.bilinear_up2 (used when deterministic and under torch.compile) and blocks.nearest_up2
    (under torch.compile) equal F.interpolate in value and gradient, odd and 1-pixel sizes."""
    import torch.nn.functional as F

    from dip_lightning.nets.blocks import bilinear_up2, nearest_up2

    torch.manual_seed(0)
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    for ours, mode in ((bilinear_up2, "bilinear"), (nearest_up2, "nearest")):
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        kw = {"align_corners": False} if mode == "bilinear" else {}
        ya, yb = ours(a), F.interpolate(b, scale_factor=2, mode=mode, **kw)
        assert ya.shape == yb.shape and torch.allclose(ya, yb, atol=1e-12), mode
        g = torch.randn_like(yb)
        ya.backward(g)
        yb.backward(g)
        assert torch.allclose(a.grad, b.grad, atol=1e-12), mode


def test_compiled_upsample_has_no_scatter():
    """Under torch.compile, ×2 upsampling (bilinear, nearest) is written without gathers: its traced
    backward holds no index_put (inductor lowers interpolate's backward to a serial scatter-add on CPU)."""
    import torch.nn.functional as F
    from functorch.compile import make_boxed_func
    from torch._functorch.aot_autograd import aot_module_simplified

    from dip_lightning.nets.blocks import Upsample

    torch.set_num_threads(1)

    def traced(fn) -> str:
        graphs = []

        def keep(gm, _):
            graphs.append(str(gm.code))
            return make_boxed_func(gm.forward)

        torch._dynamo.reset()
        x = torch.randn(1, 2, 5, 4, requires_grad=True)
        backend = lambda gm, ex: aot_module_simplified(gm, ex, fw_compiler=keep, bw_compiler=keep)  # noqa: E731
        torch.compile(fn, backend=backend)(x).sum().backward()
        return "\n".join(graphs)

    for mode in ("bilinear", "nearest"):
        kw = {"align_corners": False} if mode == "bilinear" else {}
        stock = traced(lambda t, mode=mode, kw=kw: F.interpolate(t, scale_factor=2, mode=mode, **kw))
        assert "index_put" in stock, mode  # what the test guards against
        assert "index_put" not in traced(Upsample(mode)), mode


def test_channels_last_net_keeps_channels_last_everywhere():
    """In a channels_last skip net with a batch of one, every conv and BatchNorm sees a channels_last
    input, the concatenations' outputs included (a view_as in keep_grad_layout once made them NCHW:
    then each level paid layout copies in its conv forward and backward)."""
    torch.set_num_threads(1)
    net = SkipNet(4, 3, [8, 8, 8], [8, 8, 8], [2, 2, 2]).to(memory_format=torch.channels_last)
    assert_channels_last_everywhere(net, in_channels=4)


@pytest.mark.parametrize("channels_last", [False, True])
def test_reflect_pad_own_backward_in_every_layout(channels_last):
    """_ReflectPad (used on CUDA under deterministic=true for every layout, where aten's reflection
    backward is refused) equals F.pad's gradient in float64 at odd sizes, in the input's layout."""
    import torch.nn.functional as F

    from dip_lightning.nets.blocks import _ReflectPad

    torch.manual_seed(1)
    x = torch.randn(1, 3, 7, 9, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for pad in [(1, 1, 1, 1), (2, 1, 0, 3)]:
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = _ReflectPad.apply(a, pad), F.pad(b, pad, mode="reflect")
        g = torch.randn_like(yb)
        ya.backward(g)
        yb.backward(g)
        assert torch.equal(ya, yb) and torch.allclose(a.grad, b.grad, atol=1e-12)
        assert a.grad.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (5, 7), (8, 6)])
def test_aligned_bilinear_up2_equals_interpolate_in_value_and_gradient(hw):
    """legacy=true's align_corners=True upsampling, as matrix products (deterministic on CUDA)."""
    import torch.nn.functional as F

    from dip_lightning.nets.blocks import bilinear_up2_aligned

    torch.manual_seed(0)
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = bilinear_up2_aligned(a)
    yb = F.interpolate(b, scale_factor=2, mode="bilinear", align_corners=True)
    assert ya.shape == yb.shape and torch.allclose(ya, yb, atol=1e-12)
    g = torch.randn_like(yb)
    ya.backward(g)
    yb.backward(g)
    assert torch.allclose(a.grad, b.grad, atol=1e-12)


def test_packed_concat_equals_the_reshape_and_keeps_channels_last():
    """Concat of K = 3 packed fits: the same values and gradients as the per-fit reshape it
    replaces (float64), and in a channels_last packed skip net every conv, BatchNorm and Concat
    input and Concat output stays channels_last."""
    from dip_lightning.nets.blocks import _GroupedCat, is_channels_last
    from dip_lightning.packing import pack_nets

    torch.manual_seed(0)
    k, outs = 3, [torch.randn(1, 3 * c, 5, 7, dtype=torch.float64) for c in (2, 4)]
    a = [o.clone().contiguous(memory_format=torch.channels_last).requires_grad_() for o in outs]
    b = [o.clone().requires_grad_() for o in outs]
    ya = _GroupedCat.apply(k, *a)
    cat = torch.cat([o.reshape(1, k, o.shape[1] // k, 5, 7) for o in b], dim=2)
    yb = cat.reshape(1, -1, 5, 7)
    assert torch.equal(ya, yb) and is_channels_last(ya)
    g = torch.randn_like(yb)
    ya.backward(g)
    yb.backward(g)
    assert all(torch.equal(x.grad, y.grad) and is_channels_last(x.grad) for x, y in zip(a, b))

    torch.set_num_threads(1)
    nets = []
    for seed in range(3):
        torch.manual_seed(seed)
        nets.append(SkipNet(4, 3, [8, 8, 8], [8, 8, 8], [2, 2, 2]))
    net = pack_nets(nets).to(memory_format=torch.channels_last)
    assert_channels_last_everywhere(net, in_channels=12)


@pytest.mark.parametrize("pad", [1, 3, 6])
def test_replicate_pad_by_expand_equals_f_pad(pad):
    """The SR operator's replication padding as expanded edges (deterministic on CUDA) equals
    F.pad(mode='replicate') in value and gradient, float64, odd size."""
    import torch.nn.functional as F

    from dip_lightning.nets.upsample import _replicate_pad_by_expand

    torch.manual_seed(0)
    x = torch.randn(1, 3, 5, 7, dtype=torch.float64)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = _replicate_pad_by_expand(a, (pad, pad + 1, pad, 0)), F.pad(b, (pad, pad + 1, pad, 0), mode="replicate")
    assert torch.equal(ya, yb)
    g = torch.randn_like(yb)
    ya.backward(g)
    yb.backward(g)
    assert torch.allclose(a.grad, b.grad, atol=1e-12)


def assert_channels_last_everywhere(net: torch.nn.Module, in_channels: int) -> None:
    """A forward and backward of a channels_last net with a batch of one: every conv, BatchNorm and
    Concat input, and every Concat output, is channels_last."""
    from dip_lightning.nets.blocks import Concat, is_channels_last

    seen = []

    def hook(mod, inputs, output):
        seen.append((type(mod).__name__, is_channels_last(inputs[0]), is_channels_last(output)))

    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d, Concat)):
            m.register_forward_hook(hook)
    z = torch.rand(1, in_channels, 24, 24).contiguous(memory_format=torch.channels_last).requires_grad_()
    net(z).sum().backward()
    assert {name for name, _, _ in seen} == {"Conv2d", "BatchNorm2d", "Concat"}
    assert all(cin for _, cin, _ in seen), seen
    assert all(cout for name, _, cout in seen if name == "Concat"), seen
