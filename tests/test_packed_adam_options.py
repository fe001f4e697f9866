"""PackedAdam.like keeps torch.optim.Adam's fused / foreach / capturable, its multi-tensor step
equals its per-tensor loop to the bit, and an option it cannot honour is refused in one line."""
import pytest
import torch

from dip_lightning.optimizers import PackedAdam

K = 2
OPTIONS = [{"fused": True}, {"foreach": True}, {"capturable": True}, {"fused": False, "foreach": False},
           {"foreach": False, "capturable": True}]


def packed_params(seed: int = 0) -> list[torch.nn.Parameter]:
    """Tensors of K fits' blocks along dim 0 (a conv weight, a bias, a 2-d weight)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(K * s[0], *s[1:], generator=g)) for s in ((4, 3, 3, 3), (4,), (3, 5))]


def run_steps(opt: torch.optim.Optimizer, params, steps: int = 6, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_like_keeps_fused_foreach_and_capturable(opts):
    params = packed_params()
    adam = torch.optim.Adam([{"params": params[:2]}, {"params": params[2:], "lr": 0.05}], lr=0.01, **opts)
    packed = PackedAdam.like(adam, K)
    for key in ("fused", "foreach", "capturable"):
        assert packed.defaults[key] == adam.defaults[key]
        assert [g[key] for g in packed.param_groups] == [g[key] for g in adam.param_groups]
    assert [g["lr"] for g in packed.param_groups] == [0.01, 0.05]
    run_steps(packed, params, 2)
    again = PackedAdam.like(torch.optim.Adam([{"params": params[:2]}, {"params": params[2:]}], lr=0.01), K)
    again.load_state_dict(packed.state_dict())  # the options come back from a state dict
    for key in ("fused", "foreach", "capturable"):
        assert [g[key] for g in again.param_groups] == [g[key] for g in adam.param_groups]


def test_a_state_dict_without_the_options_loads_with_their_defaults():
    params = packed_params()
    packed = PackedAdam.like(torch.optim.Adam(params, lr=0.01, fused=True), K)
    run_steps(packed, params, 1)
    old = packed.state_dict()
    for g in old["param_groups"]:  # a checkpoint written before PackedAdam kept them
        for key in ("fused", "foreach", "capturable"):
            del g[key]
    again = PackedAdam.like(torch.optim.Adam(params, lr=0.01), K)
    again.load_state_dict(old)
    assert again.param_groups[0]["fused"] is None and again.param_groups[0]["capturable"] is False
    run_steps(again, params, 1)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_the_multi_tensor_step_equals_the_loop_to_the_bit(weight_decay):
    finals = []
    for opts in ({"fused": False}, {"fused": True}, {"foreach": True}):
        params = packed_params()
        opt = PackedAdam.like(torch.optim.Adam(params, lr=0.01, weight_decay=weight_decay, **opts), K)
        run_steps(opt, params)
        finals.append([p.detach().clone() for p in params]
                      + [opt.state[p][k].clone() for p in params for k in ("step", "exp_avg", "exp_avg_sq")])
    for other in finals[1:]:
        assert all(torch.equal(a, b) for a, b in zip(finals[0], other))


def test_a_fused_packed_fit_follows_its_lone_fused_adam():
    params = packed_params()
    lone = [[torch.nn.Parameter(p.detach()[k * (p.shape[0] // K):(k + 1) * (p.shape[0] // K)].clone()) for p in params]
            for k in range(K)]
    packed = PackedAdam.like(torch.optim.Adam(params, lr=0.01, fused=True), K)
    alone = [torch.optim.Adam(ps, lr=0.01, fused=True) for ps in lone]
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        for k, ps in enumerate(lone):
            for p, q in zip(params, ps):
                n = p.shape[0] // K
                q.grad = p.grad[k * n:(k + 1) * n].clone()
        packed.step()
        for opt in alone:
            opt.step()
    for k, ps in enumerate(lone):
        for p, q in zip(params, ps):
            n = p.shape[0] // K
            assert torch.allclose(p.detach()[k * n:(k + 1) * n], q.detach(), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("key", ["amsgrad", "maximize", "differentiable", "decoupled_weight_decay"])
def test_an_option_packed_adam_cannot_honour_is_one_line_naming_the_value_and_the_fix(key):
    adam = torch.optim.Adam(packed_params(), lr=0.01, **{key: True})
    with pytest.raises(ValueError) as info:
        PackedAdam.like(adam, K)
    msg = str(info.value)
    assert "\n" not in msg and f"optim.{key}=true" in msg and f"optim.{key}=false" in msg and "pack=1" in msg
