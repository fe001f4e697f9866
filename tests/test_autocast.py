"""Everything after the forward (metrics, EMA, the operator on the EMA, stopping statistics) runs in
fp32 with autocast off: under CPU bf16 autocast the logged values equal the fp32 ones."""
import copy

import pytest
import torch

from dip_lightning.module import FIELDS

from conftest import QUIET, TINY_NET
from dip_lightning.run import build


@pytest.mark.parametrize("task", [["task=denoise"], ["task=sr", "task.factor=2"]])
def test_metrics_under_bf16_autocast_equal_fp32(compose_cfg, image_file, task):
    cfg = compose_cfg(f"image={image_file(40, 36, 3)}", *task, "iters=3", "eval_every=1", "exp_weight=0.5",
                      "input.depth=4", *QUIET, *TINY_NET)
    module = build(cfg).module
    opt = torch.optim.Adam(module.net.parameters())
    module._torch_optimizer = lambda: opt
    g = torch.Generator().manual_seed(0)
    top, left, h, w = module.box
    near = torch.full_like(module.last_out, 0.5)  # the ground truth with some noise, on the canvas
    near[..., top:top + h, left:left + w] = module.x_true
    outs = [(near + s * torch.randn(near.shape, generator=g)).clamp(0, 1) for s in (0.05, 0.02)]
    rows = {}
    for bf16 in (False, True):
        m = copy.deepcopy(module)
        m._torch_optimizer = lambda: opt
        for step, out in enumerate(outs, 1):
            a = m.task(out)
            losses = (a - m.y).pow(2).reshape(1, -1).mean(1)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                m._after_forward(step, out, a, losses)
        rows[bf16] = m.history[:2, :FIELDS.index("loss/method")].clone()  # plain DIP has no method loss
    assert torch.isfinite(rows[False][:, 1:]).all()
    assert rows[False][1, 5] > 0.3  # SSIM vs the ground truth: meaningful, where bf16 cancels
    assert torch.allclose(rows[True], rows[False], atol=1e-3), (rows[True] - rows[False]).abs().max()
