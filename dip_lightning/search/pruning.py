"""The job side of a search: report the objective's curve to the trial and stop when the pruner says so.

``TrialReporter`` is handed each chunk of metric rows that ``CurveLogger`` has just moved to the
host (every ``log_every`` steps), so reporting adds no host synchronisation to the step. For each
row it reports the objective's value at that step, read from the objective's own curve
(``objectives.OBJECTIVES``: ``psnr_best`` the best PSNR so far, ``psnr_obs_final`` the fit to the
observation, ``ssim_final`` the SSIM, …), the mean over packed fits; then it asks the pruner once
and, if the trial should stop, ends the fit (``status: pruned`` in metrics.json, with
``iters_done``). A fit that is ending anyway (its last step, or early stopping's stop) is never
pruned: it is complete, with its value. An objective without a curve reports nothing.
"""
from __future__ import annotations

import math

import pytorch_lightning as pl

from dip_lightning.search.objectives import OBJECTIVES
from dip_lightning.search.storage import make_pruner, open_storage


class TrialReporter(pl.Callback):
    """Reports to trial ``trial`` of ``study`` in ``storage``; ``pruned_at`` is the step it stopped at."""

    def __init__(self, trial: int, study: str, storage: str, objective: str = "psnr_best"):
        import optuna

        self.objective = str(objective)
        spec = OBJECTIVES.get(self.objective)
        self.curve = None if spec is None else spec.curve
        self.running_max = spec is not None and spec.running_max
        store = open_storage(str(storage))
        self.study = optuna.load_study(study_name=str(study), storage=store)
        self.study.pruner = make_pruner(self.study.user_attrs.get("pruner"))  # the sweeper's (the study keeps its spec)
        trial_id = store.get_trial_id_from_study_id_trial_number(store.get_study_id_from_name(str(study)), int(trial))
        self.trial = optuna.trial.Trial(self.study, trial_id)  # the sweeper's trial (study.ask() would make a new one)
        self.best = -math.inf
        self.pruned_at: int | None = None

    def rows(self, trainer: pl.Trainer, steps: list[int], rows: list) -> None:
        """Called by ``CurveLogger.flush`` with the rows it moved to the host: (fields, fits) each."""
        from optuna.exceptions import UpdateFinishedTrialError

        from dip_lightning.history import FIELDS

        if self.curve is None or self.pruned_at is not None:
            return
        col = FIELDS.index(self.curve)
        try:
            for step, row in zip(steps, rows):
                vals = [v for v in row[col] if math.isfinite(v)]
                if not vals:
                    continue
                value = sum(vals) / len(vals)
                if self.running_max:
                    self.best = max(self.best, value)
                    value = self.best
                self.trial.report(value, int(step))
        except UpdateFinishedTrialError:  # failed as stale by a sweeper that thought ours gone: stop reporting
            self.curve = None
            return
        last = trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step
        if not last and not trainer.should_stop and self.trial.should_prune():  # (an ending fit is not pruned)
            self.pruned_at = int(trainer.global_step)
            trainer.should_stop = True
