"""``es=holdout``: stop at the peak of the held-out PSNR (``holdout=FRACTION``), a label-free rule.

At every metric row (each ``eval_every`` steps) the output's PSNR on the held-out pixels
(``psnr/holdout``) is compared, on the device, with the best so far; the best step and its image
are kept. A fit whose best is ``patience`` steps old is detected (checked on the host every
``check_every`` steps); ``mode='stop'`` ends the fit once every packed fit is detected.
"""
from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from dip_lightning.callbacks.stopping import newly_detected, stopping_result
from dip_lightning.history import FIELDS

COLUMN = FIELDS.index("psnr/holdout")


class HoldoutStopping(pl.Callback):
    """Early stopping at the peak of ``psnr/holdout`` (see the module docstring).

    Args:
        patience: steps without a new best held-out PSNR that count as detection.
        mode: 'stop' ends the fit at detection (of every packed fit); 'mark' keeps going and records it.
        check_every: how often the host looks at the best step (one sync per check).
    """

    method = "holdout"

    def __init__(self, patience: int = 500, mode: str = "mark", check_every: int = 50):
        if mode not in ("stop", "mark"):
            raise ValueError(f"es.mode={mode!r}; choose stop or mark")
        if int(patience) < 1:
            raise ValueError(f"es.patience={patience} must be a positive number of steps")
        self.patience, self.mode, self.check_every = int(patience), mode, max(1, int(check_every))
        self.best: torch.Tensor | None = None
        self.best_step: torch.Tensor | None = None
        self.image: torch.Tensor | None = None
        self.detected: list[int | None] = []
        self.stopped = False

    def on_train_start(self, trainer, module) -> None:
        if module.holdout_mask is None:
            raise ValueError("es=holdout stops at the peak of the held-out PSNR, and holdout=null holds no pixel out; "
                             "set holdout=0.1 or choose es=wmv")
        k = module.fits
        if len(self.detected) != k:
            self.detected = [None] * k
        for name in ("best", "best_step", "image"):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, v.to(module.device))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        row = module._row_of.get(step)
        if row is None or all(d is not None for d in self.detected):
            return
        k = module.fits
        value = module.history[row, COLUMN].double()
        x = module.final_image(estimate=False)
        if self.best is None:
            self.best = torch.full((k,), -math.inf, dtype=torch.float64, device=value.device)
            self.best_step = torch.zeros(k, dtype=torch.long, device=value.device)
            self.image = x.clone()
        frozen = torch.tensor([d is not None for d in self.detected], device=value.device)
        better = (value > self.best) & ~frozen
        self.best = torch.where(better, value, self.best)
        self.best_step = torch.where(better, torch.full_like(self.best_step, step), self.best_step)
        self.image = torch.where(better.repeat_interleave(x.shape[1] // k).view(1, -1, 1, 1), x, self.image)
        if step % self.check_every == 0:
            newly_detected(self.best_step, self.detected, step, self.patience)  # the one host sync
            if all(d is not None for d in self.detected) and self.mode == "stop":
                self.stopped = True
                trainer.should_stop = True

    def result(self, fit: int = 0) -> dict:
        """es_step: the detected step (or, without detection, the best held-out step so far)."""
        return stopping_result(self.best_step, self.detected, fit, self.method)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "image": self.image, "detected": self.detected,
                "stopped": self.stopped}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_step, self.image = state["best"], state["best_step"], state["image"]
        self.detected, self.stopped = state["detected"], state["stopped"]
