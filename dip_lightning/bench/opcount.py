"""Ops per step, ours against the original code's eager step: what a GPU step pays in launches.

A GPU step that is bound by host work costs about one kernel launch per ATen op that reaches a
kernel. ``OpCounter`` (a ``TorchDispatchMode``) sees every ATen op the Python side dispatches
(a ``_foreach_*`` op counts once, as it launches one multi-tensor kernel on CUDA) and sorts them:

- *dispatched*: every op;
- *launching*: those that would launch a kernel: not a view (``view``, ``permute``, ``split``,
  ``as_strided``, ``detach``, …), not an allocation without a fill (``empty*``), not a copy of a
  tensor onto itself.

Ours is counted through the real Lightning fit (``run()``'s ``check``, ``set_up``, ``build``,
``fit``) with the GPU code path forced (``DIPModule.sync_free_backtrack = True``, the flat
sync-free backtracking) over the steps after ``warmup``; the eager step is the benchmark's
``eager_fit`` step with ``torch.optim.Adam(foreach=True)``, as torch picks on CUDA. Op counts
do not depend on the image size or the machine: the command works on any CPU.
"""
from __future__ import annotations

import collections
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: ops that allocate without writing, or only change metadata (no kernel)
NO_KERNEL = {"aten::empty", "aten::empty_like", "aten::empty_strided", "aten::new_empty",
             "aten::new_empty_strided", "aten::lift_fresh", "aten::set_", "aten::resize_",
             "aten::_unsafe_view", "aten::promote_types", "aten::result_type"}
#: a read of a tensor's value on the host (``.item()``): on CUDA a sync, counted apart
HOST_READ = "aten::_local_scalar_dense"


def launches(func: Any, args: tuple) -> bool:
    """Whether ``func(*args)`` would launch a kernel (see the module docstring)."""
    name = func._schema.name
    if not name.startswith("aten::") or name in NO_KERNEL or name == HOST_READ or getattr(func, "is_view", False):
        return False
    if name == "aten::copy_" and len(args) > 1 and torch.is_tensor(args[0]) and torch.is_tensor(args[1]):
        a, b = args[0], args[1]
        if a.data_ptr() == b.data_ptr() and a.stride() == b.stride() and a.dtype == b.dtype:
            return False
    return True


class OpCounter(TorchDispatchMode):
    """Counts the ops dispatched while ``on`` is true: all, launching, and by name."""

    def __init__(self):
        super().__init__()
        self.on = False
        self.dispatched = 0
        self.launching = 0
        self.host_reads = 0
        self.by_name: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.on:
            self.dispatched += 1
            self.host_reads += func._schema.name == HOST_READ
            if launches(func, args):
                self.launching += 1
                self.by_name[func._schema.name.removeprefix("aten::")] += 1
        return func(*args, **(kwargs or {}))


def count_eager(cfg, steps: int, warmup: int) -> OpCounter:
    """The eager step's ops over ``steps`` steps after ``warmup`` (``cfg``: the eager config)."""
    import torch.nn as nn
    import torch.nn.functional as F

    from dip_lightning.bench.loops import eager_parts

    net, task, z, y = eager_parts(cfg, "cpu")
    for m in net.modules():  # the stock layers, as in ``eager_fit``
        if isinstance(m, nn.Conv2d) and type(m) is not nn.Conv2d:
            m.__class__ = nn.Conv2d
    opt = torch.optim.Adam(net.parameters(), lr=0.01, foreach=True)
    sigma = float(cfg.reg_noise_std)
    counter = OpCounter()
    with counter:
        for i in range(warmup + steps):
            counter.on = i >= warmup
            opt.zero_grad(set_to_none=True)
            z_in = z + sigma * torch.randn_like(z) if sigma > 0 else z
            loss = F.mse_loss(task(net(z_in)), y)
            loss.backward()
            opt.step()
    return counter


def count_ours(cfg, warmup: int) -> OpCounter:
    """Our step's ops through the Lightning fit of ``cfg`` (GPU code path), after ``warmup`` steps."""
    import pytorch_lightning as pl

    from dip_lightning import run as runner, stages
    from dip_lightning.loggers import finish_logger
    from dip_lightning.module import DIPModule

    counter = OpCounter()

    class Window(pl.Callback):
        """Counting on from the start of step ``warmup + 1`` to the end of the fit."""

        def on_train_start(self, trainer, module):
            counter.__enter__()

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            counter.on = trainer.global_step >= warmup

        def on_train_end(self, trainer, module):
            counter.on = False
            counter.__exit__(None, None, None)

    saved = DIPModule.sync_free_backtrack
    DIPModule.sync_free_backtrack = True
    try:
        out = stages.check(cfg)
        stages.set_up(cfg, out)
        built = runner.build(cfg, out_dir=out)
        built.callbacks["count_ops"] = Window()
        try:
            stages.fit(cfg, built)
        finally:
            finish_logger(built.logger)
    finally:
        DIPModule.sync_free_backtrack = saved
    return counter


def per_step(counter: OpCounter, steps: int) -> dict:
    return {"dispatched": counter.dispatched / steps, "launching": counter.launching / steps,
            "host_reads": counter.host_reads / steps,
            "by_name": {k: v / steps for k, v in counter.by_name.most_common()}}


def count_ops(overrides: list[str], eager_overrides: list[str], steps: int, warmup: int) -> dict:
    """Ops per step of ours (``overrides``, a Lightning fit of ``warmup + steps`` steps) and of the
    eager step (``eager_overrides``), and their ratios."""
    from dip_lightning.config import compose_config

    cfg = compose_config(overrides)
    ours = per_step(count_ours(cfg, warmup), int(cfg.iters) - warmup)
    eager = per_step(count_eager(compose_config(eager_overrides), steps, warmup), steps)
    return {"ours": ours, "eager": eager, "steps": steps, "warmup": warmup,
            "launching_ratio": ours["launching"] / eager["launching"],
            "dispatched_ratio": ours["dispatched"] / eager["dispatched"]}


def format_counts(res: dict, top: int = 12) -> str:
    """The counts as a table, then the launching ops where ours has the most more than the eager step."""
    o, e = res["ours"], res["eager"]
    lines = [f"ops per step over {res['steps']} steps after {res['warmup']} (GPU code path; CPU proxy)",
             f"{'':28}{'eager':>10}{'ours':>10}{'ratio':>8}",
             f"{'dispatched':28}{e['dispatched']:10.1f}{o['dispatched']:10.1f}{res['dispatched_ratio']:8.2f}",
             f"{'launching':28}{e['launching']:10.1f}{o['launching']:10.1f}{res['launching_ratio']:8.2f}",
             f"{'host reads (.item())':28}{e['host_reads']:10.1f}{o['host_reads']:10.1f}",
             "", "launching ops, ours minus eager (per step):"]
    names = set(o["by_name"]) | set(e["by_name"])
    diff = sorted(names, key=lambda n: -(o["by_name"].get(n, 0) - e["by_name"].get(n, 0)))
    for n in diff[:top]:
        lines.append(f"  {n:26}{e['by_name'].get(n, 0):10.1f}{o['by_name'].get(n, 0):10.1f}")
    return "\n".join(lines)
