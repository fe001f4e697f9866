"""Every workflow through ``hydra/launcher=slurm`` on a real one-node SLURM cluster that the session
starts (scripts/local_slurm.sh): the docs' sweep with the preset unedited, a cancelled array
relaunched, a quick suite with its report, a search whose array tasks feed one PostgreSQL study,
and what SLURM refuses as one line. Marked ``slurm``; skipped, with the script's reason, only where
the cluster cannot start."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from test_scripts import data_dir, load, metrics_of  # noqa: F401  (data_dir: a fixture)
from test_search import TINY, counted, study_of, trial_dirs
from test_sweeps import job_dirs, metrics, readme_lines, shrink

pytestmark = pytest.mark.slurm
optuna = pytest.importorskip("optuna", reason="pip install -e '.[sweeps]'")
ONE_CPU = ["hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]  # two jobs at once on 2 CPUs


@pytest.fixture
def slurm_env(slurm_conf, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", slurm_conf)
    return {**os.environ, "SLURM_CONF": slurm_conf}


def docs_command(marker: str) -> list[str]:
    """The overrides of docs/sweeps.md's SLURM section command holding ``marker``."""
    lines = [line for line in readme_lines("dip-restore -m ") if marker in line]
    assert lines, f"docs/sweeps.md has no dip-restore -m command with {marker!r}"
    return shlex.split(lines[-1])[2:]


def sweep(args: list[str], sweep_dir: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dip_lightning", "-m", *args, f"hydra.sweep.dir={sweep_dir}"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def submissions(sweep_dir: Path) -> list[str]:
    return [p.read_text() for p in sorted((sweep_dir / ".submitit").rglob("*_submission.sh"))]


def running_tasks(env: dict) -> int:
    out = subprocess.run(["squeue", "-h", "-r", "-t", "RUNNING", "-o", "%i"], env=env, capture_output=True, text=True)
    return len(out.stdout.split())


def test_the_docs_sweep_runs_with_the_preset_unedited(slurm_env, tmp_path, image_file):
    """The docs' command on a partition without GPUs: one array, 0 GPUs and the node's 2 CPUs asked,
    every job completed in its folder, no sacct warnings or srun hint in any log; collect.py reads it."""
    args = shrink(docs_command("hydra.launcher.partition=debug"), image_file(16, 16, 3), jobs=2)
    proc = sweep(args, tmp_path / "sweep", slurm_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (script,) = submissions(tmp_path / "sweep")
    assert "#SBATCH --array=0-1%2" in script and "--gpus-per-node=0" in script and "--cpus-per-task=2" in script
    assert [metrics(j)["status"] for j in job_dirs(tmp_path / "sweep")] == ["completed", "completed"]
    logs = proc.stdout + proc.stderr + "".join(p.read_text() for p in (tmp_path / "sweep" / ".submitit").rglob("*_log.*"))
    assert "Bypassing sacct" not in logs and "srun" not in logs
    assert logs.count("job states come from squeue") == 1
    load("collect").main([str(tmp_path / "sweep")])
    assert (tmp_path / "sweep" / "report.html").is_file()


def test_a_cancelled_array_is_finished_by_a_relaunch(slurm_env, tmp_path, image_file):
    """Three jobs, one at a time (array_parallelism=1, though two fit): the array is cancelled once
    the first completed; the multirun ends in one line; the relaunch with skip_completed=true runs
    the other two and leaves the first as it was."""
    work = tmp_path / "sweep"
    args = ["seed=0,1,2", f"image={image_file(24, 24, 3)}", *TINY, "iters=400", "hydra/launcher=slurm",
            "hydra.launcher.array_parallelism=1", *ONE_CPU]
    most, stop = [0], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            most[0] = max(most[0], running_tasks(slurm_env))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    proc = subprocess.Popen([sys.executable, "-m", "dip_lightning", "-m", *args, f"hydra.sweep.dir={work}"],
                            env=slurm_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = work / "0" / "metrics.json"
    deadline = time.time() + 300
    while time.time() < deadline and not (first.is_file() and metrics(work / "0")["status"] == "completed"):
        time.sleep(0.2)
    array = next(p.name.split("_")[0] for p in (work / ".submitit").iterdir() if "_" in p.name)
    subprocess.run(["scancel", array], env=slurm_env, check=True)
    _, err = proc.communicate(timeout=300)
    stop.set()
    watcher.join()
    assert proc.returncode == 2, err[-3000:]
    line = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and "without a result (CANCELLED)" in line[0] and "skip_completed=true" in line[0]
    assert "Traceback" not in err
    assert most[0] == 1  # array_parallelism=1 held, though the node had CPUs for two
    kept = first.stat().st_mtime_ns
    again = sweep([*args, "skip_completed=true"], work, slurm_env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [metrics(j)["status"] for j in job_dirs(work)] == ["completed"] * 3
    assert first.stat().st_mtime_ns == kept


def test_a_quick_suite_and_its_report_on_slurm(slurm_env, data_dir, tmp_path):  # noqa: F811
    work = tmp_path / "work"
    assert load("reproduce").main(["--suite", "sr-set5-x4", "--data", str(data_dir), "--quick", "--work", str(work),
                                   "--limit", "2", *TINY, "hydra/launcher=slurm", *ONE_CPU]) == 0
    jobs = metrics_of(work)
    assert set(jobs) == {("baby", 0), ("bird", 0)} and all(m["status"] == "completed" for m in jobs.values())
    assert "#SBATCH --array=0-1%2" in submissions(work)[0]
    assert (work / "report.html").is_file() and (work / "summary.csv").is_file()


@pytest.mark.postgres
def test_the_docs_search_feeds_one_postgresql_study_from_array_tasks(slurm_env, postgres_url, tmp_path, image_file):
    """The docs' search: each batch of two trials is one array, every trial reports to the one study
    on the PostgreSQL server; the study ends with n_trials complete trials, each in its folder."""
    args = [a for a in shrink(docs_command("hparams_search=optuna_lr hydra/launcher=slurm"), image_file(16, 16, 3), 4)
            if not a.startswith(("hydra.sweep.dir", "hydra.sweeper.storage", "hydra.sweeper.n_trials"))]
    name = f"dip_lr_slurm_{time.time_ns()}"
    proc = sweep([*args, "hydra.sweeper.n_trials=2", f"hydra.sweeper.storage={postgres_url}",
                  f"hydra.sweeper.study_name={name}", *ONE_CPU], tmp_path / "search", slurm_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name=name, storage=postgres_url)
    assert [t.state.name for t in counted(study)] == ["COMPLETE", "COMPLETE"]
    (script,) = submissions(tmp_path / "search")
    assert "#SBATCH --array=0-1%" in script
    assert all(metrics(d)["status"] == "completed" for d in trial_dirs(tmp_path / "search"))
    assert sorted(t.value for t in counted(study)) == sorted(metrics(d)["psnr_best"] for d in trial_dirs(tmp_path / "search"))


def test_a_killed_task_of_a_search_is_run_again(slurm_env, tmp_path, image_file):
    """A search's batch of two trials is one array; one task is cancelled mid-trial. The sweeper
    stops in one line once the other task ended, the batch's trials are failed as stale, and the
    relaunch ends with exactly n_trials complete trials, no number run twice."""
    work = tmp_path / "search"
    args = ["hparams_search=optuna_lr", f"image={image_file(24, 24, 3)}", *TINY, "iters=300",
            "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "hydra/launcher=slurm", *ONE_CPU]
    proc = subprocess.Popen([sys.executable, "-m", "dip_lightning", "-m", *args, f"hydra.sweep.dir={work}"],
                            env=slurm_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(work.glob("trial_*/environment.json"))) < 2:
        time.sleep(0.2)
    array = next(p.name.split("_")[0] for p in (work / ".submitit").iterdir() if "_" in p.name)
    subprocess.run(["scancel", f"{array}_1"], env=slurm_env, check=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "without a result (CANCELLED)" in err, err[-3000:]
    assert running_tasks(slurm_env) == 0  # the other task ran to its end before the sweeper stopped
    again = sweep(args, work, slurm_env)
    assert again.returncode == 0, again.stderr[-3000:]
    study = study_of(work)
    trials = study.get_trials()
    assert [t.state.name for t in counted(study)] == ["COMPLETE", "COMPLETE"]
    assert len([t for t in trials if t.user_attrs.get("stale")]) == 2  # the first batch, told by nobody
    assert len({t.number for t in trials}) == len(trials) == 4


@pytest.mark.parametrize("extra, says", [
    (["hydra.launcher.gpus_per_node=1"], "set hydra.launcher.gpus_per_node=0"),
    (["hydra.launcher.partition=nope"], "SLURM has no partition 'nope'"),
    (["hydra.launcher.cpus_per_task=64"], "can never start job"),
])
def test_what_slurm_refuses_is_one_line(slurm_env, tmp_path, image_file, extra, says):
    proc = sweep(["seed=0,1", f"image={image_file(16, 16, 3)}", *TINY, "hydra/launcher=slurm", *extra],
                 tmp_path / "sweep", slurm_env, timeout=300)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith(("error:", "sbatch:"))]
    assert proc.returncode == 2 and len(errors) == 1 and says in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    left = subprocess.run(["squeue", "-h", "-o", "%i"], env=slurm_env, capture_output=True, text=True).stdout
    assert left.strip() == ""  # a job that could never start was cancelled with its array
