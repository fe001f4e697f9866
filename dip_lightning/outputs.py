"""Every file a run leaves in its folder: images, the labelled panel, the PSNR plot, metrics.json.

``write_result`` writes one restored image's files from its result (``results.collect``) against
its observation and ground truth: ``restored.png``, ``restored_ema.png``, ``restored_best.png``,
``restored_es.png``, ``observed.png``, ``ground_truth.png``, ``panel.png``, ``curves.csv``,
``psnr.png`` and ``metrics.json``. Every run ends in it, once (also an interrupted or failed one,
with that ``status``): a whole-image run per fit (``write_fits``; a packed run puts each fit's files
in ``fit<k>/`` and a summary metrics.json, the means, in the run folder), a tiled run for the
assembled image (``tiled_outputs``).
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import torch
from omegaconf import DictConfig

from dip_lightning.metrics import PROTOCOLS, psnr, ssim
from dip_lightning.metrics import score as _f
from dip_lightning.overrides import image_name
from dip_lightning.pictures import panel_of, plot_curves
from dip_lightning.io import save_image

def _nan_to_none(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


def write_json(path: Path, data: dict) -> None:
    """Whole or not at all: written beside ``path``, then renamed over it (a job stopped while it
    writes its metrics.json never leaves half a file for a relaunch or a report to read)."""
    clean = {k: _nan_to_none(v) for k, v in data.items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(clean, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def peak_memory_mb() -> float:
    """This process's peak memory so far: CUDA's peak allocation when CUDA is in use, else the
    peak resident set (interpreter and libraries included)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    from dip_lightning.rss import maxrss_mb

    return round(maxrss_mb(), 1)


def fit_dir(out_dir: Path, fit: int, fits: int) -> Path:
    """Where fit ``fit`` writes its files: the run folder itself, or ``fit<k>/`` when packed."""
    return out_dir if fits == 1 else out_dir / f"fit{fit}"


def common_keys(cfg: DictConfig, group: dict, wall_s: float) -> dict:
    """The keys every fit of a group shares: status, method, net, steps, times, memory."""
    t = group["timing"]
    it_per_s = round(t["it_per_s"], 4) if t["it_per_s"] else None
    return {"status": group["status"], "reason": group["reason"], "method": t["method"],
            "net": t["net"], "params": t["params"], "iters_done": t["steps"], "iters": int(cfg.iters),
            "wall_s": round(wall_s + t["before_s"], 3), "fit_s": round(t["fit_s"], 3), "it_per_s": it_per_s,
            "resumed_at_step": t["resumed_at"], "peak_mem_mb": peak_memory_mb()}


def evaluation_of(cfg: DictConfig) -> tuple[str | None, str]:
    """(eval_protocol, eval_output) of the config."""
    return cfg.get("eval_protocol"), str(cfg.get("eval_output") or "final")


def write_fits(cfg: DictConfig, group: dict, fits: list, out_dir: Path, wall_s: float) -> dict:
    """A whole-image run's files from its one group (``results.collect``): every fit's (packed:
    one ``fit<k>/`` folder each, and a summary metrics.json with the means); return the metrics
    and restored images."""
    common, k = common_keys(cfg, group, wall_s), len(fits)
    per = [write_result(r, f.task, f.prob.y, f.prob.x_true, f.source, f.seed, fit_dir(out_dir, i, k), common,
                        evaluation_of(cfg), f"{type(f.task).__name__} · {type(f.net).__name__}")
           for i, (r, f) in enumerate(zip(group["fits"], fits))]
    if k == 1:
        return per[0]
    it_per_s = common["it_per_s"]
    summary = {**common, "fits": k, "pack_it_per_s": None if it_per_s is None else round(k * it_per_s, 4),
               "output_dir": str(out_dir)}
    for key in ("psnr_observed", "psnr_final", "psnr_ema_final", "psnr_best", "ssim_final", "es_psnr", "es_gap",
                "psnr_obs_final", "psnr_eval"):
        vals = [r["metrics"][key] for r in per if r["metrics"][key] is not None]
        summary[key] = round(sum(vals) / len(vals), 4) if len(vals) == k else None
    summary["fit_metrics"] = [r["metrics"] for r in per]
    write_json(out_dir / "metrics.json", summary)
    return {"metrics": summary, "fits": per, "restored": per[0]["restored"], "output_dir": out_dir}


def write_curves(history: dict[str, list[float]], path: Path) -> None:
    """The metric rows (step, loss, PSNRs, SSIMs) as CSV; NaN as an empty cell."""
    keys = list(history)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for row in zip(*(history[k] for k in keys)):
            w.writerow(["" if (isinstance(v, float) and not math.isfinite(v)) else v for v in row])


def convergence(history: dict, psnr_best: float | None, it_per_s: float | None,
                psnr_start: float | None = None) -> dict:
    """``steps_to_95``: the first evaluated step whose gain over the observation reaches 95% of the
    best gain, PSNR − PSNR(observation) ≥ 0.95 · (best − PSNR(observation)) (ground truth), and
    ``s_to_95``, that many steps at the run's steady rate. ``psnr_start``: the observation's PSNR
    (None: the curve's first value). On the gain, not on dB: 95% of 29.7 dB is 28.2 dB, and a
    denoising observation at 20.4 dB is already 69% of the way."""
    if psnr_best is None:
        return {"steps_to_95": None, "s_to_95": None}
    curve = [(s, v) for s, v in zip(history["step"], history["psnr/gt"]) if math.isfinite(v)]
    start = psnr_start if psnr_start is not None else (curve[0][1] if curve else psnr_best)
    target = start + 0.95 * (psnr_best - start)
    step = next((s for s, v in curve if v >= target), None)
    return {"steps_to_95": step, "s_to_95": None if (step is None or not it_per_s) else round(step / it_per_s, 3)}


def observed_psnr(task, y: torch.Tensor, gt: torch.Tensor | None) -> float | None:
    """``psnr_observed``: the task's naive estimate from y alone (e.g. bicubic for SR) against the
    ground truth; None without one, or when the estimate is not of the image's shape."""
    baseline = task.baseline(y) if gt is not None else None
    return _f(psnr(baseline, gt)) if (baseline is not None and baseline.shape == gt.shape) else None


def evaluate(protocol: str | None, output: str, images: dict, gt: torch.Tensor | None) -> float | None:
    """``psnr_eval``: the ``protocol``'s score of the ``output`` image (final | ema | best) against
    the ground truth; None without either."""
    if protocol is None or gt is None or images.get(output) is None:
        return None
    v = PROTOCOLS[protocol](images[output], gt[0])
    return round(v, 4) if math.isfinite(v) else None


def write_result(r: dict, task, y: torch.Tensor, gt: torch.Tensor | None, source: str, seed: int, out_dir: Path,
                 common: dict, evaluation: tuple[str | None, str], title: str, extra: dict | None = None) -> dict:
    """The files and metrics of one restored image: its result ``r`` (``results.collect``, or a
    tiled run's assembled one) scored against its observation ``y`` (made by ``task``) and ground
    truth ``gt`` (or None); ``extra`` keys join metrics.json (a tiled run's ``tile*``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    final, ema, best, es_image = r["final"][0], r["ema"], r["best"], r["es"]
    save_image(final, out_dir / "restored.png")
    observed = task.picture(y)[0]
    save_image(observed, out_dir / "observed.png")
    if ema is not None:
        save_image(ema[0], out_dir / "restored_ema.png")
    if best is not None:
        save_image(best[0], out_dir / "restored_best.png")
    if gt is not None:
        save_image(gt[0], out_dir / "ground_truth.png")
    if es_image is not None:
        save_image(es_image[0], out_dir / "restored_es.png")
    for name, pic in r["images"].items():  # e.g. SGLD's posterior std, scaled to its maximum
        save_image(pic / pic.amax().clamp_min(1e-12), out_dir / f"{name}.png")
    history, es = r["history"], r["es_result"]
    write_curves(history, out_dir / "curves.csv")
    plot_curves(history, out_dir / "psnr.png", r["best_step"], es["es_step"], title=title)
    psnr_best, psnr_observed = r["psnr_best"], observed_psnr(task, y, gt)
    es_psnr = _f(psnr(es_image, gt)) if (es_image is not None and gt is not None) else None
    psnr_final = _f(psnr(final[None], gt)) if gt is not None else None
    metrics = {
        **common,
        "task": type(task).__name__,
        "image": image_name(source),
        "seed": int(seed),
        "image_size": list(final.shape[-2:]),
        "channels": int(final.shape[0]),
        "ground_truth": gt is not None,
        "psnr_observed": psnr_observed,
        "psnr_final": psnr_final,
        "psnr_ema_final": _f(psnr(ema, gt)) if (gt is not None and ema is not None) else None,
        "psnr_best": psnr_best,
        "best_step": r["best_step"],
        **convergence(history, r.get("convergence_best", psnr_best), common.get("it_per_s"), psnr_observed),
        "ssim_final": _f(ssim(final[None], gt)) if gt is not None else None,
        "psnr_obs_final": r["psnr_obs_final"],
        "psnr_ema_obs_final": r["psnr_ema_obs_final"],
        "psnr_holdout": r["psnr_holdout"],
        **es,
        "es_psnr": es_psnr,
        "es_gap": round(psnr_best - es_psnr, 4) if (psnr_best is not None and es_psnr is not None) else None,
        "final_minus_best": (round(float(psnr(final[None], gt)) - psnr_best, 4)
                             if (gt is not None and psnr_best is not None) else None),
        "backtracks": r["backtracks"],
        "eval_protocol": evaluation[0],
        "eval_output": evaluation[1] if evaluation[0] else None,
        "psnr_eval": evaluate(*evaluation, {"final": final, "ema": None if ema is None else ema[0],
                                            "best": None if best is None else best[0]}, gt),
        **(extra or {}),
        "output_dir": str(out_dir),
    }
    write_json(out_dir / "metrics.json", metrics)
    save_image(panel_of(observed, final, gt, metrics, None if ema is None else ema[0]), out_dir / "panel.png")
    return {"metrics": metrics, "restored": final, "restored_ema": None if ema is None else ema[0],
            "ground_truth": None if gt is None else gt[0], "history": history, "output_dir": out_dir}
