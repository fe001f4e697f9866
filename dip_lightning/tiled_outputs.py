"""The files of a tiled run: the assembled images, the tiles' pooled PSNR curve and metrics.json.

The same files as a whole-image run (``dip_lightning/outputs.py``), for the assembled image:
``restored.png`` (the tiles' final outputs, blended), ``restored_ema.png``, ``restored_best.png``
(each tile at its own best step), ``restored_es.png`` (when every tile's stopping rule detected),
``observed.png``, ``ground_truth.png``, ``panel.png``, ``curves.csv`` / ``psnr.png`` and
``metrics.json``. Every PSNR in metrics.json is the assembled image's. The curve pools the tiles'
curves step by step, PSNR = −10 log10 Σ_t s_t · MSE_t with s_t the tile's share of the blended
image (the tiles are fitted one group after another, so the assembled image exists only at the
end); the held-out PSNR (``holdout``: the same pixels are held out of every tile's data term) is
pooled likewise, and ``psnr_holdout`` is the assembled image's on all of them. The ``tile*`` keys
record the tiling and ``tile_psnr_seams`` / ``tile_psnr_rest``: the
PSNR of the pixels within 8 px of an inner tile border and of all the others.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from omegaconf import DictConfig

from dip_lightning.history import FIELDS
from dip_lightning.io import crop
from dip_lightning.metrics import masked_psnr, psnr
from dip_lightning.metrics import score as _f
from dip_lightning.outputs import evaluation_of, peak_memory_mb, write_result
from dip_lightning.tiles import Tiling, Whole, blend, border_band

PSNR_FIELDS = ("psnr/obs", "psnr/gt", "psnr_ema/obs", "psnr_ema/gt", "psnr/holdout")


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
    """The run's status from its groups' (a group is never pruned: ``run.fit_group`` takes a tiled group's pruner off)."""
    statuses = [g["status"] for g in groups]
    reasons = [f"tile group {i}: {g['reason']}" for i, g in enumerate(groups) if g["reason"]]
    for s in ("diverged", "early_stopped"):
        if s in statuses:
            return s, "; ".join(reasons) or None
    return "completed", None


def assemble(whole: Whole, tiling: Tiling, groups: list[dict]) -> tuple[dict, list[dict]]:
    """(the whole image's result, its tiles' results): the tiles' pictures blended into the image's
    (``tiles.blend``), their curves pooled (``pooled_history``), the image's best and early-stopped
    pictures made of each tile's own; the scores recomputed on the assembled image."""
    tiles = [t for g in groups for t in g["fits"]]
    h, w, boxes, alphas = whole.height, whole.width, tiling.boxes, tiling.alphas
    pic = {key: (blend([t[key] for t in tiles], boxes, alphas, h, w) if all(t[key] is not None for t in tiles)
                 else None) for key in ("final", "ema", "best", "es")}
    history = pooled_history(tiles, [float(a.sum()) for a in alphas])
    obs_box = whole.task.observation_box((0, 0, h, w))
    y_obs = crop(whole.y, obs_box)
    gt, best = whole.x_true, pic["best"]
    result = {
        **pic, "images": {}, "history": history, "best_step": None,
        "psnr_best": _f(psnr(best, gt)) if best is not None else None,
        "convergence_best": max((v for v in history["psnr/gt"] if v == v), default=None),
        "psnr_obs_final": _f(psnr(crop(whole.task(pic["final"]), obs_box), y_obs)),
        "psnr_ema_obs_final": (_f(psnr(crop(whole.task(pic["ema"]), obs_box), y_obs)) if pic["ema"] is not None
                               else None),
        "psnr_holdout": (None if whole.holdout is None else _f(masked_psnr(
            crop(whole.task(pic["final"]), obs_box), y_obs, crop(whole.holdout, obs_box), 1)[0])),
        "backtracks": sum(t["backtracks"] for t in tiles),
        "es_result": {"es_step": None, "es_detected": all(t["es_step"] is not None for t in tiles),
                      "es_method": tiles[0].get("es_result", {}).get("es_method")},
    }
    return result, tiles


def write_tiled(cfg: DictConfig, whole: Whole, tiling: Tiling, groups: list[dict], out_dir: Path, wall_s: float,
                batch: int, logger=None) -> dict:
    """Assemble the tiles, write the run's files (``outputs.write_result``) with the ``tile*`` keys,
    and return ``{"metrics", "restored", ...}``; the pooled curve goes to ``logger`` too."""
    result, tiles = assemble(whole, tiling, groups)
    history, boxes, h, w = result["history"], tiling.boxes, whole.height, whole.width
    if logger is not None:
        for r, step in enumerate(history["step"]):
            logger.log_metrics({f: history[f][r] for f in FIELDS}, step=step)
    status, reason = _status(groups)
    rates = [g["timing"]["it_per_s"] for g in groups if g["timing"]["it_per_s"]]
    it_per_s = round(sum(rates) / len(rates), 4) if rates else None
    timing = groups[0]["timing"]
    common = {"status": status, "reason": reason, "method": timing["method"], "net": timing["net"],
              "params": timing["params"], "iters_done": min(g["timing"]["steps"] for g in groups), "iters": int(cfg.iters),
              "wall_s": round(wall_s, 3), "fit_s": round(sum(g["timing"]["fit_s"] for g in groups), 3),
              "it_per_s": it_per_s, "resumed_at_step": None, "peak_mem_mb": peak_memory_mb()}
    final, gt, band = result["final"], whole.x_true, border_band(boxes, h, w)
    extra = {
        "tile": tiling.size, "tile_overlap": tiling.overlap, "tile_batch": batch, "tiles": len(tiles),
        "tile_grid": [len({b[0] for b in boxes}), len({b[1] for b in boxes})],
        "tile_empty": sum(tiling.empty), "tile_steps": [g["timing"]["steps"] for g in groups for _ in g["fits"]],
        "tile_es_steps": [t["es_step"] for t in tiles],
        "tile_psnr_seams": _f(_masked_psnr(final, gt, band)) if (gt is not None and bool(band.any())) else None,
        "tile_psnr_rest": _f(_masked_psnr(final, gt, ~band)) if gt is not None else None,
    }
    return write_result(result, whole.task, whole.y, gt, whole.source, int(cfg.seed), out_dir, common,
                        evaluation_of(cfg), f"{type(whole.task).__name__} · {len(tiles)} tiles", extra)


def _masked_psnr(x: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PSNR over the pixels where ``mask`` (H, W) is true, all channels."""
    err = ((x.double() - gt.double()) ** 2)[..., mask]
    return -10 * torch.log10(err.mean())
