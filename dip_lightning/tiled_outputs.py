"""The files of a tiled run: the assembled images, the tiles' pooled PSNR curve and metrics.json.

The same files as a whole-image run (``dip_lightning/outputs.py``), for the assembled image:
``restored.png`` (the tiles' final outputs, blended), ``restored_ema.png``, ``restored_best.png``
(each tile at its own best step), ``restored_es.png`` (when every tile's stopping rule detected),
``observed.png``, ``ground_truth.png``, ``panel.png``, ``curves.csv`` / ``psnr.png`` and
``metrics.json``. Every PSNR in metrics.json is the assembled image's. The curve pools the tiles'
curves step by step, PSNR = −10 log10 Σ_t s_t · MSE_t with s_t the tile's share of the blended
image (the tiles are fitted one group after another, so the assembled image exists only at the
end). The ``tile*`` keys record the tiling and ``tile_psnr_seams`` / ``tile_psnr_rest``: the
PSNR of the pixels within 8 px of an inner tile border and of all the others.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from omegaconf import DictConfig

from dip_lightning.history import FIELDS
from dip_lightning.io import crop, save_image
from dip_lightning.metrics import PROTOCOLS, psnr, ssim
from dip_lightning.outputs import (_f, convergence, observed_psnr, panel_of, peak_memory_mb, plot_curves, write_curves,
                                   write_json)
from dip_lightning.overrides import image_name
from dip_lightning.problem import Whole
from dip_lightning.tiles import Tiling, blend, border_band

PSNR_FIELDS = ("psnr/obs", "psnr/gt", "psnr_ema/obs", "psnr_ema/gt")


def pooled_psnr(values: list[float], shares: list[float]) -> float:
    """The PSNR of the tiles taken together: −10 log10 of their MSEs averaged by share of the image."""
    if any(not math.isfinite(v) for v in values):
        return math.nan
    mse = sum(s * 10 ** (-v / 10) for v, s in zip(values, shares)) / sum(shares)
    return -10 * math.log10(mse)


def pooled_history(tiles: list[dict], shares: list[float]) -> dict[str, list[float]]:
    """The tiles' metric rows pooled row by row (the rows all tiles have): PSNRs through the
    share-weighted MSE, the other columns as share-weighted means."""
    rows = min(len(t["history"]["step"]) for t in tiles)
    out: dict[str, list[float]] = {"step": list(tiles[0]["history"]["step"][:rows])}
    total = sum(shares)
    for f in FIELDS:
        col = []
        for r in range(rows):
            vals = [t["history"][f][r] for t in tiles]
            col.append(pooled_psnr(vals, shares) if f in PSNR_FIELDS
                       else sum(v * s for v, s in zip(vals, shares)) / total)
        out[f] = col
    return out


def _status(groups: list[dict]) -> tuple[str, str | None]:
    """The run's status from its groups' (a group is never pruned: ``fit_group`` takes the pruner off)."""
    statuses = [g["status"] for g in groups]
    reasons = [f"tile group {i}: {g['reason']}" for i, g in enumerate(groups) if g["reason"]]
    for s in ("diverged", "early_stopped"):
        if s in statuses:
            return s, "; ".join(reasons) or None
    return "completed", None


def write_tiled(cfg: DictConfig, whole: Whole, tiling: Tiling, groups: list[dict], out_dir: Path, wall_s: float,
                batch: int, logger=None) -> dict:
    """Assemble the tiles, write the run's files and return ``{"metrics", "restored", ...}``."""
    tiles = [t for g in groups for t in g["tiles"]]
    h, w, boxes, alphas = whole.height, whole.width, tiling.boxes, tiling.alphas
    assembled = {key: (blend([t[key] for t in tiles], boxes, alphas, h, w) if all(t[key] is not None for t in tiles)
                       else None) for key in ("final", "ema", "best", "es")}
    final, ema, gt = assembled["final"], assembled["ema"], whole.x_true
    for key, name in (("final", "restored"), ("ema", "restored_ema"), ("best", "restored_best"), ("es", "restored_es")):
        if assembled[key] is not None:
            save_image(assembled[key][0], out_dir / f"{name}.png")
    observed = whole.task.picture(whole.y)[0]
    save_image(observed, out_dir / "observed.png")
    if gt is not None:
        save_image(gt[0], out_dir / "ground_truth.png")

    shares = [float(a.sum()) for a in alphas]
    history = pooled_history(tiles, shares)
    write_curves(history, out_dir / "curves.csv")
    plot_curves(history, out_dir / "psnr.png", title=f"{type(whole.task).__name__} · {len(tiles)} tiles")
    if logger is not None:
        for r, step in enumerate(history["step"]):
            logger.log_metrics({f: history[f][r] for f in FIELDS}, step=step)

    status, reason = _status(groups)
    band = border_band(boxes, h, w)
    psnr_observed = observed_psnr(whole.task, whole.y, gt)
    psnr_best = _f(psnr(assembled["best"], gt)) if assembled["best"] is not None else None
    es_psnr = _f(psnr(assembled["es"], gt)) if (assembled["es"] is not None and gt is not None) else None
    rates = [t["it_per_s"] for t in tiles[::batch] if t["it_per_s"]]
    it_per_s = round(sum(rates) / len(rates), 4) if rates else None
    protocol, which = cfg.get("eval_protocol"), str(cfg.get("eval_output") or "final")
    scored = assembled.get(which)
    steps = min(t["steps"] for t in tiles)
    obs_box = whole.task.observation_box((0, 0, h, w))
    metrics = {
        "status": status, "reason": reason, "method": tiles[0]["method"],
        "net": str(cfg.net._target_).rsplit(".", 1)[-1], "iters_done": steps, "iters": int(cfg.iters),
        "wall_s": round(wall_s, 3), "it_per_s": it_per_s, "peak_mem_mb": peak_memory_mb(),
        "task": type(whole.task).__name__, "image": image_name(whole.source), "seed": int(cfg.seed),
        "image_size": [h, w], "channels": int(final.shape[1]), "ground_truth": gt is not None,
        "psnr_observed": psnr_observed,
        "psnr_final": _f(psnr(final, gt)) if gt is not None else None,
        "psnr_ema_final": _f(psnr(ema, gt)) if (gt is not None and ema is not None) else None,
        "psnr_best": psnr_best, "best_step": None,
        **convergence(history, max((v for v in history["psnr/gt"] if v == v), default=None), it_per_s,
                      psnr_observed),
        "ssim_final": _f(ssim(final, gt)) if gt is not None else None,
        "psnr_obs_final": _f(psnr(crop(whole.task(final), obs_box), crop(whole.y, obs_box))),
        "es_step": None, "es_detected": all(t["es_step"] is not None for t in tiles),
        "es_psnr": es_psnr,
        "es_gap": round(psnr_best - es_psnr, 4) if (psnr_best is not None and es_psnr is not None) else None,
        "backtracks": sum(t["backtracks"] for t in tiles),
        "eval_protocol": protocol, "eval_output": which if protocol else None,
        "psnr_eval": (_f(PROTOCOLS[protocol](scored[0], gt[0])) if (protocol and gt is not None and scored is not None)
                      else None),
        "tile": tiling.size, "tile_overlap": tiling.overlap, "tile_batch": batch, "tiles": len(tiles),
        "tile_grid": [len({b[0] for b in boxes}), len({b[1] for b in boxes})],
        "tile_empty": sum(tiling.empty), "tile_steps": [t["steps"] for t in tiles],
        "tile_es_steps": [t["es_step"] for t in tiles],
        "tile_psnr_seams": _f(_masked_psnr(final, gt, band)) if (gt is not None and bool(band.any())) else None,
        "tile_psnr_rest": _f(_masked_psnr(final, gt, ~band)) if gt is not None else None,
        "output_dir": str(out_dir),
    }
    write_json(out_dir / "metrics.json", metrics)
    save_image(panel_of(observed, final[0], gt, metrics, None if ema is None else ema[0]), out_dir / "panel.png")
    return {"metrics": metrics, "restored": final[0], "restored_ema": None if ema is None else ema[0],
            "ground_truth": None if gt is None else gt[0], "history": history, "output_dir": out_dir}


def _masked_psnr(x: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PSNR over the pixels where ``mask`` (H, W) is true, all channels."""
    err = ((x.double() - gt.double()) ** 2)[..., mask]
    return -10 * torch.log10(err.mean())
