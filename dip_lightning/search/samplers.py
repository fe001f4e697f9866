"""The search's sampler: TPE or random, seeded per trial number (``per_trial_seed``)."""
from __future__ import annotations

from typing import Callable


def make_sampler(name: str, seed: int | None, n_startup_trials: int):
    """``tpe`` (constant liar, so trials asked together differ) or ``random``, seeded per trial."""
    import optuna

    def make(s: int | None):
        if name == "random":
            return optuna.samplers.RandomSampler(seed=s)
        return optuna.samplers.TPESampler(seed=s, n_startup_trials=n_startup_trials, constant_liar=True)

    return per_trial_seed(make, seed)


def per_trial_seed(make: Callable, seed: int | None):
    """An Optuna sampler that is ``make(seed_k)`` for trial number k, seed_k a function of (``seed``,
    k) only: one sweeper's search replays exactly, a relaunch never repeats the first draws, and
    two sweepers on one study (given distinct trial numbers by the storage) never draw the same
    parameters, although they share ``seed``. The samplers keep no state between trials (TPE reads
    the study's history), so a fresh one per trial loses nothing."""
    import numpy as np
    import optuna

    class PerTrialSeed(optuna.samplers.BaseSampler):
        def __init__(self):
            self.inner = make(seed)

        def before_trial(self, study, trial) -> None:
            k = None if seed is None else int(np.random.SeedSequence([int(seed), trial.number]).generate_state(1)[0])
            self.inner = make(k)
            self.inner.before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self.inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self.inner.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self.inner.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values) -> None:
            self.inner.after_trial(study, trial, state, values)

    return PerTrialSeed()
