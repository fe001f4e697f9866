"""``dip-restore``: Hydra command line around ``run()`` (overrides as arguments, ``-m`` for sweeps).

The return value is the sweep objective (Optuna maximises it): ``psnr_best`` when there is ground
truth, else ``psnr_obs_final`` (PSNR of A(x̂) vs the observation: a data fit that rises as the net
fits the noise, so search with ground truth). In a multirun, a job that raises is logged with its
overrides, leaves ``metrics.json`` with ``"status": "failed"`` and returns -inf, and the sweep goes
on; a single run re-raises (exit code ≠ 0).
"""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from dip_lightning import gpu_slots, job_lock, resume
from dip_lightning.signals import stop_with_parent
from dip_lightning.config import CONFIG_DIR, computed_by, computed_config
from dip_lightning.outputs import write_json
from dip_lightning.run import run
from dip_lightning.hydra_plugins import register as register_plugins

MULTIRUN_PID = "DIP_LIGHTNING_MULTIRUN_PID"  # the pid of the process that launched the jobs (the first to import this)
os.environ.setdefault(MULTIRUN_PID, str(os.getpid()))
register_plugins()  # hydra/sweeper=dip_optuna (dip_lightning/search/), hydra/launcher=slurm

def completed_metrics(out_dir: Path, overrides: list[str]) -> dict | None:
    """The metrics of a job that already finished in ``out_dir`` with these ``overrides`` (its
    ``job.json``; for ``skip_completed``), else None: a folder left by another setting is rerun."""
    try:
        metrics = json.loads((out_dir / "metrics.json").read_text())
        done = json.loads((out_dir / "job.json").read_text())
    except (OSError, ValueError):
        return None
    if metrics.get("status") not in ("completed", "early_stopped") or \
            computed_by(done.get("overrides") or []) != computed_by(overrides):
        return None
    return metrics

GPU_LAUNCHER = "gpus"  # hydra/launcher=gpus: each worker claims one GPU slot
POOL_LAUNCHERS = ("joblib", GPU_LAUNCHER)  # jobs run in reused worker processes
#: launchers whose jobs run in processes that the multirun itself spawns: a job there stops when the multirun dies
SPAWNED_BY_MULTIRUN = (*POOL_LAUNCHERS, "submitit_local")

log = logging.getLogger(__name__)


def objective(metrics: dict, key: str | None = None) -> float | dict:
    """The sweep objective: ``metrics[key]`` (a search names it: ``optuna.objective``), else
    ``psnr_best`` (ground truth) or ``psnr_obs_final``; -inf when missing or not finite. A trial the
    search's pruner stopped returns ``{"state": "pruned", "step": …}`` (the sweeper tells the study)."""
    if metrics.get("status") == "pruned":
        return {"state": "pruned", "step": metrics.get("iters_done")}
    value = metrics.get(key) if key else None
    if value is None and not key:
        value = metrics.get("psnr_best")
        if value is None:
            value = metrics.get("psnr_obs_final")
    if value is None or not math.isfinite(float(value)):
        return float("-inf")
    return float(value)


def job_output_dir(cfg: DictConfig) -> Path:
    """The job's folder: ``cfg.paths.output_dir``, or Hydra's when that does not resolve."""
    try:
        return Path(str(cfg.paths.output_dir))
    except Exception:
        return Path(HydraConfig.get().runtime.output_dir)


#: mistakes a user can make (bad value, missing file, too big): reported as one line, exit code 2
USER_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, MemoryError, ImportError)


def user_error(exc: BaseException) -> BaseException:
    """The innermost cause of ``exc`` (Hydra wraps constructor errors)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def failure_reason(exc: BaseException) -> str:
    """'Type: message' of the innermost cause (e.g. the ValueError inside Hydra's InstantiationException), one line."""
    exc = user_error(exc)
    return " ".join(f"{type(exc).__name__}: {exc}".split()).rstrip(":")


def record_failure(out_dir: Path, reason: str, overrides: list[str], started: float) -> None:
    """Leave ``metrics.json`` with status failed and the reason, unless ``run()`` wrote one for this job."""
    path = out_dir / "metrics.json"
    if path.is_file() and path.stat().st_mtime >= started - 1.0:  # 1 s: file times may lag time.time()
        return  # run() failed during fitting and already wrote its outputs so far
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, {"status": "failed", "reason": reason, "overrides": overrides, "iters_done": 0,
                      "output_dir": str(out_dir)})


def stop_process(code: int, slot: tuple | None, out_dir: Path, started: float) -> None:
    """End this process after a SIGTERM'd job: a launcher's pool worker (``POOL_LAUNCHERS``) would
    catch the SystemExit and wait for more jobs, outliving the sweep it belonged to."""
    if slot is not None:
        gpu_slots.write_slot_record(out_dir, *slot, start=started, end=time.time())
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="restore")
def main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    launcher = hc.runtime.choices.get("hydra/launcher", "basic") if multirun else None
    slot = gpu_slots.ensure_slot(gpu_slots.lock_dir_for(hc.sweep.dir)) if launcher == GPU_LAUNCHER else None
    out_dir = job_output_dir(cfg)
    with job_lock.held(out_dir) as mine:
        if mine:
            return job(cfg, out_dir, hc, launcher, slot)
    msg = (f"{out_dir} is being run by another process ({job_lock.holder(out_dir)}); "
           "wait for it to end or stop it, or give another output folder")
    if not multirun:
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
    log.error("job %s skipped: %s", hc.job.num, msg)
    return float("-inf")


def job(cfg: DictConfig, out_dir: Path, hc, launcher: str | None, slot: tuple | None) -> float:
    """One job in its folder, whose lock this process holds: skipped when it completed before,
    resumed when it was cut short, else run; a failure is recorded (and in a multirun, survived).
    ``launcher``: the multirun's (None for a single run)."""
    multirun, overrides = launcher is not None, list(hc.overrides.task)
    started = time.time()
    if launcher in SPAWNED_BY_MULTIRUN and os.environ.get(MULTIRUN_PID) != str(os.getpid()):
        stop_with_parent()  # a spawned job stops when its multirun dies (SIGKILL, OOM); one run in-process does not
    done = completed_metrics(out_dir, overrides) if cfg.get("skip_completed") else None
    if done is not None:  # a relaunch of the sweep: this job already completed
        log.info("skipped (completed before): %s", out_dir)
        return objective(done, search_objective(cfg))
    try:
        given = cfg.get("ckpt_path")
        ckpt = resume.prepare(out_dir, computed_config(cfg), int(cfg.get("ckpt_every") or 0),
                              resume=bool(cfg.get("skip_completed")), given=Path(given) if given else None)
        if ckpt is not None:  # an interrupted job of this sweep continues from its last checkpoint
            log.info("resuming (interrupted before): %s", ckpt)
            cfg.ckpt_path = str(ckpt)
        metrics = run(cfg)["metrics"]
        write_json(out_dir / "job.json", {"overrides": computed_by(overrides)})
    except SystemExit as exc:
        if launcher in POOL_LAUNCHERS and exc.code == 128 + signal.SIGTERM:  # run() wrote status interrupted
            stop_process(exc.code, slot, out_dir, started)
        raise
    except Exception as exc:
        reason = failure_reason(exc)
        record_failure(out_dir, reason, overrides, started)
        if not multirun:
            if isinstance(user_error(exc), USER_ERRORS):  # one clear line, no traceback
                print(f"error: {user_error(exc)}", file=sys.stderr)
                sys.exit(2)
            raise
        log.error("job %s failed [%s]: %s (metrics.json in %s)", hc.job.num,
                  " ".join(overrides) or "no overrides", reason, out_dir)
        return float("-inf")
    finally:
        if slot is not None:
            gpu_slots.write_slot_record(out_dir, *slot, start=started, end=time.time())
    return objective(metrics, search_objective(cfg))


def search_objective(cfg: DictConfig) -> str | None:
    """The metric a search's trial is scored by (``optuna.objective``), or None outside a search."""
    trial = cfg.get("optuna")
    return None if trial is None else trial.get("objective")


if __name__ == "__main__":
    main()
