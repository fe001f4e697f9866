"""Sweeps: the commands of docs/sweeps.md, shrunk (tiny image and net, 3 steps, one thread).

Hydra multirun with the basic, joblib, gpus (one GPU slot per worker, faked) and submitit-local
launchers, W&B sweep commands expanded as `wandb agent` does, a failing job, and
scripts/collect.py on each sweep folder.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY_NET

ROOT = Path(__file__).resolve().parent.parent
SWEEPS_DOC = ROOT / "docs" / "sweeps.md"  # the documentation's page on sweeps and search
COLLECT = ROOT / "scripts" / "collect.py"
TINY = ["iters=3", "input.depth=4", "threads=1", "trainer.enable_progress_bar=false", "snapshot_every=0", *TINY_NET]
SIZE_KEYS = {"image", "resize", "iters", "logger", "logger.mode"}  # replaced by the test's own values

pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e '.[sweeps]'")


# --- helpers -----------------------------------------------------------------------------------

def sweeps_section() -> str:
    return SWEEPS_DOC.read_text()


def readme_lines(prefix: str) -> list[str]:
    """Command lines of the Sweeps section's bash blocks that start with ``prefix`` (comments cut)."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", sweeps_section(), flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(prefix):
                lines.append(line)
    return lines


def readme_sweep(marker: str) -> list[str]:
    """The overrides of the docs' `dip-restore -m ...` command that contains ``marker``."""
    for line in readme_lines("dip-restore -m "):
        if marker in line:
            return shlex.split(line)[2:]
    raise AssertionError(f"docs/sweeps.md has no `dip-restore -m` command with {marker!r}")


def shrink(args: list[str], image: Path, jobs: int) -> list[str]:
    """The docs' overrides on a tiny problem: size keys replaced, swept lists cut to at most ``jobs`` jobs."""
    out, n = [], 1
    for arg in args:
        key, _, value = arg.partition("=")
        if key in SIZE_KEYS:
            continue
        if "," in value and not re.match(r"^[\[{]|^\w+\(", value):  # a sweep list, not [a,b] or choice(...)
            values = value.split(",")
            keep = 2 if n * 2 <= jobs else 1
            n *= keep
            value = ",".join(values[:keep])
        out.append(f"{key}={value}")
    return [*out, f"image={image}", *TINY]


def multirun(args: list[str], sweep: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m dip_lightning -m ARGS hydra.sweep.dir=SWEEP``."""
    cmd = [sys.executable, "-m", "dip_lightning", "-m", *args, f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, f"{shlex.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def job_dirs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def metrics(job: Path) -> dict:
    return json.loads((job / "metrics.json").read_text())


def offline_runs(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("offline-run-*") if p.is_dir())


def load_collect():
    spec = importlib.util.spec_from_file_location("collect", COLLECT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def summary_rows(sweep: Path) -> list[dict]:
    """collect.py's table (in process), read back from jobs.csv."""
    load_collect().collect(sweep)
    for name in ("jobs.csv", "summary.md", "summary.png"):
        assert (sweep / name).is_file(), name
    with open(sweep / "jobs.csv") as f:
        return list(csv.DictReader(f))


# --- Hydra launchers ---------------------------------------------------------------------------

def check_wandb_sweep(sweep: Path, cli: bool) -> list[Path]:
    """4 completed jobs with 4 distinct W&B runs, and collect.py's table with 4 rows (``cli``: run the
    the docs' `python scripts/collect.py` command, else in process)."""
    jobs = job_dirs(sweep)
    assert len(jobs) == 4
    assert all(metrics(j)["status"] == "completed" and metrics(j)["iters_done"] == 3 for j in jobs)
    run_ids = [run.name for j in jobs for run in offline_runs(j)]
    assert len(run_ids) == 4 and len(set(run_ids)) == 4
    if cli:
        (line,) = readme_lines("python scripts/collect.py ")
        out = subprocess.run([sys.executable, str(ROOT / shlex.split(line)[1]), str(sweep)], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        text = out.stdout
    else:
        text = load_collect().collect(sweep)
    assert "| job | status | optim.lr | seed | psnr_best |" in text, text
    rows = list(csv.DictReader(open(sweep / "jobs.csv")))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    psnrs = [float(r["psnr_best"]) for r in rows]
    assert psnrs == sorted(psnrs, reverse=True)
    for name in ("summary.md", "summary.png"):
        assert (sweep / name).is_file()
    return jobs


def test_basic_multirun_gives_each_job_its_folder_wandb_run_and_row(wandb_offline, image_file):
    """The basic launcher (jobs one after another in one process): 4 jobs, 4 W&B runs, 4 metrics.json, 4 rows."""
    sweep = wandb_offline / "sweep"
    multirun(shrink(readme_sweep("dip-restore -m optim.lr"), image_file(16, 16, 3), jobs=4) + ["logger=wandb"], sweep)
    check_wandb_sweep(sweep, cli=True)
    rows = list(csv.DictReader(open(sweep / "jobs.csv")))
    assert {(float(r["optim.lr"]), int(r["seed"])) for r in rows} == {(1e-3, 0), (1e-3, 1), (1e-2, 0), (1e-2, 1)}


def test_packed_sweep_jobs_fit_k_seeds_each(tmp_path, image_file):
    """The docs' packed sweep: 2 jobs (2 learning rates), each fitting pack=4 seeds in one net; the
    job's metrics are the means of its fits', and collect.py gives one row per job."""
    sweep = tmp_path / "sweep"
    multirun(shrink(readme_sweep("pack="), image_file(16, 16, 3), jobs=2), sweep)
    jobs = job_dirs(sweep)
    assert len(jobs) == 2
    for job in jobs:
        m = metrics(job)
        assert m["status"] == "completed" and m["fits"] == 4 and len(m["fit_metrics"]) == 4
        assert [f["seed"] for f in m["fit_metrics"]] == [0, 1, 2, 3]
        assert m["psnr_best"] == pytest.approx(sum(f["psnr_best"] for f in m["fit_metrics"]) / 4, abs=1e-3)
        assert all((job / f"fit{k}" / "restored.png").is_file() for k in range(4))
    rows = summary_rows(sweep)
    assert len(rows) == 2 and {float(r["optim.lr"]) for r in rows} == {1e-3, 1e-2}


@pytest.mark.slow
def test_joblib_launcher_two_workers(wandb_offline, image_file):
    """The plugin's own joblib launcher with 2 workers: 4 jobs, 4 W&B runs, 4 metrics.json, 4 rows."""
    sweep = wandb_offline / "sweep"
    multirun(shrink(readme_sweep("hydra/launcher=joblib"), image_file(16, 16, 3), jobs=4)
             + ["logger=wandb"], sweep)
    check_wandb_sweep(sweep, cli=False)


@pytest.mark.slow
def test_joblib_gpus_launcher_one_slot_per_worker(wandb_offline, image_file, monkeypatch):
    """hydra/launcher=gpus (the joblib launcher, n_jobs = 2 fake GPUs): 4 jobs over 2 worker processes,
    each its own W&B run; a slot is held by one process and runs one job at a time."""
    monkeypatch.setenv("DIP_FAKE_GPUS", "2")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    sweep = wandb_offline / "sweep"
    proc = multirun(shrink(readme_sweep("hydra/launcher=gpus"), image_file(16, 16, 3), jobs=4) + ["logger=wandb"],
                    sweep)
    assert "n_jobs=2" in proc.stdout + proc.stderr  # n_jobs = number of GPUs
    jobs = check_wandb_sweep(sweep, cli=False)
    records = [json.loads((j / "gpu_slot.json").read_text()) for j in jobs]
    by_slot: dict[int, list[dict]] = {}
    for r in records:
        assert r["slot"] in (0, 1) and r["device"] == str(r["slot"])
        by_slot.setdefault(r["slot"], []).append(r)
    for slot, recs in by_slot.items():
        assert len({r["pid"] for r in recs}) == 1, f"slot {slot} held by several processes: {recs}"
        recs.sort(key=lambda r: r["start"])
        for a, b in zip(recs, recs[1:]):
            assert a["end"] <= b["start"], f"two jobs on slot {slot} at once: {a} {b}"
    assert len({r["pid"] for r in records}) == len(by_slot)  # one process per slot


def test_claim_slot_is_exclusive_until_released(tmp_path):
    from dip_lightning.gpu_slots import claim_slot

    first, fd0 = claim_slot(tmp_path, 2, timeout_s=0)
    second, fd1 = claim_slot(tmp_path, 2, timeout_s=0)
    assert (first, second) == (0, 1)
    with pytest.raises(RuntimeError, match="no free GPU slot"):
        claim_slot(tmp_path, 2, timeout_s=0)
    code = f"import pathlib, dip_lightning.gpu_slots as g; g.claim_slot(pathlib.Path({str(tmp_path)!r}), 2, 0)"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert other.returncode != 0 and "no free GPU slot" in other.stderr  # another process is refused too
    os.close(fd0)
    again, fd = claim_slot(tmp_path, 2, timeout_s=0)
    assert again == 0
    os.close(fd)
    os.close(fd1)


def test_gpu_count_without_cuda(monkeypatch):
    from dip_lightning.gpu_slots import gpu_count, visible_devices

    monkeypatch.setenv("DIP_FAKE_GPUS", "3")
    assert gpu_count() == 3 and visible_devices() == ["0", "1", "2"]
    monkeypatch.delenv("DIP_FAKE_GPUS")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert visible_devices() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(RuntimeError, match="found no GPU"):
        gpu_count()


def compose_hydra(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from dip_lightning.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="restore", overrides=overrides, return_hydra_config=True)


def test_launcher_presets_compose(monkeypatch):
    """The docs' slurm command (one GPU per array task, partition/time/parallelism as given) and joblib one."""
    monkeypatch.setenv("DIP_FAKE_GPUS", "3")
    hydra_args = [a for a in readme_sweep("hydra/launcher=slurm") if a.startswith("hydra")]
    launcher = compose_hydra(hydra_args).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.partition, launcher.timeout_min, launcher.array_parallelism) == (
        1, "gpu", 240, 8)
    assert compose_hydra(["hydra/launcher=gpus"]).hydra.launcher.n_jobs == 3
    joblib_args = [a for a in readme_sweep("hydra/launcher=joblib") if a.startswith("hydra")]
    joblib = compose_hydra(joblib_args).hydra.launcher
    assert joblib._target_.endswith("JoblibLauncher") and joblib.n_jobs == 2
    for name in ("joblib", "submitit_local", "submitit_slurm"):  # the plugins' own names still work
        assert compose_hydra([f"hydra/launcher={name}"]).hydra.launcher._target_


def test_submitit_local_runs_and_collects(tmp_path, image_file):
    """The slurm command's sweep through submitit's local executor (one process per job)."""
    args = [a for a in readme_sweep("hydra/launcher=slurm") if not a.startswith("hydra")]
    sweep = tmp_path / "sweep"
    multirun(shrink(args, image_file(16, 16, 3), jobs=2)
             + ["logger=none", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"], sweep)
    jobs = job_dirs(sweep)
    assert len(jobs) == 2 and all(metrics(j)["status"] == "completed" for j in jobs)
    assert (sweep / ".submitit").is_dir()
    rows = summary_rows(sweep)
    assert len(rows) == 2 and all(r["psnr_best"] for r in rows)


# --- failures ------------------------------------------------------------------------------------

def test_single_run_failure_exits_nonzero_with_failed_metrics(tmp_path, image_file):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "dip_lightning", f"image={image_file(16, 16, 3)}", "task.sigma=-1", "logger=none",
           *TINY, f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    m = metrics(out)
    assert m["status"] == "failed" and m["reason"].startswith("ValueError: task.sigma=-1: should be greater than or equal to 0")


# --- collect.py on a hand-made layout ------------------------------------------------------------

def test_collect_finds_nested_jobs_skips_hidden_folders_and_lists_missing_ones(tmp_path):
    """Jobs in nested subdirs (hydra.sweep.subdir=${hydra.job.override_dirname}), a job without metrics.json
    (killed), a decoy under .submitit; one numeric parameter varies with seeds -> metric vs parameter plot."""
    sweep = tmp_path / "sweep"
    psnr = {(0.001, 0): 20.0, (0.001, 1): 21.0, (0.01, 0): 24.0, (0.01, 1): 23.0, (0.1, 0): 18.5}
    for (lr, seed), value in psnr.items():
        job = sweep / f"optim.lr={lr}" / f"seed={seed}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"optim.lr={lr}", f"seed={seed}", "iters=9"]))
        if (lr, seed) != (0.1, 0):
            (job / "metrics.json").write_text(json.dumps({"status": "completed", "psnr_best": value, "iters_done": 9}))
    (sweep / ".submitit" / "1").mkdir(parents=True)
    (sweep / ".submitit" / "1" / "metrics.json").write_text(json.dumps({"status": "completed", "psnr_best": 99}))
    text = load_collect().collect(sweep)
    rows = list(csv.DictReader(open(sweep / "jobs.csv")))
    assert [r["psnr_best"] for r in rows] == ["24.0", "23.0", "21.0", "20.0", ""]
    assert rows[-1]["status"] == "missing" and rows[0]["job"] == "optim.lr=0.01/seed=0"
    assert list(rows[0])[:5] == ["job", "status", "optim.lr", "seed", "psnr_best"]
    assert "Fixed: `iters=9`" in text and "99" not in text
    assert (sweep / "summary.png").stat().st_size > 1000
    ascending = load_collect().collect(sweep, metric="psnr_best", ascending=True).split("---|\n", 1)[1]
    assert ascending.index("optim.lr=0.001/seed=0") < ascending.index("optim.lr=0.01/seed=0")
    load_collect().collect(sweep)


# --- W&B sweeps ----------------------------------------------------------------------------------

def expand_agent_command(command: list, params: dict, program: str | None = None) -> list[str]:
    """The command line `wandb agent` runs for one trial with ``params``, as its macro substitution does.

    ``${envvar:NAME}`` inside an item becomes $NAME (NAME when unset). An item that is one whole
    ``${macro}`` becomes the macro's list: env -> /usr/bin/env, interpreter -> python, program -> the
    sweep's program, args -> --k=v, args_no_hyphens -> k=v, args_no_equals -> --k v,
    args_no_boolean_flags -> --k=v (True: --k, False: omitted), args_json -> one JSON string,
    args_append_hydra -> +k=v, args_override_hydra -> ++k=v; an unknown macro vanishes. Values are
    written with str(), so None arrives as "None".
    """
    flags = [f"{k}={v}" for k, v in params.items()]
    macros = {
        "env": ["/usr/bin/env"],
        "interpreter": ["python"],
        "program": [program] if program else [],
        "args": ["--" + f for f in flags],
        "args_no_hyphens": flags,
        "args_no_equals": [x for k, v in params.items() for x in (f"--{k}", str(v))],
        "args_no_boolean_flags": [f"--{k}" if v is True else f"--{k}={v}" for k, v in params.items() if v is not False],
        "args_json": [json.dumps(params)],
        "args_append_hydra": ["+" + f for f in flags],
        "args_override_hydra": ["++" + f for f in flags],
    }
    out = []
    for item in command:
        item = re.sub(r"\$\{envvar:([A-Z0-9_]*)\}", lambda m: os.environ.get(m.group(1), m.group(1)), str(item))
        if item.startswith("${") and item.endswith("}"):
            out += macros.get(item[2:-1], [])
        else:
            out.append(item)
    return out


def first_values(parameters: dict) -> dict:
    """One trial's parameters: each parameter's first value (a distribution's min)."""
    out = {}
    for name, spec in parameters.items():
        out[name] = spec["values"][0] if "values" in spec else spec.get("value", spec.get("min"))
    return out


def test_expander_matches_the_agents_argument_formats():
    utils = pytest.importorskip("wandb.sdk.launch.sweeps.utils")
    params = {"optim.lr": 0.001, "seed": 0, "legacy": True, "compile": False, "name": None}
    theirs = utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    for macro in ("args", "args_no_hyphens", "args_no_equals", "args_no_boolean_flags", "args_json",
                  "args_append_hydra", "args_override_hydra"):
        assert expand_agent_command(["${" + macro + "}"], params) == theirs[macro], macro
    assert expand_agent_command(["${env}", "${interpreter}", "${program}", "${nope}"], {}, "x.py") == [
        "/usr/bin/env", "python", "x.py"]


def shrink_expanded(cmd: list[str], image: Path) -> list[str]:
    """A trial's command with the size keys replaced (W&B offline) and the tiny settings added."""
    keep = [c for c in cmd if c.lstrip("+").partition("=")[0] not in SIZE_KEYS]
    return keep + [f"image={image}", "resize=null", "logger=wandb", "logger.mode=offline", *TINY]


def readme_sweep_files() -> list[Path]:
    files = [ROOT / shlex.split(line)[2] for line in readme_lines("wandb sweep ")]
    assert files, "docs/sweeps.md has no `wandb sweep configs/sweep/...` command"
    return files


def test_wandb_sweep_commands_expand_and_run(wandb_offline, image_file, monkeypatch):
    """Every configs/sweep/*.yaml: the agent's command for one trial composes; the docs' one runs."""
    image = image_file(16, 16, 3)
    bindir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", bindir + os.pathsep + os.environ.get("PATH", ""))
    sweep_files = sorted((ROOT / "configs" / "sweep").glob("*.yaml"))
    assert set(readme_sweep_files()) <= set(sweep_files)
    for path in sweep_files:
        spec = yaml.safe_load(path.read_text())
        assert spec["metric"] in ({"name": "psnr_best", "goal": "maximize"}, {"name": "psnr/best", "goal": "maximize"})
        if "early_terminate" in spec:  # W&B's Hyperband watches a curve: psnr/best, logged at every metric row
            assert spec["metric"]["name"] == "psnr/best" and spec["early_terminate"]["type"] == "hyperband"
        params = first_values(spec["parameters"])
        cmd = expand_agent_command(spec["command"], params, spec.get("program"))
        assert cmd[0] == "/usr/bin/env" and "logger.mode=online" in cmd
        if cmd[1:4] == ["python", "-m", "dip_lightning"]:
            args = cmd[4:]
            assert args[:len(params)] == [f"{k}={v}" for k, v in params.items()]
        else:
            assert cmd[1] == "dip-restore" and (Path(bindir) / "dip-restore").is_file()
            args = cmd[2:]
            assert [f"++{k}={v}" for k, v in params.items()] == [a for a in args if a.startswith("++")]
        # every trial's overrides compose with the real configs
        from dip_lightning.api import compose_config

        cfg = compose_config(shrink_expanded(args, image) + [f"paths.output_dir={wandb_offline / path.stem}"])
        for key, value in params.items():
            assert str(cfg_select(cfg, key)) == str(value)
    # the docs' sweep: one trial run as the agent runs it (in the agent's folder, with its sweep and run ids)
    spec = yaml.safe_load(readme_sweep_files()[0].read_text())
    cmd = shrink_expanded(expand_agent_command(spec["command"], first_values(spec["parameters"])), image)
    workdir = wandb_offline / "agent"
    workdir.mkdir()
    env = {**os.environ, "WANDB_SWEEP_ID": "sweep01", "WANDB_RUN_ID": "trial0001"}
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{shlex.join(cmd)}\n{proc.stderr[-4000:]}"
    run_dir = workdir / "outputs" / "wandb_sweeps" / "sweep01" / "trial0001"  # one folder per trial
    assert metrics(run_dir)["status"] == "completed"
    assert [r.name.endswith("trial0001") for r in offline_runs(run_dir)] == [True]
    assert len(summary_rows(run_dir.parent)) == 1


def cfg_select(cfg, key: str):
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key)
