"""``run(cfg)``: one DIP restoration from a composed config. No Hydra inside: the CLI, the Python
API, scripts and sweeps all call this function, so there is exactly one code path."""
from __future__ import annotations

import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pytorch_lightning.callbacks import ModelCheckpoint

from dip_lightning.callbacks import CurveLogger, DivergenceGuard, PSNRProgressBar, Snapshots, Throughput
from dip_lightning.data import step_loader
from dip_lightning import malloc as cpu_malloc
from dip_lightning.io import (center_crop_to_multiple, crop, lcm, load_alpha, load_image, pad_amounts, pil_resize,
                              save_image)
from dip_lightning.memory import available_bytes, estimate_step_bytes
from dip_lightning.module import DIPModule, psnr, ssim
from dip_lightning.nets.blocks import count_parameters, set_deterministic
from dip_lightning.provenance import environment
from dip_lightning.outputs import panel, plot_curves, write_json
from dip_lightning.packing import PackedTask, pack_nets
from dip_lightning.tasks.base import Task


def build(node, **kwargs):
    """``hydra.utils.instantiate`` that surfaces a constructor's own ValueError / FileNotFoundError
    (our one-line messages) instead of Hydra's wrapper."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, (ValueError, FileNotFoundError)):
            raise exc.__cause__ from None
        raise


@dataclass
class Problem:
    """A prepared restoration: padded observation, ground truth (or None), crop box on the canvas."""

    y: torch.Tensor          # observation (1, C, h, w), unpadded
    y_padded: torch.Tensor   # observation padded to the network's multiple
    x_true: torch.Tensor | None
    box: tuple[int, int, int, int]  # (top, left, H, W) of the restored image on the canvas
    canvas: tuple[int, int]


def prepare_problem(image: torch.Tensor, task: Task, multiple: int, observed: bool, fit_size: str,
                    generator: torch.Generator, min_size: int | None = None) -> Problem:
    """Make (or adopt) the observation and pad it so the restored canvas is a multiple of the net's.

    ``fit_size='pad'``: reflection-pad the observation (and operator state, e.g. the mask) and crop
    the result back, so every pixel is restored. ``'crop'``: the original code's centre crop to a
    multiple (borders are lost; the restored image is smaller than the input). The canvas is at
    least ``min_size`` (default two multiples: BatchNorm at the deepest level needs > 1 value per
    channel, reflection padding needs more pixels than it pads).
    """
    if fit_size not in ("pad", "crop"):
        raise ValueError(f"fit_size={fit_size!r}; choose pad (keep every pixel) or crop (the original's centre crop)")
    s = int(task.scale)
    obs_multiple = lcm(multiple, s) // s  # observation pixels per canvas multiple
    x = image[None]
    if observed or task.blind:
        if fit_size == "crop":
            h0, w0 = x.shape[-2:]
            x = center_crop_to_multiple(x, obs_multiple)
            task.crop_like(((h0 - x.shape[-2]) // 2, (w0 - x.shape[-1]) // 2, *x.shape[-2:]))
        y, x_true = task.adopt(x), None
    else:
        x_true = task.crop_ground_truth(x)
        if fit_size == "crop":
            x_true = center_crop_to_multiple(x_true, lcm(multiple, s))
        y = task.simulate(x_true, generator)
    h, w = y.shape[-2:]
    min_obs = -(-int(min_size or 2 * multiple) // s)
    (pt, pb), (pl_, pr) = pad_amounts(h, obs_multiple, min_obs), pad_amounts(w, obs_multiple, min_obs)
    pads = (pt, pb, pl_, pr)
    y_padded = task.pad_observation(y, pads)
    task.pad(pads)
    canvas = (y_padded.shape[-2] * s, y_padded.shape[-1] * s)
    box = (pt * s, pl_ * s, h * s, w * s)
    return Problem(y=y, y_padded=y_padded, x_true=x_true, box=box, canvas=canvas)


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


def build_logger(cfg: DictConfig, out_dir: Path):
    """Instantiate ``cfg.logger``. W&B runs are named '<task>-<net>[-overrides]' (or ``cfg.name``) and,
    in a multirun, grouped by the sweep directory."""
    if not cfg.get("logger"):
        return None
    kwargs = {}
    target = str(cfg.logger.get("_target_", ""))
    if target.endswith("WandbLogger"):
        os.environ.setdefault("WANDB_SILENT", "true")
        sweep, overrides = hydra_job()
        if not cfg.logger.get("name"):
            task = str(cfg.task.get("_target_", "task")).rsplit(".", 1)[-1].lower()
            net = str(cfg.net.get("_target_", "net")).rsplit(".", 1)[-1].lower()
            kwargs["name"] = cfg.get("name") or "-".join(x for x in (task, net, overrides) if x)
        if not cfg.logger.get("group") and sweep:
            kwargs["group"] = sweep
    return instantiate(cfg.logger, **kwargs)


def finish_logger(logger) -> None:
    """Close a W&B run so that the next job in this process starts its own."""
    if logger is None or type(logger).__name__ != "WandbLogger":
        return
    import wandb

    if wandb.run is not None:
        wandb.finish()


def fit_dir(out_dir: Path, fit: int, fits: int) -> Path:
    """Where fit ``fit`` writes its files: the run folder itself, or ``fit<k>/`` when packed."""
    return out_dir if fits == 1 else out_dir / f"fit{fit}"


def build_callbacks(cfg: DictConfig, out_dir: Path, fits: int = 1) -> dict[str, pl.Callback]:
    """The run's callbacks by role (throughput, curves, snapshots, es, checkpoint, progress)."""
    cbs: dict[str, pl.Callback] = {
        "throughput": Throughput(warmup=int(cfg.warmup_steps)),
        "curves": CurveLogger(log_every=int(cfg.log_every)),
        "divergence": DivergenceGuard(int(cfg.max_backtracks), check_every=int(cfg.eval_every)),
        "snapshots": Snapshots([fit_dir(out_dir, i, fits) / "snapshots" for i in range(fits)], int(cfg.iters),
                               every=int(cfg.snapshot_every or 0), log_spaced=bool(cfg.snapshot_log_spaced)),
    }
    if cfg.get("es"):
        cbs["es"] = build(cfg.es)
    if int(cfg.get("ckpt_every") or 0) > 0:
        cbs["checkpoint"] = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="step_{step:06d}",
                                            auto_insert_metric_name=False, every_n_train_steps=int(cfg.ckpt_every),
                                            save_top_k=-1, save_last=False)
    if cfg.trainer.get("enable_progress_bar", True):
        cbs["progress"] = PSNRProgressBar(cbs["curves"], refresh_rate=int(cfg.get("progress_every", 10)))
    return cbs


@dataclass
class Fit:
    """One restoration problem of a (possibly packed) run."""

    seed: int
    task: Task
    net: torch.nn.Module
    prob: Problem
    z: torch.Tensor


def build_fit(cfg: DictConfig, seed: int, source, image: torch.Tensor | None, make_input) -> Fit:
    """Task, net (initialised from ``seed``), observation and input z of one fit, as a lone run makes them."""
    task: Task = build(cfg.task)
    img = load_image(source if image is None else image, cfg.get("resize"))
    if task.needs_alpha:
        task.alpha = alpha_of(source, image, img)
    torch.manual_seed(seed)  # network initialisation depends on the seed only
    in_channels = task.input_channels or make_input.depth
    net = build(cfg.net, in_channels=in_channels, out_channels=img.shape[0])
    generator = torch.Generator().manual_seed(seed)  # observation noise / mask, then z
    prob = prepare_problem(img, task, int(getattr(net, "multiple", 1)), bool(cfg.observed),
                           str(cfg.fit_size), generator, getattr(net, "min_size", None))
    z = task.network_input()
    if z is None:
        z = make_input(*prob.canvas, generator)
    return Fit(seed, task, net, prob, z)


def build_fits(cfg: DictConfig, image: torch.Tensor | None, make_input) -> list[Fit]:
    """K = ``pack`` fits: ``pack_images`` (one image per fit), each fitted with ``seed`` exactly as its
    lone run would be; or ``image`` K times with seeds seed, seed+1, …"""
    k = int(cfg.get("pack") or 1)
    images = list(cfg.get("pack_images") or [])
    if k < 1:
        raise ValueError(f"pack={k} must be a positive number of fits")
    if images and len(images) != k:
        raise ValueError(f"pack_images has {len(images)} images but pack={k}; give one image per fit")
    seed = int(cfg.seed)
    fits = [build_fit(cfg, seed if images else seed + i, images[i] if images else cfg.image, image, make_input)
            for i in range(k)]
    first = fits[0].prob
    for f in fits[1:]:
        if (f.prob.canvas, f.prob.box) != (first.canvas, first.box) or f.prob.y.shape != first.y.shape:
            raise ValueError(f"packed fits need images of one size and channel count: got {tuple(first.y.shape[1:])} "
                             f"and {tuple(f.prob.y.shape[1:])} (C, H, W); resize them (resize=...) or pack=1")
    return fits


def run(cfg: DictConfig, image: torch.Tensor | None = None) -> dict:
    """Restore one image (or K packed ones) as ``cfg`` says.

    Returns ``{"metrics", "restored", "output_dir", ...}``; when packed, ``"fits"`` holds one such
    dict per fit. ``image`` (a (C, H, W) tensor) replaces ``cfg.image`` when given (the Python API).
    A run stopped by Ctrl-C / SIGTERM or an error still writes its outputs so far, with
    ``status`` ``interrupted`` / ``failed`` in metrics.json, then re-raises.
    """
    t0 = time.perf_counter()
    check_values(cfg)
    out_dir = writable_dir(Path(cfg.paths.output_dir))
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    malloc_reuse = cpu_malloc.apply(str(cfg.get("cpu_malloc", "reuse")))
    seed = int(cfg.seed)
    deterministic = bool(cfg.get("deterministic", False))
    set_deterministic(deterministic)
    pl.seed_everything(seed, verbose=False)
    write_json(out_dir / "environment.json", {**environment(seed, deterministic), "cpu_malloc_reuse": malloc_reuse})

    make_input = build(cfg.input)
    fits = build_fits(cfg, image, make_input)
    k = len(fits)
    net = pack_nets([f.net for f in fits])
    task = fits[0].task if k == 1 else PackedTask([f.task for f in fits])
    z = torch.cat([f.z for f in fits], 1)
    cpu_malloc.release()  # an earlier run's heap, kept by cpu_malloc=reuse, is free memory again
    check_memory(net, z.shape[1], fits[0].prob.canvas, cfg)
    if cfg.get("compile"):
        net = torch.compile(net)
    gts = [f.prob.x_true for f in fits]
    module = DIPModule(
        net=net, task=task, optimizer=build(cfg.optim), z=z, y=torch.cat([f.prob.y_padded for f in fits], 1),
        x_true=None if gts[0] is None else torch.cat(gts, 1), box=fits[0].prob.box, iters=int(cfg.iters),
        reg_noise_std=float(cfg.reg_noise_std), exp_weight=cfg.exp_weight, backtrack_db=cfg.backtrack_db,
        tv_weight=float(cfg.tv_weight), eval_every=int(cfg.eval_every), memory_format=str(cfg.memory_format),
        fits=k, seeds=[f.seed for f in fits])
    n_params = count_parameters(fits[0].net)

    logger = build_logger(cfg, out_dir)
    cbs = build_callbacks(cfg, out_dir, k)

    def finish(status: str, reason: str | None = None) -> dict:
        return write_outputs(cfg, module, fits, cbs, n_params, out_dir,
                             wall_s=time.perf_counter() - t0, status=status, reason=reason)

    try:
        if logger is not None:
            logger.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True), "params": n_params})
        trainer: pl.Trainer = instantiate(cfg.trainer, logger=logger if logger is not None else False,
                                          callbacks=list(cbs.values()), enable_checkpointing="checkpoint" in cbs)
        try:
            trainer.fit(module, train_dataloaders=step_loader(int(cfg.iters)), ckpt_path=cfg.get("ckpt_path"))
        except BaseException as exc:  # Lightning turns Ctrl-C into SystemExit; SIGTERM raises SIGTERMException
            if module.global_step > 0:
                interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
                finish("interrupted" if interrupted else "failed", f"{type(exc).__name__}: {exc}".strip(": "))
            if type(exc).__name__ == "SIGTERMException":  # Lightning's SystemExit() would exit with 0
                raise SystemExit(128 + signal.SIGTERM) from exc
            raise
        es, diverged = cbs.get("es"), cbs["divergence"].reason
        status = "diverged" if diverged else "early_stopped" if (es is not None and es.stopped) else "completed"
        results = finish(status, diverged)
        if diverged:
            log.error(diverged)
        if logger is not None and type(logger).__name__ == "WandbLogger":
            m = results["metrics"]
            logger.experiment.summary.update({k_: m[k_] for k_ in SUMMARY_KEYS if m.get(k_) is not None})
    finally:
        finish_logger(logger)
    return results


log = logging.getLogger("dip_lightning")


def check_values(cfg: DictConfig) -> None:
    """Values a user can get wrong, each with a one-line message naming it and the fix."""
    if int(cfg.iters) < 1:
        raise ValueError(f"iters={cfg.iters} must be a positive number of steps, e.g. iters=3000")
    lr = cfg.optim.get("lr")
    if lr is not None and float(lr) <= 0:
        raise ValueError(f"optim.lr={lr} must be positive, e.g. optim.lr=0.01")
    if float(cfg.reg_noise_std) < 0:
        raise ValueError(f"reg_noise_std={cfg.reg_noise_std} must be >= 0 (0 turns the input jitter off)")
    w = cfg.exp_weight
    if w is not None and not 0.0 <= float(w) < 1.0:
        raise ValueError(f"exp_weight={w} must be in [0, 1) (e.g. 0.99), or null to turn the EMA off")
    if int(cfg.eval_every) < 1:
        raise ValueError(f"eval_every={cfg.eval_every} must be a positive number of steps")
    cpu_malloc.check(str(cfg.get("cpu_malloc", "reuse")))


def writable_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"cannot write to the output directory {str(path)!r} ({exc.strerror or exc}); "
                         f"choose another with hydra.run.dir=... or paths.output_dir=...") from None
    return path


def alpha_of(source, image: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
    """The image file's alpha channel (for task.mask=alpha), resized like the image."""
    alpha = load_alpha(source) if image is None and Path(str(source)).is_file() else None
    if alpha is None:
        raise ValueError(f"task.mask=alpha but image={str(source)!r} has no alpha channel; give an RGBA/LA PNG "
                         f"or another task.mask")
    if alpha.shape[-2:] != img.shape[-2:]:
        alpha = pil_resize(alpha, img.shape[-2], img.shape[-1], "nearest")
    return alpha


def check_memory(net, in_channels: int, canvas: tuple[int, int], cfg: DictConfig) -> None:
    """Refuse a problem whose estimated step memory exceeds what is free; warn above half of it."""
    need = estimate_step_bytes(net, in_channels, canvas)
    accel = str(cfg.trainer.get("accelerator", "auto"))
    device = "cuda" if (accel in ("auto", "gpu", "cuda") and torch.cuda.is_available()) else "cpu"
    free = available_bytes(device)
    if free is None:
        return
    gib = 2 ** 30
    if need > free:
        raise MemoryError(f"a {canvas[0]}x{canvas[1]} fit needs about {need / gib:.1f} GiB but {free / gib:.1f} GiB "
                          f"of {device} memory are free; shrink it with resize=<longer side> or use a smaller net")
    if need > free / 2:
        log.warning("a %dx%d fit needs about %.1f GiB of the %.1f GiB free on %s", canvas[0], canvas[1], need / gib,
                    free / gib, device)

SUMMARY_KEYS = ("psnr_best", "best_step", "psnr_final", "psnr_ema_final", "psnr_observed", "it_per_s",
                "es_step", "es_psnr", "es_gap", "status")


def _f(t: torch.Tensor | None) -> float | None:
    if t is None:
        return None
    v = float(t)
    return None if math.isnan(v) or math.isinf(v) else round(v, 4)


def write_outputs(cfg: DictConfig, module: DIPModule, fits: list[Fit], cbs: dict, n_params: int, out_dir: Path,
                  wall_s: float, status: str = "completed", reason: str | None = None) -> dict:
    """Save every fit's images, panel, PSNR plot and metrics.json (packed: one ``fit<k>/`` folder
    each, and a summary metrics.json with the means); return the metrics and restored images."""
    module = module.cpu()
    throughput: Throughput = cbs["throughput"]
    k = module.fits
    it_per_s = round(throughput.it_per_s, 4) if throughput.it_per_s else None
    common = {"status": status, "reason": reason, "net": type(fits[0].net).__name__, "params": n_params,
              "iters_done": int(module.global_step), "iters": int(cfg.iters), "wall_s": round(wall_s, 3),
              "fit_s": round(throughput.wall_s, 3), "it_per_s": it_per_s}
    per = [write_fit(module, f, i, cbs, fit_dir(out_dir, i, k), common) for i, f in enumerate(fits)]
    if k == 1:
        return per[0]
    summary = {**common, "fits": k, "pack_it_per_s": None if it_per_s is None else round(k * it_per_s, 4),
               "output_dir": str(out_dir)}
    for key in ("psnr_observed", "psnr_final", "psnr_ema_final", "psnr_best", "ssim_final", "es_psnr", "es_gap",
                "psnr_obs_final"):
        vals = [r["metrics"][key] for r in per if r["metrics"][key] is not None]
        summary[key] = round(sum(vals) / len(vals), 4) if len(vals) == k else None
    summary["fit_metrics"] = [r["metrics"] for r in per]
    write_json(out_dir / "metrics.json", summary)
    return {"metrics": summary, "fits": per, "restored": per[0]["restored"], "output_dir": out_dir}


def write_fit(module: DIPModule, fit: Fit, i: int, cbs: dict, out_dir: Path, common: dict) -> dict:
    """The files and metrics of fit ``i`` (channels i·C … (i+1)·C of the packed tensors)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prob, task = fit.prob, fit.task
    sl = lambda x: None if x is None else module.fit_slice(x, i)  # noqa: E731
    final = sl(module.final_image())[0]
    ema = sl(module.ema_image())
    y_obs = sl(crop(module.y, module.obs_box))
    gt = prob.x_true
    save_image(final, out_dir / "restored.png")
    save_image(prob.y[0], out_dir / "observed.png")
    if ema is not None:
        save_image(ema[0], out_dir / "restored_ema.png")
    if gt is not None:
        save_image(sl(module.best_image)[0], out_dir / "restored_best.png")
    save_image(panel([prob.y[0], final] + ([gt[0]] if gt is not None else [])), out_dir / "panel.png")

    es_cb = cbs.get("es")
    es = es_cb.result(i) if es_cb is not None else {"es_step": None, "es_detected": False, "es_method": None}
    es_image = sl(es_cb.image.cpu()) if (es_cb is not None and es["es_step"] is not None) else None
    if es_image is not None:
        save_image(es_image[0], out_dir / "restored_es.png")
    history = module.history_dict(i)
    best_step = int(module.best_step[i]) if gt is not None else None
    plot_curves(history, out_dir / "psnr.png", best_step, es["es_step"],
                title=f"{type(task).__name__} · {type(fit.net).__name__}")
    baseline = task.baseline(prob.y) if gt is not None else None
    if baseline is not None and baseline.shape != gt.shape:
        baseline = None
    psnr_best = _f(module.best_psnr[i]) if gt is not None else None
    es_psnr = _f(psnr(es_image, gt)) if (es_image is not None and gt is not None) else None
    metrics = {
        **common,
        "task": type(task).__name__,
        "seed": fit.seed,
        "image_size": list(final.shape[-2:]),
        "channels": int(final.shape[0]),
        "ground_truth": gt is not None,
        "psnr_observed": _f(psnr(baseline, gt)) if baseline is not None else None,
        "psnr_final": _f(psnr(final[None], gt)) if gt is not None else None,
        "psnr_ema_final": _f(psnr(ema, gt)) if (gt is not None and ema is not None) else None,
        "psnr_best": psnr_best,
        "best_step": best_step,
        "ssim_final": _f(ssim(final[None], gt)) if gt is not None else None,
        "psnr_obs_final": _f(psnr(crop(task(sl(module.last_out)), module.obs_box), y_obs)),
        "psnr_ema_obs_final": (_f(psnr(crop(task(sl(module.ema)), module.obs_box), y_obs))
                               if ema is not None else None),
        **es,
        "es_psnr": es_psnr,
        "es_gap": round(psnr_best - es_psnr, 4) if (psnr_best is not None and es_psnr is not None) else None,
        "backtracks": int(module.backtracks[i]),
        "output_dir": str(out_dir),
    }
    write_json(out_dir / "metrics.json", metrics)
    return {"metrics": metrics, "restored": final, "restored_ema": None if ema is None else ema[0],
            "ground_truth": None if gt is None else gt[0], "history": history, "output_dir": out_dir}
