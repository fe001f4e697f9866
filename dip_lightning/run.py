"""``run(cfg)``: one DIP restoration from a composed config, in five named steps (``stages``).

    check → set up the process → build (problem, module, callbacks, logger) → fit → write

A ``tile=SIZE`` run takes the tiled path (``tiled``) through the same steps. No Hydra runtime
inside: the CLI, the Python API, the scripts and the sweeps all call ``run``, and the benchmark and
the tests call ``build`` to get the very module ``run`` fits. There is one training loop:
Lightning's, in ``stages.fit``.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig
from pytorch_lightning.utilities.exceptions import SIGTERMException

from dip_lightning.instantiate import instantiate
from dip_lightning.loggers import finish_logger, log_summary
from dip_lightning.outputs import write_outputs
from dip_lightning.problem import build_fits
from dip_lightning.resume import keep_latest
from dip_lightning.signals import SIGTERM_EXIT, TermGuard
from dip_lightning import stages
from dip_lightning.stages import Built
from dip_lightning.tiled import run_tiled

log = logging.getLogger(__name__)


def build(cfg: DictConfig, image: torch.Tensor | None = None, out_dir: Path | None = None,
          make_task=None, observations: torch.Tensor | None = None) -> Built:
    """The fits (observation, net, z; K when packed), the memory check, the DIPModule, the
    callbacks and the logger. ``image`` (C, H, W) replaces ``cfg.image``; ``out_dir`` defaults to
    ``cfg.paths.output_dir``. ``make_task`` (a callable) replaces ``cfg.task``; ``observations``
    (B, …) are measurements to fit as given, one fit each (``build_fits``)."""
    out_dir = Path(cfg.paths.output_dir) if out_dir is None else out_dir
    method = instantiate(cfg.method) if cfg.get("method") else None
    fits = build_fits(cfg, image, instantiate(cfg.input), make_task, observations, method)
    return stages.assemble(cfg, fits, method, out_dir)


def run(cfg: DictConfig, image: torch.Tensor | None = None, make_task=None) -> dict:
    """Restore one image (or K packed ones) as ``cfg`` says; ``tile=SIZE``: tile by tile
    (``dip_lightning/tiled.py``).

    Returns ``{"metrics", "restored", "output_dir", ...}``; when packed, ``"fits"`` holds one such
    dict per fit. ``image`` (a (C, H, W) tensor) replaces ``cfg.image`` when given (the Python API),
    ``make_task`` (a callable returning a task) replaces ``cfg.task``.
    A run stopped by Ctrl-C or SIGTERM at any moment, or by an error during the fit, still writes
    what it has, with ``status`` ``interrupted`` / ``failed`` in metrics.json, then re-raises; after
    a SIGTERM the process exits with 143 (``signals.TermGuard``).
    """
    with TermGuard() as guard:
        if cfg.get("tile"):
            results = run_tiled(cfg, guard, image, make_task)
        else:
            results = run_whole(cfg, guard, image, make_task)
        if guard.received:  # while the run wound down (logger, summary): its outputs are complete, now stop
            raise SystemExit(SIGTERM_EXIT)
    return results


def run_whole(cfg: DictConfig, guard: TermGuard, image: torch.Tensor | None = None, make_task=None) -> dict:
    """``run`` for a whole image: check, set up, build, fit, write."""
    t0 = time.perf_counter()
    out_dir = stages.check(cfg)
    log.info("run folder: %s", out_dir)
    with stages.stoppable(out_dir, guard):
        stages.set_up(cfg, out_dir)
        built = build(cfg, image, out_dir, make_task)

    def write(status: str, reason: str | None = None) -> dict:
        return write_outputs(cfg, built.module, built.fits, built.callbacks, out_dir,
                             wall_s=time.perf_counter() - t0, status=status, reason=reason)

    try:
        try:
            status, reason = stages.fit(cfg, built, guard)
        except BaseException as exc:  # Lightning turns Ctrl-C into SystemExit; SIGTERM raises SIGTERMException
            stopped = isinstance(exc, (KeyboardInterrupt, SystemExit))
            guard.quiet = True  # a second SIGTERM never cuts the outputs short
            if built.module.global_step > 0:
                write("interrupted" if stopped else "failed", stages.stop_reason(exc, guard) if stopped else
                      f"{type(exc).__name__}: {exc}".strip(": "))
            elif stopped:
                stages.interrupted(out_dir, exc, guard)
            if isinstance(exc, SIGTERMException) or guard.received:  # Lightning's SystemExit() would exit with 0
                raise SystemExit(SIGTERM_EXIT) from exc
            raise
        results = write(status, reason)
        if guard.received:  # asked to stop while the outputs were written: they are complete, now stop
            raise SystemExit(SIGTERM_EXIT)
        if "checkpoint" in built.callbacks and not cfg.get("ckpt_keep_all", True):
            keep_latest(out_dir)
        if reason:
            (log.info if status == "pruned" else log.error)(reason)
        log_summary(built.logger, results["metrics"])
    finally:
        finish_logger(built.logger)
    log.info(stages.summary_line(results))
    return results
