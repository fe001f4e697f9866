"""Ends the fit at the first step boundary after a SIGTERM that ``signals.TermGuard`` recorded.

Lightning acts on a SIGTERM only once its own handler is installed, after set-up and the checkpoint
restore; one that arrives earlier (a scheduler, the parent-death watchdog) would otherwise be acted
on only after every step ran. This callback looks at the guard when training starts (after the
restore) and after each step, and raises Lightning's ``SIGTERMException`` as Lightning itself does.
"""
from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException


class StopOnSignal(pl.Callback):
    def __init__(self, guard) -> None:
        self.guard = guard

    def _check(self) -> None:
        if self.guard.received:
            raise SIGTERMException()

    def on_train_start(self, trainer, pl_module) -> None:
        self._check()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._check()
