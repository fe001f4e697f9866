"""Hyperparameter search (dip_lightning/search/): today's Optuna, a study on disk that a relaunch
continues and several sweepers feed, pruning on the PSNR curve, every launcher."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY_NET

optuna = pytest.importorskip("optuna", reason="pip install -e '.[sweeps]'")

from test_sweeps import job_dirs, metrics, multirun, summary_rows  # noqa: E402

TINY = ["iters=3", "input.depth=4", "threads=1", "trainer.enable_progress_bar=false", "snapshot_every=0",
        "logger=none", *TINY_NET]


def trial_dirs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.startswith("trial_"))


def study_of(sweep: Path, name: str = "dip_lr"):
    from dip_lightning.search.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(f"journal://{sweep / 'optuna.journal'}"))


def counted(study) -> list:
    return [t for t in study.get_trials() if not t.user_attrs.get("stale") and not t.user_attrs.get("surplus")]


def test_the_installed_optuna_is_the_current_major_version():
    assert int(optuna.__version__.split(".")[0]) >= 4, optuna.__version__


def test_the_search_space_takes_hydras_sweep_syntax():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from dip_lightning.search.space import parse_space

    space, fixed = parse_space({"optim.lr": "tag(log, interval(1e-4, 1e-1))", "reg_noise_std": "interval(0, 0.05)"},
                               ["iters=range(100, 400, 100)", "net=choice(skip, 'unet')", "++method.alpha=tag(int, "
                                "interval(1, 4))", "seed=3", "reg_noise_std=0.01"])
    by = {p.name: p for p in space}
    assert by["optim.lr"].distribution == FloatDistribution(1e-4, 1e-1, log=True)
    assert by["iters"].distribution == IntDistribution(100, 300, step=100)  # Hydra's stop is excluded
    assert isinstance(by["net"].distribution, CategoricalDistribution) and by["net"].override("unet") == "net=unet"
    assert by["method.alpha"].distribution == IntDistribution(1, 4)
    assert by["method.alpha"].override(2) == "++method.alpha=2"
    assert "reg_noise_std" not in by and fixed == ["seed=3", "reg_noise_std=0.01"]  # a fixed value wins over params


class _Trainer:
    should_stop = False
    global_step = 30
    max_steps = 1000


def test_a_falling_curve_is_pruned_and_a_rising_one_is_not(tmp_path):
    """TrialReporter reports the best PSNR so far at each flushed row and stops the fit when the
    study's pruner says so (median: below the median of earlier trials at the same step)."""
    from dip_lightning.history import FIELDS
    from dip_lightning.search.pruning import TrialReporter
    from dip_lightning.search.storage import open_storage

    url = f"journal://{tmp_path / 'optuna.journal'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    study.set_user_attr("pruner", {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0})
    for base in (20.0, 24.0, 28.0):
        t = study.ask()
        for step in (10, 20, 30):
            t.report(base + step / 10, step)
        study.tell(t, base + 3)

    def rows(values):  # one row per step, (fields, fits)
        col = FIELDS.index("psnr/gt")
        return [[[v if i == col else float("nan")] for i in range(len(FIELDS))] for v in values]

    verdicts = {}
    for name, values in (("falling", [18.0, 17.0, 16.0]), ("rising", [26.0, 29.0, 31.0])):
        trial = study.ask()
        reporter = TrialReporter(trial.number, "s", url)
        trainer = _Trainer()
        reporter.rows(trainer, [10, 20, 30], rows(values))
        verdicts[name] = (trainer.should_stop, reporter.pruned_at)
        assert max(trial.number for trial in study.get_trials()) == trial.number  # no new trial was made
        assert study.get_trials()[trial.number].intermediate_values[30] == max(values)  # the best so far
    assert verdicts == {"falling": (True, 30), "rising": (False, None)}
    trial = study.ask()  # the same falling curve at the fit's last step: a finished trial is not pruned
    reporter, trainer = TrialReporter(trial.number, "s", url), _Trainer()
    trainer.max_steps = 30
    reporter.rows(trainer, [10, 20, 30], rows([18.0, 17.0, 16.0]))
    assert (trainer.should_stop, reporter.pruned_at) == (False, None)


def test_a_pruned_search_writes_its_trials_and_what_it_found(tmp_path, image_file):
    """hparams_search=optuna_lr_pruned: pruned trials end early with status pruned and iters_done;
    the sweep folder names the best trial with its override line; collect.py lists them apart."""
    sweep = tmp_path / "sweep"
    multirun(["hparams_search=optuna_lr_pruned", f"image={image_file(16, 16, 3)}", *TINY, "iters=40", "eval_every=5",
              "log_every=10", "hydra.sweeper.n_trials=6", "hydra.sweeper.pruner.min_resource=10"], sweep)
    study = study_of(sweep, "dip_lr_pruned")
    states = [t.state.name for t in study.get_trials()]
    assert len(states) == 6 and "PRUNED" in states and "COMPLETE" in states, states
    for t in study.get_trials():
        m = metrics(sweep / f"trial_{t.number:04d}")
        if t.state.name == "PRUNED":
            assert m["status"] == "pruned" and m["iters_done"] < 40 and m["iters_done"] % 10 == 0
        else:
            assert m["status"] == "completed" and m["iters_done"] == 40
            assert t.value == pytest.approx(m["psnr_best"])
    best = yaml.safe_load((sweep / "optuna_best.yaml").read_text())
    assert best["best_value"] == pytest.approx(study.best_value)
    assert best["overrides"].startswith("optim.lr=") and "reg_noise_std=" in best["overrides"]
    for name in ("trials.csv", "search.md", "search_params.png", "search_curves.png"):
        assert (sweep / name).is_file(), name
    rows = summary_rows(sweep)
    assert sorted(r["status"] for r in rows) == sorted("pruned" if s == "PRUNED" else "completed" for s in states)
    text = (sweep / "summary.md").read_text()
    assert "Search best: trial" in text and "## Search trials" in text


@pytest.mark.slow
def test_a_relaunch_continues_the_study_and_reruns_what_a_dead_sweeper_left(tmp_path, image_file):
    """The same search into the same folder: finished trials stay (their folders untouched),
    n_trials counts the whole study, and a trial left running by a sweeper that died (as a kill
    leaves it) is marked failed and its budget run again: the study ends with n_trials trials."""
    sweep = tmp_path / "sweep"
    args = ["hparams_search=optuna_lr", f"image={image_file(16, 16, 3)}", *TINY]
    multirun([*args, "hydra.sweeper.n_trials=2"], sweep)
    first = {p: (p / "metrics.json").stat().st_mtime_ns for p in trial_dirs(sweep)}
    assert len(first) == 2
    study = study_of(sweep)  # a sweeper on this machine that died while its trial 2 ran
    dead = study.ask()
    dead.set_user_attr("sweeper", f"{socket.gethostname()}:{2 ** 22 + 12345}:dead")
    proc = multirun([*args, "hydra.sweeper.n_trials=4"], sweep)
    assert "trial 2 was left running by a sweeper that stopped" in proc.stdout + proc.stderr
    study = study_of(sweep)
    assert len(counted(study)) == 4 and all(t.state.name == "COMPLETE" for t in counted(study))
    assert study.get_trials()[2].state.name == "FAIL" and study.get_trials()[2].user_attrs["stale"]
    assert all((p / "metrics.json").stat().st_mtime_ns == t for p, t in first.items())  # not rerun
    assert len(trial_dirs(sweep)) == 4
    multirun([*args, "hydra.sweeper.n_trials=4"], sweep)  # nothing left to run
    assert len(study_of(sweep).get_trials()) == 5


def test_two_sweepers_feed_one_study(tmp_path, image_file):
    """Two `dip-restore -m` processes on one storage at once: n_trials in all, no trial run twice."""
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "dip_lightning", "-m", "hparams_search=optuna_lr", f"image={image_file(16, 16, 3)}",
           *TINY, "hydra.sweeper.n_trials=6", f"hydra.sweep.dir={sweep}"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-2000:] + outs[1][-2000:]
    study = study_of(sweep)
    done = counted(study)
    assert len(done) == 6 and all(t.state.name == "COMPLETE" for t in done)
    assert len({t.number for t in study.get_trials()}) == len(study.get_trials())
    assert len({t.user_attrs["sweeper"] for t in done}) == 2  # both fed it
    ran = [p for p in trial_dirs(sweep) if (p / "metrics.json").is_file()]
    assert sorted(int(p.name[6:]) for p in ran) == sorted(t.number for t in done)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "gpus", "submitit_local"])
def test_the_search_runs_on_every_launcher(tmp_path, image_file, launcher):
    """Two trials per batch through joblib, the gpus launcher (faked GPUs) and submitit's local
    executor, over a key only some configs have (++method.alpha of method=selfguided)."""
    sweep = tmp_path / "sweep"
    extra = {"joblib": ["hydra.launcher.n_jobs=2"], "gpus": [], "submitit_local": ["hydra.launcher.timeout_min=10"]}
    env = {**os.environ, "DIP_FAKE_GPUS": "2"} if launcher == "gpus" else None
    multirun(["hparams_search=optuna_lr", f"hydra/launcher={launcher}", *extra[launcher],
              f"image={image_file(16, 16, 3)}",
              *TINY, "method=selfguided", "++method.alpha=interval(1.0, 3.0)", "hydra.sweeper.n_trials=2",
              "hydra.sweeper.n_jobs=2"], sweep, env=env)
    study = study_of(sweep)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "COMPLETE"]
    for t in study.get_trials():
        job = sweep / f"trial_{t.number:04d}"
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        assert f"++method.alpha={t.params['method.alpha']}" in overrides
        alpha = yaml.safe_load((job / "config.yaml").read_text())["method"]["alpha"]
        assert alpha == pytest.approx(t.params["method.alpha"])


def test_a_failing_trial_is_failed_in_the_study_and_the_search_goes_on(tmp_path, image_file):
    sweep = tmp_path / "sweep"
    multirun(["hparams_search=optuna_lr", f"image={image_file(16, 16, 3)}", *TINY, "hydra.sweeper.sampler=random",
              "task.sigma=choice(-1,25)", "hydra.sweeper.params={}", "hydra.sweeper.n_trials=4"], sweep)
    study = study_of(sweep)
    by = {t.params["task.sigma"]: t.state.name for t in study.get_trials()}
    assert by == {-1: "FAIL", 25: "COMPLETE"}
    for t in study.get_trials():
        m = metrics(sweep / f"trial_{t.number:04d}")
        assert m["status"] == ("failed" if t.params["task.sigma"] == -1 else "completed")


def test_a_search_without_ground_truth_is_refused_unless_an_objective_is_named(tmp_path, image_file):
    args = ["hparams_search=optuna_lr", f"image={image_file(16, 16, 3)}", "observed=true", *TINY,
            "hydra.sweeper.n_trials=1"]
    proc = multirun(args, tmp_path / "a", check=False)
    assert proc.returncode != 0 and "this run has none (observed=true" in proc.stderr
    multirun([*args, "hydra.sweeper.objective=psnr_obs_final"], tmp_path / "b")
    assert study_of(tmp_path / "b").get_trials()[0].value == pytest.approx(
        metrics(tmp_path / "b" / "trial_0000")["psnr_obs_final"])
    assert not job_dirs(tmp_path / "b")  # trial folders, not job numbers


@pytest.mark.slow
def test_the_search_benchmark_compares_a_pruned_search_with_the_full_one(tmp_path):
    """scripts/search_benchmark.py, shrunk: both searches run; the pruned one runs fewer steps; the
    table's steps are the trials' iters_done."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import search_benchmark

    assert search_benchmark.main(["--images", "camera", "--size", "16", "--trials", "6", "--iters", "40",
                                  "--work", str(tmp_path), *[t for t in TINY if not t.startswith("iters")],
                                  "--min-resource", "10", "eval_every=5", "log_every=10"]) == 0
    rows = {r["search"]: r for r in json.loads((tmp_path / "search_benchmark.json").read_text())}
    assert rows["full"]["steps"] == 6 * 40 and rows["full"]["pruned"] == 0
    assert rows["pruned"]["pruned"] > 0 and rows["pruned"]["steps"] < rows["full"]["steps"]
    steps = sum(metrics(p)["iters_done"] for p in trial_dirs(tmp_path / "camera" / "pruned"))
    assert rows["pruned"]["steps"] == steps
    assert "| camera | pruned |" in (tmp_path / "search_benchmark.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_killed_search_relaunched_into_its_folder_ends_with_n_trials(tmp_path, image_file):
    """SIGKILL of the search while its second trial runs; the same command again: the finished
    trial is not rerun, the killed one is failed (stale) and its budget rerun: 2 counted trials."""
    import signal
    import time

    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "dip_lightning", "-m", "hparams_search=optuna_lr", f"image={image_file(16, 16, 3)}",
           *TINY, "iters=400", "hydra.sweeper.n_trials=2", "hydra.sweeper.stale_after_s=8", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (sweep / "trial_0001" / "environment.json").is_file() and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the search ended before it could be killed"
    first = (sweep / "trial_0000" / "metrics.json").stat().st_mtime_ns
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert subprocess.run(cmd, capture_output=True, timeout=600).returncode == 0
    study = study_of(sweep)
    assert [t.state.name for t in counted(study)] == ["COMPLETE", "COMPLETE"]
    assert study.get_trials()[1].user_attrs.get("stale") and study.get_trials()[1].state.name == "FAIL"
    assert (sweep / "trial_0000" / "metrics.json").stat().st_mtime_ns == first
    assert metrics(sweep / "trial_0002")["status"] == "completed"


@pytest.mark.parametrize("kind", ["random", "tpe"])
def test_two_sweepers_with_one_seed_draw_different_trials_and_one_replays(kind):
    """The sampler is seeded per trial number: two sweepers asking one study at the same moment with
    the same seed get different parameters, and a new study with that seed draws the same again."""
    import optuna

    from dip_lightning.search.samplers import per_trial_seed

    def make(seed):
        if kind == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, constant_liar=True)

    dist = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}

    def draws():
        study = optuna.create_study(direction="maximize")
        a, b = per_trial_seed(make, 0), per_trial_seed(make, 0)  # two sweepers, one seed
        study.sampler = a
        first = study.ask(fixed_distributions=dist)
        study.sampler = b
        second = study.ask(fixed_distributions=dist)
        return first.params["lr"], second.params["lr"]

    one, two = draws(), draws()
    assert one[0] != one[1] and one == two
