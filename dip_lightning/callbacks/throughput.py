"""Steady-state iterations per second, excluding warm-up (first steps, compilation)."""
from __future__ import annotations

import time

import pytorch_lightning as pl
import torch


class Throughput(pl.Callback):
    """Times steps ``warmup+1 … last``. Synchronises CUDA only at those two instants.

    Why not Lightning's own: ``ThroughputMonitor`` calls ``torch.cuda.synchronize()`` at every
    batch end (pytorch_lightning 2.6, ``ThroughputMonitor._update``), a host sync per step that the
    sync-free step exists to avoid, and it needs a ``batch_size_fn`` for what is here a step
    index. ``Timer`` times whole stages, so it cannot leave out the warm-up steps (the first steps
    and ``torch.compile``'s compilation), which ``it_per_s`` must exclude.

    Its checkpoint state is the fitting time so far and the step, so a resumed run's ``wall_s``
    counts the parts before it (``before_s``; the time from the last checkpoint to the interruption
    is lost); ``it_per_s`` is the last part's rate, ``resumed_at`` the step it continued from (also
    for a checkpoint at the last step, where Lightning skips the fit's start hooks).
    """

    def __init__(self, warmup: int = 5):
        self.warmup = max(1, int(warmup))
        self.t_start = self.t_warm = self.t_end = None
        self.step_warm = self.step_end = 0
        self.before_s, self.resumed_at, self.step_now = 0.0, None, 0

    def state_dict(self) -> dict:
        return {"fit_s": self.wall_s, "step": self.step_now}

    def load_state_dict(self, state: dict) -> None:
        self.before_s = float(state.get("fit_s", 0.0))
        self.resumed_at = state.get("step") or None  # (a checkpoint from before the step was kept: on_train_start)

    def _now(self, module: pl.LightningModule) -> float:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        return time.perf_counter()

    def on_train_start(self, trainer, module) -> None:
        self.t_start = time.perf_counter()
        self.step_warm = trainer.global_step  # a resumed run starts warm-up from here
        self.resumed_at = trainer.global_step or None
        self.t_warm = None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.step_now = trainer.global_step  # (ModelCheckpoint's hook, which saves, runs after this one)
        if self.t_warm is None and trainer.global_step - self.step_warm >= self.warmup:
            self.t_warm = self._now(module)
            self.step_warm = trainer.global_step

    def on_train_end(self, trainer, module) -> None:
        self.t_end = self._now(module)
        self.step_end = trainer.global_step

    def on_exception(self, trainer, module, exception) -> None:
        self.on_train_end(trainer, module)

    @property
    def wall_s(self) -> float:
        """Seconds fitting, the parts before a resume included."""
        return self.before_s + (self.t_end or time.perf_counter()) - (self.t_start or time.perf_counter())

    @property
    def it_per_s(self) -> float | None:
        """Steady rate; falls back to the whole run when it was shorter than the warm-up."""
        if self.t_warm is not None and self.step_end > self.step_warm and self.t_end:
            return (self.step_end - self.step_warm) / (self.t_end - self.t_warm)
        if self.t_end and self.t_start and self.step_end:
            return (self.step_end - (self.resumed_at or 0)) / max(self.t_end - self.t_start, 1e-9)
        return None
