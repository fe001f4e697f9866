"""Move metric curves from the device history to the logger in chunks."""
from __future__ import annotations

import math

import pytorch_lightning as pl

from dip_lightning.history import FIELDS


class CurveLogger(pl.Callback):
    """Every ``log_every`` steps (and at the end) copy the new rows of ``module.history`` to the
    host in one transfer and send them to the logger with their own step numbers. ``psnr/best``
    is logged as a running scalar (the best evaluated PSNR so far: what sweeps optimise). Packed
    fits log into one run, each metric prefixed with ``fit<k>/``."""

    def __init__(self, log_every: int = 50):
        self.log_every = max(1, int(log_every))
        self.flushed = 0
        self.best: list[float] = []  # per fit
        self.latest: dict[str, float] = {}  # last flushed row (read by the progress bar)
        self.listeners: list = []  # objects whose rows(trainer, steps, rows) gets each flushed chunk (a search's trial)

    def on_train_start(self, trainer, module) -> None:
        self.flushed = module.rows_done

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.log_every == 0:
            self.flush(trainer, module)

    def on_train_end(self, trainer, module) -> None:
        self.flush(trainer, module)

    def on_exception(self, trainer, module, exception) -> None:
        self.flush(trainer, module)

    def flush(self, trainer, module) -> None:
        n = module.rows_done
        if n <= self.flushed:
            return
        rows = module.history[self.flushed:n].cpu().tolist()  # (rows, fields, fits)
        steps = module.eval_steps[self.flushed:n]
        self.flushed = n
        for listener in self.listeners:
            listener.rows(trainer, steps, rows)
        k = module.fits
        if len(self.best) != k:
            self.best = [-math.inf] * k
        for step, row in zip(steps, rows):
            metrics = {}
            for fit in range(k):
                prefix = "" if k == 1 else f"fit{fit}/"  # packed fits: one run, K curves
                values = {f: r[fit] for f, r in zip(FIELDS, row) if not math.isnan(r[fit])}
                if "psnr/gt" in values:
                    self.best[fit] = max(self.best[fit], values["psnr/gt"])
                    values["psnr/best"] = self.best[fit]
                metrics.update({prefix + key: v for key, v in values.items()})
            self.latest = metrics
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]
