"""A search under faults: a sweeper killed mid-trial on every storage, folders and URLs that need
quoting, each objective pruned on its own curve, early stopping never told pruned, objectives
checked before the first trial, Hyperband's brackets seen by the sampler, one study per folder."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from test_search import TINY, counted, study_of, trial_dirs

optuna = pytest.importorskip("optuna", reason="pip install -e '.[sweeps]'")

from test_sweeps import metrics, multirun  # noqa: E402


def search_cmd(image: Path, sweep: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dip_lightning", "-m", "hparams_search=optuna_lr", f"image={image}", *TINY,
            f"hydra.sweep.dir={sweep}", *extra]


# ---------------------------------------------------------------- liveness
def frozen(owner: str | None, beat: float | None, started: datetime | None = None):
    attrs = {k: v for k, v in (("sweeper", owner), ("beat", beat)) if v is not None}
    return SimpleNamespace(number=0, user_attrs=attrs, datetime_start=started or datetime.now())


def test_a_running_trial_is_stale_when_its_sweeper_is_gone_by_any_sign():
    """Another host: by its beat's age; this host: by its process (a reused pid is another
    process); unsigned: by its age; this sweeper's own trials never."""
    from dip_lightning.search.liveness import Liveness, host_name, process_start

    live = Liveness(stale_s=60)
    now = time.time()
    assert not live.stale(frozen("elsewhere:123:456", now - 10))
    assert live.stale(frozen("elsewhere:123:456", now - 61))
    assert live.stale(frozen("elsewhere:123:456", None))
    parent = os.getppid()
    assert not live.stale(frozen(f"{host_name()}:{parent}:{process_start(parent)}", now - 1e6))  # alive here
    assert live.stale(frozen(f"{host_name()}:{parent}:1", now - 16))  # that pid, started at another time: reused
    assert live.stale(frozen(f"{host_name()}:{2 ** 22 + 7}:1", now - 16))  # no such process, two beats missed
    assert not live.stale(frozen(f"{host_name()}:{2 ** 22 + 7}:1", now - 5))  # (another pid namespace's?)
    assert not live.stale(frozen(None, None))  # just asked, not signed yet
    assert live.stale(frozen(None, None, datetime.now() - timedelta(seconds=61)))
    mine = SimpleNamespace(number=7, set_user_attr=lambda *a: None)
    live.sign(mine)
    assert not live.stale(SimpleNamespace(**{**vars(frozen(live.owner, now - 1e6)), "number": 7}))
    live.done(mine)  # no longer run by this sweeper (an error left it): stale
    assert live.stale(SimpleNamespace(**{**vars(frozen(live.owner, now)), "number": 7}))
    live.stop()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.parametrize("store", ["journal", "sqlite"])
def test_a_sweeper_killed_mid_trial_leaves_its_budget_to_the_other(tmp_path, image_file, store):
    """Two sweepers as separate processes on one study (the journal file, SQLite); the one signed as
    another host is SIGKILLed mid-trial, and the survivor runs its budget."""
    url = None if store == "journal" else f"sqlite:///{tmp_path / 'study.db'}"
    killed_sweeper_case(tmp_path, image_file, url)


@pytest.mark.postgres
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_sweeper_killed_mid_trial_on_postgresql(tmp_path, image_file, postgres_url):
    """The same on a PostgreSQL server (scripts/local_postgres.sh), its study named for this test."""
    killed_sweeper_case(tmp_path, image_file, postgres_url, study_name=f"dip_lr_{os.getpid()}_{time.time_ns()}")


def killed_sweeper_case(tmp_path: Path, image_file, url: str | None, study_name: str | None = None) -> None:
    """Two sweepers on one study (``url``; None: the sweep folder's journal); the one signed as
    another host is SIGKILLed mid-trial. The survivor fails that trial once its beat is older than
    stale_after_s and runs its budget: exactly n_trials counted trials, each number run once, the
    dead one failed; a relaunch runs nothing."""
    sweep = tmp_path / "sweep"
    storage = [] if url is None else [f"hydra.sweeper.storage={url}"]
    named = [] if study_name is None else [f"hydra.sweeper.study_name={study_name}"]
    cmd = search_cmd(image_file(16, 16, 3), sweep, "iters=200", "hydra.sweeper.n_trials=2",
                     "hydra.sweeper.stale_after_s=4", *storage, *named)
    remote = subprocess.Popen(cmd, env={**os.environ, "DIP_LIGHTNING_HOST": "remote-node"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not any((p / "environment.json").is_file() for p in sweep.glob("trial_*")):
        time.sleep(0.1)
    local = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert remote.poll() is None, "the first sweeper ended before it could be killed"
    remote.send_signal(signal.SIGKILL)
    remote.wait()
    out = local.communicate(timeout=600)[0]
    assert local.returncode == 0, out[-3000:]

    def study():
        if url is None:
            return study_of(sweep)
        return optuna.load_study(study_name=study_name or "dip_lr", storage=url)

    trials = study().get_trials()
    done = counted(study())
    assert len(done) == 2 and all(t.state.name == "COMPLETE" for t in done), [t.state for t in trials]
    killed = [t for t in trials if t.user_attrs.get("sweeper", "").startswith("remote-node")]
    stale = [t for t in killed if t.user_attrs.get("stale")]
    assert len(stale) == 1 and stale[0].state.name == "FAIL"
    assert "was left running by a sweeper that stopped" in out
    assert len({t.number for t in trials}) == len(trials)
    assert all(metrics(sweep / f"trial_{t.number:04d}")["status"] == "completed" for t in done)
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0  # a relaunch: nothing left
    assert len(study().get_trials()) == len(trials)


# ---------------------------------------------------------------- quoting
def test_any_sweep_folder_and_storage_url_reach_the_jobs(tmp_path, image_file):
    """A folder with '=', ',' and a space, and an RDB URL with a query string."""
    sweep = tmp_path / "x" / "lr=1,a b"
    db = tmp_path / "a b"
    db.mkdir()
    from dip_lightning.overrides import quote

    cmd = search_cmd(image_file(16, 16, 3), sweep, "hydra.sweeper.n_trials=1",
                     f"hydra.sweeper.storage={quote(f'sqlite:///{db}/s.db?timeout=30')}")
    cmd[cmd.index(f"hydra.sweep.dir={sweep}")] = f"hydra.sweep.dir={quote(str(sweep))}"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="dip_lr", storage=f"sqlite:///{db}/s.db?timeout=30")
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"]
    assert metrics(trial_dirs(sweep)[0])["status"] == "completed"


def test_quoted_override_values_read_back_exactly():
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from dip_lightning.overrides import quote

    parser = OverridesParser.create()
    for s in ["/tmp/x/lr=1", "/a,b c/j", "postgresql://u:p@h/db?sslmode=require", "a'b", "a\\b", "a\\", "x${y}",
              "x\\${y}", "'${a}'\\"]:
        value = parser.parse_overrides([f"++k={quote(s)}"])[0].value()
        assert OmegaConf.create({"k": value}).k == s


# ---------------------------------------------------------------- the objective and its curve
class _Trainer:
    should_stop = False
    global_step = 30
    max_steps = 1000


@pytest.mark.parametrize("objective", ["psnr_best", "psnr_final", "psnr_ema_final", "ssim_final", "psnr_obs_final",
                                       "psnr_ema_obs_final"])
def test_each_objective_is_reported_and_pruned_on_its_own_curve(tmp_path, objective):
    """Every curve but the objective's holds NaN: the trial reports that curve's values, and a
    falling one is pruned (median pruner against a trial far above it)."""
    from dip_lightning.history import FIELDS
    from dip_lightning.search.objectives import OBJECTIVES
    from dip_lightning.search.pruning import TrialReporter
    from dip_lightning.search.storage import make_study, open_storage

    url = f"journal://{tmp_path / 'optuna.journal'}"
    study = make_study(open_storage(url), "s", "maximize", {"name": "median", "n_startup_trials": 1,
                                                            "n_warmup_steps": 0})
    t = study.ask()
    for step in (10, 20, 30):
        t.report(100.0, step)
    study.tell(t, 100.0)
    col = FIELDS.index(OBJECTIVES[objective].curve)
    rows = [[[v if i == col else float("nan")] for i in range(len(FIELDS))] for v in (5.0, 4.0, 3.0)]
    trial = study.ask()
    reporter, trainer = TrialReporter(trial.number, "s", url, objective), _Trainer()
    reporter.rows(trainer, [10, 20, 30], rows)
    reported = study.get_trials()[trial.number].intermediate_values
    assert reported == ({10: 5.0, 20: 5.0, 30: 5.0} if objective == "psnr_best" else {10: 5.0, 20: 4.0, 30: 3.0})
    assert trainer.should_stop and reporter.pruned_at == 30


def test_a_fit_that_is_ending_is_not_pruned(tmp_path):
    """Early stopping asked the fit to stop: the pruner is not asked, the trial stays complete."""
    from dip_lightning.history import FIELDS
    from dip_lightning.search.pruning import TrialReporter
    from dip_lightning.search.storage import make_study, open_storage

    url = f"journal://{tmp_path / 'optuna.journal'}"
    study = make_study(open_storage(url), "s", "maximize", {"name": "median", "n_startup_trials": 1})
    t = study.ask()
    t.report(100.0, 10)
    study.tell(t, 100.0)
    trial = study.ask()
    reporter, trainer = TrialReporter(trial.number, "s", url), _Trainer()
    trainer.should_stop = True  # (early stopping, on the step the rows were flushed at)
    reporter.rows(trainer, [10], [[[3.0] for _ in FIELDS]])
    assert reporter.pruned_at is None


def test_an_early_stopped_trial_is_complete_with_its_value(tmp_path, image_file):
    """es.mode=stop and a median pruner that would prune the trial at any report (a trial at 100 dB
    before it): the only flush is at the end of the fit, after early stopping ended it, so the
    trial is COMPLETE with its psnr_best; with the rows flushed during the fit it is pruned."""
    def search(sweep: Path, *extra: str):
        from dip_lightning.search.storage import make_study, open_storage

        spec = {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}
        study = make_study(open_storage(f"journal://{sweep / 'optuna.journal'}"), "dip_lr", "maximize", spec)
        t = study.ask()
        for step in range(1, 201):
            t.report(100.0, step)
        study.tell(t, 100.0)
        multirun(["hparams_search=optuna_lr", f"image={image_file(16, 16, 3)}", *TINY, "iters=200",
                  "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner.name=median",
                  "+hydra.sweeper.pruner.n_startup_trials=1", "+hydra.sweeper.pruner.n_warmup_steps=0", *extra],
                 sweep)
        return study_of(sweep).get_trials()[1], metrics(sweep / "trial_0001")

    es = ["es.mode=stop", "es.window=2", "es.patience=4", "es.check_every=2", "eval_every=1"]
    trial, m = search(tmp_path / "es", *es, "log_every=1000")
    assert m["status"] == "early_stopped" and m["iters_done"] < 200, m
    assert trial.state.name == "COMPLETE" and trial.value == pytest.approx(m["psnr_best"])
    trial, m = search(tmp_path / "no_es", "es=none", "log_every=10", "eval_every=1")
    assert m["status"] == "pruned" and trial.state.name == "PRUNED"


def test_a_misspelt_objective_is_one_line_before_any_trial(tmp_path, image_file):
    proc = multirun(["hparams_search=optuna_lr", f"image={image_file(16, 16, 3)}", *TINY,
                     "hydra.sweeper.n_trials=2", "hydra.sweeper.objective=psnr_bets"], tmp_path / "s", check=False)
    assert proc.returncode != 0 and "hydra.sweeper.objective=psnr_bets is not a metric" in proc.stderr
    assert "psnr_obs_final" in proc.stderr and not list((tmp_path / "s").glob("trial_*"))


@pytest.mark.parametrize("name, args, pruning, says", [
    ("psnr_eval", [], False, "eval_protocol=null names none"),
    ("psnr_eval", ["eval_protocol=full"], True, "known only at the end of a trial"),
    ("es_psnr", ["es=none"], False, "es=none"),
    ("psnr_ema_final", ["exp_weight=null"], False, "exp_weight=null turns it off"),
    ("psnr_final", ["task=flash"], False, "needs a ground truth"),
])
def test_an_objective_that_cannot_work_is_refused(compose_cfg, name, args, pruning, says):
    from dip_lightning.search.objectives import check_objective
    from dip_lightning.search.blind import task_is_blind

    cfg = compose_cfg(*args)
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace("=", "=")):
        check_objective(name, cfg, task_is_blind(cfg.task), pruning)
    check_objective("psnr_obs_final", cfg, True, pruning)  # always possible


def test_a_protocols_objective_is_searched_without_a_pruner(tmp_path, image_file):
    sweep = tmp_path / "s"
    multirun(["hparams_search=optuna_lr", f"image={image_file(16, 16, 3)}", *TINY, "hydra.sweeper.n_trials=1",
              "hydra.sweeper.objective=psnr_eval", "eval_protocol=full"], sweep)
    assert study_of(sweep).get_trials()[0].value == pytest.approx(metrics(sweep / "trial_0000")["psnr_eval"])


# ---------------------------------------------------------------- hyperband, folders
def test_hyperbands_brackets_reach_the_sampler(tmp_path, image_file):
    """A real Hyperband search; the study the sweeper builds carries the pruner, and Optuna hands
    its sampler only the trials of the asked trial's bracket."""
    from dip_lightning.search.storage import make_study, open_storage

    sweep = tmp_path / "s"
    spec = {"name": "hyperband", "min_resource": 5, "max_resource": 20, "reduction_factor": 2}
    multirun(["hparams_search=optuna_lr", f"image={image_file(16, 16, 3)}", *TINY, "iters=20", "eval_every=5",
              "log_every=5", "hydra.sweeper.n_trials=6", "hydra.sweeper.sampler=random",
              "hydra.sweeper.pruner.name=hyperband", "+hydra.sweeper.pruner.min_resource=5",
              "+hydra.sweeper.pruner.max_resource=20", "+hydra.sweeper.pruner.reduction_factor=2"], sweep)
    study = make_study(open_storage(f"journal://{sweep / 'optuna.journal'}"), "dip_lr", "maximize", spec)
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner)
    seen = []

    class Recording(optuna.samplers.RandomSampler):
        def before_trial(self, study, trial):
            seen.append(len(study.get_trials(deepcopy=False)))

    study.sampler = Recording(seed=0)
    for _ in range(4):
        study.tell(study.ask(), 0.0)
    assert len(seen) == 4 and min(seen) < 6, seen  # a bracket's trials, not all of the study's (6 and more)


def test_two_studies_in_one_sweep_folder_are_refused(tmp_path, image_file):
    """A folder holds one study's trial_NNNN folders; the refusal names a folder that works."""
    from dip_lightning.search.storage import claim_folder, storage_url

    sweep = tmp_path / "a b"
    claim_folder(sweep, "dip_lr", storage_url(None, sweep))
    claim_folder(sweep, "dip_lr", storage_url(None, sweep))  # the same search again: continued
    proc = multirun(["hparams_search=optuna_lr", f"image={image_file(16, 16, 3)}", *TINY, "hydra.sweeper.n_trials=1",
                     "hydra.sweeper.study_name=other"], sweep, check=False)
    assert proc.returncode != 0 and "holds the trials of study 'dip_lr'" in proc.stderr, proc.stderr[-2000:]
    assert not list(sweep.glob("trial_*"))
    suggested = proc.stderr.split("e.g. hydra.sweep.dir=")[1].strip().splitlines()[0]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    folder = Path(OverridesParser.create().parse_overrides([f"hydra.sweep.dir={suggested}"])[0].value())
    assert folder != sweep
    claim_folder(folder, "other", storage_url(None, folder))


def test_a_trial_two_sweepers_find_stale_at_once_is_failed_once_and_both_go_on(tmp_path):
    from dip_lightning.search.liveness import Liveness
    from dip_lightning.search.storage import make_study, open_storage
    from dip_lightning.search.sweeper import DIPOptunaSweeper, counted

    storage = open_storage(f"journal://{tmp_path / 'optuna.journal'}")
    study = make_study(storage, "s", "maximize", None)
    dead = study.ask()
    dead.set_user_attr("sweeper", "elsewhere:1:1")
    dead.set_user_attr("beat", time.time() - 3600)
    seen = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    live = Liveness(stale_s=60)
    DIPOptunaSweeper._fail_stale(None, study, storage, live)  # the first sweeper
    late = make_study(storage, "s", "maximize", None)
    late.get_trials = lambda deepcopy=False, states=None: seen  # the second listed it before the first told
    DIPOptunaSweeper._fail_stale(None, late, storage, live)
    (t,) = study.get_trials()
    assert t.state.name == "FAIL" and t.user_attrs["stale"] and counted([t]) == []
    live.stop()


def test_trials_a_stopped_sweeper_asked_are_run_again(tmp_path):
    """Ctrl-C or SIGTERM of a sweeper whose batch was launched: its trials are failed as stale, so
    they use no budget; a finished one that was marked stale by a late judge still counts."""
    from dip_lightning.search.liveness import Liveness
    from dip_lightning.search.storage import make_study, open_storage
    from dip_lightning.search.sweeper import abandon, counted

    study = make_study(open_storage(f"journal://{tmp_path / 'optuna.journal'}"), "s", "maximize", None)
    live = Liveness(stale_s=60)
    batch = [study.ask() for _ in range(2)]
    for t in batch:
        live.sign(t)
    done = study.ask()
    done.set_user_attr("stale", True)  # judged stale, but its own sweeper told it complete first
    study.tell(done, 1.0)
    abandon(study, batch, live)
    assert not live.running
    assert [t.number for t in counted(study.get_trials())] == [done.number]
    assert all(t.state.name == "FAIL" and t.user_attrs["stale"] for t in study.get_trials()[:2])
    live.stop()
