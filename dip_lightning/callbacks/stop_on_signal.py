"""Ends the fit before its first step after a SIGTERM that ``signals.TermGuard`` recorded earlier.

Lightning installs its own SIGTERM handler (chained with the guard's) only after set-up and the
checkpoint restore, and from then on stops the loop at the end of a step itself; a SIGTERM that
arrives before (a scheduler, the parent-death watchdog) reaches only the guard, and would be acted
on after every step ran. This callback looks at the guard when training starts, after the
restore and the handler's installation, and raises Lightning's ``SIGTERMException`` as Lightning does.
"""
from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException


class StopOnSignal(pl.Callback):
    def __init__(self, guard) -> None:
        self.guard = guard

    def on_train_start(self, trainer, pl_module) -> None:
        if self.guard.received:
            raise SIGTERMException()
