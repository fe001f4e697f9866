"""``run(cfg)``: one DIP restoration from a composed config, the same sequence for every run:

    check → set up the process → observe and plan the regions → fit each group → write

A whole image is one region, fitted as one group (K packed fits with ``pack``); ``tile=SIZE``
cuts it into tiles, ``tile_batch`` to a group (``regions``). No Hydra runtime inside: the CLI, the
Python API, the scripts and the sweeps all call ``run``, and the benchmark and the tests call
``build`` to get the very module ``run`` fits. There is one training loop: Lightning's, in
``stages.fit``.
"""
from __future__ import annotations

import gc
import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from dip_lightning import regions, stages
from dip_lightning.instantiate import instantiate
from dip_lightning.loggers import build_logger, finish_logger, log_summary
from dip_lightning.problem import build_fits
from dip_lightning.results import collect
from dip_lightning.signals import SIGTERM_EXIT, TermGuard
from dip_lightning.stages import Built

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
    return stages.assemble(cfg, fits, method, out_dir, logger=build_logger(cfg))


def run(cfg: DictConfig, image: torch.Tensor | None = None, make_task=None) -> dict:
    """Restore one image (or K packed ones), whole or tile by tile, as ``cfg`` says.

    Returns ``{"metrics", "restored", "output_dir", ...}``; when packed, ``"fits"`` holds one such
    dict per fit. ``image`` (a (C, H, W) tensor) replaces ``cfg.image`` when given (the Python API),
    ``make_task`` (a callable returning a task) replaces ``cfg.task``.
    A run stopped by Ctrl-C or SIGTERM at any moment, or by an error during the fit, still writes
    what it has, with ``status`` ``interrupted`` / ``failed`` in metrics.json, then re-raises; after
    a SIGTERM the process exits with 143 (``signals.TermGuard``). A tiled run stopped so resumes
    when launched again with ``skip_completed=true``.
    """
    with TermGuard() as guard:
        t0 = time.perf_counter()
        out_dir = stages.check(cfg)
        log.info("run folder: %s", out_dir)
        with stages.stoppable(out_dir, guard):
            stages.set_up(cfg, out_dir)
            plan = regions.plan(cfg, image, make_task)
            logger = build_logger(cfg)
        try:
            groups: list[dict] = []
            for g in range(plan.groups):
                group = plan.done(out_dir, g)
                if group is None:
                    group = fit_group(plan, g, out_dir, guard, logger, groups, t0)
                    gc.collect()  # the group's trainer and module hold each other: free them before the next group
                groups.append(group)
            results = stages.write(plan, groups, out_dir, time.perf_counter() - t0, logger)
            if guard.received:  # asked to stop while the outputs were written: they are complete, now stop
                raise SystemExit(SIGTERM_EXIT)
            stages.tidy(plan, out_dir, results["metrics"])
            log_summary(logger, results["metrics"])
        finally:
            finish_logger(logger)
        log.info(stages.summary_line(results))
        if guard.received:  # while the run wound down (logger, summary): its outputs are complete, now stop
            raise SystemExit(SIGTERM_EXIT)
    return results


def fit_group(plan: regions.Plan, g: int, out_dir: Path, guard: TermGuard, logger, done: list[dict],
              t0: float) -> dict:
    """Build group ``g``'s fits and module, fit them, and return what they leave (``collect``).
    Cut short (``stages.cut_short``): a whole image writes what it has, a tiled run what it did."""
    built = None
    try:
        fits = plan.fits(g)
        gcfg, gdir = plan.group_config(out_dir, g), plan.folder(out_dir, g)
        built = stages.assemble(gcfg, fits, plan.method, gdir, logger=logger if plan.tiling is None else None)
        if plan.tiling is not None and "pruning" in built.callbacks:  # a search's pruner sees the image's curve at the end
            built.callbacks["curves"].listeners.remove(built.callbacks.pop("pruning"))
        status, reason = stages.fit(gcfg, built, guard)
    except BaseException as exc:  # Lightning turns Ctrl-C into SystemExit; SIGTERM raises SIGTERMException
        stages.cut_short(plan, built, exc, guard, out_dir, done, time.perf_counter() - t0)
        raise
    return plan.keep(out_dir, g, collect(built.module, fits, built.callbacks, status, reason))
