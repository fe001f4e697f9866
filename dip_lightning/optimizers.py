"""The run's optimiser: ``make_optimizer(module)`` and ``check_optimizer``, and ``PackedAdam``.

``PackedAdam`` is Adam for K packed fits, each with its own step count (Kingma & Ba 2015, Alg. 1).

Adam is element-wise except for its bias corrections, which depend on the step count t:

    m ← β₁m + (1 − β₁)g,   v ← β₂v + (1 − β₂)g²,   θ ← θ − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)

``torch.optim.Adam`` keeps one t per parameter tensor, which K packed fits share (every packed
tensor holds the fits' blocks along dim 0). When backtracking restores some fits and not others,
the restored fits' t must go back and the others' must not, so here t is a length-K vector per
tensor and each block gets its own fit's bias corrections. A packed fit then follows its lone run
(``torch.optim.Adam``) step for step, restores included (``dip_lightning.backtrack`` puts each
fit's t back with its moments). ``make_optimizer`` uses it in place of ``torch.optim.Adam`` when K > 1.
(One exception: with ``optim.fused=false`` on a GPU a lone run's step counter lives on the host and
is not put back on a restore, to keep the step free of host reads; a packed fit's is.)

``PackedAdam.like`` carries Adam's ``fused``, ``foreach`` and ``capturable`` over. ``fused`` or
``foreach``: the step runs as multi-tensor passes (``torch._foreach_*``) over all parameters at
once, the same arithmetic as the per-tensor loop (to the bit); torch's own fused kernel has one
step count per tensor, so it cannot be used as it is. ``capturable``: the step never reads the
host (the step counts live on the parameters' device), whatever its value.
"""
from __future__ import annotations

from typing import Any

import torch

#: torch.optim.Adam's options that choose how a step runs, and their defaults; PackedAdam keeps them
IMPLEMENTATION: dict[str, Any] = {"foreach": None, "fused": None, "capturable": False}
#: torch.optim.Adam's options that change the update, which PackedAdam does not implement
REFUSED = ("amsgrad", "maximize", "differentiable", "decoupled_weight_decay")


class PackedAdam(torch.optim.Optimizer):
    """Adam (L2 ``weight_decay`` as ``torch.optim.Adam``'s) with a per-fit step count for ``fits`` packed fits."""

    def __init__(self, params: Any, fits: int, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, foreach: bool | None = None,
                 fused: bool | None = None, capturable: bool = False):
        self.fits = int(fits)
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "foreach": foreach, "fused": fused, "capturable": capturable})

    def __setstate__(self, state: dict) -> None:  # a checkpoint's groups from before these options
        super().__setstate__(state)
        for group in self.param_groups:
            for key, default in IMPLEMENTATION.items():
                group.setdefault(key, default)

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's, then the step counts back to float64: torch casts them to float32 in a fused or
        capturable group (exact, as they are integers; the bias corrections are computed in float64)."""
        super().load_state_dict(state_dict)
        for state in self.state.values():
            if "step" in state and state["step"].dtype != torch.float64:
                state["step"] = state["step"].to(torch.float64)

    @classmethod
    def like(cls, adam: torch.optim.Adam, fits: int) -> "PackedAdam":
        """The same parameter groups and settings as ``adam`` (a fresh ``torch.optim.Adam``),
        ``fused``, ``foreach`` and ``capturable`` included (see the module docstring)."""
        for key in REFUSED:
            if any(g.get(key) for g in adam.param_groups):
                raise ValueError(f"optim.{key}=true: packed fits (pack={fits}) support Adam without amsgrad, maximize, "
                                 f"differentiable and decoupled_weight_decay; set optim.{key}=false or pack=1")
        keys = ("lr", "betas", "eps", "weight_decay", *IMPLEMENTATION)
        groups = [{"params": g["params"], **{k: g.get(k, IMPLEMENTATION.get(k)) for k in keys}}
                  for g in adam.param_groups]
        return cls(groups, fits, **{k: adam.defaults.get(k, IMPLEMENTATION.get(k)) for k in keys})

    def _per_block(self, v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """A length-K vector broadcast over ``p``'s K blocks along dim 0."""
        return v.to(p.dtype).repeat_interleave(p.shape[0] // self.fits).view(-1, *([1] * (p.dim() - 1)))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros(self.fits, dtype=torch.float64, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                elif state["step"].device != p.device:  # a checkpoint loaded on another device
                    state["step"] = state["step"].to(p.device)
            if not params:
                continue
            if group.get("fused") or group.get("foreach"):
                self._step_multi_tensor(group, params)
            else:
                self._step_loop(group, params)
        return loss

    def _step_loop(self, group: dict, params: list[torch.Tensor]) -> None:
        """One tensor after another."""
        beta1, beta2 = group["betas"]
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        for p in params:
            state = self.state[p]
            grad = p.grad if wd == 0 else p.grad.add(p, alpha=wd)
            t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
            t += 1
            m.lerp_(grad, 1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step_size = self._per_block(lr / (1 - torch.pow(beta1, t)), p)
            bc2_sqrt = self._per_block((1 - torch.pow(beta2, t)).sqrt(), p)
            p.sub_(step_size * m / (v.sqrt() / bc2_sqrt).add_(eps))

    def _step_multi_tensor(self, group: dict, params: list[torch.Tensor]) -> None:
        """All tensors at once (``fused`` / ``foreach``): ``_step_loop``'s operations, in its order."""
        beta1, beta2 = group["betas"]
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        grads = [p.grad for p in params]
        if wd != 0:
            grads = torch._foreach_add(grads, params, alpha=wd)
        states = [self.state[p] for p in params]
        steps = [st["step"] for st in states]
        ms, vs = [st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states]
        torch._foreach_add_(steps, 1)
        torch._foreach_lerp_(ms, grads, 1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
        sizes = [self._per_block(lr / (1 - torch.pow(beta1, t)), p) for t, p in zip(steps, params)]
        bc2_sqrt = [self._per_block((1 - torch.pow(beta2, t)).sqrt(), p) for t, p in zip(steps, params)]
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, bc2_sqrt)
        torch._foreach_add_(denom, eps)
        update = torch._foreach_mul(sizes, ms)
        torch._foreach_div_(update, denom)
        torch._foreach_sub_(params, update)


def check_optimizer(factory, module) -> None:
    """One line for an optimiser the module cannot use (before any step): LBFGS couples packed fits
    and takes one parameter group."""
    if getattr(factory, "func", factory) is not torch.optim.LBFGS:
        return
    if module.fits > 1:
        raise ValueError(f"pack={module.fits} fits are exact only with an element-wise optimiser, and LBFGS couples "
                         f"them (one history and line search for all); use optim=adam or pack=1")
    groups = module.method.trainable(module)
    if len(groups) > 1 and isinstance(groups[0], dict):
        raise ValueError(f"method={module.method.name} trains its parameters at different learning rates, which "
                         f"LBFGS cannot (one parameter group); use optim=adam")


def make_optimizer(module) -> torch.optim.Optimizer:
    """The configured optimiser over what the method trains; ``PackedAdam`` for packed Adam fits.
    LBFGS flattens parameters and gradients with ``.view(-1)``, which channels_last tensors do not
    allow: such a run goes NCHW (every trained tensor, a method's z too, converted in place)."""
    opt = module.optimizer_factory(module.method.trainable(module))
    if module.fits > 1 and type(opt) is torch.optim.Adam:  # each packed fit its own step count
        opt = PackedAdam.like(opt, module.fits)
    if module.channels_last and isinstance(opt, torch.optim.LBFGS):
        module.net.to(memory_format=torch.contiguous_format)
        module.z = module.z.contiguous()
        for group in opt.param_groups:
            for p in group["params"]:
                p.data = p.data.contiguous()
        module.channels_last = False
    return opt
