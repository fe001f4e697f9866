"""Stop a fit that keeps diverging (NaN/Inf or collapse after collapse) instead of wasting the job."""
from __future__ import annotations

import pytorch_lightning as pl


class DivergenceGuard(pl.Callback):
    """Every ``check_every`` steps read the module's backtrack counter (one host sync); once it
    reaches ``max_backtracks`` stop the fit and record why (the run then reports ``diverged``)."""

    def __init__(self, max_backtracks: int = 50, check_every: int = 10):
        self.max_backtracks = int(max_backtracks)
        self.check_every = max(1, int(check_every))
        self.reason: str | None = None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.max_backtracks <= 0 or trainer.global_step % self.check_every:
            return
        n = int(module.backtracks.max())  # the worst of the packed fits
        if n >= self.max_backtracks:
            self.reason = (f"diverged: {n} backtracks by step {trainer.global_step} (the loss kept turning NaN/Inf "
                           f"or collapsing); lower optim.lr or raise max_backtracks")
            trainer.should_stop = True
