"""The run's logger (W&B offline by default, CSV, or none) and what Lightning prints.

``build_logger`` names W&B runs '<task>-<net>[-overrides]' and groups a multirun's jobs by its
sweep folder; ``finish_logger`` ends the W&B run, always (else the next job of a multirun would
log into it). ``quiet_lightning`` keeps Lightning's start-up chatter off the console.
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

from omegaconf import DictConfig

from dip_lightning.instantiate import instantiate

#: metrics.json keys copied into the W&B run's summary
SUMMARY_KEYS = ("psnr_best", "best_step", "psnr_final", "psnr_ema_final", "psnr_observed", "it_per_s",
                "es_step", "es_psnr", "es_gap", "status")

#: Lightning's info lines a DIP run does not need (GPU/TPU availability, the litlogger tip, "max_steps
#: reached"): all come through one of these loggers (lightning_utilities' ``rank_zero_info`` logs to the last set)
_LIGHTNING_INFO = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")
#: warnings a DIP run cannot act on (torch's pytree deprecation, raised inside Lightning; the step
#: index "dataset")
_NOISE = (".*LeafSpec.*", ".*does not have many workers.*", ".*The number of training batches.*",
          ".*log_every_n_steps.*",
          ".*Checkpoint directory .* exists and is not empty.*",  # resume.py's record, or the checkpoints resumed from
          # a resume mid-"epoch": the step index is the only data, so there is no loader state to lose
          ".*resuming from a checkpoint that ended before the epoch ended.*",
          # the state after the step's update is the one to checkpoint: a resume continues from it
          ".*ModelCheckpoint with manual optimization and every_n_train_steps.*",
          # ckpt_path= without ckpt_every: the checkpointer's state is only where it wrote, and this run writes none
          ".*callbacks used to create the checkpoint need to be provided.*",
          # a run is one process (configs/trainer: LightningEnvironment), yet fit() still asks whether SLURM
          # launched it, and where SLURM is installed that prints a hint to use srun
          ".*The `srun` command is available on your system but is not used.*")


def hydra_job() -> tuple[str | None, str | None]:
    """(sweep directory name, this job's overrides as 'k=v,k=v') when running under Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except Exception:  # composed without Hydra's runtime (API, tests)
        return None, None
    sweep = Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None
    return sweep, hc.job.override_dirname or None


def is_wandb(logger: Any) -> bool:
    return logger is not None and type(logger).__name__ == "WandbLogger"


def build_logger(cfg: DictConfig):
    """Instantiate ``cfg.logger`` (None for ``logger=none``)."""
    if not cfg.get("logger"):
        return None
    kwargs = {}
    if str(cfg.logger.get("_target_", "")).endswith("WandbLogger"):
        os.environ.setdefault("WANDB_SILENT", "true")
        sweep, overrides = hydra_job()
        if not cfg.logger.get("name"):
            task = str(cfg.task.get("_target_", "task")).rsplit(".", 1)[-1].lower()
            net = str(cfg.net.get("_target_", "net")).rsplit(".", 1)[-1].lower()
            kwargs["name"] = cfg.get("name") or "-".join(x for x in (task, net, overrides) if x)
        if not cfg.logger.get("group") and sweep:
            kwargs["group"] = sweep
    logger = instantiate(cfg.logger, **kwargs)
    if is_wandb(logger) and logger._wandb_init.get("anonymous") is None:
        # Lightning always passes anonymous=None, and wandb warns that the setting has no effect
        logger._wandb_init.pop("anonymous")
    return logger


def log_summary(logger, metrics: dict) -> None:
    """The headline metrics into the W&B run's summary."""
    if is_wandb(logger):
        logger.experiment.summary.update({k: metrics[k] for k in SUMMARY_KEYS if metrics.get(k) is not None})


def finish_logger(logger) -> None:
    """Close a W&B run so that the next job in this process starts its own."""
    if not is_wandb(logger):
        return
    import wandb

    if wandb.run is not None:
        wandb.finish()


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's info lines and the known harmless warnings off; both restored on exit (a run may
    live inside someone's program)."""
    loggers = [logging.getLogger(name) for name in _LIGHTNING_INFO]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        for msg in _NOISE:
            warnings.filterwarnings("ignore", message=msg)
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)
