"""``hydra/sweeper=dip_optuna``: a Hydra sweeper on Optuna's ask-and-tell interface, with the study
on disk, so a search is still a multirun on any launcher.

Each round asks the study for ``n_jobs`` trials, launches them as one batch on the configured
launcher and tells the study each job's result: its objective (``completed``), ``pruned`` (the
job stopped itself on the pruner's word, ``dip_lightning.search.pruning``) or ``failed``. Each
trial's job folder is ``trial_<number>`` and it learns its trial through ``++optuna.*`` overrides.

The study lives in ``storage``: by default a journal file in the sweep folder (``optuna.journal``:
no server, safe for several processes on a shared file system), or any RDB URL (``sqlite:///…``,
``postgresql://…``). Launching the same search into the same folder continues it: finished trials
stay, ``n_trials`` counts the whole study (a relaunch with a larger number runs the difference).
Several sweepers (two ``dip-restore -m`` processes, SLURM array tasks) pointed at one storage feed
one study. Each signs the trials it runs and beats for them in the study (``liveness.py``); before
every batch a sweeper fails the trials whose sweeper is gone (a dead process on this host, or no
beat for ``stale_after_s``) and runs their budget again, and it ends only when the study holds
``n_trials`` finished trials. A sweep folder holds one study (``storage.claim_folder``), so trial
folders never collide.

A launcher runs a batch to its end before the next is asked (Hydra's launch is batch-at-a-time), so
a slot freed by a pruned trial waits for its batch; run several sweepers with ``n_jobs=1`` on one
storage for trials that never wait on each other.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from dip_lightning.search.blind import task_is_blind
from dip_lightning.search.liveness import Liveness
from dip_lightning.search.samplers import make_sampler

log = logging.getLogger(__name__)

TARGET = "hydra_plugins.dip_lightning_sweeper.DIPOptunaSweeper"  # Hydra instantiates plugins from hydra_plugins only


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
    stale_after_s: float = 120.0     # a running trial without its sweeper's beat for this long is failed and rerun


ConfigStore.instance().store(group="hydra/sweeper", name="dip_optuna", node=DIPOptunaSweeperConf,
                             provider="dip_lightning")


class DIPOptunaSweeper(Sweeper):
    """See the module docstring; the arguments are ``DIPOptunaSweeperConf``'s."""

    def __init__(self, storage: str | None, study_name: str, direction: str, n_trials: int, n_jobs: int,
                 sampler: str, seed: int | None, n_startup_trials: int, pruner: Any, objective: str | None,
                 params: Any, stale_after_s: float = 120.0):
        if int(n_trials) < 1 or int(n_jobs) < 1:
            raise ValueError(f"hydra.sweeper.n_trials={n_trials} and n_jobs={n_jobs} must be positive")
        if not float(stale_after_s) > 0:
            raise ValueError(f"hydra.sweeper.stale_after_s={stale_after_s} must be positive (seconds), e.g. 120")
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
        self.stale_after_s = float(stale_after_s)

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    # ------------------------------------------------------------------ the study
    def _check_objective(self) -> str:
        """The metric the trials maximise, checked against this config before any trial runs."""
        from dip_lightning.search.objectives import check_objective

        c = self.config
        blind = (bool(c.get("observed")) and c.get("reference") is None) or task_is_blind(c.get("task"))
        if self.objective is None and blind:
            raise ValueError("a search maximises a PSNR against the ground truth, and this run has none (observed=true "
                             "or task=flash); search on a clean image with a simulated corruption, or name "
                             "holdout=0.1 hydra.sweeper.objective=psnr_holdout (the output scored on held-out pixels)")
        name = self.objective or "psnr_best"
        check_objective(name, c, blind, pruning=self.pruner_spec.get("name", "none") != "none")
        return name

    def _fail_stale(self, study, storage, live: Liveness) -> None:
        """Trials whose sweeper is gone (``liveness``): failed, marked ``stale`` (not counted). Another
        sweeper may fail the same trial at the same moment: whoever comes second skips it."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        sid = storage.get_study_id_from_name(study.study_name)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if live.stale(t):
                try:
                    tid = storage.get_trial_id_from_study_id_trial_number(sid, t.number)
                    storage.set_trial_user_attr(tid, "stale", True)
                    study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                except UpdateFinishedTrialError:
                    continue
                log.warning("trial %d was left running by a sweeper that stopped: marked failed, its budget rerun",
                            t.number)

    def sweep(self, arguments: list[str]):
        import optuna
        from optuna.trial import TrialState

        from dip_lightning.search.space import parse_space
        from dip_lightning.search.storage import claim_folder, make_study, open_storage, size_brackets, storage_url

        objective = self._check_objective()
        space, fixed = parse_space(self.params, arguments)
        if not space:
            raise ValueError("the search has no parameter: give hydra.sweeper.params or key=interval(…) / choice(…)")
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        url = storage_url(self.storage, sweep_dir)
        storage = open_storage(url)
        study = make_study(storage, self.study_name, self.direction,
                           resolved_pruner(self.pruner_spec, self.config, {p.name for p in space}))
        claim_folder(sweep_dir, self.study_name, url)
        study.set_user_attr("objective", objective)
        for t in study.get_trials(deepcopy=False):  # a changed choice() is refused by Optuna only inside ask()
            for p in space:
                if p.name in t.distributions:
                    try:
                        optuna.distributions.check_distribution_compatibility(t.distributions[p.name], p.distribution)
                    except ValueError as exc:
                        raise ValueError(f"{p.key}: the study {self.study_name!r} at {url} searched it as "
                                         f"{t.distributions[p.name]}; {exc}; search it in another sweep folder "
                                         f"(hydra.sweep.dir) with another study_name") from None
        live = Liveness(self.stale_after_s)
        dists = {p.name: p.distribution for p in space}
        study.sampler = make_sampler(self.sampler_name, self.seed, self.n_startup_trials)
        while True:
            self._fail_stale(study, storage, live)  # before every batch: a sweeper beside this one may have died
            budget = counted(study.get_trials(deepcopy=False))
            left = self.n_trials - len(budget)
            if left <= 0:
                if not any(t.state == TrialState.RUNNING for t in budget):
                    break
                time.sleep(min(5.0, self.stale_after_s / 8))  # other sweepers' last trials: wait for them to end
                continue  # (or to go stale, and run their budget here)
            size_brackets(study)
            batch: list = []
            try:
                for _ in range(min(self.n_jobs, left)):
                    batch.append(study.ask(fixed_distributions=dists))
                    live.sign(batch[-1])
                # another sweeper may have asked at the same time: the trials past n_trials (by number) step back
                keep = {t.number for t in counted(study.get_trials(deepcopy=False))[:self.n_trials]}
                for t in [t for t in batch if t.number not in keep]:
                    t.set_user_attr("surplus", True)
                    study.tell(t, state=TrialState.FAIL, skip_if_finished=True)
                    live.done(t)
                batch = [t for t in batch if t.number in keep]
                if batch:
                    self._launch(study, batch, space, fixed, url, objective, live)
            except BaseException:  # stopped (Ctrl-C, SIGTERM) or broken: the batch's budget is run again later
                abandon(study, batch, live)
                raise
        live.stop()
        from dip_lightning.search.results import write_results

        write_results(study, sweep_dir, space)
        return study

    def _launch(self, study, batch: list, space, fixed: list[str], url: str, objective: str, live: Liveness) -> None:
        """Run ``batch``'s trials as one launch and tell the study each result (a launch that raises:
        ``sweep`` abandons the batch)."""
        from dip_lightning.overrides import quote

        jobs = [tuple([*fixed, *(p.override(t.params[p.name]) for p in space),
                       f"hydra.sweep.subdir=trial_{t.number:04d}", f"++optuna.trial={t.number}",
                       f"++optuna.study={quote(self.study_name)}", f"++optuna.storage={quote(url)}",
                       f"++optuna.objective={objective}"]) for t in batch]
        log.info("trials %s of %d", ", ".join(str(t.number) for t in batch), self.n_trials)
        self.validate_batch_is_legal(jobs)
        returns = self.launcher.launch(jobs, initial_job_idx=batch[0].number)
        for t, ret in zip(batch, returns):
            tell(study, t, ret)
            live.done(t)


def counted(trials) -> list:
    """The study's trials that use its budget (finished or running; not stale, not surplus), in order."""
    from optuna.trial import TrialState

    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [t for t in trials if (t.state in finished or t.state == TrialState.RUNNING)
            and not (t.state == TrialState.FAIL and (t.user_attrs.get("stale") or t.user_attrs.get("surplus")))]


def abandon(study, trials: list, live: Liveness) -> None:
    """Trials asked but never run to a result (the sweeper was stopped, or the launch broke):
    failed and marked ``stale``, so that their budget is run again."""
    from optuna.trial import TrialState

    for t in trials:
        live.done(t)
        try:
            t.set_user_attr("stale", True)
            study.tell(t, state=TrialState.FAIL, skip_if_finished=True)
        except Exception as exc:  # already told (a result came back), or the storage is away
            log.debug("trial %d not failed: %s", t.number, exc)


def resolved_pruner(spec: dict, cfg: DictConfig, searched: set[str]) -> dict:
    """The pruner spec with Hyperband's ``max_resource: auto`` made the run's ``iters`` (unless it
    is ``searched``), so that the sweeper and every job size the same brackets from the start."""
    spec = dict(spec)
    if spec.get("name") == "hyperband" and spec.get("max_resource", "auto") == "auto" and "iters" not in searched \
            and cfg.get("iters") is not None:
        spec["max_resource"] = int(cfg.iters)
    return spec


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
