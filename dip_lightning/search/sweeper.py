"""``hydra/sweeper=dip_optuna``: a Hydra sweeper on Optuna's ask-and-tell interface, with the study
on disk, so a search is still a multirun on any launcher.

Each round asks the study for ``n_jobs`` trials, launches them as one batch on the configured
launcher and tells the study each job's result: its objective (``completed``), ``pruned`` (the
job stopped itself on the pruner's word, ``dip_lightning.search.pruning``) or ``failed``. Each
trial's job folder is ``trial_<number>`` and it learns its trial through ``++optuna.*`` overrides.

The study lives in ``storage``: by default a journal file in the sweep folder (``optuna.journal``:
no server, safe for several processes on a shared file system), or any RDB URL (``sqlite:///…``,
``postgresql://…``). Launching the same search into the same folder continues it: finished trials
stay, ``n_trials`` counts the whole study (a relaunch with a larger number runs the difference),
and trials left running by a sweeper that died (no heartbeat for ``STALE_S``) are marked failed and
their budget run again. Several sweepers (two ``dip-restore -m`` processes, SLURM array tasks)
pointed at one storage feed one study.

A launcher runs a batch to its end before the next is asked (Hydra's launch is batch-at-a-time), so
a slot freed by a pruned trial waits for its batch; run several sweepers with ``n_jobs=1`` on one
storage for trials that never wait on each other.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

TARGET = "hydra_plugins.dip_lightning_sweeper.DIPOptunaSweeper"  # Hydra instantiates plugins from hydra_plugins only
STALE_S = 120.0  # a running trial whose sweeper has not beaten for this long is failed and rerun
BEAT_S = 15.0


@dataclass
class DIPOptunaSweeperConf:
    _target_: str = TARGET
    storage: Optional[str] = None    # null: <sweep dir>/optuna.journal; a path (journal file) or an RDB URL
    study_name: str = "dip"
    direction: str = "maximize"
    n_trials: int = 20               # the whole study's (a relaunch runs the difference)
    n_jobs: int = 1                  # trials per batch (the launcher runs a batch at once)
    sampler: str = "tpe"             # tpe | random
    seed: Optional[int] = 0          # the sampler's seed (with each trial's number: per_trial_seed)
    n_startup_trials: int = 5        # tpe: random trials first
    # the pruner: {name: none | median | successive_halving | hyperband, its keyword arguments (in steps)}
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "none"})
    objective: Optional[str] = None  # the metric maximised: null = psnr_best (needs ground truth)
    params: dict[str, str] = field(default_factory=dict)  # key: Hydra sweep syntax (dip_lightning/search/space.py)


ConfigStore.instance().store(group="hydra/sweeper", name="dip_optuna", node=DIPOptunaSweeperConf,
                             provider="dip_lightning")


class Heartbeat:
    """This sweeper's id and a file beside the journal whose time says it is alive (a daemon thread
    touches it every ``BEAT_S``); ``alive(owner)`` reads another's."""

    def __init__(self, folder: Path | None):
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.folder = folder
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            self._touch()
            threading.Thread(target=self._beat, name="sweeper-heartbeat", daemon=True).start()

    def _touch(self) -> None:
        (self.folder / self.owner.replace(":", "_")).touch()

    def _beat(self) -> None:
        while True:
            time.sleep(BEAT_S)
            self._touch()

    def alive(self, owner: str | None) -> bool:
        """Whether sweeper ``owner`` still runs: on this machine its process says; elsewhere its
        heartbeat file (journal storage) or, for an RDB storage, Optuna's own heartbeat decides."""
        if owner == self.owner:
            return True
        if owner is None:
            return False
        host, pid, _ = (owner.split(":") + ["", "", ""])[:3]
        if host == socket.gethostname() and pid.isdigit():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                pass
            return True
        if self.folder is None:
            return True
        beat = self.folder / owner.replace(":", "_")
        return beat.is_file() and time.time() - beat.stat().st_mtime < STALE_S


class DIPOptunaSweeper(Sweeper):
    """See the module docstring; the arguments are ``DIPOptunaSweeperConf``'s."""

    def __init__(self, storage: str | None, study_name: str, direction: str, n_trials: int, n_jobs: int,
                 sampler: str, seed: int | None, n_startup_trials: int, pruner: Any, objective: str | None,
                 params: Any):
        if int(n_trials) < 1 or int(n_jobs) < 1:
            raise ValueError(f"hydra.sweeper.n_trials={n_trials} and n_jobs={n_jobs} must be positive")
        if sampler not in ("tpe", "random"):
            raise ValueError(f"hydra.sweeper.sampler={sampler}; choose tpe or random")
        self.storage, self.study_name, self.direction = storage, str(study_name), str(direction)
        self.n_trials, self.n_jobs, self.sampler_name = int(n_trials), int(n_jobs), sampler
        self.seed, self.n_startup_trials = seed, int(n_startup_trials)
        self.pruner_spec = dict(OmegaConf.to_container(pruner, resolve=True) if isinstance(pruner, DictConfig)
                                else pruner or {"name": "none"})
        from dip_lightning.search.storage import make_pruner

        make_pruner(self.pruner_spec)  # a bad pruner is one line before anything runs
        self.objective = objective
        self.params = dict(params or {})

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    # ------------------------------------------------------------------ the study
    def _check_objective(self) -> str:
        """The metric the trials maximise; without ground truth only one the user names."""
        c = self.config
        blind = bool(c.get("observed")) or str(c.get("task", {}).get("_target_", "")).endswith("FlashNoFlash")
        if self.objective is None and blind:
            raise ValueError("a search maximises a PSNR against the ground truth, and this run has none (observed=true "
                             "or task=flash); search on a clean image with a simulated corruption, or name "
                             "hydra.sweeper.objective (e.g. psnr_obs_final, which rises as the net fits the noise)")
        return self.objective or "psnr_best"

    def _sampler(self):
        import optuna

        def make(seed: int | None):
            if self.sampler_name == "random":
                return optuna.samplers.RandomSampler(seed=seed)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials, constant_liar=True)

        return per_trial_seed(make, self.seed)

    def _fail_stale(self, study, storage, beat: Heartbeat) -> None:
        """Trials left running by a sweeper that is gone: failed, marked ``stale`` (not counted)."""
        import optuna
        from optuna.trial import TrialState

        sid = storage.get_study_id_from_name(study.study_name)
        if beat.folder is None:  # an RDB storage: its heartbeat fails the trials of dead processes
            optuna.storages.fail_stale_trials(study)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = t.user_attrs.get("sweeper")
            young = t.datetime_start is not None and (datetime.now() - t.datetime_start).total_seconds() < STALE_S
            if owner is None and young:  # just asked by a sweeper that has not signed it yet
                continue
            if not beat.alive(owner):
                log.warning("trial %d was left running by a sweeper that stopped: marked failed, its budget rerun",
                            t.number)
                tid = storage.get_trial_id_from_study_id_trial_number(sid, t.number)
                storage.set_trial_user_attr(tid, "stale", True)
                study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)

    def sweep(self, arguments: list[str]):
        import optuna
        from optuna.trial import TrialState

        from dip_lightning.search.space import parse_space
        from dip_lightning.search.storage import open_storage, storage_url

        finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        objective = self._check_objective()
        space, fixed = parse_space(self.params, arguments)
        if not space:
            raise ValueError("the search has no parameter: give hydra.sweeper.params or key=interval(…) / choice(…)")
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        url = storage_url(self.storage, sweep_dir)
        storage = open_storage(url)
        study = optuna.create_study(study_name=self.study_name, storage=storage, direction=self.direction,
                                    load_if_exists=True)
        study.set_user_attr("pruner", self.pruner_spec)  # the jobs build the same pruner from it
        study.set_user_attr("objective", objective)
        for t in study.get_trials(deepcopy=False):  # a changed choice() is refused by Optuna only inside ask()
            for p in space:
                if p.name in t.distributions:
                    try:
                        optuna.distributions.check_distribution_compatibility(t.distributions[p.name], p.distribution)
                    except ValueError as exc:
                        raise ValueError(f"{p.key}: the study {self.study_name!r} at {url} searched it as "
                                         f"{t.distributions[p.name]}; {exc}; use another study_name") from None
        beat = Heartbeat(Path(str(url)[len("journal://"):] + ".sweepers") if url.startswith("journal://") else None)
        self._fail_stale(study, storage, beat)
        dists = {p.name: p.distribution for p in space}
        def counted(trials) -> list:  # the study's trials that use its budget, in order
            return [t for t in trials if (t.state in finished or t.state == TrialState.RUNNING)
                    and not t.user_attrs.get("stale") and not t.user_attrs.get("surplus")]

        study.sampler = self._sampler()
        while True:
            trials = study.get_trials(deepcopy=False)
            left = self.n_trials - len(counted(trials))
            if left <= 0:
                break
            batch = [study.ask(fixed_distributions=dists) for _ in range(min(self.n_jobs, left))]
            for t in batch:
                t.set_user_attr("sweeper", beat.owner)
            # another sweeper may have asked at the same time: the trials past n_trials (by number) step back
            keep = {t.number for t in counted(study.get_trials(deepcopy=False))[:self.n_trials]}
            for t in [t for t in batch if t.number not in keep]:
                t.set_user_attr("surplus", True)
                study.tell(t, state=TrialState.FAIL, skip_if_finished=True)
            batch = [t for t in batch if t.number in keep]
            if not batch:
                continue
            jobs = []
            for t in batch:
                jobs.append(tuple([*fixed, *(p.override(t.params[p.name]) for p in space),
                                   f"hydra.sweep.subdir=trial_{t.number:04d}", f"++optuna.trial={t.number}",
                                   f"++optuna.study={self.study_name}", f"++optuna.storage={url}",
                                   f"++optuna.objective={objective}"]))
            log.info("trials %s of %d", ", ".join(str(t.number) for t in batch), self.n_trials)
            self.validate_batch_is_legal(jobs)
            returns = self.launcher.launch(jobs, initial_job_idx=batch[0].number)
            for t, ret in zip(batch, returns):
                tell(study, t, ret)
        from dip_lightning.search.results import write_results

        write_results(study, sweep_dir, space)
        return study


def tell(study, trial, ret) -> None:
    """The job's result: a finite objective (complete), a pruned job's dict (pruned), else failed."""
    from optuna.trial import TrialState

    value = ret._return_value if ret.status == JobStatus.COMPLETED else None  # (return_value re-raises a failure)
    if isinstance(value, dict) and value.get("state") == "pruned":
        study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
    elif isinstance(value, (int, float)) and math.isfinite(float(value)):
        study.tell(trial, float(value), skip_if_finished=True)
    else:
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def per_trial_seed(make, seed: int | None):
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
