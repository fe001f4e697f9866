"""The steps of a run (``run.run``), the same for a whole image and for tiles:

    check → set up the process → (plan the regions) → per group: assemble, fit → write → tidy

and what a run cut short leaves (``cut_short``, ``interrupted``, ``stoppable``), and its one-line
summary.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from dip_lightning import malloc as cpu_malloc
from dip_lightning.callbacks.curves import CurveLogger
from dip_lightning.callbacks.divergence import DivergenceGuard
from dip_lightning.callbacks.progress import PSNRProgressBar
from dip_lightning.callbacks.snapshots import Snapshots
from dip_lightning.callbacks.stop_on_signal import StopOnSignal
from dip_lightning.callbacks.throughput import Throughput
from dip_lightning.checks import check_memory, check_values, run_device, writable_dir
from dip_lightning.data import step_loader
from dip_lightning.instantiate import instantiate
from dip_lightning.layout import resolve_memory_format
from dip_lightning.loggers import quiet_lightning
from dip_lightning.module import DIPModule
from dip_lightning.nets.blocks import count_parameters
from dip_lightning.nets.upsample import set_deterministic
from dip_lightning.outputs import fit_dir, write_fits, write_json
from dip_lightning.packing import PackedTask, pack_nets
from dip_lightning.problem import Fit
from dip_lightning.provenance import environment
from dip_lightning.results import collect
from dip_lightning.resume import check_checkpoint, keep_latest
from dip_lightning.signals import SIGTERM_EXIT, TermGuard
from dip_lightning.tiled_outputs import write_tiled

log = logging.getLogger(__name__)


@dataclass
class Built:
    """Everything a fit needs, made from the config: the module, its fits, callbacks by role, logger."""

    module: DIPModule
    fits: list[Fit]
    callbacks: dict[str, pl.Callback]
    logger: object | None


def check(cfg: DictConfig) -> Path:
    """The values a user can get wrong, and the output folder: return it, created and writable."""
    check_values(cfg)
    return writable_dir(Path(cfg.paths.output_dir))


def set_up(cfg: DictConfig, out_dir: Path) -> None:
    """This process for the run: threads, allocator, seeds, determinism; record config and environment."""
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    malloc_reuse = cpu_malloc.apply(str(cfg.get("cpu_malloc", "reuse")))
    deterministic = bool(cfg.get("deterministic", False))
    set_deterministic(deterministic)
    pl.seed_everything(int(cfg.seed), verbose=False)
    write_json(out_dir / "environment.json",
               {**environment(int(cfg.seed), deterministic, run_device(cfg)), "cpu_malloc_reuse": malloc_reuse})


def assemble(cfg: DictConfig, fits: list[Fit], method, out_dir: Path, logger=None) -> Built:
    """One (packed) net, operator, input and DIPModule for ``fits``, after the memory check; the
    callbacks writing to ``out_dir``; the ``logger`` the fit logs to (None: none)."""
    k = len(fits)
    net = pack_nets([f.net for f in fits])
    task = fits[0].task if k == 1 else PackedTask([f.task for f in fits])
    z = torch.cat([f.z for f in fits], 1)
    cpu_malloc.release()  # an earlier run's heap, kept by cpu_malloc=reuse, is free memory again
    y = torch.cat([f.prob.y_padded for f in fits], 1)
    channels = sum(f.channels for f in fits)
    check_memory(net, z.shape[1], fits[0].prob.canvas, cfg, out_channels=channels)
    if cfg.get("compile"):
        net = torch.compile(net, mode=str(cfg.get("compile_mode") or "default"))
    weights, held = [f.prob.weight for f in fits], [f.prob.holdout for f in fits]
    holdout_mask = None if all(h is None for h in held) else torch.cat(
        [(torch.zeros_like(f.prob.y_padded) if h is None else h.expand_as(f.prob.y_padded)) for f, h in zip(fits, held)], 1)
    loss_weight = None if all(w is None for w in weights) else torch.cat(
        [(torch.ones_like(f.prob.y_padded) if w is None else w.expand_as(f.prob.y_padded)) for f, w in zip(fits, weights)], 1)
    if holdout_mask is not None:  # the held-out pixels leave the data term
        loss_weight = (1 - holdout_mask) if loss_weight is None else loss_weight * (1 - holdout_mask)
    gts = [f.prob.x_true for f in fits]
    module = DIPModule(
        net=net, task=task, optimizer=instantiate(cfg.optim), z=z, y=y,
        x_true=None if gts[0] is None else torch.cat(gts, 1), box=fits[0].prob.box, iters=int(cfg.iters),
        reg_noise_std=float(cfg.reg_noise_std), exp_weight=cfg.exp_weight, backtrack_db=cfg.backtrack_db,
        tv_weight=float(cfg.tv_weight), eval_every=int(cfg.eval_every), memory_format=resolve_memory_format(str(cfg.memory_format), run_device(cfg)),
        fits=k, seeds=[f.seed for f in fits], out_channels=channels,
        method=method, loss_weight=loss_weight, holdout_mask=holdout_mask)
    return Built(module, fits, build_callbacks(cfg, out_dir, k), logger)


def build_callbacks(cfg: DictConfig, out_dir: Path, fits: int = 1) -> dict[str, pl.Callback]:
    """The run's callbacks by role (throughput, curves, divergence, snapshots, es, checkpoint, progress)."""
    cbs: dict[str, pl.Callback] = {
        "throughput": Throughput(warmup=int(cfg.warmup_steps)),
        "curves": CurveLogger(log_every=int(cfg.log_every)),
        "divergence": DivergenceGuard(int(cfg.max_backtracks), check_every=int(cfg.eval_every)),
        "snapshots": Snapshots([fit_dir(out_dir, i, fits) / "snapshots" for i in range(fits)], int(cfg.iters),
                               every=int(cfg.snapshot_every or 0), log_spaced=bool(cfg.snapshot_log_spaced)),
    }
    if cfg.get("es"):
        cbs["es"] = instantiate(cfg.es)
    trial = cfg.get("optuna")
    if trial is not None and trial.get("trial") is not None:  # a search's trial: report its curve, stop if pruned
        from dip_lightning.search.pruning import TrialReporter

        cbs["pruning"] = TrialReporter(trial.trial, trial.study, trial.storage, trial.get("objective") or "psnr_best")
        cbs["curves"].listeners.append(cbs["pruning"])
    if int(cfg.get("ckpt_every") or 0) > 0:
        cbs["checkpoint"] = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="step_{step:06d}",
                                            auto_insert_metric_name=False, every_n_train_steps=int(cfg.ckpt_every),
                                            save_top_k=-1 if cfg.get("ckpt_keep_all", True) else 1,
                                            save_last=False)
    if cfg.trainer.get("enable_progress_bar", True):
        cbs["progress"] = PSNRProgressBar(cbs["curves"], refresh_rate=int(cfg.get("progress_every", 10)))
    return cbs


def fit(cfg: DictConfig, built: Built, guard: TermGuard | None = None) -> tuple[str, str | None]:
    """Lightning's loop over the step index. Returns (status, reason): ``completed``,
    ``early_stopped``, ``pruned`` or ``diverged`` (with why). From here a SIGTERM that ``guard``
    records ends the loop at the next step boundary, also one that arrives during the checkpoint
    restore (``StopOnSignal``)."""
    if guard is not None:
        guard.quiet = True
    if built.logger is not None:
        built.logger.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True),
                                      "params": count_parameters(built.fits[0].net)})
    cbs = built.callbacks
    if cfg.get("ckpt_path"):
        check_checkpoint(cfg.ckpt_path, built.module)
    with quiet_lightning():
        trainer: pl.Trainer = instantiate(cfg.trainer, logger=built.logger if built.logger is not None else False,
                                          callbacks=[*cbs.values(), *([StopOnSignal(guard)] if guard else [])],
                                          enable_checkpointing="checkpoint" in cbs)
        trainer.fit(built.module, train_dataloaders=step_loader(int(cfg.iters)), ckpt_path=cfg.get("ckpt_path"))
    es, diverged = cbs.get("es"), cbs["divergence"].reason
    if diverged:
        return "diverged", diverged
    if es is not None and es.stopped:  # a fit that early stopping ended is complete, even if a pruner spoke too
        return "early_stopped", None
    if "pruning" in cbs and cbs["pruning"].pruned_at is not None:
        return "pruned", f"the search's pruner stopped the trial at step {cbs['pruning'].pruned_at}"
    return "completed", None


def write(plan, groups: list[dict], out_dir: Path, wall_s: float, logger=None) -> dict:
    """The run's files from its groups' results: a whole image's fits (``outputs.write_fits``), or
    the tiles assembled into the image (``tiled_outputs.write_tiled``, its curve to ``logger``)."""
    if plan.tiling is None:
        return write_fits(plan.cfg, groups[0], plan.whole_fits, out_dir, wall_s)
    return write_tiled(plan.cfg, plan.whole, plan.tiling, groups, out_dir, wall_s, plan.batch, logger)


def tidy(plan, out_dir: Path, metrics: dict) -> None:
    """After the files: ``ckpt_keep_all=false`` keeps only the latest checkpoint; why a run ended
    early (diverged, pruned), logged."""
    cfg = plan.cfg
    if plan.tiling is None and int(cfg.get("ckpt_every") or 0) > 0 and not cfg.get("ckpt_keep_all", True):
        keep_latest(out_dir)
    if metrics.get("reason"):
        (log.info if metrics["status"] == "pruned" else log.error)(metrics["reason"])


def cut_short(plan, built: Built | None, exc: BaseException, guard: TermGuard, out_dir: Path, done: list[dict],
              wall_s: float) -> None:
    """A run stopped (Ctrl-C, SIGTERM) or failed while a group was built or fitted: a whole image
    fitted for a step or more writes its files with status ``interrupted`` / ``failed``; else a
    stop leaves metrics.json ``interrupted`` with the plan's progress (a tiled run's groups done).
    A SIGTERM then exits with 143 (Lightning's ``SystemExit()`` would exit with 0)."""
    stopped = isinstance(exc, (KeyboardInterrupt, SystemExit))
    guard.quiet = True  # a second SIGTERM never cuts the files short
    if plan.tiling is None and built is not None and built.module.global_step > 0:
        status, reason = (("interrupted", stop_reason(exc, guard)) if stopped
                          else ("failed", f"{type(exc).__name__}: {exc}".strip(": ")))
        write(plan, [collect(built.module, built.fits, built.callbacks, status, reason)], out_dir, wall_s)
    elif stopped:
        interrupted(out_dir, exc, guard, **plan.progress(done))
    if isinstance(exc, SIGTERMException) or guard.received:
        raise SystemExit(SIGTERM_EXIT) from exc


def interrupted(out_dir: Path, exc: BaseException, guard: TermGuard, **keys) -> None:
    """metrics.json of a run stopped before it had outputs to write: status ``interrupted``, the
    signal or exception, ``keys`` (e.g. ``iters_done``). Nothing stops the write (``guard.quiet``)."""
    guard.quiet = True
    write_json(out_dir / "metrics.json", {"status": "interrupted", "reason": stop_reason(exc, guard), "iters_done": 0,
                                          **keys, "output_dir": str(out_dir)})


def stop_reason(exc: BaseException, guard: TermGuard) -> str:
    return "SIGTERM" if guard.received else (f"{type(exc).__name__}: {exc}".strip(": ") or type(exc).__name__)


@contextmanager
def stoppable(out_dir: Path, guard: TermGuard):
    """Around the steps before the fit: Ctrl-C or SIGTERM there leaves metrics.json, ``interrupted``."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit) as exc:
        interrupted(out_dir, exc, guard)
        raise


def summary_line(results: dict) -> str:
    """One line: the PSNRs, the time and where the files are."""
    m = results["metrics"]
    parts = [m["status"]]
    for key, name in (("psnr_observed", "observed"), ("psnr_final", "final"), ("psnr_ema_final", "EMA"),
                      ("psnr_best", "best")):
        if m.get(key) is not None:
            at = f" @ {m['best_step']}" if (key == "psnr_best" and m.get("best_step")) else ""
            parts.append(f"{name} {m[key]:.2f} dB{at}")
    if m.get("psnr_best") is None and m.get("psnr_obs_final") is not None:
        parts.append(f"fit to the observation {m['psnr_obs_final']:.2f} dB")
    rate = f", {m['it_per_s']:.2f} it/s" if m.get("it_per_s") else ""
    if m.get("fits"):
        parts.append(f"means of {m['fits']} packed fits")
    return f"{', '.join(parts)} | {m['iters_done']} steps in {m['wall_s']:.0f} s{rate} | {results['output_dir']}"
