"""Move metric curves from the device history to the logger in chunks, and log image snapshots."""
from __future__ import annotations

import math

import pytorch_lightning as pl

from dip_lightning.io import to_uint8
from dip_lightning.module import FIELDS


class CurveLogger(pl.Callback):
    """Every ``log_every`` steps (and at the end) copy the new rows of ``module.history`` to the
    host in one transfer and send them to the logger with their own step numbers; every
    ``snapshot_every`` steps log the current output (and EMA) as 8-bit images. ``psnr/best`` is
    logged as a running scalar (what sweeps optimise)."""

    def __init__(self, log_every: int = 50, snapshot_every: int = 0):
        self.log_every = max(1, int(log_every))
        self.snapshot_every = int(snapshot_every or 0)
        self.flushed = 0
        self.best = -math.inf
        self.best_step = 0
        self.latest: dict[str, float] = {}  # last flushed row (read by the progress bar)

    def on_train_start(self, trainer, module) -> None:
        self.flushed = module.rows_done

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.log_every == 0:
            self.flush(trainer, module)
        if self.snapshot_every and (step % self.snapshot_every == 0 or step == 1):
            self.log_snapshot(trainer, module, step)

    def on_train_end(self, trainer, module) -> None:
        self.flush(trainer, module)

    def flush(self, trainer, module) -> None:
        n = module.rows_done
        if n <= self.flushed:
            return
        rows = module.history[self.flushed:n].cpu().tolist()
        steps = module.eval_steps[self.flushed:n]
        self.flushed = n
        for step, row in zip(steps, rows):
            metrics = {k: v for k, v in zip(FIELDS, row) if not math.isnan(v)}
            gt = metrics.get("psnr/gt")
            if gt is not None and gt > self.best:
                self.best, self.best_step = gt, step
            if gt is not None:
                metrics["psnr/best"] = self.best
            self.latest = metrics
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)

    def log_snapshot(self, trainer, module, step: int) -> None:
        images = {"snapshot/output": module.final_image()}
        ema = module.ema_image()
        if ema is not None:
            images["snapshot/ema"] = ema
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):  # WandbLogger
                for key, img in images.items():
                    logger.log_image(key=key, images=[to_uint8(img)], step=step, caption=[f"step {step}"])
