"""The step never blocks the host (on a GPU it would): a real fit with the GPU code path forced,
every op that would sync recorded by a TorchDispatchMode; and the same fit under CUDA's sync debug
mode where a GPU exists."""
from __future__ import annotations

import collections

import pytest
import pytorch_lightning as pl
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import QUIET, TINY_NET
from dip_lightning import run as runner, stages
from dip_lightning.module import DIPModule

#: ``.item()`` / ``float()`` / ``bool()`` of a tensor, and ``torch.tensor(python data)`` (a
#: host-to-device copy on CUDA)
HOST_SYNCS = {"aten::_local_scalar_dense", "aten::lift_fresh"}


class Syncs(TorchDispatchMode):
    """Counts HOST_SYNCS by where they happen: 'step' (training_step, optimiser internals aside),
    'optim' (inside optimizer.step) or 'loop' (callbacks, progress bar, stopping, logging)."""

    def __init__(self):
        super().__init__()
        self.where, self.seen = "loop", collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in HOST_SYNCS:
            self.seen[self.where] += 1
        return func(*args, **(kwargs or {}))


def fit_recording(cfg, monkeypatch) -> Syncs:
    syncs = Syncs()
    step = DIPModule.training_step

    def training_step(self, *args):
        syncs.where = "step"
        try:
            return step(self, *args)
        finally:
            syncs.where = "loop"

    monkeypatch.setattr(DIPModule, "training_step", training_step)
    monkeypatch.setattr(DIPModule, "sync_free_backtrack", True)  # the GPU path, on the CPU
    saved = []

    def enter_optimizer(*_):  # (returns None: the step's arguments stay as they are)
        saved.append(syncs.where)
        syncs.where = "optim"

    def leave_optimizer(*_):
        syncs.where = saved.pop()

    hooks = [register_optimizer_step_pre_hook(enter_optimizer), register_optimizer_step_post_hook(leave_optimizer)]

    class During(pl.Callback):  # record from the first step to the last, nothing of the set-up
        def on_train_start(self, trainer, module):
            syncs.__enter__()

        def on_train_end(self, trainer, module):
            syncs.__exit__(None, None, None)

    try:
        out = stages.check(cfg)
        stages.set_up(cfg, out)
        built = runner.build(cfg, out_dir=out)
        built.callbacks["record"] = During()
        status, _ = stages.fit(cfg, built)
        assert status == "completed" and built.module.global_step == int(cfg.iters)
    finally:
        for h in hooks:
            h.remove()
    return syncs


@pytest.mark.parametrize("extra", [[], ["pack=2"], ["task=sr", "task.factor=2", "exp_weight=0.9"]])
def test_the_step_has_no_host_sync(compose_cfg, image_file, monkeypatch, extra):
    cfg = compose_cfg(f"image={image_file(24, 20, 3)}", "iters=40", "eval_every=5", "log_every=10",
                      "backtrack_db=5", "es=wmv", "es.window=5", "es.check_every=5", "input.depth=4", *QUIET,
                      *TINY_NET, *extra)
    syncs = fit_recording(cfg, monkeypatch)
    assert syncs.seen["step"] == 0, syncs.seen
    # the rest of the loop: at most one per eval_every / log_every interval (40 steps: 8 + 4)
    assert syncs.seen["loop"] <= 40 // 5 + 40 // 10, syncs.seen


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_sync_debug_mode_raises_nowhere_in_the_step(compose_cfg, image_file, monkeypatch):
    """The same fit on CUDA with torch.cuda.set_sync_debug_mode('error') inside training_step."""
    step = DIPModule.training_step

    def training_step(self, *args):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return step(self, *args)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(DIPModule, "training_step", training_step)
    cfg = compose_cfg(f"image={image_file(40, 36, 3)}", "iters=20", "eval_every=5", "backtrack_db=5",
                      "trainer.accelerator=gpu", "input.depth=4", *QUIET, *TINY_NET)
    out = stages.check(cfg)
    stages.set_up(cfg, out)
    built = runner.build(cfg, out_dir=out)
    assert stages.fit(cfg, built)[0] == "completed"
